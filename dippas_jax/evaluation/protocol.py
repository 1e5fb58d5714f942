"""Evaluation of anonymizers: per-image metrics and the DIPPAS attribution protocol (whole image and edges).

Arrays in, numbers out (no files): an evaluation command reads images and fingerprints
through `io`, calls these functions and writes the tables.

Per image (`per_image_metrics`): PSNR of the anonymized image against the original (on the values given,
uint8 for saved PNGs, no wrap-around), the DIPPAS Eq. 2 NCC of the anonymized image with its device
fingerprint, `NCC(W(J), gray(J) ⊙ K)` with `W = denoise.extract_residual(J, sigma)`, and the same NCC over the
edge pixels only (`edges.edge_mask`).

Attribution (`score_matrix` → `attribution_protocol` → `protocol_stats`): for every device d with fingerprint
K_d, the positives are the *anonymized* images of d scored against K_d, the negatives are the images of the
other devices scored against K_d: their *original* versions (variant 'original_negatives', what the DIPPAS
authors' evaluation scripts did) or their *anonymized* versions ('anonymized_negatives'). ROC/AUC per device
(its positives and negatives only) and pooled (the union over devices), TPR at FPR = 1 %, and the mean/median
PSNR of the images involved. `edge_auc_table` gives the paper's Table 1 quantity `(AUC_edges − AUC) / AUC`;
`summarize_method` runs all of it for one method/config. For the unmodified photos ("original" method) the
pooled protocol is exactly the PRNU core's attribution ROC over the full device × image matrix (both variants
coincide), which makes the evaluator checkable against `attribution.attribute` with the `ncc_eq2` score.

Typical use (per method/config; arrays from the files of the evaluation command):

    masks = edge_mask(originals)                                   # once per dataset
    s_orig = score_matrix(originals, fingerprints, masks=masks)    # once per dataset
    s_anon = score_matrix(anonymized, fingerprints, masks=masks)
    per_image = per_image_metrics(originals, anonymized, fingerprints[device_index], edge_mask=masks)
    summary = summarize_method(s_anon, s_orig, image_devices, devices, psnr=per_image["psnr"])
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax import batching
from dippas_jax.evaluation import edges
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics
from dippas_jax.prnu import roc

__all__ = [
    "VARIANTS",
    "ProtocolScores",
    "attribution_protocol",
    "edge_auc_table",
    "non_matching_band",
    "per_image_metrics",
    "protocol_stats",
    "relative_change",
    "roc_curves",
    "score_matrix",
    "summarize_method",
]

VARIANTS = ("original_negatives", "anonymized_negatives")
_HIGHEST = jax.lax.Precision.HIGHEST


def _residual(images, sigma: float) -> jax.Array:
  """`denoise.extract_residual` of float32 images, called on its own so that its compilation (per shape) is
  shared with every other caller in the process (uint8 and float32 inputs would compile twice)."""
  return denoise.extract_residual(jnp.asarray(images, jnp.float32), sigma=sigma)


@jax.jit
def _scores_batch(w, images, fingerprints, masks):
  """NCC Eq. 2 of residuals w [B, H, W] / images [B, H, W, 3] against fingerprints [M, H, W], whole image and
  within masks [B, H, W]."""
  g = denoise.rgb2gray(jnp.asarray(images, jnp.float32))
  k = fingerprints

  def cos(w, g):
    cc = jnp.einsum("nhw,mhw->mn", w * g, k, precision=_HIGHEST)
    nw = jnp.sqrt(jnp.einsum("nhw,nhw->n", w, w, precision=_HIGHEST))
    ngk = jnp.sqrt(jnp.einsum("nhw,mhw->mn", g * g, k * k, precision=_HIGHEST))
    return cc / (nw[None, :] * ngk)

  return cos(w, g), cos(w * masks, g * masks)


def score_matrix(images, fingerprints, *, sigma: float = 3.0, masks=None, batch_size: int = 8,
                 progress=None) -> dict[str, np.ndarray]:
  """Eq. 2 NCC of every image against every fingerprint, whole image and (optionally) edge pixels only.

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255] (e.g. the anonymized images, or the originals).
    fingerprints: float[M, H, W], the device fingerprints (row order = the `devices` of the protocol).
    sigma: residual denoiser σ.
    masks: optional bool[N, H, W] (e.g. `edge_mask(originals)`); adds 'ncc_edges'.
    batch_size: images per jitted call (last batch zero-padded; one compilation).
    progress: optional callable called with the number of images done.

  Returns:
    `{'ncc': float32[M, N]}` plus `'ncc_edges': float32[M, N]` when masks are given (NaN for empty masks).
  """
  x = edges.check_images(images, "images")
  k = np.asarray(fingerprints, np.float32)
  if k.ndim != 3 or k.shape[1:] != x.shape[1:3]:
    raise ValueError(f"fingerprints must have shape [M, {x.shape[1]}, {x.shape[2]}], got {k.shape}")
  if masks is not None:
    masks = np.asarray(masks, bool)
    if masks.shape != x.shape[:3]:
      raise ValueError(f"masks must have shape {x.shape[:3]}, got {masks.shape}")
  full, in_edges = [], []
  kj = jnp.asarray(k)
  for start in range(0, len(x), batch_size):
    chunk = x[start:start + batch_size]
    mchunk = np.ones(chunk.shape[:3], np.float32) if masks is None else masks[start:start + batch_size]
    n = len(chunk)
    chunk = batching.pad_batch(chunk, batch_size)
    a, b = _scores_batch(_residual(chunk, float(sigma)), chunk, kj,
                         jnp.asarray(batching.pad_batch(np.asarray(mchunk, np.float32), batch_size)))
    full.append(np.asarray(a)[:, :n])
    in_edges.append(np.asarray(b)[:, :n])
    if progress is not None:
      progress(start + n)
  out = {"ncc": np.concatenate(full, axis=1) if full else np.zeros((len(k), 0), np.float32)}
  if masks is not None:
    out["ncc_edges"] = np.concatenate(in_edges, axis=1) if in_edges else np.zeros((len(k), 0), np.float32)
  return out


def per_image_metrics(original, anonymized, fingerprint, *, sigma: float = 3.0, edge_mask=None,
                      batch_size: int = 8) -> dict[str, np.ndarray]:
  """PSNR and NCCs of each anonymized image against its original and its device fingerprint.

  Args:
    original: uint8 or float[N, H, W, 3] in [0, 255], the photos.
    anonymized: same shape, the anonymizer's outputs. PSNR is computed on the values given, so pass the saved
      uint8 images (e.g. `baselines.to_uint8(result.image)`) to measure what a user gets.
    fingerprint: float[H, W] (all images from one device) or float[N, H, W] (each image's device K).
    sigma: residual denoiser σ of the NCC.
    edge_mask: optional bool[N, H, W]; computed with `edge_mask(original)` (defaults) when None.
    batch_size: images per jitted call.

  Returns:
    float64 numpy arrays [N]: 'psnr' (dB; inf for identical images), 'ncc' and 'ncc_edges' (anonymized image
    with K), 'ncc_original' and 'ncc_edges_original' (original image with K), 'edge_fraction' (share of
    pixels in the edge mask).
  """
  orig = edges.check_images(original, "original")
  anon = edges.check_images(anonymized, "anonymized")
  if orig.shape != anon.shape:
    raise ValueError(f"original {orig.shape} and anonymized {anon.shape} must have the same shape")
  k = np.asarray(fingerprint, np.float32)
  if k.shape not in (orig.shape[1:3], orig.shape[:3]):
    raise ValueError(f"fingerprint must have shape {orig.shape[1:3]} or {orig.shape[:3]}, got {k.shape}")
  k = np.broadcast_to(k, orig.shape[:3])
  mask = (edges.edge_mask(orig, batch_size=batch_size) if edge_mask is None
          else np.asarray(edge_mask, bool))
  if mask.shape != orig.shape[:3]:
    raise ValueError(f"edge_mask must have shape {orig.shape[:3]}, got {mask.shape}")
  cols = {name: [] for name in ("psnr", "ncc", "ncc_edges", "ncc_original", "ncc_edges_original")}
  for start in range(0, len(orig), batch_size):
    sl = slice(start, start + batch_size)
    n = len(orig[sl])
    o, a, kk, mm = (batching.pad_batch(np.asarray(v[sl]), batch_size) for v in (orig, anon, k, mask))
    res = _per_image_batch(o, a, kk, mm, _residual(o, float(sigma)), _residual(a, float(sigma)))
    for name, value in zip(cols, res):
      cols[name].append(np.asarray(value, np.float64)[:n])
  out = {name: (np.concatenate(v) if v else np.zeros((0,))) for name, v in cols.items()}
  out["edge_fraction"] = mask.reshape(len(mask), -1).mean(axis=1).astype(np.float64)
  return out


@jax.jit
def _per_image_batch(orig, anon, k, mask, w_orig, w_anon):
  orig = jnp.asarray(orig, jnp.float32)
  anon = jnp.asarray(anon, jnp.float32)
  return (metrics.psnr(orig, anon),
          metrics.ncc_eq2(w_anon, anon, k), edges.masked_ncc_eq2(w_anon, anon, k, mask),
          metrics.ncc_eq2(w_orig, orig, k), edges.masked_ncc_eq2(w_orig, orig, k, mask))


# ------------------------------------------------------------------------------------------------- protocol
@dataclasses.dataclass(frozen=True)
class ProtocolScores:
  """Scores and labels of the attribution protocol.

  Attributes:
    variant: 'original_negatives' or 'anonymized_negatives'.
    devices: the device names, rows of the score matrices.
    per_device: `{device: (scores float64[P+Q], labels bool[P+Q], image_index int64[P+Q])}`: the P positives
      (anonymized images of the device against its K) first, then the Q negatives (images of the other
      devices against the same K), each group in image order; `image_index` is the column of each score.
    pooled: the concatenation of all devices' triples, in device order.
  """
  variant: str
  devices: tuple[str, ...]
  per_device: dict
  pooled: tuple


def attribution_protocol(scores_anon, scores_orig, image_devices: Sequence[str], devices: Sequence[str], *,
                         variant: str) -> ProtocolScores:
  """Builds the positives/negatives of the DIPPAS evaluation from score matrices.

  For device m (row m, fingerprint K_m): positives = `scores_anon[m, n]` for the images n of device m;
  negatives = the images n of every other device (a non-empty device name different from `devices[m]`),
  scored against K_m: `scores_orig[m, n]` (variant 'original_negatives', the authors' scripts: the other
  devices' ORIGINAL images) or `scores_anon[m, n]` ('anonymized_negatives'). Images with an empty device name
  (unknown) are used in neither role.

  Args:
    scores_anon: float[M, N], anonymized images (columns) against the device fingerprints (rows).
    scores_orig: float[M, N], the original images against the same fingerprints (may be None for
      'anonymized_negatives').
    image_devices: the N images' device names.
    devices: the M fingerprints' device names.
    variant: one of `VARIANTS`.

  Returns:
    `ProtocolScores`.
  """
  if variant not in VARIANTS:
    raise ValueError(f"Unsupported protocol variant {variant!r}; expected one of {VARIANTS}")
  devices = tuple(str(d) for d in devices)
  image_devices = np.asarray([str(d) for d in image_devices])
  anon = np.asarray(scores_anon, np.float64)
  if anon.shape != (len(devices), len(image_devices)):
    raise ValueError(f"scores_anon must have shape (M devices, N images) = {(len(devices), len(image_devices))}, "
                     f"got {anon.shape}")
  if variant == "original_negatives":
    if scores_orig is None:
      raise ValueError("variant 'original_negatives' needs scores_orig (originals against the fingerprints)")
    neg_source = np.asarray(scores_orig, np.float64)
    if neg_source.shape != anon.shape:
      raise ValueError(f"scores_orig {neg_source.shape} must have the shape of scores_anon {anon.shape}")
  else:
    neg_source = anon
  per_device = {}
  for m, device in enumerate(devices):
    pos = np.flatnonzero(image_devices == device)
    neg = np.flatnonzero((image_devices != device) & (image_devices != ""))
    scores = np.concatenate([anon[m, pos], neg_source[m, neg]])
    labels = np.concatenate([np.ones(len(pos), bool), np.zeros(len(neg), bool)])
    per_device[device] = (scores, labels, np.concatenate([pos, neg]).astype(np.int64))
  pooled = tuple(np.concatenate([t[i] for t in per_device.values()]) if per_device else np.zeros((0,))
                 for i in range(3))
  return ProtocolScores(variant=variant, devices=devices, per_device=per_device, pooled=pooled)


def non_matching_band(scores_orig, image_devices: Sequence[str], devices: Sequence[str], *,
                      percentile: float = 99.0) -> dict[str, float]:
  """Per device d: the `percentile` of |NCC| of the OTHER devices' original images with K_d — the range where
  an anonymized image of d is indistinguishable from a photo of another camera (NaN without other images).

  Args:
    scores_orig: float[M, N], the original images (columns) against the device fingerprints (rows).
    image_devices, devices: as in `attribution_protocol`.
  """
  scores = np.abs(np.asarray(scores_orig, np.float64))
  image_devices = np.asarray([str(d) for d in image_devices])
  out = {}
  for m, device in enumerate(devices):
    others = scores[m, (image_devices != device) & (image_devices != "")]
    out[str(device)] = float(np.percentile(others, percentile)) if others.size else float("nan")
  return out


def _roc_stats(scores, labels, fpr_target):
  keep = ~np.isnan(scores)
  scores, labels = scores[keep], labels[keep]
  out = {"num_positives": int(labels.sum()), "num_negatives": int((~labels).sum()),
         "num_nan": int((~keep).sum()), "auc": None, f"tpr_at_fpr_{fpr_target:g}": None}
  if labels.any() and not labels.all():
    fpr, tpr, _ = roc.roc_curve(scores, labels, drop_intermediate=False)
    out["auc"] = roc.auc(fpr, tpr)
    out[f"tpr_at_fpr_{fpr_target:g}"] = roc.tpr_at_fpr(fpr, tpr, fpr_target)
  return out


def _psnr_stats(values) -> dict:
  values = np.asarray(values, np.float64)
  if values.size == 0:
    return {"mean_psnr": None, "median_psnr": None}
  return {"mean_psnr": float(np.mean(values)), "median_psnr": float(np.median(values))}


def protocol_stats(protocol: ProtocolScores, *, psnr=None, fpr_target: float = 0.01) -> dict:
  """ROC statistics of a protocol, per device and pooled.

  NaN scores (an all-zero residual or an empty edge mask) are left out of the ROC and counted in 'num_nan'.
  The TPR at `fpr_target` is read from the full (non-dropped) ROC, largest TPR with FPR ≤ target.

  Args:
    protocol: from `attribution_protocol`.
    psnr: optional float[N], the per-image PSNR of the anonymized images (`per_image_metrics(...)['psnr']`);
      mean/median over each device's positives (its own anonymized images) and, pooled, over all positives.
    fpr_target: operating point for the TPR.

  Returns:
    `{'variant', 'per_device': {device: stats}, 'pooled': stats}`, stats = {'num_positives',
    'num_negatives', 'num_nan', 'auc', 'tpr_at_fpr_<target>', 'mean_psnr', 'median_psnr'}; AUC and TPR are
    None when a class is empty, PSNR entries None without `psnr` (inf when an image is unchanged).
  """
  psnr = None if psnr is None else np.asarray(psnr, np.float64)

  def one(triple):
    scores, labels, index = triple
    out = _roc_stats(np.asarray(scores, np.float64), np.asarray(labels, bool), fpr_target)
    out.update(_psnr_stats(psnr[index[labels]]) if psnr is not None else
               {"mean_psnr": None, "median_psnr": None})
    return out

  return {"variant": protocol.variant,
          "per_device": {d: one(t) for d, t in protocol.per_device.items()},
          "pooled": one(protocol.pooled)}


def roc_curves(protocol: ProtocolScores) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
  """`{device or 'pooled': (fpr, tpr, auc)}` for plotting (classes with no positives or negatives skipped)."""
  out = {}
  for name, (scores, labels, _) in list(protocol.per_device.items()) + [("pooled", protocol.pooled)]:
    scores = np.asarray(scores, np.float64)
    keep = ~np.isnan(scores)
    if labels[keep].any() and not labels[keep].all():
      fpr, tpr, _ = roc.roc_curve(scores[keep], labels[keep])
      out[name] = (fpr, tpr, roc.auc(fpr, tpr))
  return out


def relative_change(auc_edges, auc):
  """Table 1 of the paper: `(AUC_edges − AUC) / AUC`.

  Scalars: a float, or None when either AUC is None or AUC = 0 (undefined). Arrays: elementwise, NaN where
  AUC = 0.
  """
  if auc_edges is None or auc is None:
    return None
  a = np.asarray(auc, np.float64)
  e = np.asarray(auc_edges, np.float64)
  if a.ndim == 0:
    return None if a == 0 else float((e - a) / a)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(a != 0, (e - a) / a, np.nan)


def edge_auc_table(stats: Mapping, stats_edges: Mapping) -> dict:
  """`{device | 'pooled': {'auc', 'auc_edges', 'relative_change'}}` from two `protocol_stats` results (the
  whole-image and the edge-only score protocols of the same method and variant)."""
  rows = {}
  names = list(stats["per_device"]) + ["pooled"]
  for name in names:
    a = stats["pooled"] if name == "pooled" else stats["per_device"][name]
    e = stats_edges["pooled"] if name == "pooled" else stats_edges["per_device"].get(name, {})
    rows[name] = {"auc": a.get("auc"), "auc_edges": e.get("auc"),
                  "relative_change": relative_change(e.get("auc"), a.get("auc"))}
  return rows


def summarize_method(scores_anon: Mapping[str, np.ndarray], scores_orig: Mapping[str, np.ndarray],
                     image_devices: Sequence[str], devices: Sequence[str], *, psnr=None,
                     fpr_target: float = 0.01) -> dict:
  """All protocol numbers of one method/config: both variants × whole-image and edge-only scores.

  Args:
    scores_anon: `score_matrix(anonymized, K, masks=edge_mask(originals))`, {'ncc': [M, N], 'ncc_edges': ...}.
    scores_orig: the same for the original images (the 'original_negatives' negatives).
    image_devices, devices: as in `attribution_protocol`.
    psnr: optional float[N] per-image PSNR of the anonymized images.

  Returns:
    `{variant: {'ncc': protocol_stats, 'ncc_edges': protocol_stats (if given), 'edges_table':
    edge_auc_table (if edge scores given)}}` for both `VARIANTS`; JSON-serialisable (floats, ints, None).
  """
  out = {}
  for variant in VARIANTS:
    entry = {}
    for kind in ("ncc", "ncc_edges"):
      if kind in scores_anon:
        p = attribution_protocol(scores_anon[kind], scores_orig.get(kind), image_devices, devices,
                                 variant=variant)
        entry[kind] = protocol_stats(p, psnr=psnr, fpr_target=fpr_target)
    if "ncc" in entry and "ncc_edges" in entry:
      entry["edges_table"] = edge_auc_table(entry["ncc"], entry["ncc_edges"])
    out[variant] = entry
  return out


def interleave_devices(records: Sequence[Any]) -> list:
  """Records (anything with a `.device`) reordered one per device in turn, in order of first appearance: the first
  n of the result cover min(n, number of devices) devices (benchmarks on a few photos)."""
  by_device: dict[str, list] = {}
  for r in records:
    by_device.setdefault(r.device, []).append(r)
  return [group[i] for i in range(max(map(len, by_device.values()), default=0)) for group in by_device.values()
          if i < len(group)]
