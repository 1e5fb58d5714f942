"""The leakage analysis of one camera (`run_leakage_analysis`): for each estimation-set size L and random trial,
the ILB of K̂ (and of its mitigated versions), membership AUCs of every detector, and the attribution cost of the
mitigations, as tables ready for CSV/JSON (see `leakage.model` for the quantities)."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.leakage import bound
from dippas_jax.leakage import membership
from dippas_jax.leakage import model
from dippas_jax.prnu import roc

DETECTORS = ("np_genie", "ncc", "ncc_w", "ncc_binarize", "ncc_whiten")
ILB_MITIGATIONS = ("none", "whiten")  # A binarized map is not Gaussian: the ILB is not computed for it.
_MITIGATION_DETECTOR = {"none": "ncc", "binarize": "ncc_binarize", "whiten": "ncc_whiten"}
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass
class _Data:
  """Residuals W and denoised X̂ (float[N, H, W]) of the pool, the extra non-members and the queries."""
  res: np.ndarray
  den: np.ndarray
  res_x: np.ndarray
  den_x: np.ndarray
  res_q: np.ndarray | None
  den_q: np.ndarray | None
  query_labels: np.ndarray | None


def _mean_std(values) -> tuple[float, float]:
  """Mean and standard deviation of the finite values (NaN, NaN when there are none)."""
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  if values.size == 0:
    return float("nan"), float("nan")
  return float(values.mean()), float(values.std())


def _check_arguments(images, l_values, n_extra, mitigations, n_splits, n_trials, query_images, query_labels):
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [N, H, W, 3] in [0, 255], got shape {images.shape}")
  for m in mitigations:
    if m not in model.MITIGATIONS:
      raise ValueError(f"Unsupported mitigation {m!r}; expected one of {model.MITIGATIONS}")
  for l in l_values:
    if l < 1 or l > len(images) or (l == len(images) and n_extra == 0):
      raise ValueError(f"L = {l} must be in [1, {len(images)}] and leave at least one non-member "
                       f"({len(images)} images, {n_extra} extra non-members)")
  if (query_images is None) != (query_labels is None):
    raise ValueError("query_images and query_labels go together")
  if query_labels is not None:
    labels = np.asarray(query_labels, bool)
    if labels.shape != (len(query_images),) or labels.all() or not labels.any():
      raise ValueError("query_labels must be bool[Q] for the Q query images, with both True and False")
  if n_splits < 1 or n_trials < 1:
    raise ValueError(f"n_splits and n_trials must be ≥ 1, got {n_splits} and {n_trials}")


def _trial_scores(k_hat, r, res, den, *, mitigations, window) -> dict[str, np.ndarray]:
  """Every detector's scores of the tested images (W, X̂ float[N, H, W]) against one estimate."""
  scores = {
      "np_genie": membership.np_membership_scores(k_hat, r, res, den, window=window),
      "ncc": membership.match_scores(k_hat, res, den),
      "ncc_w": membership.match_scores(k_hat, res),
  }
  for m in mitigations:
    if m != "none":
      scores[_MITIGATION_DETECTOR[m]] = membership.match_scores(model.mitigate(k_hat, m, window=window), res, den,
                                                                binary=m == "binarize")
  return {d: np.asarray(s, np.float64) for d, s in scores.items()}


def _trial(data: _Data, key, l: int, *, n_splits, windows, window, mitigations) -> dict:
  """One random estimation set of size L: its bounds, detector scores (members first) and attribution AUCs."""
  n_images = len(data.res)
  perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 0), n_images))
  members, nonmembers = perm[:l], perm[l:]
  mask = np.zeros(n_images, np.float32)
  mask[members] = 1.0
  wx, xx = jnp.asarray(data.res * data.den), jnp.asarray(data.den * data.den)
  k_hat = model.masked_k(wx, xx, jnp.asarray(mask))
  r = jnp.einsum("n,nhw->hw", jnp.asarray(mask), xx, precision=_HIGHEST)
  bounds = {}
  for m in (m for m in mitigations if m in ILB_MITIGATIONS):
    power, power_std = float("nan"), float("nan")
    if l >= 2:
      power, power_std = model.power_estimate(data.res[members], data.den[members], n_splits=n_splits,
                                              mitigation=m, window=window, key=jax.random.fold_in(key, 1))
    k_m = model.mitigate(k_hat, m, window=window)
    for w in windows:
      gamma2 = np.asarray(model.local_variance(k_m, window=w))
      bounds[(m, w)] = (bound.information_leakage_bound(gamma2, power), power_std, float(gamma2.mean()))
  attribution = {}
  if data.res_q is not None:
    for m in mitigations:
      s = np.asarray(membership.match_scores(model.mitigate(k_hat, m, window=window), data.res_q, data.den_q,
                                             binary=m == "binarize"))
      attribution[m] = membership.membership_auc(s[data.query_labels], s[~data.query_labels])
  test_res = np.concatenate([data.res[members], data.res[nonmembers], data.res_x])
  test_den = np.concatenate([data.den[members], data.den[nonmembers], data.den_x])
  scores = _trial_scores(k_hat, r, test_res, test_den, mitigations=mitigations, window=window)
  return {"bounds": bounds, "attribution": attribution, "scores": scores}


