"""Information leakage of camera-fingerprint estimates (Fernández-Menduiña & Pérez-González, "On the information
leakage of camera fingerprint estimates"; journal version EURASIP JIS 2021:6): the model, K̂ and its mitigations.

A fingerprint estimated from L images carries, besides the PRNU K, an estimation noise made of those images'
residuals, so it leaks information about them. Everything works on one channel, as the paper does: the gray
channel (`rgb2gray`) of the residual and of the denoised image.

Model (the maximum-likelihood estimator of the multiplicative PRNU model `W_i = X_i ⊙ K + N_i`):

    W_i = gray(noise_extract(I_i))            residual of image i            float32[H, W]
    X̂_i = gray(I_i) − W_i = gray(denoise(I_i)) denoised image i               float32[H, W]
    R   = Σ_i X̂_i ⊙ X̂_i                       (sums over the L estimation images)
    K̂   = (Σ_i W_i ⊙ X̂_i) / R = K + N_k       (0 where R = 0)

Information-leakage bound (ILB, Eqs. 6–7; `leakage.bound`). With γ²[k,l] the variance of the estimation noise
N_k at pixel (k,l) and P = ‖K‖²_F the PRNU power, the mutual information between the images and K̂ is at least

    I ≥ min_{n ≥ 0, Σ n = P} ½ Σ_{k,l} log(1 + γ²[k,l] / n[k,l])
      = ½ Σ log(1 + 2 / (sqrt(1 + 4 / (μ γ²)) − 1))            (nats)

where μ > 0 solves `½ Σ γ² (sqrt(1 + 4/(μγ²)) − 1) = P`. P̂ and γ² come from random half-splits of the L images
(`leakage.noise`): P̂ = <K̂_A, K̂_B>, and γ² by the 'split' estimator (noise only, the default) or the 'moment'
estimator (the local second moment of K̂, which also holds K's power). The bound is reported in bits per pixel
(log2, divided by H·W) and is invariant to a global scale of the fingerprint (γ² and P scale together).

Membership inference (`leakage.membership`): `ncc_eq11` (Eq. 11, Pearson(K̂, W_r)), `np_eq10` (the Neyman–Pearson
"genie" of Eq. 10), `ncc_wx` (Pearson(K̂, W_r ⊙ X̂_r), not in the paper).

Mitigations (§5): `binarize` (K̂ → sign K̂) and `whiten` (K̂ → K̂ / local std of K̂). No bound is reported for
them: both are nonlinear, data-dependent maps of K̂, so the additive Gaussian model K̂ = K + N_k behind Eqs. 6–7
does not describe them (whitening's split power P̂ is ~10⁴× that of K̂ and its "bound" rose above K̂'s, which the
data-processing inequality rules out for a function of K̂). Their effect is measured by membership and
attribution AUCs instead.

Local variance: the zero-mean local second moment (mean of x² over a `window × window` box, the box clipped at
the image border, i.e. divided by the number of pixels inside the image), the estimator of the Gaussian model's
variance used by the PRNU core's Wiener filter. Window default 3.
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


def check_stack(residuals, denoised) -> tuple[jax.Array, jax.Array]:
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
  residuals, denoised = check_stack(residuals, denoised)
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


def box_mean(x, *, window: int = 3) -> jax.Array:
  """Mean of x over a `window × window` box centred on each pixel, the box clipped at the border (divided by the
  number of pixels inside the image, so a constant field keeps its value everywhere).

  Args:
    x: float[..., H, W].
    window: odd box size ≥ 1.

  Returns:
    float32[..., H, W].
  """
  if window < 1 or window % 2 == 0:
    raise ValueError(f"window must be an odd size ≥ 1, got {window}")
  x = jnp.asarray(x, jnp.float32)
  if x.ndim < 2:
    raise ValueError(f"x must be float[..., H, W], got shape {x.shape}")
  pad = window // 2
  dims = (1,) * (x.ndim - 2) + (window, window)
  padding = ((0, 0),) * (x.ndim - 2) + ((pad, pad), (pad, pad))
  box_sum = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, (1,) * x.ndim, padding)
  return box_sum / _box_counts(*x.shape[-2:], window)


def local_variance(x, *, window: int = 3) -> jax.Array:
  """Zero-mean local variance: `box_mean(x², window)` (float[..., H, W] → float32[..., H, W], ≥ 0)."""
  x = jnp.asarray(x, jnp.float32)
  return box_mean(x * x, window=window)


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
