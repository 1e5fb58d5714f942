"""Membership inference on a fingerprint estimate (is image r one of the L images behind K̂?), tile by tile, and
the matching rule shared with source attribution.

Detectors (`DETECTORS`, named after the paper's equations; each a statistic per tile, larger = member):
  ncc_eq11           Eq. 11: Pearson correlation of K̂ with the tested image's residual W_r;
  np_eq10            Eq. 10: the Neyman–Pearson log-likelihood ratio of a locally Gaussian model for a "genie"
                     that knows R (see `np_llr`), averaged over the tile's pixels;
  ncc_wx             Pearson(K̂, W_r ⊙ X̂_r), the term image r adds to K̂'s numerator (not in the paper);
  ncc_eq11_binarize  Eq. 11 on binarized maps: cosine of sign(K̂) and sign(W_r) (= 1 − 2·Hamming fraction);
  ncc_eq11_whiten    Eq. 11 with the whitened K̂.

Tiles: K̂ is a per-pixel estimator, so the K̂ of a tile is the tile of K̂; scoring each `tile × tile` block
separately is the experiment on a small sensor, repeated (H/tile)·(W/tile) times per image. On whole 512² crops
every detector is saturated (AUC 1) at the L a small dataset allows; tiles bring the test to the regime where
the detectors differ.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.leakage import model
from dippas_jax.prnu import metrics
from dippas_jax.prnu import roc

DETECTORS = ("ncc_eq11", "np_eq10", "ncc_wx", "ncc_eq11_binarize", "ncc_eq11_whiten")
MITIGATION_DETECTOR = {"none": "ncc_eq11", "binarize": "ncc_eq11_binarize", "whiten": "ncc_eq11_whiten"}
ROC_GRID = np.unique(np.r_[np.linspace(0.0, 1.0, 101), np.logspace(-3, -1, 21)])
_HIGHEST = jax.lax.Precision.HIGHEST


def match_scores(fingerprint, residuals, denoised=None, *, binary: bool = False) -> jax.Array:
  """Correlation of a fingerprint with query images (source attribution, whole images).

  Float fingerprints: Pearson correlation of the fingerprint with W ⊙ X̂ (with W when `denoised` is None).
  `binary=True`: cosine of sign(fingerprint) and sign(W) (= sign(W ⊙ X̂) wherever X̂ > 0), which is
  1 − 2·(Hamming distance / pixels) for maps without zeros.

  Args:
    fingerprint: float[H, W].
    residuals: W, float[N, H, W].
    denoised: X̂, float[N, H, W] or None.
    binary: match binarized maps.

  Returns:
    float32[N].
  """
  if binary:
    return metrics.ncc(jnp.sign(fingerprint), jnp.sign(residuals))
  query = residuals if denoised is None else jnp.asarray(residuals) * jnp.asarray(denoised)
  return metrics.pearson(fingerprint, query)


def to_tiles(x, tile: int) -> jax.Array:
  """float[..., H, W] → float[..., T, tile, tile], T = ⌊H/tile⌋·⌊W/tile⌋ row-major tiles (the remainder rows and
  columns dropped); `tile=0` → float[..., 1, H, W] (the whole image)."""
  x = jnp.asarray(x)
  if tile == 0:
    return x[..., None, :, :]
  h, w = x.shape[-2] // tile, x.shape[-1] // tile
  if tile < 0 or h == 0 or w == 0:
    raise ValueError(f"tile must be 0 (whole image) or in [1, {min(x.shape[-2:])}], got {tile}")
  x = x[..., :h * tile, :w * tile].reshape(x.shape[:-2] + (h, tile, w, tile))
  return jnp.moveaxis(x, -3, -2).reshape(x.shape[:-4] + (h * w, tile, tile))


def np_llr(k_hat, r, residuals, denoised, *, window: int = 3) -> tuple[jax.Array, jax.Array]:
  """The Neyman–Pearson "genie" log-likelihood ratio per pixel (Eq. 10) and where it is defined.

  Q = W ⊙ X̂ / R, P = K̂ − Q, λ² = local variance of K̂, θ² = local variance of P; per pixel
  ½ log(λ²/θ²) + K̂²/(2λ²) − P²/(2θ²) (H1: K̂ = P + Q, P ~ N(0, θ²); H0: K̂ ~ N(0, λ²)).

  Args:
    k_hat: float[H, W]. r: R = Σ X̂² over the estimation images, float[H, W] (the genie's knowledge).
    residuals, denoised: W and X̂ of the tested images, float[N, H, W].

  Returns:
    (llr float32[N, H, W], valid bool[N, H, W]: both local variances > 0).
  """
  k_hat = jnp.asarray(k_hat, jnp.float32)
  q = model.ratio(jnp.asarray(residuals, jnp.float32) * jnp.asarray(denoised, jnp.float32), jnp.asarray(r))
  p = k_hat - q
  lam2 = model.local_variance(k_hat, window=window)
  th2 = model.local_variance(p, window=window)
  valid = (lam2 > 0) & (th2 > 0)
  safe_lam2 = jnp.where(lam2 > 0, lam2, 1.0)
  safe_th2 = jnp.where(th2 > 0, th2, 1.0)
  llr = 0.5 * jnp.log(safe_lam2 / safe_th2) + k_hat**2 / (2 * safe_lam2) - p**2 / (2 * safe_th2)
  return jnp.where(valid, llr, 0.0), valid


def _tile_mean(x, valid, tile):
  x, valid = to_tiles(x, tile), to_tiles(valid, tile)
  return jnp.sum(x, axis=(-2, -1)) / jnp.maximum(jnp.sum(valid, axis=(-2, -1)), 1)


@functools.partial(jax.jit, static_argnames=("tile", "window", "detectors"))
def _scores(k_hat, r, residuals, denoised, *, tile, window, detectors):
  k_hat = jnp.asarray(k_hat, jnp.float32)
  out = {}
  for d in detectors:
    if d == "np_eq10":
      out[d] = _tile_mean(*np_llr(k_hat, r, residuals, denoised, window=window), tile)
    elif d == "ncc_eq11_binarize":
      out[d] = metrics.ncc(to_tiles(jnp.sign(k_hat), tile), to_tiles(jnp.sign(residuals), tile))
    else:
      fingerprint = model.whiten(k_hat, window=window) if d == "ncc_eq11_whiten" else k_hat
      query = residuals * denoised if d == "ncc_wx" else residuals
      out[d] = metrics.pearson(to_tiles(fingerprint, tile), to_tiles(query, tile))
  return out


def detector_scores(k_hat, r, residuals, denoised, *, tile: int = 0, window: int = 3,
                    detectors: Sequence[str] = DETECTORS) -> dict[str, np.ndarray]:
  """Every detector's statistic of the tested images, per tile.

  Args:
    k_hat: K̂ float[H, W]; r: R float[H, W] (for `np_eq10`).
    residuals, denoised: W and X̂ of the N tested images, float[N, H, W].
    tile: tile size (0: the whole image is one tile). window: local-variance window (NP, whitening).
    detectors: a subset of `DETECTORS`.

  Returns:
    {detector: float32[N, T]}.
  """
  unknown = [d for d in detectors if d not in DETECTORS]
  if unknown:
    raise ValueError(f"Unsupported detector(s) {unknown}; expected a subset of {DETECTORS}")
  out = _scores(jnp.asarray(k_hat), jnp.asarray(r), jnp.asarray(residuals, jnp.float32),
                jnp.asarray(denoised, jnp.float32), tile=int(tile), window=int(window), detectors=tuple(detectors))
  return {d: np.asarray(out[d]) for d in detectors}  # jit returns dicts in sorted key order


def tile_aucs(member_scores, nonmember_scores) -> np.ndarray:
  """AUC of members vs non-members per tile (Mann–Whitney, ties count ½): float[L, T], float[M, T] → float64[T]."""
  a = np.asarray(member_scores, np.float64)[:, None, :]
  b = np.asarray(nonmember_scores, np.float64)[None, :, :]
  return np.mean((a > b) + 0.5 * (a == b), axis=(0, 1))


def membership_auc(member_scores, nonmember_scores) -> float:
  """AUC of members (positives) vs non-members: `roc.auc(roc.roc_curve(...))` (= the Mann–Whitney statistic)."""
  fpr, tpr = roc_points(member_scores, nonmember_scores)
  return roc.auc(fpr, tpr)


def roc_points(member_scores, nonmember_scores) -> tuple[np.ndarray, np.ndarray]:
  """The ROC curve (fpr, tpr) of members (positives) vs non-members, scores of any shape (flattened)."""
  scores = np.concatenate([np.ravel(member_scores), np.ravel(nonmember_scores)])
  labels = np.r_[np.ones(np.size(member_scores), bool), np.zeros(np.size(nonmember_scores), bool)]
  fpr, tpr, _ = roc.roc_curve(scores, labels)
  return fpr, tpr


def roc_on_grid(fpr, tpr, grid=ROC_GRID) -> np.ndarray:
  """TPR of a ROC curve at the false-positive rates `grid`: the best TPR among its points with FPR ≤ each value
  (the step curve a threshold achieves; fpr non-decreasing as `roc.roc_curve` returns it)."""
  idx = np.searchsorted(np.asarray(fpr), np.asarray(grid), side="right") - 1
  return np.maximum.accumulate(np.asarray(tpr, np.float64))[np.maximum(idx, 0)]


def membership_sweep(residuals, denoised, *, l_values: Sequence[int], n_trials: int = 5, tile: int = 16,
                     window: int = 3, seed: int = 0, detectors: Sequence[str] = DETECTORS,
                     progress=None) -> tuple[list[dict], list[dict]]:
  """Membership inference for each L: `n_trials` random member sets of L images drawn from the pool, the others
  the non-members; every image is scored by each detector on every tile.

  Args:
    residuals, denoised: W and X̂ of the pool, float[N, H, W]; every L must leave a non-member (L < N).
    l_values, n_trials: member-set sizes and random sets per size. Draws use `fold_in(key(seed), L)` then the
      trial, so one L's results do not depend on the others.
    tile, window, detectors: see `detector_scores`. progress: optional callable receiving a status string.

  Returns:
    (rows, roc_rows). rows: L, detector, auc (mean over trials and tiles of the per-tile AUC), auc_std (over
    trials of the tile-mean AUC), auc_tile_std (over tiles), auc_pooled (one threshold for all tiles and trials),
    n_members, n_nonmembers, tile, n_tiles. roc_rows: L, detector, fpr (on `ROC_GRID`), tpr (pooled curve).
  """
  residuals, denoised = np.asarray(residuals, np.float32), np.asarray(denoised, np.float32)
  n = len(residuals)
  bad = [l for l in l_values if not 1 <= l < n]
  if bad:
    raise ValueError(f"membership L values {bad} must be in [1, {n - 1}] (leave a non-member of the {n} images)")
  wx, xx = jnp.asarray(residuals * denoised), jnp.asarray(denoised * denoised)
  rows, roc_rows = [], []
  for l in l_values:
    (progress or (lambda _: None))(f"membership L = {l}")
    key_l = jax.random.fold_in(jax.random.key(seed), l)
    aucs, mem, non = {d: [] for d in detectors}, {d: [] for d in detectors}, {d: [] for d in detectors}
    for t in range(n_trials):
      order = np.asarray(jax.random.permutation(jax.random.fold_in(key_l, t), n))
      mask = np.zeros(n, np.float32)
      mask[order[:l]] = 1.0
      k_hat = model.masked_k(wx, xx, jnp.asarray(mask))
      r = jnp.einsum("n,nhw->hw", jnp.asarray(mask), xx, precision=_HIGHEST)
      scores = detector_scores(k_hat, r, residuals[order], denoised[order], tile=tile, window=window,
                               detectors=detectors)
      for d, s in scores.items():
        aucs[d].append(tile_aucs(s[:l], s[l:]))
        mem[d].append(s[:l].ravel())
        non[d].append(s[l:].ravel())
    for d in detectors:
      per_trial = np.asarray(aucs[d])  # [trials, T]
      fpr, tpr = roc_points(np.concatenate(mem[d]), np.concatenate(non[d]))
      rows.append({"L": l, "detector": d, "auc": float(per_trial.mean()), "auc_std": float(per_trial.mean(1).std()),
                   "auc_tile_std": float(per_trial.mean(0).std()), "auc_pooled": roc.auc(fpr, tpr),
                   "n_members": l, "n_nonmembers": n - l, "tile": tile, "n_tiles": per_trial.shape[1]})
      roc_rows += [{"L": l, "detector": d, "fpr": float(f), "tpr": float(p)}
                   for f, p in zip(ROC_GRID, roc_on_grid(fpr, tpr))]
  return rows, roc_rows