def _ilb_rows(l: int, trials: list[dict], n_pixels: int) -> list[dict]:
  rows = []
  for (m, w) in trials[0]["bounds"]:
    values = [t["bounds"][(m, w)] for t in trials]
    bpp = _mean_std([b.bits_per_pixel for b, _, _ in values])
    rows.append({
        "L": l, "mitigation": m, "window": w, "ilb_bpp": bpp[0], "ilb_bpp_std": bpp[1],
        "ilb_bits": _mean_std([b.bits for b, _, _ in values])[0],
        "power": _mean_std([b.power for b, _, _ in values])[0],
        "power_split_std": _mean_std([s for _, s, _ in values])[0],
        "gamma2_mean": _mean_std([g for _, _, g in values])[0],
        "mu": _mean_std([b.mu for b, _, _ in values])[0],
        "constraint_rel_error": max((b.constraint_rel_error for b, _, _ in values
                                     if np.isfinite(b.constraint_rel_error)), default=float("nan")),
        "n_pixels": n_pixels, "n_trials": len(trials)})
  return rows


def _membership_rows(l: int, trials: list[dict], n_nonmembers: int) -> tuple[list[dict], list[dict], dict]:
  """(membership rows, ROC rows, {detector: (mean AUC, std)}) over the trials."""
  rows, roc_rows, aucs = [], [], {}
  for d in trials[0]["scores"]:
    mem = np.concatenate([t["scores"][d][:l] for t in trials])
    non = np.concatenate([t["scores"][d][l:] for t in trials])
    aucs[d] = _mean_std([membership.membership_auc(t["scores"][d][:l], t["scores"][d][l:]) for t in trials])
    rows.append({"L": l, "detector": d, "auc": aucs[d][0], "auc_std": aucs[d][1],
                 "auc_pooled": membership.membership_auc(mem, non), "n_members": l, "n_nonmembers": n_nonmembers})
    fpr, tpr, _ = roc.roc_curve(np.r_[mem, non], np.r_[np.ones(mem.size, bool), np.zeros(non.size, bool)])
    roc_rows.extend({"L": l, "detector": d, "point": i, "fpr": float(f), "tpr": float(p)}
                    for i, (f, p) in enumerate(zip(fpr, tpr)))
  return rows, roc_rows, aucs


def _mitigation_rows(l: int, trials: list[dict], aucs: dict, *, mitigations, window) -> list[dict]:
  rows = []
  for m in mitigations:
    att = _mean_std([t["attribution"].get(m, float("nan")) for t in trials])
    ilb = (_mean_std([t["bounds"][(m, window)][0].bits_per_pixel for t in trials])[0] if m in ILB_MITIGATIONS
           else float("nan"))
    detector = aucs[_MITIGATION_DETECTOR[m]]
    rows.append({"L": l, "mitigation": m, "ilb_bpp": ilb, "membership_auc": detector[0],
                 "membership_auc_std": detector[1], "attribution_auc": att[0], "attribution_auc_std": att[1]})
  return rows


