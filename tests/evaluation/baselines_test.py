"""Tests for dippas_jax.baselines: quantisation, registry, the L2 inpainting solver, each baseline on the
synthetic camera (NCC with the true K goes down, PSNR stays sensible)."""

import chex
import jax
import numpy as np
import pytest

from dippas_jax import imaging
from dippas_jax.evaluation import baselines
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics
from dippas_jax import synthetic

# One xdist worker runs this module (`--dist loadgroup`): its module fixtures and compiled programs are made once.
pytestmark = pytest.mark.xdist_group("baselines")


# --------------------------------------------------------------------------------------------------- helpers
def test_to_uint8_clips_and_rounds_half_to_even():
  x = np.array([-3.0, 0.49, 0.5, 1.5, 2.5, 127.5, 254.5, 254.51, 300.0], np.float32)
  got = np.asarray(imaging.to_uint8(x))
  assert got.dtype == np.uint8
  np.testing.assert_array_equal(got, [0, 0, 0, 2, 2, 128, 254, 255, 255])
  np.testing.assert_array_equal(got, np.rint(np.clip(x, 0, 255)).astype(np.uint8))


def test_registry():
  assert set(baselines.BASELINES) == {"adaptive_prnu_removal", "fingerprint_subtraction", "wavelet_denoising",
                                      "inpainting", "patch_desync"}
  for name, fn in baselines.BASELINES.items():
    assert baselines.get_baseline(name) is fn
  with pytest.raises(ValueError, match="Unsupported baseline 'dippas'"):
    baselines.get_baseline("dippas")


def test_prnu_aware_baselines_require_a_fingerprint_of_the_right_shape():
  x = np.zeros((2, 16, 16, 3), np.uint8)
  with pytest.raises(ValueError, match="PRNU-aware"):
    baselines.adaptive_prnu_removal(x, fingerprint=None)
  with pytest.raises(ValueError, match="fingerprint must have shape"):
    baselines.fingerprint_subtraction(x, fingerprint=np.zeros((16, 15), np.float32))
  with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
    baselines.wavelet_denoising(x[..., 0])


# ------------------------------------------------------------------------------------------ inpainting solver
def dense_l2_fill(plane, mask, lag):
  """Oracle: the least-squares fill by a dense solve of all in-image lag differences (numpy, float64)."""
  h, w = plane.shape
  index = -np.ones((h, w), int)
  index[mask] = np.arange(mask.sum())
  rows, rhs = [], []
  for i, j in np.ndindex(h, w):
    for di, dj in ((lag, 0), (0, lag)):
      k, l = i + di, j + dj
      if k >= h or l >= w:
        continue
      row, const = np.zeros(mask.sum()), 0.0
      for p, q, sign in ((k, l, 1.0), (i, j, -1.0)):
        if mask[p, q]:
          row[index[p, q]] += sign
        else:
          const -= sign * plane[p, q]
      if row.any():
        rows.append(row)
        rhs.append(const)
  x = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
  out = np.array(plane, np.float64)
  out[mask] = x
  return out


