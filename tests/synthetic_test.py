"""Tests for the synthetic camera: determinism, the capture model and its ground truth."""

import numpy as np

from dippas_jax import synthetic


def test_dataset_is_deterministic_and_shaped():
  a = synthetic.make_dataset(seed=3, num_devices=2, num_flatfield=2, num_natural=3, height=32, width=40)
  b = synthetic.make_dataset(seed=3, num_devices=2, num_flatfield=2, num_natural=3, height=32, width=40)
  np.testing.assert_array_equal(a.natural, b.natural)
  np.testing.assert_array_equal(a.flatfield, b.flatfield)
  assert a.prnu.shape == (2, 32, 40) and a.flatfield.shape == (2, 2, 32, 40, 3)
  assert a.natural.shape == (6, 32, 40, 3) and a.natural.dtype == np.uint8
  np.testing.assert_array_equal(a.natural_device, [0, 0, 0, 1, 1, 1])
  c = synthetic.make_dataset(seed=4, num_devices=2, num_flatfield=2, num_natural=3, height=32, width=40)
  assert not np.array_equal(a.natural, c.natural)


def test_prnu_statistics():
  k = synthetic.device_prnu(0, 1, height=128, width=128, prnu_std=0.02)
  assert abs(k.std() - 0.02) < 0.001 and abs(k.mean()) < 0.001
  k2 = synthetic.device_prnu(0, 2, height=128, width=128, prnu_std=0.02)
  assert abs(np.corrcoef(k.ravel(), k2.ravel())[0, 1]) < 0.03  # Devices independent.


def test_capture_is_multiplicative_prnu_plus_noise():
  rng = np.random.default_rng(0)
  scene = np.full((64, 64, 3), 100.0, np.float32)
  k = synthetic.device_prnu(0, 0, height=64, width=64, prnu_std=0.05)
  clean = synthetic.capture(rng, scene, k, shot_gain=0.0, read_noise=0.0)
  np.testing.assert_array_equal(clean[..., 0], np.clip(np.round(100.0 * (1 + k)), 0, 255))
  noisy = synthetic.capture(np.random.default_rng(1), scene, k, shot_gain=0.3, read_noise=1.0)
  resid = noisy.astype(np.float64) - 100.0 * (1 + k[..., None])
  assert abs(resid.std() - np.sqrt(0.3 * 100 + 1.0 + 1 / 12)) < 0.3  # Shot + read + rounding noise.
  # The PRNU is visible in the photo: correlation of (I − mean) with K is ≈ 100·σ_K / σ_I.
  corr = np.corrcoef(noisy[..., 1].ravel(), k.ravel())[0, 1]
  assert corr > 0.6


def test_exposure_saturates_and_jpeg_changes_pixels():
  data = synthetic.make_dataset(seed=0, num_devices=1, num_flatfield=1, num_natural=1, height=64, width=64,
                                exposure=1.6)
  assert (data.natural == 255).mean() > 0.01
  raw = synthetic.make_dataset(seed=0, num_devices=1, num_flatfield=1, num_natural=1, height=64, width=64)
  jpg = synthetic.make_dataset(seed=0, num_devices=1, num_flatfield=1, num_natural=1, height=64, width=64,
                               jpeg_quality=75)
  diff = np.abs(raw.natural.astype(int) - jpg.natural.astype(int))
  assert 0.5 < diff.mean() < 10
