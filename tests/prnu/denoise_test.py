"""dippas_jax.denoise against a NumPy/pywt/SciPy re-implementation of prnu-python and its stored outputs."""

import json
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from dippas_jax.prnu import denoise

from prnu_reference import GRAY, np_extract_single, np_noise_extract, np_rgb2gray, np_wiener_adaptive, \
    np_wiener_dft, np_zero_mean, np_zero_mean_total  # pylint: disable=g-bad-import-order

# ------------------------------------------------------------------------------------------------------------


def _ncc(a, b):
  a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
  return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def _centre_crop(im, h, w):
  top, left = (im.shape[0] - h) // 2, (im.shape[1] - w) // 2
  return im[top:top + h, left:left + w]


def _load(dresden_dir, name, h, w):
  """Centre crop of natural/<name>.JPG, decoded by Pillow without EXIF orientation (as the references)."""
  return _centre_crop(np.asarray(Image.open(dresden_dir / "natural" / f"{name}.JPG").convert("RGB")), h, w)


def _images(n, h, w, seed=0):
  """Smooth image-like uint8 content plus noise, so that the Wiener gains are not all 1."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:h, :w]
  base = 128 + 60 * np.sin(xx[..., None] / 7.0 + np.arange(3)) * np.cos(yy[..., None] / 11.0)
  return np.clip(base[None] + rng.normal(0, 6, (n, h, w, 3)), 0, 255).astype(np.uint8)


SMALL = (2, 45, 38)  # one small odd-sized shape shared by the synthetic tests (one compilation each)


def test_rgb2gray_weights():
  x = np.random.default_rng(0).integers(0, 256, (2, 5, 6, 3)).astype(np.uint8)
  g = denoise.rgb2gray(x)
  assert g.dtype == jnp.float32 and g.shape == (2, 5, 6)
  np.testing.assert_allclose(np.asarray(g), np_rgb2gray(x), rtol=1e-6, atol=1e-4)
  np.testing.assert_allclose(np.asarray(denoise.rgb2gray(np.eye(3, dtype=np.float32)[None])), GRAY[None], rtol=0)
  one = denoise.rgb2gray(x[..., :1])
  np.testing.assert_array_equal(np.asarray(one), x[..., 0].astype(np.float32))
  with pytest.raises(ValueError, match="channels|3"):
    denoise.rgb2gray(x[..., :2])


@pytest.mark.parametrize("window_sizes", [(3, 5, 7, 9), (2, 4)])
def test_wiener_adaptive_matches_scipy(window_sizes):
  x = (np.random.default_rng(1).normal(0, 4, (2, 37, 50)) ** 3 / 8).astype(np.float32)
  out = denoise.wiener_adaptive(x, noise_var=9.0, window_sizes=window_sizes)
  assert out.dtype == jnp.float32 and out.shape == x.shape
  expected = np.stack([np_wiener_adaptive(xi, 9.0, window_sizes) for xi in x])
  np.testing.assert_allclose(np.asarray(out), expected, rtol=2e-6, atol=1e-5)


def test_noise_extract_matches_numpy_synthetic():
  images = _images(*SMALL)
  out = denoise.noise_extract(images, sigma=5.0)
  assert out.dtype == jnp.float32 and out.shape == images.shape
  expected = np.stack([np_noise_extract(im, 4, 5.0) for im in images])
  np.testing.assert_allclose(np.asarray(out), expected, rtol=0, atol=2e-4)
  # denoise is the complement; float input on the 0..255 scale is treated like uint8
  np.testing.assert_allclose(np.asarray(denoise.denoise(images.astype(np.float32), sigma=5.0)),
                             images - np.asarray(out), rtol=0, atol=1e-4)


def test_noise_extract_matches_numpy_real_crop(dresden_dir):
  im = _load(dresden_dir, "Nikon_D70_0_19445", 512, 512)
  out = np.asarray(denoise.noise_extract(im[None], sigma=3.0))[0]
  expected = np_noise_extract(im, 4, 3.0)
  np.testing.assert_allclose(out, expected, rtol=0, atol=2e-4)
  assert _ncc(out, expected) > 0.999999


def test_zero_mean_and_zero_mean_total():
  x = np.random.default_rng(2).normal(3, 2, (2, 33, 51)).astype(np.float32)
  zm = np.asarray(denoise.zero_mean(x))
  np.testing.assert_allclose(zm, np.stack([np_zero_mean(xi) for xi in x]), atol=1e-5)
  np.testing.assert_allclose(zm.mean(axis=-1), 0, atol=1e-5)
  np.testing.assert_allclose(zm.mean(axis=-2), 0, atol=1e-5)
  zmt = np.asarray(denoise.zero_mean_total(x))
  assert zmt.shape == x.shape and zmt.dtype == np.float32
  np.testing.assert_allclose(zmt, np.stack([np_zero_mean_total(xi) for xi in x]), atol=1e-5)
  for p in (0, 1):
    for q in (0, 1):
      sub = zmt[:, p::2, q::2]
      np.testing.assert_allclose(sub.mean(axis=-1), 0, atol=1e-5)
      np.testing.assert_allclose(sub.mean(axis=-2), 0, atol=1e-5)


def test_wiener_dft_matches_numpy():
  x = np.random.default_rng(3).normal(0, 1.5, (3, 40, 54)).astype(np.float32)
  x[2] = 0  # all-zero spectrum: gain 0, output 0, no NaN
  sigma = np.asarray([0.8, 1.7, 1.0], np.float32)
  out = np.asarray(denoise.wiener_dft(x, sigma=sigma))
  assert out.dtype == np.float32
  expected = np.stack([np_wiener_dft(xi, float(s)) for xi, s in zip(x, sigma)])
  np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)
  np.testing.assert_array_equal(out[2], 0)
  # a scalar sigma broadcasts over the leading axes
  np.testing.assert_allclose(np.asarray(denoise.wiener_dft(x[:1], sigma=0.8)), expected[:1], rtol=0, atol=1e-5)


def test_extract_residual_matches_numpy_batches_and_traces_once():
  images = _images(*SMALL, seed=4)
  out = np.asarray(denoise.extract_residual(images, sigma=3.0))
  assert out.dtype == np.float32 and out.shape == SMALL
  expected = np.stack([np_extract_single(im, 4, 3.0) for im in images])
  np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)
  # A fixed wdft_sigma, per image.
  fixed = np.asarray(denoise.extract_residual(images, sigma=3.0, wdft_sigma=np.asarray([0.7, 1.1])))
  np.testing.assert_allclose(fixed[1], np_extract_single(images[1], 4, 3.0, wdft_sigma=1.1), rtol=0, atol=1e-4)
  # Batching over N is the same as N single calls; the jitted kernel traces once for one shape, whatever
  # the sigma values.
  single = jax.jit(chex.assert_max_traces(denoise._extract_residual_impl, n=1), static_argnames=("levels", "wavelet"))
  for i in range(SMALL[0]):
    for sigma in (3.0, 5.0):
      res = single(images[i:i + 1], jnp.full((1,), sigma, jnp.float32), jnp.zeros((1,), jnp.float32),
                   levels=4, wavelet="db4")
      if sigma == 3.0:
        np.testing.assert_allclose(np.asarray(res)[0], out[i], rtol=0, atol=1e-6)
  # The public function: new sigma values (python, numpy or jax scalars, or per-image arrays) reuse the
  # compiled computation.
  cache_size = getattr(denoise._extract_residual_jit, "_cache_size", None)  # private jax API: checked if present
  before = cache_size() if cache_size else None
  for sigma in (5.0, np.float32(2.0), jnp.float32(4.0), 3, np.asarray([3.0, 4.0])):
    denoise.extract_residual(images, sigma=sigma)
  denoise.extract_residual(images, sigma=3.0, wdft_sigma=1.0)
  if cache_size:
    assert cache_size() == before


def test_errors():
  with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
    denoise.extract_residual(np.zeros((8, 8, 3), np.uint8))
  with pytest.raises(ValueError, match="channels"):
    denoise.extract_residual(np.zeros((1, 8, 8, 2), np.uint8))
  with pytest.raises(ValueError, match="sigma"):
    denoise.extract_residual(np.zeros((2, 8, 8, 3), np.uint8), sigma=np.ones(3))
  with pytest.raises(ValueError, match=r"\[N, H, W, C\]"):
    denoise.noise_extract(np.zeros((8, 8), np.uint8))
  with pytest.raises(ValueError, match="levels"):
    denoise.noise_extract(np.zeros((1, 8, 8, 3), np.uint8), levels=0)
  with pytest.raises(ValueError, match=r"\[..., H, W\]"):
    denoise.wiener_dft(np.zeros(8), sigma=1.0)
  with pytest.raises(ValueError, match="sigma"):
    denoise.wiener_dft(np.zeros((2, 8, 8)), sigma=np.ones(3))


# ------------------------------------------------------------------------------------------------------------
# Parity with the stored prnu-python outputs (SPEC 1.17; ../shared/reference/README.md).

# Images whose residuals are stored at both sizes and both sigmas.
PARITY_IMAGES = ["Nikon_D200_0_14902", "Nikon_D70_0_19445"]


def _check_parity(out, ref, what):
  assert out.shape == ref.shape, what
  err = np.abs(out - ref).max()
  ncc = _ncc(out, ref)
  assert err <= 1e-4, f"{what}: max |err| {err:.3g}"
  assert ncc >= 0.99999, f"{what}: NCC {ncc:.8f}"


@pytest.mark.parametrize("size", [(512, 512), (333, 517)])
def test_extract_residual_matches_prnu_python(size, dresden_dir, reference_dir):
  suffix = "" if size == (512, 512) else f"_odd{size[0]}x{size[1]}"
  crops = [_load(dresden_dir, name, *size) for name in PARITY_IMAGES]
  # one batch (one compilation): both images at sigma 3, then at sigma 5
  batch = np.stack(crops + crops)
  sigmas = np.repeat(np.float32([3.0, 5.0]), len(crops))
  out = np.asarray(denoise.extract_residual(batch, sigma=sigmas))
  for k, (name, sigma) in enumerate(zip(PARITY_IMAGES * 2, sigmas)):
    ref = np.load(reference_dir / "residuals" / f"{name}{suffix}_sigma{int(sigma)}.npy")
    _check_parity(out[k], ref, f"{name}{suffix} sigma {sigma}")


@pytest.mark.slow
def test_all_reference_residuals(dresden_dir, reference_dir):
  index = json.loads((reference_dir / "index.json").read_text())["residuals"]
  by_shape = {}
  for file, meta in index.items():
    by_shape.setdefault(tuple(meta["crop"]), []).append((file, meta))
  for (h, w), items in by_shape.items():
    batch = np.stack([_centre_crop(np.asarray(Image.open(dresden_dir / m["image"]).convert("RGB")), h, w)
                      for _, m in items])
    out = np.asarray(denoise.extract_residual(batch, sigma=np.float32([m["sigma"] for _, m in items])))
    for k, (file, _) in enumerate(items):
      _check_parity(out[k], np.load(reference_dir / "residuals" / file), file)


@pytest.mark.slow
def test_timing_batch_of_8(dresden_dir):
  """Seconds per image of the jitted extract_residual on 8 crops of 512x512x3 (prnu-python: ~0.123 s)."""
  names = sorted(p.stem for p in (dresden_dir / "natural").glob("*.JPG"))[:8]
  batch = jnp.asarray(np.stack([_load(dresden_dir, n, 512, 512) for n in names]))
  jax.block_until_ready(denoise.extract_residual(batch, sigma=3.0))
  times = []
  for _ in range(5):
    t = time.perf_counter()
    jax.block_until_ready(denoise.extract_residual(batch, sigma=3.0))
    times.append(time.perf_counter() - t)
  print(f"extract_residual: {min(times) / len(names):.4f} s/image (best of 5, batch {len(names)})")
