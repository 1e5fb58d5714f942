"""The leakage analysis of one camera as tables ready for CSV/JSON: the bound (ILB) per estimation-set size L with
both γ² estimators (`ilb_sweep`), the attribution cost of the mitigations, membership inference
(`membership.membership_sweep`) and the mitigation summary; `run_leakage_analysis` runs them all on one pool.
See `leakage.model` for the quantities and `leakage.noise` for P̂ and γ²."""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.leakage import bound
from dippas_jax.leakage import membership
from dippas_jax.leakage import model
from dippas_jax.leakage import noise

DETECTORS = membership.DETECTORS
ILB_MITIGATIONS = ("none",)  # Only K̂ itself fits the Gaussian model of Eqs. 6–7 (see `leakage.model`).
BOUND_STATUS = {
    "none": "Eqs. 6-7",
    "binarize": "not reported: sign(K) is not Gaussian, the model of Eqs. 6-7 does not hold",
    "whiten": "not reported: a nonlinear map of K, outside the model of Eqs. 6-7 (a function of K cannot leak "
              "more than K)",
}
_HIGHEST = jax.lax.Precision.HIGHEST


def mean_std(values) -> tuple[float, float]:
  """Mean and standard deviation of the finite values (NaN, NaN when there are none)."""
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  if values.size == 0:
    return float("nan"), float("nan")
  return float(values.mean()), float(values.std())


def set_bounds(wx, xx, members, *, n_splits: int, estimators: Sequence[str], windows: Sequence[int],
               key) -> dict:
  """The ILB of the K̂ of one estimation set, for every γ² estimator and window.

  Args:
    wx, xx: W ⊙ X̂ and X̂² of all the images the indices refer to, float[N, H, W] (jax or numpy).
    members: int[L] indices of the estimation set (L ≥ 2 for P̂ and the split γ²).
    n_splits: random half-splits. estimators: subset of `noise.GAMMA2_ESTIMATORS`. windows: box sizes.
    key: the splits' random key.

  Returns:
    {'power': P̂, 'power_split_std', (estimator, window): (LeakageBound, mean γ²), and with 'loo' 'loo_defined'
    (the fraction of pixels where it did not fall back to the split)}.
  """
  members = np.asarray(members)
  mask = np.zeros(len(wx), np.float32)
  mask[members] = 1.0
  k_hat = model.masked_k(wx, xx, jnp.asarray(mask))
  powers, d2 = noise.split_statistics(wx, xx, noise.split_masks(key, members, len(wx), n_splits))
  out = {"power": float(powers.mean()), "power_split_std": float(powers.std())}
  loo = None
  if "loo" in estimators:
    loo, out["loo_defined"] = noise.loo_variance(np.asarray(wx)[members], np.asarray(xx)[members], d2)
  for (e, w), g in noise.gamma2_maps(k_hat, d2, estimators=estimators, windows=windows, loo=loo).items():
    out[(e, w)] = (bound.information_leakage_bound(g, out["power"]), float(g.mean()))
  return out


def _draw(key, n: int, l: int) -> np.ndarray:
  return np.asarray(jax.random.permutation(key, n))[:l]


def _ilb_rows(l: int, trials: list[dict], estimators, windows, n_pixels: int) -> list[dict]:
  rows = []
  for w in windows:
    row = {"L": l, "mitigation": "none", "window": w, "estimator": estimators[0]}
    for e in estimators:
      bpp = mean_std([t[(e, w)][0].bits_per_pixel for t in trials])
      row.update({f"ilb_bpp_{e}": bpp[0], f"ilb_bpp_{e}_std": bpp[1],
                  f"gamma2_{e}": mean_std([t[(e, w)][1] for t in trials])[0],
                  f"mu_{e}": mean_std([t[(e, w)][0].mu for t in trials])[0]})
    row["ilb_bpp"], row["ilb_bpp_std"] = row[f"ilb_bpp_{estimators[0]}"], row[f"ilb_bpp_{estimators[0]}_std"]
    errors = [t[(e, w)][0].constraint_rel_error for t in trials for e in estimators]
    row.update({"power": mean_std([t["power"] for t in trials])[0],
                "power_split_std": mean_std([t["power_split_std"] for t in trials])[0],
                "constraint_rel_error": max((x for x in errors if np.isfinite(x)), default=float("nan")),
                "n_pixels": n_pixels, "n_trials": len(trials)})
    rows.append(row)
  return rows


