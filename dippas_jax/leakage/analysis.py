"""Information leakage of camera-fingerprint estimates (Fernández-Menduiña & Pérez-González, EURASIP JIS 2021:6).

A fingerprint estimated from L images carries, besides the PRNU K, an estimation noise made of those images'
residuals, so it leaks information about them. This module quantifies the leak two ways and measures two
mitigations. Everything works on one channel, as the paper does: by default the gray channel (`rgb2gray`) of the
residual and of the denoised image.

Model (the maximum-likelihood estimator of the multiplicative PRNU model `W_i = X_i ⊙ K + N_i`):

    W_i = gray(noise_extract(I_i))            residual of image i            float32[H, W]
    X̂_i = gray(I_i) − W_i = gray(denoise(I_i)) denoised image i               float32[H, W]
    R   = Σ_i X̂_i ⊙ X̂_i                       (sums over the L estimation images)
    K̂   = (Σ_i W_i ⊙ X̂_i) / R                 (0 where R = 0)

Information-leakage bound (ILB). With γ²[k,l] the local variance of K̂ and P the power of the PRNU (a total
over pixels, `P = ‖K‖²_F`), the mutual information between the images and K̂ is at least

    I ≥ min_{n ≥ 0, Σ n = P} ½ Σ_{k,l} log(1 + γ²[k,l] / n[k,l])
      = ½ Σ log(1 + 2 / (sqrt(1 + 4 / (μ γ²)) − 1))            (nats)

where the minimiser is the "water-filling" allocation `n* = ½ γ² (sqrt(1 + 4/(μγ²)) − 1)` and μ > 0 solves
`Σ n* = ½ Σ γ² (sqrt(1 + 4/(μγ²)) − 1) = P` (the left side decreases strictly in μ). P is estimated without K by
splitting the L images into two random halves A, B (disjoint images, independent estimation noises):
`P̂ = <K̂_A, K̂_B>_F = Σ_{k,l} K̂_A K̂_B`, averaged over random splits. The bound is reported in bits per pixel
(log2, divided by H·W). It is invariant to a global scale of the fingerprint (γ² and P scale together).

Membership inference (is image r one of the L images?):
- `ncc`: the realisable detector, Pearson correlation of K̂ with W_r ⊙ X̂_r (the term image r adds to K̂'s
  numerator); `ncc_w` correlates with W_r alone.
- `np_genie`: the Neyman–Pearson log-likelihood ratio of a locally Gaussian model, for a "genie" that knows R:
  with `Q_r = W_r ⊙ X̂_r / R`, `P_r = K̂ − Q_r`, λ² the local variance of K̂ and θ² that of P_r,
  `T_r = mean_{k,l} [½ log(λ²/θ²) + K̂²/(2λ²) − P_r²/(2θ²)]` (H1: K̂ = P_r + Q_r, P_r ~ N(0, θ²);
  H0: K̂ ~ N(0, λ²)).

Mitigations (§5): `binarize` (K̂ → sign K̂, matched by the cosine of signs = 1 − 2·Hamming fraction) and
`whiten` (K̂ → K̂ / local std of K̂). Their cost is measured on source attribution with the same matching rule.

As L grows the estimation noise vanishes, γ² tends to the local variance of K itself and, with γ² ≈ P/(H·W)
everywhere, the bound tends to ½ log2(2) = 0.5 bit per pixel rather than 0: the floor comes from taking γ² as
the local variance of K̂ (which contains K), as the paper does.

Local variance: the zero-mean local second moment (mean of x² over a `window × window` box, the box clipped at
the image border, i.e. divided by the number of pixels inside the image), the estimator of the Gaussian model's
variance used by the PRNU core's Wiener filter. Window default 3; `run_leakage_analysis` reports 3, 5, 7, 9.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax import batching
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics
from dippas_jax.prnu import roc

__all__ = [
    "DETECTORS",
    "ILB_MITIGATIONS",
    "LeakageBound",
    "LeakageModel",
    "MITIGATIONS",
    "binarize",
    "bound_at_allocation",
    "information_leakage_bound",
    "leakage_model",
    "local_variance",
    "match_scores",
    "membership_auc",
    "mitigate",
    "ncc_membership_scores",
    "np_membership_scores",
    "optimal_allocation",
    "power_estimate",
    "residuals_and_denoised",
    "run_leakage_analysis",
    "solve_mu",
    "whiten",
]

MITIGATIONS = ("none", "binarize", "whiten")
DETECTORS = ("np_genie", "ncc", "ncc_w", "ncc_binarize", "ncc_whiten")
_HIGHEST = jax.lax.Precision.HIGHEST
_LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------------- model
class LeakageModel(NamedTuple):
  """The ML fingerprint estimate and the per-image terms it is made of.

  Attributes:
    residuals: W_i, float32[L, H, W].
    denoised: X̂_i, float32[L, H, W].
    r: R = Σ_i X̂_i², float32[H, W].
    k_hat: K̂ = Σ_i W_i X̂_i / R (0 where R = 0), float32[H, W].
  """
  residuals: jax.Array
  denoised: jax.Array
  r: jax.Array
  k_hat: jax.Array


def _check_stack(residuals, denoised) -> tuple[jax.Array, jax.Array]:
  residuals = jnp.asarray(residuals, jnp.float32)
  denoised = jnp.asarray(denoised, jnp.float32)
  if residuals.ndim != 3 or residuals.shape != denoised.shape:
    raise ValueError(f"residuals and denoised must both be float[L, H, W] of the same shape, got "
                     f"{residuals.shape} and {denoised.shape}")
  return residuals, denoised


def _ratio(num: jax.Array, den: jax.Array) -> jax.Array:
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def leakage_model(residuals, denoised) -> LeakageModel:
  """K̂ = Σ W_i X̂_i / R with R = Σ X̂_i², from residuals and denoised images float[L, H, W]."""
  residuals, denoised = _check_stack(residuals, denoised)
  r = jnp.sum(denoised * denoised, axis=0)
  return LeakageModel(residuals, denoised, r, _ratio(jnp.sum(residuals * denoised, axis=0), r))


@functools.partial(jax.jit, static_argnames=("levels", "wavelet"))
def _residual_and_denoised_batch(images, *, sigma, levels, wavelet):
  x = jnp.asarray(images, jnp.float32)
  w = denoise.rgb2gray(denoise.noise_extract(x, levels=levels, sigma=sigma, wavelet=wavelet))
  return jnp.stack([w, denoise.rgb2gray(x) - w], axis=1)  # rgb2gray is linear: gray(I) − W = gray(denoise(I)).


def residuals_and_denoised(images, *, sigma: float = 5.0, levels: int = 4, wavelet: str = "db4",
                           batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """Gray residuals W and denoised images X̂ of `images` (uint8 or float[N, H, W, 3] in [0, 255]).

  W = rgb2gray(noise_extract(I)) (the plain wavelet residual: no zero-mean, no Wiener-DFT, which would change
  the estimator the paper analyses), X̂ = rgb2gray(I) − W. Computed in fixed batches (one compilation).

  Returns:
    (W float32[N, H, W], X̂ float32[N, H, W]) as numpy arrays.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [N, H, W, 3] in [0, 255], got shape {images.shape}")
  fn = functools.partial(_residual_and_denoised_batch, sigma=sigma, levels=levels, wavelet=wavelet)
  out = batching.map_batches(fn, images, batch_size=batch_size)
  return out[:, 0], out[:, 1]


