"""The two quantities of the bound that K̂ does not give directly, both from random half-splits of the L images:
the PRNU power P̂ and the variance γ² of the estimation noise N_k (see `leakage.model` for K̂).

Split the L images into halves A and B (⌊L/2⌋ and ⌈L/2⌉ images, disjoint, so their estimation noises are
independent) and write R_A = Σ_A X̂², R_B = Σ_B X̂², R = R_A + R_B. Then K̂ = (R_A K̂_A + R_B K̂_B) / R and

    P̂ = <K̂_A, K̂_B>_F                                     (E = ‖K‖²: the noises are independent, zero-mean)
    D = (K̂_A − K̂_B) · sqrt(R_A R_B) / R                   (K cancels: noise only)

With per-pixel noise variance s in every image (the ML estimator's model), Var(N_A) = s/R_A, Var(N_B) = s/R_B and
Var(N_k) = s/R, so E[D²] = s (1/R_A + 1/R_B) · R_A R_B / R² = s/R = Var(N_k) exactly, pixel by pixel, for any
split sizes. Both are averaged over `n_splits` random splits.

The split's E[D²] = s/R holds when every image has the same noise variance s at a pixel. With per-image variances
s_i (images of different brightness: shot noise), q_i = X̂_i² s_i and Q = Σ q_i, Var(N_k) = Q/R² but
E[D²] = (Σ_A q · R_B/R_A + Σ_B q · R_A/R_B)/R²: biased (low on average, by Jensen) whenever the halves differ in R.

Leave one out (unbiased for any s_i, L ≥ 3): with K̂_−i the estimate without image i, R_−i = R − X̂_i² and
ρ_i = X̂_i²/R_−i, the statistic e_i = (W_i X̂_i − X̂_i² K̂_−i)² (K cancels) has E[e_i] = q_i (1 − ρ_i²) + Q ρ_i²,
so with w_i = 1/(1 − ρ_i²)

    Q̂ = Σ_i w_i e_i / (Σ_i w_i − (L − 1)),   γ² = Q̂ / R²

is unbiased (its coefficients, functions of X̂ alone, solve E[Q̂] = Σ q_i for every q). Its denominator is 0 at
L = 2 (Q is not identifiable from two images of unequal brightness) and near 0 where one image outweighs the
others together (X̂_i² ≳ R_−i, e.g. one bright among two dark): there (|denominator| < 0.05) it falls back to the
split's D².

γ² estimators (`GAMMA2_ESTIMATORS`; the paper does not say how it estimates γ²):
  'loo'    the local mean of Q̂/R², clipped at 0 (noise only, unbiased for per-image noise variances but for the
           clip; the default);
  'split'  the local mean of D² (noise only; → 0 as L → ∞, as the paper's §4.2 expects of N_k; biased low on
           sets of mixed brightness);
  'moment' the local second moment of K̂ itself (contains K: biased up by the PRNU's local power, so the bound
           floors at ~½ bit per pixel as L → ∞ instead of going to 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.leakage import model

GAMMA2_ESTIMATORS = ("loo", "split", "moment")
_HIGHEST = jax.lax.Precision.HIGHEST


def split_masks(key, members, n_images: int, n_splits: int) -> np.ndarray:
  """float32[n_splits, 2, n_images]: random halves (⌊L/2⌋ and ⌈L/2⌉ images) of the indices `members` int[L]."""
  members = np.asarray(members)
  masks = np.zeros((n_splits, 2, n_images), np.float32)
  half = len(members) // 2
  for s in range(n_splits):
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, s), len(members)))
    masks[s, 0, members[perm[:half]]] = 1.0
    masks[s, 1, members[perm[half:]]] = 1.0
  return masks


@jax.jit
def _split_statistics(wx, xx, masks):
  num = jnp.einsum("skn,nhw->skhw", masks, wx, precision=_HIGHEST)
  den = jnp.einsum("skn,nhw->skhw", masks, xx, precision=_HIGHEST)
  k = model.ratio(num, den)  # [S, 2, H, W]
  powers = jnp.einsum("shw,shw->s", k[:, 0], k[:, 1], precision=_HIGHEST)
  weight = model.ratio(den[:, 0] * den[:, 1], (den[:, 0] + den[:, 1]) ** 2)
  d2 = jnp.mean((k[:, 0] - k[:, 1]) ** 2 * weight, axis=0)
  return powers, d2


def split_statistics(wx, xx, masks) -> tuple[np.ndarray, np.ndarray]:
  """P̂ per split and the split-averaged D² map.

  Args:
    wx: W ⊙ X̂, float[N, H, W]; xx: X̂², float[N, H, W] (all the images the masks index).
    masks: float[S, 2, N] ∈ {0, 1}, the halves of each split (`split_masks`).

  Returns:
    (P̂ float64[S], mean over splits of D², float32[H, W]).
  """
  powers, d2 = _split_statistics(jnp.asarray(wx), jnp.asarray(xx), jnp.asarray(masks))
  return np.asarray(powers, np.float64), np.asarray(d2)


# |Σ w_i − (L − 1)| below this: the leave-one-out estimate's variance explodes (exactly 0 at L = 2).
_LOO_MIN_DENOMINATOR = 0.05


@jax.jit
def _loo(wx, xx, fallback):
  r, total = jnp.sum(xx, axis=0), jnp.sum(wx, axis=0)
  r_out = r - xx  # R_−i
  one_minus = 1.0 - model.ratio(xx, r_out) ** 2
  ok = jnp.all((r_out > 0) & (jnp.abs(one_minus) > 1e-6), axis=0)
  w = 1.0 / jnp.where(ok, one_minus, 1.0)
  e = (wx - xx * model.ratio(total - wx, r_out)) ** 2
  den = jnp.sum(w, axis=0) - (xx.shape[0] - 1)
  valid = ok & (jnp.abs(den) > _LOO_MIN_DENOMINATOR)
  q = jnp.sum(w * e, axis=0) / jnp.where(valid, den, 1.0)
  return jnp.where(valid, model.ratio(q, r * r), fallback), jnp.mean(valid)


def loo_variance(wx, xx, fallback) -> tuple[np.ndarray, float]:
  """Var(N_k) per pixel by leaving one out (module docstring), float32[H, W], and the fraction of pixels where it
  is defined (elsewhere `fallback` float[H, W], e.g. the split's D²).

  wx, xx: W ⊙ X̂ and X̂² of the L estimation images, float[L, H, W].
  """
  v, valid = _loo(jnp.asarray(wx, jnp.float32), jnp.asarray(xx, jnp.float32), jnp.asarray(fallback, jnp.float32))
  return np.asarray(v), float(valid)


def _stack(residuals, denoised, what: str):
  residuals, denoised = model.check_stack(residuals, denoised)
  if residuals.shape[0] < 2:
    raise ValueError(f"the {what} needs L ≥ 2 images (two disjoint halves), got {residuals.shape[0]}")
  return residuals * denoised, denoised * denoised, residuals.shape[0]


def power_estimate(residuals, denoised, *, n_splits: int = 10, seed: int = 0,
                   key: jax.Array | None = None) -> tuple[float, float]:
  """P̂ = <K̂_A, K̂_B>_F (total over pixels), mean and standard deviation over `n_splits` random half-splits.

  Args:
    residuals, denoised: W and X̂ of the L ≥ 2 estimation images, float[L, H, W].
    n_splits: number of random splits. seed / key: their random key (`key` wins).
  """
  wx, xx, n = _stack(residuals, denoised, "power estimate")
  masks = split_masks(jax.random.key(seed) if key is None else key, np.arange(n), n, n_splits)
  powers, _ = split_statistics(wx, xx, masks)
  return float(powers.mean()), float(powers.std())


def noise_variance(residuals, denoised, *, n_splits: int = 10, window: int = 3, seed: int = 0,
                   key: jax.Array | None = None) -> np.ndarray:
  """γ² by the 'split' estimator: the local mean (`window` box) of D², averaged over `n_splits` random splits.

  Args:
    residuals, denoised: W and X̂ of the L ≥ 2 estimation images, float[L, H, W].

  Returns:
    float32[H, W], an estimate of Var(N_k) per pixel (unbiased before the box mean).
  """
  wx, xx, n = _stack(residuals, denoised, "split noise estimate")
  masks = split_masks(jax.random.key(seed) if key is None else key, np.arange(n), n, n_splits)
  _, d2 = split_statistics(wx, xx, masks)
  return np.asarray(model.box_mean(d2, window=window))


def gamma2_maps(k_hat, d2, *, estimators, windows, loo=None) -> dict[tuple[str, int], np.ndarray]:
  """{(estimator, window): γ² float32[H, W]} from K̂ float[H, W], the split-averaged D² float[H, W] and the
  leave-one-out Q̂/R² float[H, W] (`loo_variance`; needed for 'loo' only)."""
  out = {}
  for e in estimators:
    if e not in GAMMA2_ESTIMATORS:
      raise ValueError(f"Unsupported gamma2 estimator {e!r}; expected one of {GAMMA2_ESTIMATORS}")
    if e == "loo" and loo is None:
      raise ValueError("the 'loo' estimator needs the leave-one-out map (loo_variance)")
    for w in windows:
      if e == "moment":
        out[(e, w)] = np.asarray(model.local_variance(k_hat, window=w))
      elif e == "split":
        out[(e, w)] = np.asarray(model.box_mean(d2, window=w))
      else:  # unbiased per pixel but not ≥ 0 (its weights can be negative): the local mean clipped at 0
        out[(e, w)] = np.maximum(np.asarray(model.box_mean(loo, window=w)), 0.0)
  return out

