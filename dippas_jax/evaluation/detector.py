""""Was this photo anonymized?" — the anonymization detector as an adversary (Bonettini et al., ICIP 2019).

`cross_validate(originals, anonymized, settings=...)` tells the anonymized versions of photos from the originals
with two detectors trained here, from scratch, on tiles:

- 'resnet': the handcrafted residual features (`detector_features.handcrafted`) → a small ResNet
  (`detector_models.ResNetDetector`): the authors' design at CPU size;
- 'logistic': a logistic classifier on residual statistics (`detector_features.residual_statistics`): cheap,
  and a check that the ResNet is not needed to spot a method.

Cross-validation is photo-disjoint: photo i (its original AND its anonymized version, or, for two sets of
photos, the pair i) belongs to exactly one fold (`photo_folds`); a fold's detector is trained on the tiles of
the other folds' photos and scored on its own. Every photo gives `tiles` tiles (the same positions in both
versions). Per fold the tile-level AUC (label 1 = anonymized; as the authors score patches), reported as mean,
sample std, min and max over the folds; and the photo-level AUC (a photo's score = the mean logit of its
tiles), pooled over the folds.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from dippas_jax import batching
from dippas_jax.evaluation import detector_features as features_lib
from dippas_jax.evaluation import detector_models as models
from dippas_jax.prnu import roc

DETECTORS = ("resnet", "logistic")


@dataclasses.dataclass(frozen=True)
class DetectorSettings:
  """What the detectors see and how they are trained (`configs/evaluate.py`, field `detector`).

  Attributes:
    detectors: which of `DETECTORS` to run.
    features: 'spectrum' (the authors') or 'residual' (`detector_features.FEATURES`).
    sigma: the wavelet denoiser's σ of the first handcrafted layer (grey levels).
    tile, stride: tile side and grid step (pixels).
    max_tiles: at most this many grid positions per photo (a seeded random subset of the grid when larger).
    folds: photo-disjoint folds (2 ≤ folds ≤ photos).
    widths, stem_stride, epochs, batch_size, learning_rate, weight_decay: the ResNet and its training.
    logistic_l2, logistic_steps: the logistic classifier's L2 penalty and full-batch Adam steps.
    batch_size_features: images per call of the handcrafted layers.
  """
  detectors: tuple[str, ...] = DETECTORS
  features: str = "spectrum"
  sigma: float = 3.0
  tile: int = 64
  stride: int = 16
  max_tiles: int = 64
  folds: int = 4
  widths: tuple[int, ...] = (16, 32, 64)
  stem_stride: int = 2
  epochs: int = 4
  batch_size: int = 32
  learning_rate: float = 1e-2
  weight_decay: float = 1e-4
  logistic_l2: float = 1e-3
  logistic_steps: int = 500
  batch_size_features: int = 8

  def check(self, num_photos: int, height: int, width: int) -> None:
    """Raises ValueError (saying what to change) for settings that cannot run on these photos."""
    unknown = [d for d in self.detectors if d not in DETECTORS]
    if unknown or not self.detectors:
      raise ValueError(f"detector.detectors {self.detectors}: expected a non-empty subset of {DETECTORS}")
    if self.features not in features_lib.FEATURES:
      raise ValueError(f"detector.features {self.features!r}: expected one of {features_lib.FEATURES}")
    if not 2 <= self.folds <= num_photos:
      raise ValueError(f"detector.folds = {self.folds} needs 2 ≤ folds ≤ the {num_photos} photos")
    if self.max_tiles < 1 or self.epochs < 1 or self.batch_size < 1:
      raise ValueError("detector.max_tiles, epochs and batch_size must be ≥ 1")
    features_lib.tile_positions(height, width, tile=self.tile, stride=self.stride)


def photo_folds(num_photos: int, *, folds: int, seed: int) -> np.ndarray:
  """int64[num_photos]: the fold of each photo, a seeded permutation dealt round-robin (fold sizes differ by
  at most one)."""
  if not 2 <= folds <= num_photos:
    raise ValueError(f"folds = {folds} needs 2 ≤ folds ≤ {num_photos} photos")
  order = np.random.default_rng(seed).permutation(num_photos)
  fold = np.empty(num_photos, np.int64)
  fold[order] = np.arange(num_photos) % folds
  return fold


@dataclasses.dataclass(frozen=True)
class TileSet:
  """The tiles of every photo in both versions: `features` float32[2, N, P, t, t, 3] (handcrafted),
  `statistics` float32[2, N, P, F] (axis 0: 0 = original, 1 = anonymized), `positions` int64[P, 2]."""
  features: np.ndarray | None
  statistics: np.ndarray | None
  positions: np.ndarray


def _tile_positions(height: int, width: int, s: DetectorSettings, seed: int) -> np.ndarray:
  grid = features_lib.tile_positions(height, width, tile=s.tile, stride=s.stride)
  if len(grid) > s.max_tiles:
    keep = np.sort(np.random.default_rng([seed, 1]).choice(len(grid), s.max_tiles, replace=False))
    grid = grid[keep]
  return grid


def make_tiles(originals, anonymized, *, settings: DetectorSettings, seed: int = 0) -> TileSet:
  """Handcrafted features and statistics of the tiles of both versions (see `TileSet`). Photos go through the
  layers in padded batches of `batch_size_features`, so every call has one shape (one compilation)."""
  s, b = settings, settings.batch_size_features
  pos = _tile_positions(originals.shape[1], originals.shape[2], s, seed)
  out = {"resnet": [], "logistic": []}
  for version in (originals, anonymized):
    parts = {"resnet": [], "logistic": []}
    for start in range(0, len(version), b):
      chunk = batching.pad_batch(np.asarray(version[start:start + b]), b, fill="last")
      n = min(b, len(version) - start)
      noise = np.asarray(features_lib.noise_residual(chunk, sigma=s.sigma))
      noise_tiles = features_lib.cut_tiles(noise, pos, s.tile).reshape((-1, s.tile, s.tile, 3))
      if "resnet" in s.detectors:
        f = features_lib.handcrafted(noise_tiles, features=s.features)
        parts["resnet"].append(np.asarray(f).reshape((b, len(pos)) + f.shape[1:])[:n])
      if "logistic" in s.detectors:
        pixel_tiles = features_lib.cut_tiles(chunk, pos, s.tile).reshape((-1, s.tile, s.tile, 3))
        st = features_lib.residual_statistics(noise_tiles, pixel_tiles)
        parts["logistic"].append(np.asarray(st).reshape((b, len(pos), -1))[:n])
    for name, chunks in parts.items():
      if chunks:
        out[name].append(np.concatenate(chunks))
  return TileSet(features=np.stack(out["resnet"]) if out["resnet"] else None,
                 statistics=np.stack(out["logistic"]) if out["logistic"] else None, positions=pos)


def _split(values: np.ndarray, photos: np.ndarray):
  """(inputs, labels, photo of each tile) of both versions of `photos`, from values [2, N, P, ...]."""
  x = values[:, photos]                                               # [2, n, P, ...]
  labels = np.broadcast_to(np.arange(2)[:, None, None], x.shape[:3])
  owner = np.broadcast_to(photos[None, :, None], x.shape[:3])
  flat = x.shape[0] * x.shape[1] * x.shape[2]
  return x.reshape((flat,) + x.shape[3:]), labels.reshape(flat), owner.reshape(flat)


def _auc(scores, labels) -> float | None:
  labels = np.asarray(labels, bool)
  if labels.all() or not labels.any():
    return None
  fpr, tpr, _ = roc.roc_curve(np.asarray(scores, np.float64), labels)
  return float(roc.auc(fpr, tpr))


def _fit_predict(name: str, tiles: TileSet, train, test, s: DetectorSettings, key):
  """Test-tile logits, labels and photos of one fold for detector `name`."""
  values = tiles.features if name == "resnet" else tiles.statistics
  x_train, y_train, _ = _split(values, train)
  x_test, y_test, owner = _split(values, test)
  if name == "resnet":
    model, variables = models.train_resnet(
        x_train, y_train, key=key, widths=s.widths, stem_stride=s.stem_stride, epochs=s.epochs,
        batch_size=s.batch_size, learning_rate=s.learning_rate, weight_decay=s.weight_decay)
    return models.predict_resnet(model, variables, x_test), y_test, owner
  fitted = models.train_logistic(x_train, y_train, l2=s.logistic_l2, steps=s.logistic_steps)
  return models.predict_logistic(fitted, x_test), y_test, owner


def _summary(fold_auc, photo_scores, photo_labels, seconds) -> dict:
  aucs = np.asarray([a for a in fold_auc if a is not None], np.float64)
  return {"auc_mean": float(aucs.mean()) if aucs.size else None,
          "auc_std": float(aucs.std(ddof=1)) if aucs.size > 1 else None,
          "auc_min": float(aucs.min()) if aucs.size else None, "auc_max": float(aucs.max()) if aucs.size else None,
          "fold_auc": list(fold_auc), "photo_auc": _auc(photo_scores, photo_labels), "seconds": seconds}


def cross_validate(originals, anonymized, *, settings: DetectorSettings, seed: int = 0) -> dict:
  """Photo-disjoint cross-validation of the detectors (module docstring).

  Args:
    originals: uint8[N, H, W, 3], label 0 (the photos).
    anonymized: uint8[N, H, W, 3], label 1; row i is paired with `originals[i]` (same fold).
    settings: `DetectorSettings` (checked here).
    seed: fold assignment, tile subset, initialisation and batch order (recorded by the caller).

  Returns:
    JSON-able dict: per detector name {'auc_mean', 'auc_std', 'auc_min', 'auc_max', 'fold_auc' (per fold),
    'photo_auc', 'seconds'}, plus 'folds' (the photo indices of each fold), 'tiles_per_photo', 'tile',
    'train_tiles' (per fold, both versions) and 'seed'.
  """
  originals, anonymized = np.asarray(originals), np.asarray(anonymized)
  if originals.shape != anonymized.shape or originals.ndim != 4 or originals.shape[-1] != 3:
    raise ValueError(f"originals {originals.shape} and anonymized {anonymized.shape} must both be [N, H, W, 3]")
  n = len(originals)
  settings.check(n, originals.shape[1], originals.shape[2])
  fold = photo_folds(n, folds=settings.folds, seed=seed)
  tiles = make_tiles(originals, anonymized, settings=settings, seed=seed)
  out = {"folds": [np.flatnonzero(fold == f).tolist() for f in range(settings.folds)],
         "tiles_per_photo": len(tiles.positions), "tile": settings.tile, "seed": int(seed),
         "train_tiles": [2 * int(np.sum(fold != f)) * len(tiles.positions) for f in range(settings.folds)]}
  key = jax.random.key(seed)
  for d, name in enumerate(settings.detectors):
    t0 = time.perf_counter()
    fold_auc, photo_scores, photo_labels = [], [], []
    for f in range(settings.folds):
      test, train = np.flatnonzero(fold == f), np.flatnonzero(fold != f)
      logits, labels, owner = _fit_predict(name, tiles, train, test, settings,
                                           jax.random.fold_in(jax.random.fold_in(key, d), f))
      fold_auc.append(_auc(logits, labels))
      for p in test:
        for version in (0, 1):
          sel = (owner == p) & (labels == version)
          photo_scores.append(float(np.mean(logits[sel])))
          photo_labels.append(bool(version))
    out[name] = _summary(fold_auc, photo_scores, photo_labels, time.perf_counter() - t0)
  return out