# ------------------------------------------------------------------------------------------ local statistics
def local_variance(x, *, window: int = 3) -> jax.Array:
  """Zero-mean local variance: mean of x² over a `window × window` box centred on each pixel.

  The box is clipped at the border (divided by the number of pixels inside the image), so a constant-variance
  field has an unbiased local variance everywhere.

  Args:
    x: float[..., H, W].
    window: odd box size ≥ 1.

  Returns:
    float32[..., H, W] (≥ 0).
  """
  if window < 1 or window % 2 == 0:
    raise ValueError(f"window must be an odd size ≥ 1, got {window}")
  x = jnp.asarray(x, jnp.float32)
  if x.ndim < 2:
    raise ValueError(f"x must be float[..., H, W], got shape {x.shape}")
  pad = window // 2
  dims = (1,) * (x.ndim - 2) + (window, window)
  padding = ((0, 0),) * (x.ndim - 2) + ((pad, pad), (pad, pad))
  box_sum = jax.lax.reduce_window(x * x, 0.0, jax.lax.add, dims, (1,) * x.ndim, padding)
  return box_sum / _box_counts(*x.shape[-2:], window)


def _box_counts(height: int, width: int, window: int) -> np.ndarray:
  """float32[H, W]: pixels of the centred `window` box inside the image (a host constant, not folded by XLA)."""
  pad = window // 2

  def count(n):
    i = np.arange(n)
    return np.minimum(i + pad, n - 1) - np.maximum(i - pad, 0) + 1

  return np.outer(count(height), count(width)).astype(np.float32)