def ilb_sweep(residuals, denoised, *, l_values: Sequence[int], n_trials: int = 5, n_splits: int = 10,
              estimators: Sequence[str] = noise.GAMMA2_ESTIMATORS, window_sizes: Sequence[int] = (3,),
              seed: int = 0, queries=None, mitigations: Sequence[str] = model.MITIGATIONS, window: int = 3,
              progress=None) -> tuple[list[dict], list[dict]]:
  """The ILB for each L over `n_trials` random estimation sets of a pool, and the attribution cost.

  Args:
    residuals, denoised: W and X̂ of the pool, float[N, H, W]; each L in [2, N] (L = N: one set, one trial).
    l_values, n_trials, n_splits: set sizes, random sets per size, half-splits per set.
    estimators: γ² estimators, the first is the default (its bound is `ilb_bpp`). window_sizes: γ² windows.
    seed: draws use `fold_in(key(seed), L)` then the trial (results per L do not depend on the other L).
    queries: optional (W, X̂ float[Q, H, W], labels bool[Q]: same camera) for the attribution AUC of K̂ and of its
      mitigations (`membership.match_scores`). mitigations, window: the mitigations and their window.
    progress: optional callable receiving a status string.

  Returns:
    (ilb rows, attribution rows). ilb: L, mitigation ('none'), window, estimator (the default), ilb_bpp,
    ilb_bpp_std, per estimator e ilb_bpp_<e>, ilb_bpp_<e>_std, gamma2_<e> (mean γ²), mu_<e>; power (P̂),
    power_split_std, constraint_rel_error (max), n_pixels, n_trials — NaN bounds where P̂ ≤ 0. attribution: L,
    mitigation, attribution_auc, attribution_auc_std (none without queries).
  """
  n = len(residuals)
  bad = [l for l in l_values if not 2 <= l <= n]
  if bad:
    raise ValueError(f"bound L values {bad} must be in [2, {n}] (two halves of the {n} pool images)")
  wx, xx = jnp.asarray(residuals * denoised), jnp.asarray(denoised * denoised)
  windows = sorted(set(int(w) for w in window_sizes))
  n_pixels = int(np.prod(residuals.shape[1:]))
  ilb_rows, attribution_rows = [], []
  for l in l_values:
    (progress or (lambda _: None))(f"bound L = {l}")
    key_l = jax.random.fold_in(jax.random.key(seed), l)
    trials, attribution = [], {m: [] for m in mitigations}
    for t in range(1 if l == n else n_trials):
      key_t = jax.random.fold_in(key_l, t)
      members = _draw(jax.random.fold_in(key_t, 0), n, l)
      trials.append(set_bounds(wx, xx, members, n_splits=n_splits, estimators=estimators, windows=windows,
                               key=jax.random.fold_in(key_t, 1)))
      if queries is not None:
        for m, auc in _attribution(wx, xx, members, queries, mitigations, window).items():
          attribution[m].append(auc)
    ilb_rows += _ilb_rows(l, trials, list(estimators), windows, n_pixels)
    if queries is not None:
      attribution_rows += [{"L": l, "mitigation": m, "attribution_auc": mean_std(v)[0],
                            "attribution_auc_std": mean_std(v)[1]} for m, v in attribution.items()]
  return ilb_rows, attribution_rows


def _attribution(wx, xx, members, queries, mitigations, window) -> dict[str, float]:
  res_q, den_q, labels = queries
  mask = np.zeros(len(wx), np.float32)
  mask[members] = 1.0
  k_hat = model.masked_k(wx, xx, jnp.asarray(mask))
  out = {}
  for m in mitigations:
    s = np.asarray(membership.match_scores(model.mitigate(k_hat, m, window=window), res_q, den_q,
                                           binary=m == "binarize"))
    out[m] = membership.membership_auc(s[labels], s[~labels])
  return out


