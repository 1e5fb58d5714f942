"""The network input z + σ·n_t of the DIP, and the per-step perturbation n_t.

z is stored planar, float32[D, H, W], because the only consumers of the D = 512 channels are the first two
convolutions (3×3 512→4 and 1×1 512→25 at the defaults), which are computed together as one matrix product
[M, D]·[D, H·W] (M = 9·4 + 25 = 61) followed by a shift-and-add of the 3×3 taps (`PlanarInput`). The perturbation
is applied there, in one of two ways (settings `perturbation`):

  'full'       n_t ~ N(0, 1)^{D×H×W} is drawn and the product taken with z + σ_r·n_t (the reference).
  'projected'  the same distribution, with D/M times fewer random numbers: the forward only sees n_t through
               Aᵀn_t (A = the [D, M] kernel matrix), so n_t is drawn only in span(A) as Q·ε (Q = A·L⁻ᵀ, L the
               Cholesky factor of AᵀA: an orthonormal basis of span(A), with AᵀQ·ε = L·ε; ε ~ N(0, 1)^{M×H·W}); the
               part of n_t orthogonal to span(A), which only enters the kernel gradient as σ_r·(I - QQᵀ)·n_t·Gᵀ, is
               drawn exactly given G (the output gradient) as σ_r·(I - QQᵀ)·E·L_Gᵀ with E ~ N(0, 1)^{D×M} and
               L_G·L_Gᵀ = G·Gᵀ. Forward outputs and gradients have the joint distribution of 'full' (up to a 1e-6
               relative Cholesky jitter); only the random stream differs. Cholesky factors are unique, so the
               sample does not depend on batching. With M ≥ D (tiny networks) or D·H·W < projected_min_size
               (small inputs) it draws in full, which is cheaper there.

'auto' picks 'projected' on CPU (where drawing 134 M Gaussians per step at 512² dominates) and 'full' elsewhere.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.extend.random  # noqa: F401  (threefry_2x32, for `standard_normal`)
import jax.numpy as jnp
import numpy as np
from jax import lax

from dippas_jax.dippas import unet
from dippas_jax.dippas.dip.settings import PROJECTED_MIN_SIZE
from dippas_jax.dippas.dip.settings import DipSettings


def standard_normal(key: jax.Array, shape: tuple[int, ...], dtype=jnp.float32) -> jax.Array:
  """N(0, 1) samples float[shape], as `jax.random.normal` (√2·erfinv of a uniform in (-1, 1)), but for threefry
  keys with half the hashing: counter-mode threefry2x32 over iota(n), both 32-bit output words of every block used
  (what `jax.random` did before `jax_threefry_partitionable`, whose default hashes a full block per word). The
  per-step perturbation at D·H·W values is the engine's largest random draw (2.1 M at 64², 134 M at 512²).
  Elementwise in the key, so vmapped draws equal single ones. Other key implementations use `jax.random.normal`.
  """
  n = math.prod(shape)
  threefry = getattr(jax.extend.random, "threefry_2x32", None)  # public API; fall back if a jax drops it
  if threefry is None or str(jax.random.key_impl(key)) != "threefry2x32" or n >= 2**32:
    return jax.random.normal(key, shape, dtype)
  data = jax.random.key_data(key)
  bits = threefry((data[0], data[1]), lax.iota(jnp.uint32, n))
  unit = lax.bitcast_convert_type((bits >> 9) | np.uint32(0x3F800000), jnp.float32)  # 23 random bits, [1, 2)
  u = jnp.maximum(np.nextafter(np.float32(-1), np.float32(0)), 2 * unit - 3)          # (-1, 1)
  return (np.float32(math.sqrt(2)) * lax.erf_inv(u)).astype(dtype).reshape(shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def projected_perturbed_product(a: jax.Array, z: jax.Array, key: jax.Array, std: float, precision: Any) -> jax.Array:
  """aᵀ·(z + std·n) for n ~ N(0, 1)^{D×P}, sampled in distribution with M/D of the random numbers.

  a: float[D, M] (kernel matrix, M < D, full column rank), z: float[D, P] -> float[M, P]. The gradient w.r.t. a
  has the distribution of (z + std·n)·Gᵀ jointly with the output (module docstring); Q = a·L⁻ᵀ with L the
  Cholesky factor of aᵀa. No gradient flows to z.
  """
  return _ppp_fwd(a, z, key, std, precision)[0]


def _chol(s):
  """Cholesky factor of a PSD matrix with a relative jitter of 1e-6 (unique, so the sample drawn from it does not
  depend on how the factorisation is batched, unlike an eigendecomposition's arbitrary signs)."""
  m = s.shape[-1]
  jitter = 1e-6 * jnp.trace(s) / m + 1e-30
  return jnp.linalg.cholesky(s + jitter * jnp.eye(m, dtype=s.dtype))


def _ppp_fwd(a, z, key, std, precision):
  k_eps, k_perp = jax.random.split(key)
  chol = _chol(jnp.dot(a.T, a, precision=precision))                      # L·Lᵀ = aᵀa; Q = a·L⁻ᵀ, aᵀQ = L
  eps = standard_normal(k_eps, (a.shape[1], z.shape[1]), z.dtype)       # [M, P]: P·n = Q·ε
  out = jnp.dot(a.T, z, precision=precision) + std * jnp.dot(chol, eps, precision=precision)
  return out, (a, z, chol, eps, k_perp)


def _ppp_bwd(std, precision, res, g):
  a, z, chol, eps, k_perp = res
  d, m = a.shape
  q_t = jax.scipy.linalg.solve_triangular(chol, a.T, lower=True)          # Qᵀ = L⁻¹aᵀ, [M, D]
  da = jnp.dot(z, g.T, precision=precision)
  da = da + std * jnp.dot(q_t.T, jnp.dot(eps, g.T, precision=precision), precision=precision)   # σ Q ε gᵀ
  # The part of n orthogonal to span(a): σ(I - QQᵀ)·E·L_gᵀ with L_g·L_gᵀ = g·gᵀ.
  e = standard_normal(k_perp, (d, m), g.dtype)
  e_perp = e - jnp.dot(q_t.T, jnp.dot(q_t, e, precision=precision), precision=precision)
  da = da + std * jnp.dot(e_perp, _chol(jnp.dot(g, g.T, precision=precision)).T, precision=precision)
  return da, None, None


projected_perturbed_product.defvjp(_ppp_fwd, _ppp_bwd)


def draws_projected(scheme: str, *, depth: int, num_kernels: int, num_values: int, min_size: int) -> bool:
  """Whether the perturbation is drawn 'projected': asked for, fewer first-layer kernel columns M than input
  channels D (else nothing is saved: tiny networks), and at least `min_size` input values D·H·W (below it the
  full draw is cheaper)."""
  return scheme == "projected" and num_kernels < depth and num_values >= min_size


def first_layer_columns(settings: DipSettings) -> int:
  """M, the columns of the first block's kernels over the input: its 3×3 conv (9·c1) and 1×1 shortcut."""
  c1, c2, c3 = unet.multires_widths(settings.filters[0], settings.alpha)
  return 9 * c1 + c1 + c2 + c3


class PlanarInput:
  """The network input z + σ·n of one image, as a `multires_unet.NetworkInput` (z planar, float32[D, H, W]).

  `convolve` computes the first layer's convolutions (stride 1, zero padding) as one matrix product over the
  pixels, applying the perturbation according to `scheme` ('full' or 'projected', module docstring; σ = 0 or
  key None: no perturbation).
  """

  def __init__(self, z: jax.Array, key: jax.Array | None, std: float, scheme: str, precision: Any = "highest",
               projected_min_size: int = PROJECTED_MIN_SIZE):
    if z.ndim != 3:
      raise ValueError(f"z must be planar [D, H, W], got shape {z.shape}.")
    self.z, self.key, self.std, self.scheme, self.precision = z, key, std, scheme, precision
    self.projected_min_size = projected_min_size
    self.depth = z.shape[0]
    self.spatial = tuple(z.shape[1:])

  def convolve(self, kernels: Sequence[jax.Array]) -> list[jax.Array]:
    d, h, w = self.z.shape
    a = jnp.concatenate([k.transpose(2, 0, 1, 3).reshape(d, -1) for k in kernels], axis=1)  # [D, M]
    zf = self.z.reshape(d, h * w)
    if self.scheme not in ("full", "projected"):
      raise ValueError(f"Unsupported perturbation {self.scheme!r}; expected 'full' or 'projected'.")
    if self.key is None or self.std == 0:
      prod = jnp.dot(a.T, zf, precision=self.precision)
    elif draws_projected(self.scheme, depth=d, num_kernels=a.shape[1], num_values=d * h * w,
                         min_size=self.projected_min_size):
      prod = projected_perturbed_product(a, zf, self.key, self.std, self.precision)
    else:  # 'full', or 'projected' where drawing in full is cheaper
      x = zf + self.std * standard_normal(self.key, zf.shape, zf.dtype)
      prod = jnp.dot(a.T, x, precision=self.precision)
    outs, row = [], 0
    for kern in kernels:
      k, c = kern.shape[0], kern.shape[-1]
      pad = (k - 1) // 2
      taps = prod[row:row + k * k * c].reshape(k * k, c, h, w)
      row += k * k * c
      padded = jnp.pad(taps, ((0, 0), (0, 0), (pad, k - 1 - pad), (pad, k - 1 - pad)))
      y = sum(padded[dy * k + dx, :, dy:dy + h, dx:dx + w] for dy in range(k) for dx in range(k))
      outs.append(y.transpose(1, 2, 0)[None])
    return outs