# ---------------------------------------------------------------------------------- information-leakage bound
class LeakageBound(NamedTuple):
  """The information-leakage bound and its solution.

  Attributes:
    nats: ½ Σ log(1 + 2/(sqrt(1 + 4/(μγ²)) − 1)), the bound in nats (NaN when P ≤ 0).
    bits: nats / ln 2.
    bits_per_pixel: bits / (H·W) (all pixels count, including those with γ² = 0).
    mu: the Lagrange multiplier μ.
    constraint_rel_error: |Σ n* − P| / P at the returned μ.
    power: P.
    n_pixels: H·W.
  """
  nats: float
  bits: float
  bits_per_pixel: float
  mu: float
  constraint_rel_error: float
  power: float
  n_pixels: int


def _g(a):
  """γ²/n* as a function of a = μγ² (stable form of 2 / (sqrt(1 + 4/a) − 1)): (a + sqrt(a² + 4a)) / 2."""
  return 0.5 * (a + jnp.sqrt(a * a + 4.0 * a))


def _allocation(gamma2, log_mu):
  a = jnp.exp(log_mu) * gamma2
  return jnp.where(gamma2 > 0, gamma2 / jnp.where(gamma2 > 0, _g(a), 1.0), 0.0)


@functools.partial(jax.jit, static_argnames=("iterations",))
def _bisect_log_mu(gamma2, power, *, iterations):
  """Bisection on log μ of Σ n*(μ) = P (float64 under a scoped enable_x64)."""
  positive = gamma2 > 0
  count = jnp.sum(positive)
  sum_gamma = jnp.sum(jnp.sqrt(gamma2))
  # Brackets: sqrt(1+x) − 1 ≤ x/2 gives Σ n*(μ) ≤ count/μ, so Σ n*(count/P) ≤ P; sqrt(1+x) − 1 ≥ sqrt(x) − 1
  # gives Σ n*(μ) ≥ Σγ/sqrt(μ) − ½Σγ², so Σ n* ≥ P at μ = (Σγ / (P + ½Σγ²))².
  hi = jnp.log(count / power)
  lo = 2.0 * jnp.log(sum_gamma / (power + 0.5 * jnp.sum(gamma2)))

  def unfinished(state):
    i, lo, hi = state
    # Stop at float64 resolution of log μ (~50 halvings); the relative constraint error is then ~|Δ log μ|.
    return (i < iterations) & (hi - lo > 8 * jnp.finfo(jnp.float64).eps * jnp.maximum(1.0, jnp.abs(hi)))

  def body(state):
    i, lo, hi = state
    mid = 0.5 * (lo + hi)
    too_much = jnp.sum(_allocation(gamma2, mid)) > power  # Σ n* decreases in μ: μ must grow.
    return i + 1, jnp.where(too_much, mid, lo), jnp.where(too_much, hi, mid)

  _, lo, hi = jax.lax.while_loop(unfinished, body, (0, lo, hi))
  log_mu = 0.5 * (lo + hi)
  total = jnp.sum(_allocation(gamma2, log_mu))
  nats = 0.5 * jnp.sum(jnp.where(positive, jnp.log1p(_g(jnp.exp(log_mu) * gamma2)), 0.0))
  return log_mu, jnp.abs(total - power) / power, nats