def run_leakage_analysis(images, *, l_values: Sequence[int], n_splits: int = 10, n_trials: int = 5,
                         window_sizes: Sequence[int] = (3, 5, 7, 9), window: int = 3, seed: int = 0,
                         sigma: float = 5.0, levels: int = 4, extra_nonmembers=None, query_images=None,
                         query_labels=None, mitigations: Sequence[str] = model.MITIGATIONS, batch_size: int = 8,
                         progress=None) -> dict:
  """The leakage analysis of one camera: ILB per L, membership AUC per detector per L, mitigations.

  For each L and each of `n_trials` random draws: L images of `images` are the members (the estimation set),
  the other images of `images` plus `extra_nonmembers` are the non-members; K̂ and R come from the members.
  ILB: γ² from K̂ at every window of `window_sizes` (and `window`), P̂ from `n_splits` random half-splits of the
  members (`model.power_estimate`, L ≥ 2). Membership: every member and non-member is scored by each detector.
  Attribution (when `query_images` are given): each query is scored against the (mitigated) K̂ with
  `membership.match_scores`; `query_labels` True = same camera. Random draws use `fold_in(key(seed), L)` then the
  trial, so a given L's results do not depend on the other L values.

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255], one camera's images (flat-fields and/or natural).
    l_values: estimation-set sizes; each must leave ≥ 1 non-member (L < N, or `extra_nonmembers` given).
    n_splits, n_trials: random half-splits per P̂, random estimation sets per L.
    window_sizes: local-variance windows for the ILB table (sensitivity); window: the window of the NP detector,
      of the whitening and of the mitigation table's ILB.
    seed: random seed. sigma, levels: the wavelet denoiser (prnu-python defaults 5 and 4).
    extra_nonmembers: optional [M, H, W, 3] images of the same camera that are never members.
    query_images, query_labels: optional [Q, H, W, 3] images for the attribution cost and bool[Q] (same camera).
    mitigations: subset of `model.MITIGATIONS`. batch_size: images per denoiser call.
    progress: optional callable receiving a short status string.

  Returns:
    A dict of tables (lists of row dicts, ready for CSV/JSON) plus 'config':
      'ilb': L, mitigation ('none', 'whiten'), window, ilb_bpp (mean over trials), ilb_bpp_std, ilb_bits, power
        (P̂), power_split_std, gamma2_mean, mu, constraint_rel_error (max over trials), n_pixels, n_trials — NaN
        bounds when L < 2 or P̂ ≤ 0;
      'membership': L, detector (`DETECTORS`), auc (mean over trials), auc_std, auc_pooled (all trials' scores
        together), n_members, n_nonmembers (per trial);
      'mitigation': L, mitigation, ilb_bpp (at `window`; NaN for 'binarize'), membership_auc (the NCC detector with
        the mitigated fingerprint), membership_auc_std, attribution_auc, attribution_auc_std (NaN without queries);
      'roc': long format L, detector, point, fpr, tpr (pooled over trials);
      'config': the arguments and sizes.
  """
  images = np.asarray(images)
  l_values = [int(v) for v in l_values]
  n_extra = 0 if extra_nonmembers is None else len(extra_nonmembers)
  _check_arguments(images, l_values, n_extra, mitigations, n_splits, n_trials, query_images, query_labels)
  windows = sorted(set(int(w) for w in window_sizes) | {int(window)})
  say = progress or (lambda _: None)

  def extract(x, what):
    say(f"residuals of {len(x)} {what}")
    return model.residuals_and_denoised(x, sigma=sigma, levels=levels, batch_size=batch_size)

  res, den = extract(images, "images")
  res_x, den_x = extract(extra_nonmembers, "extra non-members") if n_extra else (res[:0], den[:0])
  res_q, den_q = extract(query_images, "query images") if query_images is not None else (None, None)
  data = _Data(res, den, res_x, den_x, res_q, den_q, None if query_labels is None else np.asarray(query_labels, bool))
  n_pixels = int(images.shape[1] * images.shape[2])
  tables = {"ilb": [], "membership": [], "mitigation": [], "roc": []}
  for l in l_values:
    say(f"L = {l}")
    key_l = jax.random.fold_in(jax.random.key(seed), l)
    trials = [_trial(data, jax.random.fold_in(key_l, t), l, n_splits=n_splits, windows=windows, window=window,
                     mitigations=mitigations) for t in range(n_trials)]
    tables["ilb"] += _ilb_rows(l, trials, n_pixels)
    rows, roc_rows, aucs = _membership_rows(l, trials, len(images) - l + n_extra)
    tables["membership"] += rows
    tables["roc"] += roc_rows
    tables["mitigation"] += _mitigation_rows(l, trials, aucs, mitigations=mitigations, window=window)
  tables["config"] = {
      "n_images": len(images), "height": int(images.shape[1]), "width": int(images.shape[2]), "l_values": l_values,
      "n_splits": n_splits, "n_trials": n_trials, "window_sizes": windows, "window": window, "seed": seed,
      "sigma": sigma, "levels": levels, "n_extra_nonmembers": n_extra,
      "n_queries": 0 if query_images is None else len(query_images), "mitigations": list(mitigations),
      "channel": "gray"}
  return tables
