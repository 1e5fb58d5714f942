"""ROC statistics for attribution scores (host-side numpy; evaluation only).

`roc_curve` and `auc` reproduce `sklearn.metrics.roc_curve` (drop_intermediate=True, thresholds[0] = +inf as in
scikit-learn >= 1.3) and `sklearn.metrics.auc` without depending on scikit-learn; `stats` and `gt` reproduce
prnu-python's functions of the same names (SPEC §1.14), so the reference AUC/EER numbers come out identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["auc", "eer", "gt", "roc_curve", "stats", "tpr_at_fpr"]


def _binary_labels(labels) -> np.ndarray:
  labels = np.asarray(labels)
  if labels.dtype == np.bool_:
    return labels
  if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
    raise ValueError(f"labels must be bool or 0/1 numbers, got dtype {labels.dtype}")
  if not np.all((labels == 0) | (labels == 1)):
    raise ValueError("labels must be bool or contain only 0 and 1 (1 = positive, e.g. same camera)")
  return labels == 1


def roc_curve(scores, labels, *, drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """ROC curve of `scores` for binary `labels`, equal to `sklearn.metrics.roc_curve(labels, scores)`.

  Scores are thresholded as `score >= threshold` (positive = label True / 1). Thresholds are the distinct scores
  in decreasing order, preceded by +inf (the point (0, 0)). With `drop_intermediate=True` (the default, as in
  scikit-learn and prnu-python's `stats`) thresholds whose ROC point lies on a straight segment between its
  neighbours are dropped; they do not change the plotted curve nor the AUC. Set it to False to keep every
  threshold (needed for exact operating points, see `tpr_at_fpr`).

  Args:
    scores: float array of any shape (flattened); NaN is rejected. +-inf is accepted (e.g. PCE with zero floor
      energy) and ranks above/below every finite score; scikit-learn rejects it.
    labels: bool (or 0/1) array with the same shape.
    drop_intermediate: drop collinear ROC points (scikit-learn's rule).

  Returns:
    (fpr, tpr, thresholds), float64[K] each; fpr and tpr are non-decreasing from 0 to 1.

  Raises:
    ValueError: on shape mismatch, NaN scores, non-binary labels, or when labels lack positives or negatives.
  """
  scores = np.asarray(scores)
  labels = _binary_labels(labels)
  if scores.shape != labels.shape:
    raise ValueError(f"scores {scores.shape} and labels {labels.shape} must have the same shape")
  scores = scores.astype(np.float64).ravel()
  labels = labels.ravel()
  if np.isnan(scores).any():
    raise ValueError("scores contain NaN (e.g. the NCC of an all-zero map); remove or replace them first")
  n_pos = int(labels.sum())
  if n_pos == 0 or n_pos == labels.size:
    raise ValueError(
        f"roc_curve needs at least one positive and one negative label, got {n_pos} positives out of "
        f"{labels.size}")

  # Decreasing scores (stable); the ROC only depends on cumulative counts at the end of each group of ties.
  order = np.argsort(-scores, kind="stable")
  scores = scores[order]
  y = labels[order].astype(np.float64)
  distinct = np.flatnonzero(scores[1:] != scores[:-1])
  threshold_idxs = np.r_[distinct, scores.size - 1]
  tps = np.cumsum(y)[threshold_idxs]
  fps = 1 + threshold_idxs.astype(np.float64) - tps
  thresholds = scores[threshold_idxs]

  if drop_intermediate and fps.shape[0] > 2:
    keep = np.flatnonzero(np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True])
    fps, tps, thresholds = fps[keep], tps[keep], thresholds[keep]

  tps = np.r_[0.0, tps]
  fps = np.r_[0.0, fps]
  thresholds = np.r_[np.inf, thresholds]
  return fps / fps[-1], tps / tps[-1], thresholds


def auc(fpr, tpr) -> float:
  """Area under a curve by the trapezoid rule (= `sklearn.metrics.auc`, bit for bit).

  `fpr` must be monotonic (non-decreasing or non-increasing); at least 2 points.
  """
  x = np.asarray(fpr, dtype=np.float64).ravel()
  y = np.asarray(tpr, dtype=np.float64).ravel()
  if x.shape != y.shape:
    raise ValueError(f"fpr {x.shape} and tpr {y.shape} must have the same length")
  if x.shape[0] < 2:
    raise ValueError(f"At least 2 points are needed to compute an area under curve, got {x.shape[0]}")
  dx = np.diff(x)
  direction = 1.0
  if np.any(dx < 0):
    if np.all(dx <= 0):
      direction = -1.0
    else:
      raise ValueError("fpr is neither non-decreasing nor non-increasing")
  # Same expression as numpy.trapezoid, so the result is identical to scikit-learn's.
  return float(direction * np.add.reduce(dx * (y[1:] + y[:-1]) / 2.0))


def eer(fpr, tpr) -> float:
  """Equal error rate as prnu-python computes it: `fpr[argmin((fpr - (1 - tpr))**2)]`.

  No interpolation: the ROC point closest to FPR = FNR is used, and the first one wins on ties.
  """
  fpr = np.asarray(fpr, dtype=np.float64)
  tpr = np.asarray(tpr, dtype=np.float64)
  if fpr.shape != tpr.shape or fpr.ndim != 1 or fpr.size == 0:
    raise ValueError(f"fpr {fpr.shape} and tpr {tpr.shape} must be non-empty 1-D arrays of the same length")
  return float(fpr[np.argmin((fpr - (1 - tpr)) ** 2)])


def tpr_at_fpr(fpr, tpr, target: float = 0.01) -> float:
  """Largest TPR among the given ROC points with FPR <= `target` (step / ROC-point convention).

  No interpolation between points: only operating points that a threshold actually achieves are used, so the
  answer is conservative. `roc_curve`'s default `drop_intermediate=True` may drop an achievable point lying on
  a straight segment of the curve; pass a curve from `roc_curve(..., drop_intermediate=False)` for the exact
  value (the AUC is unaffected either way).
  """
  fpr = np.asarray(fpr, dtype=np.float64)
  tpr = np.asarray(tpr, dtype=np.float64)
  if fpr.shape != tpr.shape or fpr.ndim != 1 or fpr.size == 0:
    raise ValueError(f"fpr {fpr.shape} and tpr {tpr.shape} must be non-empty 1-D arrays of the same length")
  if not 0.0 <= target <= 1.0:
    raise ValueError(f"target must be a false-positive rate in [0, 1], got {target}")
  ok = fpr <= target
  if not ok.any():
    raise ValueError(f"no ROC point has fpr <= {target}; the curve should start at fpr = 0")
  return float(np.max(tpr[ok]))


def stats(cc, gt) -> dict[str, Any]:
  """ROC statistics of a score matrix against a ground-truth matrix (= prnu-python `stats`).

  Args:
    cc: float[M, N] scores (cc, ncc or PCE; any shape), raveled.
    gt: bool (or 0/1) array with the same shape: True where fingerprint m and image n share the camera.

  Returns:
    {'tpr', 'fpr', 'th'} (float64 arrays from `roc_curve`), 'auc' (float, trapezoid), 'eer' (float).
  """
  cc = np.asarray(cc)
  gt = np.asarray(gt)
  if cc.shape != gt.shape:
    raise ValueError(f"cc {cc.shape} and gt {gt.shape} must have the same shape")
  fpr, tpr, th = roc_curve(cc.ravel(), gt.ravel())
  return {"tpr": tpr, "fpr": fpr, "th": th, "auc": auc(fpr, tpr), "eer": eer(fpr, tpr)}


def gt(l1, l2) -> np.ndarray:
  """Ground-truth matrix `G[i, j] = (l2[j] == l1[i])` (= prnu-python `gt`).

  Args:
    l1: 1-D labels of the fingerprints (rows), e.g. camera names.
    l2: 1-D labels of the residuals/images (columns).

  Returns:
    bool[len(l1), len(l2)].
  """
  l1 = np.asarray(l1)
  l2 = np.asarray(l2)
  if l1.ndim != 1 or l2.ndim != 1:
    raise ValueError(f"gt expects two 1-D label lists, got shapes {l1.shape} and {l2.shape}")
  return np.asarray(l2[None, :] == l1[:, None], dtype=bool)