def _check_bound_inputs(gamma2, power) -> np.ndarray:
  gamma2 = np.asarray(gamma2, np.float64)
  if not (np.isfinite(power) and power > 0):
    raise ValueError(f"the PRNU power P must be finite and > 0, got {power}")
  if np.any(gamma2 < 0) or not np.all(np.isfinite(gamma2)) or not np.any(gamma2 > 0):
    raise ValueError("gamma2 must be finite, ≥ 0, and positive somewhere")
  return gamma2


def _solve(gamma2: np.ndarray, power: float, iterations: int) -> tuple[float, float, float]:
  """(μ, relative constraint error, bound in nats), in float64 under a scoped enable_x64."""
  with jax.enable_x64(True):
    log_mu, rel, nats = _bisect_log_mu(jnp.asarray(gamma2, jnp.float64), jnp.float64(power),
                                       iterations=iterations)
    return float(np.exp(float(log_mu))), float(rel), float(nats)


def solve_mu(gamma2, power: float, *, iterations: int = 200) -> tuple[float, float]:
  """μ > 0 solving `½ Σ γ² (sqrt(1 + 4/(μγ²)) − 1) = P`, by bisection on log μ in float64.

  The bracket is analytic (see `_bisect_log_mu`) and a few tens wide in log μ; halving stops at float64
  resolution of log μ (about 50 steps, at most `iterations`), where the constraint's relative error is ~1e-14
  (returned, so callers can check it). float32 cannot reach the 1e-9 target, hence the scoped
  `jax.enable_x64` (never global); the loop is a jitted `lax.while_loop`.

  Args:
    gamma2: float[...] ≥ 0, the local variances γ² (pixels with γ² = 0 get n* = 0 and add nothing).
    power: P > 0 (a total over pixels, the units of Σ γ²).
    iterations: the most bisection steps.

  Returns:
    (μ, relative constraint error |Σ n* − P| / P) as Python floats.
  """
  mu, rel, _ = _solve(_check_bound_inputs(gamma2, power), power, iterations)
  return mu, rel


def optimal_allocation(gamma2, mu: float) -> np.ndarray:
  """The minimising allocation `n* = ½ γ² (sqrt(1 + 4/(μγ²)) − 1)` (0 where γ² = 0), float64 numpy."""
  gamma2 = np.asarray(gamma2, np.float64)
  with jax.enable_x64(True):
    return np.asarray(_allocation(jnp.asarray(gamma2), jnp.log(jnp.float64(mu))))


def bound_at_allocation(gamma2, allocation) -> float:
  """`½ Σ log(1 + γ²/n)` in nats for a given allocation n > 0 (float64 numpy; the objective the ILB minimises)."""
  gamma2 = np.asarray(gamma2, np.float64)
  n = np.asarray(allocation, np.float64)
  if gamma2.shape != n.shape:
    raise ValueError(f"gamma2 {gamma2.shape} and allocation {n.shape} must have the same shape")
  return float(0.5 * np.sum(np.log1p(gamma2 / n)))


