"""Source attribution: fingerprints × query images → score matrices, ROC/AUC, tables and plots.

The protocol of prnu-python's example (and of the DIPPAS evaluation): every query image's residual W is
scored against every device fingerprint K; ground truth is "same device". Scores:

- `cc`: raw inner product <K, W> (prnu-python `aligned_cc(k, w)['cc']`, what its example feeds to the ROC);
- `ncc`: uncentred cosine of K and W (prnu-python `aligned_cc(k, w)['ncc']`);
- `ncc_eq2`: DIPPAS Eq. 2, uncentred cosine of W and gray(I) ⊙ K (the definition used for anonymization);
- `pce`: peak-to-correlation energy of the circular cross-correlation of K and W.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax import batching
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics
from dippas_jax.prnu import roc

SCORES = ("cc", "ncc", "ncc_eq2", "pce")


def extract_residuals(images: np.ndarray, *, sigma: float, levels: int = 4, wavelet: str = "db4",
                      batch_size: int = 8, progress=None) -> np.ndarray:
  """Residuals `float32[N, H, W]` of `images` (uint8 or float[N, H, W, 3] in [0, 255]), in fixed batches."""
  fn = functools.partial(denoise.extract_residual, sigma=sigma, levels=levels, wavelet=wavelet)
  return batching.map_batches(fn, images, batch_size=batch_size, progress=progress)


@functools.partial(jax.jit, static_argnames=("pce_mode", "pce_radius", "pce_shift_range"))
def _score_column(fingerprints, residual, image, *, pce_mode, pce_radius, pce_shift_range):
  """Scores of one query (residual float32[H, W], image [H, W, 3]) against fingerprints float32[M, H, W]."""
  cc, ncc = metrics.cosine_scores(fingerprints, residual[None])
  ncc_eq2 = metrics.ncc_eq2(residual[None], image[None], fingerprints)
  xcorr = metrics.crosscorr_2d(fingerprints, jnp.broadcast_to(residual, fingerprints.shape))
  shift_range = None if pce_shift_range < 0 else pce_shift_range
  pce = metrics.pce(xcorr, neigh_radius=pce_radius, mode=pce_mode, shift_range=shift_range).pce
  return cc[:, 0], ncc[:, 0], ncc_eq2, pce


def score_matrices(fingerprints: np.ndarray, residuals: np.ndarray, images: np.ndarray, *,
                   pce_mode: str = "standard", pce_radius: int = 2, pce_shift_range: int = -1,
                   progress=None) -> dict[str, np.ndarray]:
  """All scores of M fingerprints × N queries.

  Args:
    fingerprints: float32[M, H, W].
    residuals: float32[N, H, W], the queries' residuals.
    images: uint8 or float[N, H, W, 3] in [0, 255], the queries (for `ncc_eq2`).
    pce_mode, pce_radius, pce_shift_range: see `metrics.pce` (shift range −1 = all shifts).

  Returns:
    `{score name: float32[M, N]}` for the names in `SCORES`.
  """
  fingerprints = jnp.asarray(fingerprints, jnp.float32)
  columns = []
  for n in range(len(residuals)):
    columns.append([np.asarray(c) for c in _score_column(
        fingerprints, jnp.asarray(residuals[n]), jnp.asarray(images[n], jnp.float32), pce_mode=pce_mode,
        pce_radius=pce_radius, pce_shift_range=pce_shift_range)])
    if progress is not None:
      progress(n + 1)
  return {name: np.stack([col[i] for col in columns], axis=1) for i, name in enumerate(SCORES)}


@dataclasses.dataclass(frozen=True)
class AttributionResult:
  """Scores and statistics of one attribution run.

  Attributes:
    devices: fingerprint names, the M rows of every score matrix.
    images: query names, the N columns.
    image_devices: true device of each query ('' if unknown).
    scores: `{name: float32[M, N]}`.
    ground_truth: bool[M, N], `image_devices[n] == devices[m]`.
    stats: `{name: {'auc', 'eer', 'tpr_at_fpr_0.01', 'fpr', 'tpr'}}` (None where a class is empty).
  """
  devices: tuple[str, ...]
  images: tuple[str, ...]
  image_devices: tuple[str, ...]
  scores: dict
  ground_truth: np.ndarray
  stats: dict


def summarize(scores: dict[str, np.ndarray], ground_truth: np.ndarray) -> dict:
  """ROC statistics of each score matrix against the bool ground truth (None when a class is empty)."""
  out = {}
  for name, s in scores.items():
    if ground_truth.all() or not ground_truth.any():
      out[name] = None
      continue
    fpr, tpr, _ = roc.roc_curve(s.ravel(), ground_truth.ravel())
    out[name] = {"auc": float(roc.auc(fpr, tpr)), "eer": float(roc.eer(fpr, tpr)),
                 "tpr_at_fpr_0.01": float(roc.tpr_at_fpr(fpr, tpr, 0.01)), "fpr": fpr, "tpr": tpr}
  return out


def attribute(fingerprints: dict[str, np.ndarray], images: np.ndarray, image_names: Sequence[str],
              image_devices: Sequence[str], *, sigma: float = 5.0, levels: int = 4, wavelet: str = "db4",
              batch_size: int = 8, pce_mode: str = "standard", pce_radius: int = 2,
              pce_shift_range: int = -1, progress=None) -> AttributionResult:
  """Residuals, score matrices and ROC statistics for fingerprints × images (all one size)."""
  devices = tuple(fingerprints)
  k = np.stack([fingerprints[d] for d in devices]).astype(np.float32)
  w = extract_residuals(images, sigma=sigma, levels=levels, wavelet=wavelet, batch_size=batch_size)
  scores = score_matrices(k, w, images, pce_mode=pce_mode, pce_radius=pce_radius,
                          pce_shift_range=pce_shift_range, progress=progress)
  gt = np.asarray([[dev == d for dev in image_devices] for d in devices], bool).reshape(len(devices), -1)
  return AttributionResult(devices=devices, images=tuple(image_names), image_devices=tuple(image_devices),
                           scores=scores, ground_truth=gt, stats=summarize(scores, gt))


def fingerprint_name(path: str | pathlib.Path, metadata: dict, known_devices: Sequence[str]) -> str:
  """Device name of a fingerprint file: its metadata's device, or the longest known device that prefixes
  the file stem followed by '_' (so `Nikon_D70_0_sigma5.npy` → `Nikon_D70_0`), else the stem."""
  stem = pathlib.Path(path).stem
  if metadata.get("device") and metadata["device"] != stem:
    return metadata["device"]
  matches = [d for d in known_devices if stem == d or stem.startswith(d + "_")]
  return max(matches, key=len) if matches else stem