def test_lattice_masks_partition_the_image():
  for block, period in ((3, 6), (5, 10), (3, 9)):
    masks = baselines.lattice_masks(23, 17, block=block, period=period)
    assert masks.shape == ((period // block) ** 2, 23, 17)
    np.testing.assert_array_equal(masks.sum(axis=0), 1)  # Each pixel inpainted exactly once.
  m = baselines.lattice_masks(12, 12, block=3, period=6)
  np.testing.assert_array_equal(np.argwhere(m[0][:6, :6]), [(i, j) for i in range(3) for j in range(3)])
  np.testing.assert_array_equal(m[1][:3, :12].any(axis=0), [0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1])
  with pytest.raises(ValueError, match="multiple of block"):
    baselines.lattice_masks(12, 12, block=3, period=7)


def test_l2_fill_of_a_hole_in_a_linear_ramp_is_the_ramp():
  # A linear ramp is discrete-harmonic, so the lag-1 (and lag-3) L2 fill of an interior hole returns it exactly.
  ramp = np.add.outer(2.0 * np.arange(20), 1.5 * np.arange(23)) + 10.0
  hole = np.zeros(ramp.shape, bool)
  hole[5:12, 6:15] = True
  for lag, iterations in ((1, 60), (3, 20)):
    got = np.asarray(baselines.inpaint_l2(ramp, hole, lag=lag, iterations=iterations))
    np.testing.assert_allclose(got, ramp, atol=1e-3)
  # The filled values do not depend on what was in the hole.
  spoiled = np.where(hole, 1000.0, ramp)
  np.testing.assert_allclose(np.asarray(baselines.inpaint_l2(spoiled, hole, lag=1, iterations=60)), ramp, atol=1e-3)


@pytest.mark.parametrize("block", [3, 5])
def test_lag3_fill_matches_dense_least_squares(block):
  rng = np.random.default_rng(block)
  plane = rng.uniform(0, 255, (16, 19))
  masks = baselines.lattice_masks(16, 19, block=block, period=2 * block)
  planes = np.broadcast_to(plane, masks.shape)
  got = np.asarray(jax.jit(lambda p, m: baselines.inpaint_l2(p, m, lag=3, iterations=16))(planes, masks))
  for s, mask in enumerate(masks):
    np.testing.assert_allclose(got[s], dense_l2_fill(plane, mask, 3), atol=2e-3)


def test_lag1_fill_of_a_random_mask_matches_dense_least_squares():
  rng = np.random.default_rng(7)
  plane = rng.uniform(0, 255, (12, 13))
  mask = rng.random(plane.shape) < 0.3
  got = np.asarray(baselines.inpaint_l2(plane, mask, lag=1, iterations=80))
  np.testing.assert_allclose(got, dense_l2_fill(plane, mask, 1), atol=2e-3)


def test_lattice_inpainting_is_the_per_selector_fill():
  rng = np.random.default_rng(3)
  planes = rng.uniform(0, 255, (2, 15, 20)).astype(np.float32)
  got = np.asarray(baselines.inpaint_lattice(planes, block=3, period=6, lag=3))
  masks = baselines.lattice_masks(15, 20, block=3, period=6)
  expected = np.zeros_like(got)
  for n in range(2):
    for mask in masks:
      expected[n][mask] = dense_l2_fill(planes[n], mask, 3)[mask]
  np.testing.assert_allclose(got, expected, atol=2e-3)
  # A linear ramp is reproduced wherever a hole's lag-3 component has all its neighbours inside the image:
  # ≥ 3 pixels from the border for 3×3 holes (isolated unknowns), whole 5×5 holes away from the border.
  ramp = np.add.outer(3.0 * np.arange(15), -2.0 * np.arange(20)) + 100.0
  for block in (3, 5):
    out = np.asarray(baselines.inpaint_lattice(ramp, block=block, period=2 * block, lag=3))
    np.testing.assert_allclose(out[block:-block, block:-block], ramp[block:-block, block:-block], atol=1e-3)
    assert np.abs(out - ramp).max() > 0.1  # Border pixels see fewer neighbours (no reflection): not exact.


# ----------------------------------------------------------------------------------- the synthetic camera
@pytest.fixture(scope="module")
def camera():
  """4 photos (64×64) of 2 synthetic devices, their true K and an imperfect estimate of it.

  The estimate is the true K plus independent Gaussian noise of 0.6× its std (cosine ≈ 0.86 with the truth,
  what `fingerprint.estimate_fingerprint` gives from 8 flat-fields of this camera) rather than a real estimate,
  to spare the fingerprint estimator's compilation. All jitted calls in this file and in evaluation_test.py use
  batches of 4 64×64 images, so the wavelet denoiser and residual extractor compile once per process.
  """
  ds = synthetic.make_dataset(seed=1, num_devices=2, num_flatfield=0, num_natural=2, height=64, width=64)
  rng = np.random.default_rng(5)
  k_est = ds.prnu + 0.6 * ds.prnu.std() * rng.standard_normal(ds.prnu.shape).astype(np.float32)
  assert np.all(np.asarray(metrics.ncc(k_est, ds.prnu)) > 0.8)
  true_k = ds.prnu[ds.natural_device]
  w = denoise.extract_residual(ds.natural, sigma=3.0)
  ncc_orig = np.asarray(metrics.ncc_eq2(w, ds.natural, true_k))
  assert np.all(ncc_orig > 0.1), ncc_orig  # The synthetic PRNU is clearly present before anonymization.
  return ds.natural, true_k, k_est[ds.natural_device], ncc_orig


def _evaluate(images, out, true_k):
  u = np.asarray(imaging.to_uint8(out))
  w = denoise.extract_residual(u, sigma=3.0)
  return np.asarray(metrics.ncc_eq2(w, u, true_k)), np.asarray(metrics.psnr(images, u))


@pytest.mark.parametrize("name", ["adaptive_prnu_removal", "fingerprint_subtraction"])
def test_prnu_aware_baselines_zero_the_ncc_and_lower_it_with_the_true_k(camera, name):
  images, true_k, k_est, ncc_orig = camera
  # With the true K: the searched NCC reaches ~0 and the saved uint8 image stays inside the noise band.
  res = baselines.get_baseline(name)(images, fingerprint=true_k)
  chex.assert_shape(res.image, images.shape)
  assert res.image.dtype == np.float32
  assert float(np.min(res.image)) >= 0.0 and float(np.max(res.image)) <= 255.0
  np.testing.assert_allclose(np.asarray(res.ncc_original), ncc_orig, atol=1e-6)
  assert np.all(np.abs(np.asarray(res.ncc)) < 2e-3), res.ncc
  assert np.all(np.asarray(res.alpha) > 0)
  np.testing.assert_allclose(np.asarray(res.beta), np.asarray(res.alpha) * true_k.std(axis=(1, 2)), rtol=1e-4)
  ncc, psnr = _evaluate(images, res.image, true_k)
  assert np.all(np.abs(ncc) < 0.3 * ncc_orig), (ncc, ncc_orig)
  assert np.all(psnr > 30.0), psnr
  # With the K estimated from flat-fields (the realistic, PRNU-aware setting): |NCC| with the true K drops.
  res = baselines.get_baseline(name)(images, fingerprint=k_est)
  assert np.all(np.abs(np.asarray(res.ncc)) < 2e-3), res.ncc
  ncc, psnr = _evaluate(images, res.image, true_k)
  assert np.all(np.abs(ncc) < 0.5 * ncc_orig), (ncc, ncc_orig)
  assert np.all(psnr > 30.0), psnr


def test_search_is_per_image(camera):
  # Each image has its own bracket: reordering the batch reorders the results.
  images, true_k, _, _ = camera
  order = np.array([2, 0, 3, 1])
  a = baselines.fingerprint_subtraction(images, fingerprint=true_k)
  b = baselines.fingerprint_subtraction(images[order], fingerprint=true_k[order])
  np.testing.assert_allclose(np.asarray(b.alpha), np.asarray(a.alpha)[order], rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(b.image), np.asarray(a.image)[order])


def test_adaptive_removal_leaves_images_without_positive_correlation_unchanged(camera):
  images, true_k, _, _ = camera
  res = baselines.adaptive_prnu_removal(images, fingerprint=-true_k)  # NCC < 0 with −K: nothing to remove.
  np.testing.assert_array_equal(np.asarray(res.alpha), 0.0)
  np.testing.assert_array_equal(np.asarray(res.image), images.astype(np.float32))


# The synthetic camera's sensor noise (shot + read, std ≈ 6 grey levels) is far above σ = 3: one pass at σ = 3
# shrinks the residual without changing its direction (NCC is scale-free), so the test uses a strong setting.
@pytest.mark.parametrize("name,kwargs,min_psnr", [
    ("wavelet_denoising", dict(passes=2, sigma=10.0), 25.0),
    ("inpainting", dict(block=3, edge_restoration=False), 22.0),
    ("inpainting", dict(block=5, denoiser="wavelet"), 22.0),
    ("patch_desync", dict(window=6), 20.0)])
def test_blind_baselines_lower_the_ncc(camera, name, kwargs, min_psnr):
  images, true_k, _, ncc_orig = camera
  res = baselines.get_baseline(name)(images, **kwargs)
  chex.assert_shape(res.image, images.shape)
  ncc, psnr = _evaluate(images, res.image, true_k)
  assert np.all(np.abs(ncc) < 0.6 * ncc_orig), (ncc, ncc_orig)
  assert np.all(psnr > min_psnr) and np.all(psnr < 45.0), psnr


def test_more_denoising_passes_remove_more(camera):
  images, true_k, _, _ = camera
  one = baselines.wavelet_denoising(images, passes=1, sigma=5.0)
  three = baselines.wavelet_denoising(images, passes=3, sigma=5.0)
  np.testing.assert_array_equal(np.asarray(three.passes), 3)
  ncc1, psnr1 = _evaluate(images, one.image, true_k)
  ncc3, psnr3 = _evaluate(images, three.image, true_k)
  assert np.all(psnr3 < psnr1)
  assert np.mean(np.abs(ncc3)) < np.mean(np.abs(ncc1))


def test_lattice_period_is_the_authors():
  from dippas_jax.evaluation.baselines import inpaint  # pylint: disable=g-import-not-at-top
  assert inpaint.lattice_period(3) == 9 and inpaint.lattice_period(5) == 10  # their code, δ = 3
  assert len(baselines.lattice_masks(18, 18, block=3, period=9)) == 9


def test_edge_restoration_changes_only_edge_pixels_to_the_denoised_original(camera):
  from dippas_jax.evaluation.baselines import inpaint  # pylint: disable=g-import-not-at-top
  images = camera[0]
  plain = np.asarray(baselines.inpainting(images, block=3, edge_restoration=False).image)
  out, mask, name = inpaint.restore_edges(images, plain, denoiser="wavelet")
  clean = inpaint.denoise_twice(images, denoiser="wavelet")
  assert name == "wavelet" and 0.01 < mask.mean() < 0.9
  np.testing.assert_array_equal(out[mask], clean[mask])       # inside the mask: the denoised original
  np.testing.assert_array_equal(out[~mask], plain[~mask])     # outside: the inpainted image, untouched
  full = baselines.inpainting(images, block=3, denoiser="wavelet")
  assert full.denoiser == "wavelet"
  np.testing.assert_allclose(np.asarray(full.edge_fraction), mask.reshape(4, -1).mean(1), rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(full.image), np.clip(out, 0, 255))


def test_patch_desync_moves_patches_to_their_twins():
  """A random texture repeated every 8 columns (and nowhere else): every patch's nearest patch beyond the
  exclusion zone is one of its twins 8 columns away, so the output is made of the photo shifted by ±8 columns;
  the fingerprint comes out of register."""
  rng = np.random.default_rng(0)
  h, w, period = 48, 64, 8
  tile = rng.uniform(40, 210, (h, period, 3))
  scene = tile[:, np.arange(w) % period]
  k = 0.03 * rng.standard_normal((h, w))
  photo = np.clip(np.round(scene * (1 + k[..., None])), 0, 255).astype(np.uint8)[None]
  res = baselines.patch_desync(photo, patch=5, window=10, exclusion=3)
  again = baselines.patch_desync(photo, patch=5, window=10, exclusion=3)
  np.testing.assert_array_equal(np.asarray(res.image), np.asarray(again.image))  # deterministic
  assert abs(float(res.mean_shift[0]) - period) < 0.5  # the twins: 8 columns away (a few border pixels aside)
  out = np.asarray(imaging.to_uint8(res.image))
  w_out = denoise.extract_residual(out, sigma=3.0)
  w_in = denoise.extract_residual(photo, sigma=3.0)
  before = float(metrics.ncc_eq2(w_in, photo, k.astype(np.float32))[0])
  after = float(metrics.ncc_eq2(w_out, out, k.astype(np.float32))[0])
  assert before > 0.1 and abs(after) < 0.2 * before, (before, after)
  assert float(metrics.psnr(out, photo)[0]) > 28.0  # only the fingerprint (~3 % of the signal) differs
  with pytest.raises(ValueError, match="odd"):
    baselines.patch_desync(photo, patch=4)