def mitigation_rows(ilb_rows, membership_rows, attribution_rows, *, mitigations, window: int) -> list[dict]:
  """Per L and mitigation: the bound (only for 'none', `BOUND_STATUS` says why), the membership AUC of the Eq. 11
  detector on the mitigated K̂ (`membership.MITIGATION_DETECTOR`) and the attribution AUC."""
  ilb = {r["L"]: r["ilb_bpp"] for r in ilb_rows if r["window"] == window}
  mem = {(r["L"], r["detector"]): r for r in membership_rows}
  att = {(r["L"], r["mitigation"]): r for r in attribution_rows}
  rows = []
  for l in sorted(set(ilb) | {r["L"] for r in membership_rows}):
    for m in mitigations:
      detector = mem.get((l, membership.MITIGATION_DETECTOR[m]), {})
      a = att.get((l, m), {})
      rows.append({"L": l, "mitigation": m, "bound": BOUND_STATUS[m],
                   "ilb_bpp": ilb.get(l, math.nan) if m in ILB_MITIGATIONS else math.nan,
                   "membership_auc": detector.get("auc", math.nan),
                   "membership_auc_std": detector.get("auc_std", math.nan),
                   "attribution_auc": a.get("attribution_auc", math.nan),
                   "attribution_auc_std": a.get("attribution_auc_std", math.nan)})
  return rows


def run_leakage_analysis(images, *, l_values: Sequence[int], membership_l_values: Sequence[int] | None = None,
                         n_splits: int = 10, n_trials: int = 5, estimators: Sequence[str] = noise.GAMMA2_ESTIMATORS,
                         window_sizes: Sequence[int] = (3, 5, 7, 9), window: int = 3, tile: int = 16, seed: int = 0,
                         sigma: float = 5.0, levels: int = 4, query_images=None, query_labels=None,
                         mitigations: Sequence[str] = model.MITIGATIONS, batch_size: int = 8,
                         progress=None) -> dict:
  """The leakage analysis of one camera's pool of images: `ilb_sweep` and `membership.membership_sweep` on it.

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255], one camera's images.
    l_values: bound set sizes (in [2, N]); membership_l_values: membership set sizes (< N; default the
      `l_values` below N).
    query_images, query_labels: optional [Q, H, W, 3] and bool[Q] (same camera) for the attribution cost.
    sigma, levels, batch_size: the wavelet denoiser (`model.residuals_and_denoised`).
    The others: see `ilb_sweep` and `membership.membership_sweep`.

  Returns:
    {'ilb', 'membership', 'roc', 'attribution', 'mitigation': row lists; 'config': the arguments and sizes}.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [N, H, W, 3] in [0, 255], got shape {images.shape}")
  for m in mitigations:
    if m not in model.MITIGATIONS:
      raise ValueError(f"Unsupported mitigation {m!r}; expected one of {model.MITIGATIONS}")
  if (query_images is None) != (query_labels is None):
    raise ValueError("query_images and query_labels go together")
  n = len(images)
  m_values = [l for l in l_values if l < n] if membership_l_values is None else list(membership_l_values)
  res, den = model.residuals_and_denoised(images, sigma=sigma, levels=levels, batch_size=batch_size)
  queries = None
  if query_images is not None:
    labels = np.asarray(query_labels, bool)
    if labels.shape != (len(query_images),) or labels.all() or not labels.any():
      raise ValueError("query_labels must be bool[Q] for the Q query images, with both True and False")
    queries = model.residuals_and_denoised(query_images, sigma=sigma, levels=levels, batch_size=batch_size) + (
        labels,)
  ilb, attribution = ilb_sweep(res, den, l_values=l_values, n_trials=n_trials, n_splits=n_splits,
                               estimators=estimators, window_sizes=set(window_sizes) | {window}, seed=seed,
                               queries=queries, mitigations=mitigations, window=window, progress=progress)
  mem, roc_rows = membership.membership_sweep(res, den, l_values=m_values, n_trials=n_trials, tile=tile,
                                              window=window, seed=seed, progress=progress)
  return {"ilb": ilb, "membership": mem, "roc": roc_rows, "attribution": attribution,
          "mitigation": mitigation_rows(ilb, mem, attribution, mitigations=mitigations, window=window),
          "config": {"n_images": n, "height": int(images.shape[1]), "width": int(images.shape[2]),
                     "l_values": list(l_values), "membership_l_values": m_values, "n_splits": n_splits,
                     "n_trials": n_trials, "estimators": list(estimators), "window_sizes": sorted(window_sizes),
                     "window": window, "tile": tile, "seed": seed, "sigma": sigma, "levels": levels,
                     "mitigations": list(mitigations), "channel": "gray"}}
