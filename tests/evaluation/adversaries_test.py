"""Tests for dippas_jax.evaluation.adversaries: PCE on the synthetic camera with a known shift, the attacker's
flat-field split, JPEG copies and resizing."""

import io as _io

import numpy as np
import pytest
from PIL import Image

from dippas_jax import synthetic
from dippas_jax.evaluation import adversaries
from dippas_jax.evaluation import protocol as evaluation
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics

_SHIFT = (5, 9)  # rows, columns


@pytest.fixture(scope="module")
def camera():
  """Two synthetic devices, 64×64, two photos each; the true fingerprints."""
  return synthetic.make_dataset(seed=3, num_devices=2, num_flatfield=0, num_natural=2, height=64, width=64)


def test_pce_finds_a_known_shift(camera):
  """A photo of device 0 circularly shifted by (5, 9): the shift search finds its fingerprint at that lag with
  PCE well above 60, the aligned value (shift_range 0) does not; the other device stays below 60 either way."""
  photo = camera.natural[0]
  shifted = np.roll(photo, _SHIFT, axis=(0, 1))
  k = camera.prnu
  found = adversaries.attribution_scores(shifted[None], k, shift_range=-1, batch_size=1)["pce"][:, 0]
  aligned = adversaries.attribution_scores(shifted[None], k, batch_size=1)["pce"][:, 0]  # the default: 0
  assert found[0] > 2 * adversaries.PCE_THRESHOLD and aligned[0] < adversaries.PCE_THRESHOLD
  assert found[1] < adversaries.PCE_THRESHOLD and aligned[1] < adversaries.PCE_THRESHOLD
  # The peak of the cross-correlation sits at the shift's lag (zero lag at (H-1, W-1), `metrics.crosscorr_2d`).
  w = denoise.extract_residual(shifted[None].astype(np.float32), sigma=3.0)[0]
  xcorr = metrics.crosscorr_2d(denoise.rgb2gray(shifted.astype(np.float32)) * k[0], w)
  peak = metrics.pce(xcorr, neigh_radius=adversaries.PCE_RADIUS)
  assert (int(peak.peak_y), int(peak.peak_x)) == (63 - _SHIFT[0], 63 - _SHIFT[1])  # K rolled by +s in W
  # Unshifted, both searches agree on the aligned peak; NCC equals the protocol's Eq. 2 score matrix.
  both = adversaries.attribution_scores(camera.natural, k, shift_range=-1, batch_size=1)  # one shape, one compile
  at_zero = adversaries.attribution_scores(camera.natural, k, batch_size=1)
  own = camera.natural_device
  np.testing.assert_allclose(both["pce"][own, np.arange(4)], at_zero["pce"][own, np.arange(4)], rtol=1e-5)
  assert np.all(both["pce"][own, np.arange(4)] > adversaries.PCE_THRESHOLD)
  np.testing.assert_allclose(both["ncc"], evaluation.score_matrix(camera.natural, k, batch_size=1)["ncc"],
                             rtol=1e-4, atol=1e-6)


def test_split_never_shares_an_image():
  files = [f"flat/cam_{i:02d}.jpg" for i in (7, 3, 0, 9, 1, 4, 8, 2, 6, 5)]
  anonymizer, attacker = adversaries.split_alternate(files)
  assert not set(anonymizer) & set(attacker)
  assert sorted(anonymizer + attacker) == sorted(files)
  assert anonymizer == [f"flat/cam_{i:02d}.jpg" for i in (0, 2, 4, 6, 8)]  # sorted, then even positions
  odd = adversaries.split_alternate(files[:7])
  assert (len(odd[0]), len(odd[1])) == (4, 3) and not set(odd[0]) & set(odd[1])
  with pytest.raises(ValueError, match="twice"):
    adversaries.split_alternate(["a.png", "b.png", "a.png"])
  with pytest.raises(ValueError, match="at least 2"):
    adversaries.split_alternate(["a.png"])


def test_jpeg_and_resize(camera):
  photo = camera.natural[0]
  data = adversaries.jpeg_bytes(photo, 75)
  decoded = np.asarray(Image.open(_io.BytesIO(data)))
  assert data[:2] == b"\xff\xd8" and decoded.shape == photo.shape
  assert 0 < np.abs(decoded.astype(float) - photo).mean() < 10  # lossy, but the same photo
  assert len(adversaries.jpeg_bytes(photo, 95)) > len(data)
  assert b"Exif" not in data
  small = adversaries.resize_images(camera.natural, 0.75)
  k = adversaries.resize_fingerprints(camera.prnu, 0.75)
  assert small.shape == (4, 48, 48, 3) and small.dtype == np.uint8 and k.shape == (2, 48, 48)
  # Resized alike, the fingerprint still attributes the resized photos (NCC of own device > other device).
  scores = adversaries.attribution_scores(small, k, pce=False, batch_size=4)
  assert list(scores) == ["ncc"] and scores["ncc"].shape == (2, 4)
  ncc = scores["ncc"]
  own = camera.natural_device
  assert np.all(ncc[own, np.arange(4)] > ncc[1 - own, np.arange(4)])
  with pytest.raises(ValueError, match="scale"):
    adversaries.resize_images(camera.natural, 1.5)
  with pytest.raises(ValueError, match="quality"):
    adversaries.jpeg_bytes(photo, 0)


def test_jpeg_and_resize_of_a_non_square_photo_equal_pillow_directly():
  """A 40×72 photo (a (width, height) swap would show): resized by Pillow bicubic to (round(0.5·72), round(0.5·40))
  = 36 × 20 (W × H), the fingerprint alike in float mode, and the JPEG decoding to Pillow's own encoding."""
  rng = np.random.default_rng(3)
  photo = rng.integers(0, 256, (1, 40, 72, 3), dtype=np.uint8)
  k = rng.normal(0, 0.01, (1, 40, 72)).astype(np.float32)
  want = np.asarray(Image.fromarray(photo[0]).resize((36, 20), Image.BICUBIC))
  np.testing.assert_array_equal(adversaries.resize_images(photo, 0.5)[0], want)
  want_k = np.asarray(Image.fromarray(k[0]).resize((36, 20), Image.BICUBIC), np.float32)
  np.testing.assert_array_equal(adversaries.resize_fingerprints(k, 0.5)[0], want_k)
  buf = _io.BytesIO()
  Image.fromarray(photo[0]).save(buf, format="JPEG", quality=85)
  np.testing.assert_array_equal(np.asarray(Image.open(_io.BytesIO(adversaries.jpeg_bytes(photo[0], 85)))),
                                np.asarray(Image.open(buf)))