def information_leakage_bound(gamma2, power: float, *, iterations: int = 200) -> LeakageBound:
  """The ILB for local variances γ² float[H, W] (or any shape) and PRNU power P (total over pixels).

  P ≤ 0 (no PRNU power measurable: the bound is then +∞ in the model and meaningless in practice) returns NaN
  fields instead of raising, so a table row can say so.
  """
  gamma2 = np.asarray(gamma2, np.float64)
  n_pixels = int(gamma2.size)
  if not (np.isfinite(power) and power > 0) or not np.any(gamma2 > 0):
    nan = float("nan")
    return LeakageBound(nan, nan, nan, nan, nan, float(power), n_pixels)
  mu, rel, nats = _solve(_check_bound_inputs(gamma2, power), power, iterations)
  bits = nats / _LN2
  return LeakageBound(nats, bits, bits / n_pixels, mu, rel, float(power), n_pixels)


# ------------------------------------------------------------------------------------------------- mitigations
def binarize(k) -> jax.Array:
  """sign(K̂) as float32 (0 stays 0)."""
  return jnp.sign(jnp.asarray(k, jnp.float32))


def whiten(k, *, window: int = 3) -> jax.Array:
  """K̂ divided by its local standard deviation (0 where the local variance is 0)."""
  k = jnp.asarray(k, jnp.float32)
  return _ratio(k, jnp.sqrt(local_variance(k, window=window)))


def mitigate(k, method: str, *, window: int = 3) -> jax.Array:
  """Applies a mitigation to a fingerprint float[..., H, W]: 'none', 'binarize' or 'whiten'."""
  if method == "none":
    return jnp.asarray(k, jnp.float32)
  if method == "binarize":
    return binarize(k)
  if method == "whiten":
    return whiten(k, window=window)
  raise ValueError(f"Unsupported mitigation {method!r}; expected one of {MITIGATIONS}")


# ------------------------------------------------------------------------------------------------ power estimate
def _masked_k(wx: jax.Array, xx: jax.Array, mask: jax.Array) -> jax.Array:
  """K̂ of the images selected by `mask` float[..., N] ∈ {0, 1}; wx = W ⊙ X̂, xx = X̂², float[N, H, W]."""
  num = jnp.einsum("...n,nhw->...hw", mask, wx, precision=_HIGHEST)
  den = jnp.einsum("...n,nhw->...hw", mask, xx, precision=_HIGHEST)
  return _ratio(num, den)


def _split_masks(key, members: np.ndarray, n_images: int, n_splits: int) -> np.ndarray:
  """float32[n_splits, 2, n_images]: random halves (⌊L/2⌋ and ⌈L/2⌉ images) of `members`."""
  masks = np.zeros((n_splits, 2, n_images), np.float32)
  half = len(members) // 2
  for s in range(n_splits):
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, s), len(members)))
    masks[s, 0, members[perm[:half]]] = 1.0
    masks[s, 1, members[perm[half:]]] = 1.0
  return masks


def power_estimate(residuals, denoised, *, n_splits: int = 10, seed: int = 0, mitigation: str = "none",
                   window: int = 3) -> tuple[float, float]:
  """P̂ = <K̂_A, K̂_B>_F (total over pixels) averaged over `n_splits` random half-splits of the L images.

  Args:
    residuals, denoised: float[L, H, W], L ≥ 2.
    n_splits: number of random splits.
    seed: the splits' random seed.
    mitigation: applied to K̂_A and K̂_B before the inner product (ILB of a mitigated fingerprint).
    window: the whitening window.

  Returns:
    (mean, standard deviation over splits).
  """
  residuals, denoised = _check_stack(residuals, denoised)
  if residuals.shape[0] < 2:
    raise ValueError(f"the power estimate needs L ≥ 2 images (two disjoint halves), got {residuals.shape[0]}")
  n = residuals.shape[0]
  masks = _split_masks(jax.random.key(seed), np.arange(n), n, n_splits)
  values = _split_powers(residuals * denoised, denoised * denoised, jnp.asarray(masks), mitigation, window)
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std())


@functools.partial(jax.jit, static_argnames=("mitigation", "window"))
def _split_powers(wx, xx, masks, mitigation, window):
  k = mitigate(_masked_k(wx, xx, masks), mitigation, window=window)  # [S, 2, H, W]
  return jnp.einsum("shw,shw->s", k[:, 0], k[:, 1], precision=_HIGHEST)


