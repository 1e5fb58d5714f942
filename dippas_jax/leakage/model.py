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
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax import batching
from dippas_jax.prnu import denoise

MITIGATIONS = ("none", "binarize", "whiten")
_HIGHEST = jax.lax.Precision.HIGHEST


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


def ratio(num: jax.Array, den: jax.Array) -> jax.Array:
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), 0.0)


def leakage_model(residuals, denoised) -> LeakageModel:
  """K̂ = Σ W_i X̂_i / R with R = Σ X̂_i², from residuals and denoised images float[L, H, W]."""
  residuals, denoised = _check_stack(residuals, denoised)
  r = jnp.sum(denoised * denoised, axis=0)
  return LeakageModel(residuals, denoised, r, ratio(jnp.sum(residuals * denoised, axis=0), r))


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


def binarize(k) -> jax.Array:
  """sign(K̂) as float32 (0 stays 0)."""
  return jnp.sign(jnp.asarray(k, jnp.float32))


def whiten(k, *, window: int = 3) -> jax.Array:
  """K̂ divided by its local standard deviation (0 where the local variance is 0)."""
  k = jnp.asarray(k, jnp.float32)
  return ratio(k, jnp.sqrt(local_variance(k, window=window)))


def mitigate(k, method: str, *, window: int = 3) -> jax.Array:
  """Applies a mitigation to a fingerprint float[..., H, W]: 'none', 'binarize' or 'whiten'."""
  if method == "none":
    return jnp.asarray(k, jnp.float32)
  if method == "binarize":
    return binarize(k)
  if method == "whiten":
    return whiten(k, window=window)
  raise ValueError(f"Unsupported mitigation {method!r}; expected one of {MITIGATIONS}")


def masked_k(wx: jax.Array, xx: jax.Array, mask: jax.Array) -> jax.Array:
  """K̂ of the images selected by `mask` float[..., N] ∈ {0, 1}; wx = W ⊙ X̂, xx = X̂², float[N, H, W]."""
  num = jnp.einsum("...n,nhw->...hw", mask, wx, precision=_HIGHEST)
  den = jnp.einsum("...n,nhw->...hw", mask, xx, precision=_HIGHEST)
  return ratio(num, den)


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
                   window: int = 3, key: jax.Array | None = None) -> tuple[float, float]:
  """P̂ = <K̂_A, K̂_B>_F (total over pixels) averaged over `n_splits` random half-splits of the L images.

  Args:
    residuals, denoised: float[L, H, W], L ≥ 2.
    n_splits: number of random splits.
    seed: the splits' random seed.
    mitigation: applied to K̂_A and K̂_B before the inner product (ILB of a mitigated fingerprint).
    window: the whitening window.
    key: the splits' random key (default `jax.random.key(seed)`).

  Returns:
    (mean, standard deviation over splits).
  """
  residuals, denoised = _check_stack(residuals, denoised)
  if residuals.shape[0] < 2:
    raise ValueError(f"the power estimate needs L ≥ 2 images (two disjoint halves), got {residuals.shape[0]}")
  n = residuals.shape[0]
  masks = _split_masks(jax.random.key(seed) if key is None else key, np.arange(n), n, n_splits)
  values = _split_powers(residuals * denoised, denoised * denoised, jnp.asarray(masks), mitigation, window)
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std())


@functools.partial(jax.jit, static_argnames=("mitigation", "window"))
def _split_powers(wx, xx, masks, mitigation, window):
  k = mitigate(masked_k(wx, xx, masks), mitigation, window=window)  # [S, 2, H, W]
  return jnp.einsum("shw,shw->s", k[:, 0], k[:, 1], precision=_HIGHEST)
