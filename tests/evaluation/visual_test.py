"""Tests for the visual checks: the colour shift of w×w windows and the seam score of tiled results."""

import numpy as np
import pytest

from dippas_jax.dippas import tiling
from dippas_jax.evaluation import visual


def _photo(h=96, w=112, seed=0):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  smooth = 100 + 60 * np.sin(yy / 9.0)[..., None] * np.cos(xx / 13.0)[..., None] * np.ones(3)
  return np.clip(smooth + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def test_colour_shift_finds_a_blotch_that_noise_does_not_make():
  rng = np.random.default_rng(1)
  original = _photo()
  noisy = np.clip(original + rng.normal(0, 3, original.shape).round(), 0, 255).astype(np.uint8)
  quiet = visual.colour_shift(noisy, original)
  # Noise of std 3 averages to std 3/16 over a 16×16 window: the worst of ~8,000 windows × 3 channels stays < 1.
  assert quiet["worst"] < 1.0 and quiet["p999"] <= quiet["worst"]
  blotched = noisy.astype(np.int16)
  blotched[40:60, 50:70, 1] += 7  # a green square of 20 px, +7 grey levels
  shift = visual.colour_shift(np.clip(blotched, 0, 255).astype(np.uint8), original)
  assert 6.5 < shift["worst"] < 7.5  # a 16×16 window inside the square sees the full +7 (± noise)
  with pytest.raises(ValueError, match="one shape"):
    visual.colour_shift(original[:10], original)


def test_window_means_match_a_direct_computation():
  rng = np.random.default_rng(2)
  d = rng.normal(0, 1, (20, 25, 3))
  means = visual.window_means(d, 4)
  assert means.shape == (17, 22, 3)
  np.testing.assert_allclose(means[5, 7], d[5:9, 7:11].mean(axis=(0, 1)), rtol=1e-12)


def test_seam_score_is_one_without_seams_and_rises_with_a_step_at_tile_edges():
  original = _photo(128, 128)
  layout = tiling.make_layout(128, 128, tile_size=48, overlap=8)
  assert visual.seam_score(original, original, layout) == pytest.approx(1.0)
  rows, cols = visual.border_masks(layout)
  assert rows.sum() > 0 and cols.sum() > 0
  # Tiles that each drifted by their own offset (a checkerboard of 0 / +6 grey levels, cut at tile starts): a step
  # at every border.
  yy, xx = np.mgrid[0:128, 0:128]
  offset = 6 * (((yy // layout.stride) + (xx // layout.stride)) % 2)
  stepped = np.clip(original + offset[..., None], 0, 255).astype(np.uint8)
  score = visual.seam_score(stepped, original, layout)
  assert score > 1.10  # the acceptance limit of a whole-photo run
  single = tiling.make_layout(40, 40, tile_size=48, overlap=8)
  assert np.isnan(visual.seam_score(original[:40, :40], original[:40, :40], single))


def test_spot_shift_sees_spots_and_rings_that_noise_and_16x16_means_do_not():
  """A 6-grey-level disc of radius 5 px reads ≈ 6 after the σ 1.5 blur (the disc is wider than the blur), a ring
  around it of the opposite sign keeps the 16×16 means near 0; the anonymizer's removal of N(0, 2²) pixel noise
  blurs to std 2/(2√π·1.5) ≈ 0.38, so its worst over 128² × 3 samples stays below 2 (5.3 std)."""
  rng = np.random.default_rng(0)
  original = np.full((128, 128, 3), 150.0)
  noisy = original + rng.normal(0, 2, original.shape)
  assert visual.spot_shift(noisy, original)["worst"] < 2.0
  yy, xx = np.mgrid[:128, :128]
  r = np.hypot(yy - 64, xx - 64)
  spot = np.where(r < 5, 6.0, 0.0) - np.where((r >= 5) & (r < 5 * np.sqrt(2)), 6.0, 0.0)  # zero-mean disc + ring
  anonymized = original + spot[..., None]
  assert visual.spot_shift(anonymized, original)["worst"] > 4.5
  assert visual.colour_shift(anonymized, original)["worst"] < 1.0
  textured = original + 40 * (np.indices((128, 128)).sum(0) % 2)[..., None]  # no flat pixel: nothing counts
  assert visual.spot_shift(textured + spot[..., None], textured) == {"worst": 0.0, "p999": 0.0, "flat": 0.0}
  with pytest.raises(ValueError):
    visual.spot_shift(anonymized[:, :64], original)
