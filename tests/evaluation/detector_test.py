"""Tests for the anonymization detector (dippas_jax.evaluation.detector*): it spots a crafted anonymization, it
sees nothing between two sets of originals, its folds never share a photo, its layers have the stated shapes."""

import numpy as np
import pytest

from dippas_jax import imaging
from dippas_jax import synthetic
from dippas_jax.evaluation import detector
from dippas_jax.evaluation import detector_features
from dippas_jax.evaluation.baselines import denoising

# One xdist worker runs this module: the compiled detector is shared by its tests.
pytestmark = pytest.mark.xdist_group("detector")

# CPU-fast settings: 32² tiles of 48² photos, 4 per photo; the 12 photos of a set in one call of the wavelet
# denoiser, as the crafted anonymization's (one compilation); a full-resolution stem and 8 epochs, so that the
# ResNet learns from 128 training tiles per fold.
_SETTINGS = detector.DetectorSettings(tile=32, stride=16, max_tiles=9, folds=3, widths=(8, 16, 32), epochs=8,
                                      batch_size=8, logistic_steps=200, batch_size_features=12, stem_stride=1)


@pytest.fixture(scope="module")
def photos():
  """Two sets of 12 original photos (48²) of one synthetic camera: photo i of each set is a separate shot of
  scene i (its own shot and read noise), as photo i and its anonymized version share their scene."""
  prnu = synthetic.device_prnu(5, 0, height=48, width=48)
  first, second = [], []
  for i in range(12):
    scene = synthetic.natural_scene(np.random.default_rng([5, i]), height=48, width=48)
    first.append(synthetic.capture(np.random.default_rng([5, i, 1]), scene, prnu))
    second.append(synthetic.capture(np.random.default_rng([5, i, 2]), scene, prnu))
  return np.stack(first), np.stack(second)


def test_detector_spots_heavy_denoising(photos):
  """A crafted anonymization (two passes of wavelet denoising at σ = 6) is told from the originals."""
  originals, _ = photos
  anonymized = np.asarray(imaging.to_uint8(denoising.wavelet_denoising(originals, passes=2, sigma=6.0).image))
  out = detector.cross_validate(originals, anonymized, settings=_SETTINGS, seed=0)
  for name in detector.DETECTORS:
    assert out[name]["auc_mean"] > 0.9, (name, out[name])
    assert out[name]["photo_auc"] > 0.9 and len(out[name]["fold_auc"]) == 3
  assert out["tiles_per_photo"] == 4 and out["train_tiles"] == [2 * 8 * 4] * 3


def test_detector_sees_nothing_between_two_sets_of_originals(photos):
  """Two sets of original shots of the same scenes: chance level. (Two sets of DIFFERENT scenes would not do:
  with a dozen photos, cross-validation learns their content differences backwards, AUC ≈ 0.25–0.45.)"""
  first, second = photos
  out = detector.cross_validate(first, second, settings=_SETTINGS, seed=1)
  for name in detector.DETECTORS:
    assert abs(out[name]["auc_mean"] - 0.5) < 0.15, (name, out[name])


def test_folds_never_share_a_photo():
  for n, folds in ((16, 4), (9, 2), (5, 5)):
    fold = detector.photo_folds(n, folds=folds, seed=3)
    assert fold.shape == (n,) and set(fold) == set(range(folds))
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= 1
  fold = detector.photo_folds(8, folds=2, seed=0)
  values = np.arange(2 * 8 * 3).reshape(2, 8, 3)  # [version, photo, tile]
  test = np.flatnonzero(fold == 0)
  train = np.flatnonzero(fold != 0)
  _, labels, owner = detector._split(values, test)
  _, _, train_owner = detector._split(values, train)
  assert not set(owner) & set(train_owner)  # no photo (in either version) on both sides
  assert set(owner) == set(test) and np.bincount(labels).tolist() == [12, 12]
  with pytest.raises(ValueError):
    detector.photo_folds(3, folds=4, seed=0)


def test_layers_and_settings():
  pos = detector_features.tile_positions(48, 64, tile=32, stride=16)
  assert pos.tolist() == [[0, 0], [0, 16], [0, 32], [16, 0], [16, 16], [16, 32]]
  pos = detector_features.tile_positions(48, 48, tile=32, stride=16)
  images = np.random.default_rng(0).integers(0, 256, (12, 48, 48, 3), dtype=np.uint8)  # shapes of the tests above
  noise = np.asarray(detector_features.noise_residual(images))
  tiles = detector_features.cut_tiles(noise, pos, 32).reshape(-1, 32, 32, 3)
  np.testing.assert_array_equal(tiles[5], noise[1, 0:32, 16:48])  # photo 1, second position
  for kind in detector_features.FEATURES:
    assert detector_features.handcrafted(tiles, features=kind).shape == (48, 32, 32, 3)
  pixels = detector_features.cut_tiles(images, pos, 32).reshape(-1, 32, 32, 3)
  stats = detector_features.residual_statistics(tiles, pixels)
  assert stats.shape == (48, detector_features.NUM_STATISTICS) and np.all(np.isfinite(stats))
  with pytest.raises(ValueError, match="does not fit"):
    detector.DetectorSettings(tile=64).check(4, 48, 64)
  with pytest.raises(ValueError, match="folds"):
    detector.DetectorSettings(tile=32, folds=5).check(4, 48, 64)
  with pytest.raises(ValueError, match="features"):
    detector.DetectorSettings(tile=32, features="pixels").check(4, 48, 64)
