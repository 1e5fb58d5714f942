"""Membership inference on a fingerprint estimate (is image r one of the L images behind K̂?) and the matching
rule shared with source attribution."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.leakage import model
from dippas_jax.prnu import metrics
from dippas_jax.prnu import roc


def match_scores(fingerprint, residuals, denoised=None, *, binary: bool = False) -> jax.Array:
  """Correlation of a fingerprint with query images (membership NCC detector and source attribution).

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


def ncc_membership_scores(k_hat, residuals, denoised=None) -> jax.Array:
  """The realisable detector: Pearson(K̂, W_r ⊙ X̂_r) per tested image r (W_r alone if `denoised` is None)."""
  return match_scores(k_hat, residuals, denoised)


@functools.partial(jax.jit, static_argnames=("window",))
def np_membership_scores(k_hat, r, residuals, denoised, *, window: int = 3) -> jax.Array:
  """The Neyman–Pearson "genie" log-likelihood ratio per tested image (larger = member).

  Q = W ⊙ X̂ / R, P = K̂ − Q, λ² = local variance of K̂, θ² = local variance of P; the statistic is the mean over
  pixels (where both variances are > 0) of ½ log(λ²/θ²) + K̂²/(2λ²) − P²/(2θ²).

  Args:
    k_hat: float[H, W].
    r: R = Σ X̂² over the estimation images, float[H, W] (the genie's knowledge).
    residuals, denoised: W and X̂ of the tested images, float[N, H, W].
    window: local-variance window.

  Returns:
    float32[N].
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
  llr = jnp.where(valid, llr, 0.0)
  return jnp.sum(llr, axis=(-2, -1)) / jnp.maximum(jnp.sum(valid, axis=(-2, -1)), 1)


def membership_auc(member_scores, nonmember_scores) -> float:
  """AUC of members (positives) vs non-members: `roc.auc(roc.roc_curve(...))` (= the Mann–Whitney statistic)."""
  scores = np.concatenate([np.ravel(member_scores), np.ravel(nonmember_scores)])
  labels = np.r_[np.ones(np.size(member_scores), bool), np.zeros(np.size(nonmember_scores), bool)]
  fpr, tpr, _ = roc.roc_curve(scores, labels)
  return roc.auc(fpr, tpr)
