"""Evaluation of anonymizers: per-image metrics, the DIPPAS attribution protocol, edge-only scores, plots.

Arrays in, numbers out (no files except the plot helpers): an evaluation command reads images and fingerprints
through `io`, calls these functions and writes the tables.

Per image (`per_image_metrics`): PSNR of the anonymized image against the original (on the values given,
uint8 for saved PNGs, no wrap-around), the DIPPAS Eq. 2 NCC of the anonymized image with its device
fingerprint, `NCC(W(J), gray(J) ⊙ K)` with `W = denoise.extract_residual(J, sigma)`, and the same NCC over the
edge pixels only (`edge_mask`).

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
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics
from dippas_jax.prnu import roc

__all__ = [
    "VARIANTS",
    "ProtocolScores",
    "attribution_protocol",
    "edge_auc_table",
    "edge_mask",
    "masked_ncc_eq2",
    "per_image_metrics",
    "plot_auc_vs_psnr",
    "plot_ncc_histograms",
    "plot_roc_curves",
    "protocol_stats",
    "relative_change",
    "roc_curves",
    "score_matrix",
    "summarize_method",
]

VARIANTS = ("original_negatives", "anonymized_negatives")
_HIGHEST = jax.lax.Precision.HIGHEST


def _check_images(images, name: str) -> np.ndarray:
  x = np.asarray(images)
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"{name} must have shape [N, H, W, 3] (uint8 or float in [0, 255]), got {x.shape}")
  return x


# ------------------------------------------------------------------------------------------------ edge mask
def _pad_batch(a: np.ndarray, size: int) -> np.ndarray:
  """Zero-pads the leading axis of `a` to `size` (one compiled shape for every batch)."""
  if len(a) == size:
    return a
  return np.concatenate([a, np.zeros((size - len(a),) + a.shape[1:], a.dtype)])


def edge_mask(images, *, radius: int = 3, canny_sigma: float = 2.0, denoiser_sigma: float = 3.0,
              low_threshold: float = 0.05, high_threshold: float = 0.1, batch_size: int = 8) -> np.ndarray:
  """Edge pixels of photos: Canny on the denoised grey image, dilated by a disk of `radius`.

  Steps, per image: (1) our wavelet denoiser, `denoise.denoise(I, sigma=denoiser_sigma)` (the Mihcak denoiser
  of the PRNU core, σ = 3 as in the DIPPAS pipeline), so that sensor noise does not create edges; (2)
  `denoise.rgb2gray`, scaled to [0, 1] by /255; (3) `skimage.feature.canny` with Gaussian `canny_sigma` and
  hysteresis thresholds `low_threshold`/`high_threshold` on the gradient magnitude of the [0, 1] image
  (absolute, not quantiles); (4) `scipy.ndimage.binary_dilation` with `skimage.morphology.disk(radius)`.
  skimage's Canny ignores the outermost pixel ring (no edges there). On the 16 Dresden 512² crops these
  defaults mark 1–72 % of the pixels (41 % on average) after dilation.

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255], the ORIGINAL photos (the mask is then shared by every
      anonymized version of a photo).
    radius: dilation disk radius in pixels (3 in the paper); 0 = the bare Canny edges.
    canny_sigma, low_threshold, high_threshold: `skimage.feature.canny` settings (see above).
    denoiser_sigma: σ of the wavelet denoiser applied first.
    batch_size: images per denoiser call (the last batch is zero-padded: one compilation).

  Returns:
    bool[N, H, W].
  """
  import scipy.ndimage  # pylint: disable=g-import-not-at-top
  from skimage import feature, morphology  # pylint: disable=g-import-not-at-top
  x = _check_images(images, "images")
  gray = []
  for start in range(0, len(x), batch_size):
    chunk = np.asarray(x[start:start + batch_size], np.float32)
    g = denoise.rgb2gray(denoise.denoise(jnp.asarray(_pad_batch(chunk, batch_size)), sigma=float(denoiser_sigma)))
    gray.append(np.asarray(g, np.float64)[:len(chunk)] / 255.0)
  gray = np.concatenate(gray) if gray else np.zeros(x.shape[:3])
  footprint = morphology.disk(radius).astype(bool) if radius > 0 else None
  out = np.zeros(gray.shape, bool)
  for n in range(gray.shape[0]):
    edges = feature.canny(gray[n], sigma=canny_sigma, low_threshold=low_threshold,
                          high_threshold=high_threshold)
    out[n] = edges if footprint is None else scipy.ndimage.binary_dilation(edges, structure=footprint)
  return out


_compute_edge_mask = edge_mask  # `per_image_metrics` has an argument of the same name.


# ------------------------------------------------------------------------------------------------- scores
def masked_ncc_eq2(residual, images, fingerprint, mask=None) -> jax.Array:
  """Eq. 2 NCC over the pixels of `mask` only: cosine of `W·m` and `gray(I)·K·m` (uncentred; NaN if empty).

  Args:
    residual: float[N, H, W]; images: [N, H, W, 3]; fingerprint: float[H, W] or [N, H, W];
    mask: bool[N, H, W] or [H, W], or None for the whole image (= `metrics.ncc_eq2`).

  Returns:
    float32[N].
  """
  if mask is None:
    return metrics.ncc_eq2(residual, images, fingerprint)
  m = jnp.asarray(mask, jnp.float32)
  return metrics.ncc(jnp.asarray(residual, jnp.float32) * m,
                     denoise.rgb2gray(jnp.asarray(images, jnp.float32)) * jnp.asarray(fingerprint) * m)


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
  x = _check_images(images, "images")
  k = np.asarray(fingerprints, np.float32)
  if k.ndim != 3 or k.shape[1:] != x.shape[1:3]:
    raise ValueError(f"fingerprints must have shape [M, {x.shape[1]}, {x.shape[2]}], got {k.shape}")
  if masks is not None:
    masks = np.asarray(masks, bool)
    if masks.shape != x.shape[:3]:
      raise ValueError(f"masks must have shape {x.shape[:3]}, got {masks.shape}")
  full, edges = [], []
  kj = jnp.asarray(k)
  for start in range(0, len(x), batch_size):
    chunk = x[start:start + batch_size]
    mchunk = np.ones(chunk.shape[:3], np.float32) if masks is None else masks[start:start + batch_size]
    n = len(chunk)
    chunk = _pad_batch(chunk, batch_size)
    a, b = _scores_batch(_residual(chunk, float(sigma)), chunk, kj,
                         jnp.asarray(_pad_batch(np.asarray(mchunk, np.float32), batch_size)))
    full.append(np.asarray(a)[:, :n])
    edges.append(np.asarray(b)[:, :n])
    if progress is not None:
      progress(start + n)
  out = {"ncc": np.concatenate(full, axis=1) if full else np.zeros((len(k), 0), np.float32)}
  if masks is not None:
    out["ncc_edges"] = np.concatenate(edges, axis=1) if edges else np.zeros((len(k), 0), np.float32)
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
  orig = _check_images(original, "original")
  anon = _check_images(anonymized, "anonymized")
  if orig.shape != anon.shape:
    raise ValueError(f"original {orig.shape} and anonymized {anon.shape} must have the same shape")
  k = np.asarray(fingerprint, np.float32)
  if k.shape not in (orig.shape[1:3], orig.shape[:3]):
    raise ValueError(f"fingerprint must have shape {orig.shape[1:3]} or {orig.shape[:3]}, got {k.shape}")
  k = np.broadcast_to(k, orig.shape[:3])
  mask = (_compute_edge_mask(orig, batch_size=batch_size) if edge_mask is None
          else np.asarray(edge_mask, bool))
  if mask.shape != orig.shape[:3]:
    raise ValueError(f"edge_mask must have shape {orig.shape[:3]}, got {mask.shape}")
  cols = {name: [] for name in ("psnr", "ncc", "ncc_edges", "ncc_original", "ncc_edges_original")}
  for start in range(0, len(orig), batch_size):
    sl = slice(start, start + batch_size)
    n = len(orig[sl])
    o, a, kk, mm = (_pad_batch(np.asarray(v[sl]), batch_size) for v in (orig, anon, k, mask))
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
          metrics.ncc_eq2(w_anon, anon, k), masked_ncc_eq2(w_anon, anon, k, mask),
          metrics.ncc_eq2(w_orig, orig, k), masked_ncc_eq2(w_orig, orig, k, mask))


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


# ------------------------------------------------------------------------------------------------------ plots
def plot_auc_vs_psnr(points: Sequence[Mapping], path, *, title: str = "Attribution AUC vs image quality") -> None:
  """The paper's Fig. 10: one marker per (method, config) at (mean PSNR, AUC), one colour/line per method.

  Args:
    points: dicts with 'method', 'auc', 'mean_psnr' and optionally 'config' (a short label written beside
      the marker). Points of one method are joined in increasing PSNR. Points with a missing or
      non-finite value are skipped.
    path: output PNG.
  """
  from dippas_jax import plotting  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6, 4.5))
  methods = sorted({p["method"] for p in points})
  for i, method in enumerate(methods):
    pts = [p for p in points if p["method"] == method and p.get("auc") is not None
           and p.get("mean_psnr") is not None and np.isfinite(p["auc"]) and np.isfinite(p["mean_psnr"])]
    if not pts:
      continue
    pts.sort(key=lambda p: p["mean_psnr"])
    xs = [p["mean_psnr"] for p in pts]
    ys = [p["auc"] for p in pts]
    ax.plot(xs, ys, marker="o", ms=5, lw=1, color=f"C{i % 10}", label=method)
    for p in pts:
      if p.get("config"):
        ax.annotate(str(p["config"]), (p["mean_psnr"], p["auc"]), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
  ax.axhline(0.5, color="0.7", lw=0.8, ls="--")
  ax.set(xlabel="mean PSNR [dB]", ylabel="AUC", title=title, ylim=(0.0, 1.02))
  ax.grid(alpha=0.3)
  if methods:
    ax.legend(fontsize=8, loc="best")
  plotting.save_figure(fig, path)


def plot_roc_curves(curves: Mapping[str, tuple], path, *, title: str = "ROC") -> None:
  """ROC curves `{label: (fpr, tpr, auc)}` (e.g. one per method, from `roc_curves(...)['pooled']`)."""
  from dippas_jax import plotting  # pylint: disable=g-import-not-at-top
  plotting.plot_roc(dict(curves), path, title=title)


def plot_ncc_histograms(values: Mapping[str, np.ndarray], path, *, title: str = "NCC with the device fingerprint",
                        bins: int = 40) -> None:
  """Overlaid histograms of NCC values `{label: float[N]}` (e.g. 'original' and 'anonymized'), common bins."""
  from dippas_jax import plotting  # pylint: disable=g-import-not-at-top
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  arrays = {k: np.asarray(v, np.float64)[np.isfinite(np.asarray(v, np.float64))] for k, v in values.items()}
  allv = np.concatenate([a for a in arrays.values()] + [np.zeros(1)])
  lo, hi = float(allv.min()), float(allv.max())
  if hi <= lo:
    hi = lo + 1e-3
  edges = np.linspace(lo, hi, bins + 1)
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, (label, a) in enumerate(arrays.items()):
    ax.hist(a, bins=edges, alpha=0.5, color=f"C{i % 10}", label=f"{label} (n={a.size})")
  ax.axvline(0.0, color="0.3", lw=0.8, ls="--")
  ax.set(xlabel="NCC (Eq. 2)", ylabel="images", title=title)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  plotting.save_figure(fig, path)
