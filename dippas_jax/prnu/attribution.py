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
import glob
import pathlib
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax import batching
from dippas_jax.prnu import denoise
from dippas_jax import io
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


# --------------------------------------------------------------------------------------------------- file jobs
def fingerprint_name(path: str | pathlib.Path, metadata: dict, known_devices: Sequence[str]) -> str:
  """Device name of a fingerprint file: its metadata's device, or the longest known device that prefixes
  the file stem followed by '_' (so `Nikon_D70_0_sigma5.npy` → `Nikon_D70_0`), else the stem."""
  stem = pathlib.Path(path).stem
  if metadata.get("device") and metadata["device"] != stem:
    return metadata["device"]
  matches = [d for d in known_devices if stem == d or stem.startswith(d + "_")]
  return max(matches, key=len) if matches else stem


def list_fingerprints(spec: str) -> list[pathlib.Path]:
  """Fingerprint files from a folder, glob, file or comma-separated list of those."""
  paths: list[pathlib.Path] = []
  for part in [s for s in spec.split(",") if s]:
    p = pathlib.Path(part)
    if p.is_dir():
      paths += sorted(f for f in p.iterdir() if f.suffix.lower() in io.FINGERPRINT_EXTENSIONS)
    elif p.is_file():
      paths.append(p)
    else:
      paths += sorted(pathlib.Path(f) for f in glob.glob(part)
                      if pathlib.Path(f).suffix.lower() in io.FINGERPRINT_EXTENSIONS)
  if not paths:
    raise io.InputError(f"{spec}: no fingerprint files found (.npz, .npy or .mat)")
  return paths


def load_fingerprints(spec: str, *, known_devices: Sequence[str], crop) -> dict[str, np.ndarray]:
  """Loads fingerprint files into `{device: float32[h, w]}`, centre-cropped to `crop` when given."""
  out = {}
  for path in list_fingerprints(spec):
    k, meta = io.load_fingerprint(path)
    if crop is not None and tuple(k.shape) != tuple(crop):
      if k.shape[0] < crop[0] or k.shape[1] < crop[1]:
        io.check_fingerprint(k, crop, name=str(path))  # Raises: names both sizes.
      k = io.center_crop(k, *crop, name=str(path))
    name = fingerprint_name(path, meta, known_devices)
    if name in out:
      raise io.InputError(f"{path}: a second fingerprint for device {name!r}")
    out[name] = k
  return out


def write_report(result: AttributionResult, workdir: str | pathlib.Path, *, config: dict) -> dict:
  """Writes `scores.csv` (one row per image × fingerprint), `summary.json` and `roc.png`; returns the summary."""
  from dippas_jax import plotting  # matplotlib only when a report is written.
  workdir = pathlib.Path(workdir)
  rows = []
  for n, image in enumerate(result.images):
    for m, device in enumerate(result.devices):
      row = {"image": image, "image_device": result.image_devices[n], "fingerprint": device,
             "match": bool(result.ground_truth[m, n])}
      row.update({name: float(result.scores[name][m, n]) for name in SCORES})
      rows.append(row)
  io.write_csv(workdir / "scores.csv", rows)
  summary = {"devices": list(result.devices), "num_images": len(result.images),
             "num_positive_pairs": int(result.ground_truth.sum()),
             "num_negative_pairs": int((~result.ground_truth).sum()),
             "scores": {name: (None if st is None else {k: v for k, v in st.items() if k not in ("fpr", "tpr")})
                        for name, st in result.stats.items()},
             "config": config}
  io.write_json(workdir / "summary.json", summary)
  curves = {name: (st["fpr"], st["tpr"], st["auc"]) for name, st in result.stats.items() if st is not None}
  if curves:
    plotting.plot_roc(curves, workdir / "roc.png", title=f"Source attribution ({len(result.images)} images, "
                      f"{len(result.devices)} devices)")
  return summary