# --------------------------------------------------------------------------------------- membership detectors
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
  q = _ratio(jnp.asarray(residuals, jnp.float32) * jnp.asarray(denoised, jnp.float32), jnp.asarray(r))
  p = k_hat - q
  lam2 = local_variance(k_hat, window=window)
  th2 = local_variance(p, window=window)
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


# ------------------------------------------------------------------------------------------------ the analysis
ILB_MITIGATIONS = ("none", "whiten")  # A binarized map is not Gaussian: the ILB is not computed for it.
_MITIGATION_DETECTOR = {"none": "ncc", "binarize": "ncc_binarize", "whiten": "ncc_whiten"}


def _mean_std(values) -> tuple[float, float]:
  """Mean and standard deviation of the finite values (NaN, NaN when there are none)."""
  values = np.asarray(values, np.float64)
  values = values[np.isfinite(values)]
  if values.size == 0:
    return float("nan"), float("nan")
  return float(values.mean()), float(values.std())


def _trial_scores(k_hat, r, res, den, *, mitigations, window) -> dict[str, np.ndarray]:
  """Every detector's scores of the tested images (W, X̂ float[N, H, W]) against one estimate."""
  scores = {
      "np_genie": np_membership_scores(k_hat, r, res, den, window=window),
      "ncc": match_scores(k_hat, res, den),
      "ncc_w": match_scores(k_hat, res),
  }
  for m in mitigations:
    if m != "none":
      scores[_MITIGATION_DETECTOR[m]] = match_scores(mitigate(k_hat, m, window=window), res, den,
                                                     binary=m == "binarize")
  return {d: np.asarray(s, np.float64) for d, s in scores.items()}


