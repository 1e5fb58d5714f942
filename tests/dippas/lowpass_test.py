"""Tests for the low-pass replacement (the photo's low frequencies under the DIP's detail); its use by the DIP:
kept_image_test."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dippas_jax.dippas import lowpass


@pytest.mark.parametrize("sigma", [0.7, 2.0, 4.0])
def test_blur_equals_scipy_gaussian_filter(sigma):
  """scipy.ndimage.gaussian_filter with mode 'reflect' (symmetric) and truncate 3 is the reference; float32
  sums of ≤ 25 taps of values ≤ 255 agree to ~1e-4 grey levels."""
  rng = np.random.default_rng(0)
  x = rng.uniform(0, 255, (2, 40, 37, 3)).astype(np.float32)
  want = np.stack([np.stack([ndimage.gaussian_filter(x[n, ..., c].astype(np.float64), sigma, mode="reflect",
                                                     truncate=3.0) for c in range(3)], -1) for n in range(2)])
  got = np.asarray(lowpass.blur(x, sigma=sigma))
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-4)


def test_blur_handles_kernels_wider_than_the_image():
  x = np.random.default_rng(1).uniform(0, 1, (5, 6, 1)).astype(np.float32)
  want = ndimage.gaussian_filter(x[..., 0].astype(np.float64), 4.0, mode="reflect", truncate=3.0)
  np.testing.assert_allclose(np.asarray(lowpass.blur(x, sigma=4.0))[..., 0], want, atol=1e-6)


def test_replace_lowpass_keeps_the_detail_and_takes_the_low_frequencies():
  """x = fine detail + a smooth colour drift; the reference = the same detail-free scene without the drift: the
  result keeps x's detail (a ±3 checkerboard: the σ = 4 blur passes ~nothing at the Nyquist frequency) and loses
  90 % of the drift (a green blob of 8 grey levels and σ 12 px: 1 − G leaves ≤ 10 % of its peak)."""
  yy, xx = np.mgrid[0:64, 0:64]
  detail = 3.0 * (((yy + xx) % 2) * 2 - 1)[..., None] * np.ones(3)
  drift = 8.0 * np.exp(-((yy - 30) ** 2 + (xx - 20) ** 2) / (2 * 12.0 ** 2))[..., None] * np.array([0, 1, 0])
  scene = 120.0 + 20 * np.sin(xx / 15.0)[..., None] * np.ones(3)
  out = np.asarray(lowpass.replace_lowpass(scene + detail + drift, scene, sigma=4.0))
  error = out - scene - detail
  assert np.abs(error[..., 0]).max() < 0.05  # no drift in red: the detail is kept as it was
  assert np.abs(error[..., 1]).max() < 0.1 * 8.0  # the green drift is 90 % gone
  np.testing.assert_array_equal(lowpass.replace_lowpass(scene + drift, scene, sigma=0), np.float32(scene + drift))
  with pytest.raises(ValueError, match="positive"):
    lowpass.gaussian_taps(-1.0)