def run_leakage_analysis(images, *, l_values: Sequence[int], n_splits: int = 10, n_trials: int = 5,
                         window_sizes: Sequence[int] = (3, 5, 7, 9), window: int = 3, seed: int = 0,
                         sigma: float = 5.0, levels: int = 4, extra_nonmembers=None, query_images=None,
                         query_labels=None, mitigations: Sequence[str] = MITIGATIONS, batch_size: int = 8,
                         progress=None) -> dict:
  """The leakage analysis of one camera: ILB per L, membership AUC per detector per L, mitigations.

  For each L and each of `n_trials` random draws: L images of `images` are the members (the estimation set),
  the other images of `images` plus `extra_nonmembers` are the non-members; K̂ and R come from the members.
  ILB: γ² from K̂ at every window of `window_sizes` (and `window`), P̂ from `n_splits` random half-splits of the
  members (L ≥ 2). Membership: every member and non-member is scored by each detector. Attribution (when
  `query_images` are given): each query is scored against the (mitigated) K̂ with `match_scores`;
  `query_labels` True = same camera. Random draws use `fold_in(key(seed), L)` then the trial, so a given L's
  results do not depend on the other L values.

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255], one camera's images (flat-fields and/or natural).
    l_values: estimation-set sizes; each must leave ≥ 1 non-member (L < N, or `extra_nonmembers` given).
    n_splits: random half-splits per P̂.
    n_trials: random estimation sets per L.
    window_sizes: local-variance windows for the ILB table (sensitivity).
    window: the window of the NP detector, of the whitening and of the mitigation table's ILB.
    seed: random seed.
    sigma, levels: the wavelet denoiser (prnu-python defaults 5 and 4).
    extra_nonmembers: optional [M, H, W, 3] images of the same camera that are never members.
    query_images: optional [Q, H, W, 3] images for the attribution cost.
    query_labels: bool[Q], True where the query is from this camera (needs both kinds).
    mitigations: subset of `MITIGATIONS`.
    batch_size: images per denoiser call.
    progress: optional callable receiving a short status string.

  Returns:
    A dict of tables (lists of row dicts, ready for CSV/JSON) plus 'config':
      'ilb': L, mitigation ('none', 'whiten'), window, ilb_bpp (mean over trials), ilb_bpp_std, ilb_bits,
        power (P̂), power_split_std (spread over splits), gamma2_mean, mu, constraint_rel_error (max over
        trials), n_pixels, n_trials — NaN bounds when L < 2 or P̂ ≤ 0;
      'membership': L, detector (`DETECTORS`), auc (mean over trials), auc_std, auc_pooled (all trials' scores
        together), n_members, n_nonmembers (per trial);
      'mitigation': L, mitigation, ilb_bpp (at `window`; NaN for 'binarize'), membership_auc (the NCC
        detector with the mitigated fingerprint), membership_auc_std, attribution_auc, attribution_auc_std
        (NaN without queries);
      'roc': long format L, detector, point, fpr, tpr (pooled over trials);
      'config': the arguments and sizes.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [N, H, W, 3] in [0, 255], got shape {images.shape}")
  n_images = len(images)
  l_values = [int(v) for v in l_values]
  for m in mitigations:
    if m not in MITIGATIONS:
      raise ValueError(f"Unsupported mitigation {m!r}; expected one of {MITIGATIONS}")
  n_extra = 0 if extra_nonmembers is None else len(extra_nonmembers)
  for l in l_values:
    if l < 1 or l > n_images or (l == n_images and n_extra == 0):
      raise ValueError(f"L = {l} must be in [1, {n_images}] and leave at least one non-member "
                       f"({n_images} images, {n_extra} extra non-members)")
  if (query_images is None) != (query_labels is None):
    raise ValueError("query_images and query_labels go together")
  if n_splits < 1 or n_trials < 1:
    raise ValueError(f"n_splits and n_trials must be ≥ 1, got {n_splits} and {n_trials}")
  windows = sorted(set(int(w) for w in window_sizes) | {int(window)})
  ilb_mitigations = [m for m in mitigations if m in ILB_MITIGATIONS]
  say = progress or (lambda _: None)

  def extract(x, what):
    say(f"residuals of {len(x)} {what}")
    return residuals_and_denoised(x, sigma=sigma, levels=levels, batch_size=batch_size)

  res, den = extract(images, "images")
  res_x, den_x = extract(extra_nonmembers, "extra non-members") if n_extra else (res[:0], den[:0])
  if query_images is not None:
    query_labels = np.asarray(query_labels, bool)
    if query_labels.shape != (len(query_images),) or query_labels.all() or not query_labels.any():
      raise ValueError("query_labels must be bool[Q] for the Q query images, with both True and False")
    res_q, den_q = extract(query_images, "query images")
  wx, xx = jnp.asarray(res * den), jnp.asarray(den * den)
  key = jax.random.key(seed)
  n_pixels = int(images.shape[1] * images.shape[2])

  ilb_rows, membership_rows, mitigation_rows, roc_rows = [], [], [], []
  for l in l_values:
    say(f"L = {l}")
    key_l = jax.random.fold_in(key, l)
    bounds = {(m, w): [] for m in ilb_mitigations for w in windows}
    scores: dict[str, tuple[list, list]] = {}
    per_trial_auc: dict[str, list] = {}
    attribution = {m: [] for m in mitigations}
    for t in range(n_trials):
      key_t = jax.random.fold_in(key_l, t)
      perm = np.asarray(jax.random.permutation(jax.random.fold_in(key_t, 0), n_images))
      members, nonmembers = perm[:l], perm[l:]
      mask = np.zeros(n_images, np.float32)
      mask[members] = 1.0
      k_hat = _masked_k(wx, xx, jnp.asarray(mask))
      r = jnp.einsum("n,nhw->hw", jnp.asarray(mask), xx, precision=_HIGHEST)

      split_masks = (jnp.asarray(_split_masks(jax.random.fold_in(key_t, 1), members, n_images, n_splits))
                     if l >= 2 else None)
      for m in ilb_mitigations:
        power = power_std = float("nan")
        if split_masks is not None:
          powers = np.asarray(_split_powers(wx, xx, split_masks, m, window), np.float64)
          power, power_std = float(powers.mean()), float(powers.std())
        k_m = mitigate(k_hat, m, window=window)
        for w in windows:
          gamma2 = np.asarray(local_variance(k_m, window=w))
          bounds[(m, w)].append((information_leakage_bound(gamma2, power), power_std, float(gamma2.mean())))
      if query_images is not None:
        for m in mitigations:
          s = np.asarray(match_scores(mitigate(k_hat, m, window=window), res_q, den_q, binary=m == "binarize"))
          attribution[m].append(membership_auc(s[query_labels], s[~query_labels]))

      test_res = np.concatenate([res[members], res[nonmembers], res_x])
      test_den = np.concatenate([den[members], den[nonmembers], den_x])
      for d, s in _trial_scores(k_hat, r, test_res, test_den, mitigations=mitigations, window=window).items():
        mem, non = scores.setdefault(d, ([], []))
        mem.append(s[:l])
        non.append(s[l:])
        per_trial_auc.setdefault(d, []).append(membership_auc(s[:l], s[l:]))

    for (m, w), trials in bounds.items():
      bpp = _mean_std([b.bits_per_pixel for b, _, _ in trials])
      ilb_rows.append({
          "L": l, "mitigation": m, "window": w, "ilb_bpp": bpp[0], "ilb_bpp_std": bpp[1],
          "ilb_bits": _mean_std([b.bits for b, _, _ in trials])[0],
          "power": _mean_std([b.power for b, _, _ in trials])[0],
          "power_split_std": _mean_std([s for _, s, _ in trials])[0],
          "gamma2_mean": _mean_std([g for _, _, g in trials])[0],
          "mu": _mean_std([b.mu for b, _, _ in trials])[0],
          "constraint_rel_error": max((b.constraint_rel_error for b, _, _ in trials
                                       if np.isfinite(b.constraint_rel_error)), default=float("nan")),
          "n_pixels": n_pixels, "n_trials": n_trials})
    aucs = {}
    for d, (mem, non) in scores.items():
      mem, non = np.concatenate(mem), np.concatenate(non)
      aucs[d] = _mean_std(per_trial_auc[d])
      membership_rows.append({"L": l, "detector": d, "auc": aucs[d][0], "auc_std": aucs[d][1],
                              "auc_pooled": membership_auc(mem, non), "n_members": l,
                              "n_nonmembers": n_images - l + n_extra})
      fpr, tpr, _ = roc.roc_curve(np.r_[mem, non], np.r_[np.ones(mem.size, bool), np.zeros(non.size, bool)])
      roc_rows.extend({"L": l, "detector": d, "point": i, "fpr": float(f), "tpr": float(p)}
                      for i, (f, p) in enumerate(zip(fpr, tpr)))
    for m in mitigations:
      att = _mean_std(attribution[m])
      ilb = _mean_std([b.bits_per_pixel for b, _, _ in bounds[(m, window)]])[0] if m in ILB_MITIGATIONS else \
          float("nan")
      mitigation_rows.append({
          "L": l, "mitigation": m, "ilb_bpp": ilb,
          "membership_auc": aucs[_MITIGATION_DETECTOR[m]][0],
          "membership_auc_std": aucs[_MITIGATION_DETECTOR[m]][1],
          "attribution_auc": att[0], "attribution_auc_std": att[1]})

  config = {"n_images": n_images, "height": int(images.shape[1]), "width": int(images.shape[2]),
            "l_values": l_values, "n_splits": n_splits, "n_trials": n_trials, "window_sizes": windows,
            "window": window, "seed": seed, "sigma": sigma, "levels": levels, "n_extra_nonmembers": n_extra,
            "n_queries": 0 if query_images is None else len(query_images), "mitigations": list(mitigations),
            "channel": "gray"}
  return {"ilb": ilb_rows, "membership": membership_rows, "mitigation": mitigation_rows, "roc": roc_rows,
          "config": config}
