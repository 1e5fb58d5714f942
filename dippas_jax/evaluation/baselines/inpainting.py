"""PRNU-blind baseline: inpainting-based anonymization (Mandelli et al., ICIP 2017), the L2 variant."""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.evaluation.baselines import common


def _lag_laplacian(v: jax.Array, lag: int) -> jax.Array:
  """`DᵀD v` for D = all in-image horizontal and vertical differences at distance `lag`, over the last two axes.

  `Σ_pairs (v_p − v_q)²` with pairs `(p, p + lag·e)` inside the image has gradient `2·DᵀD v`; `(DᵀD v)_p =
  deg(p)·v_p − Σ_{q ~ p} v_q` (no wrap-around: border pixels have fewer neighbours).
  """
  h, w = v.shape[-2:]
  out = jnp.zeros_like(v)
  if h > lag:
    d = v[..., lag:, :] - v[..., :-lag, :]
    pad = [(0, 0)] * (v.ndim - 2)
    out = out + jnp.pad(d, pad + [(lag, 0), (0, 0)]) - jnp.pad(d, pad + [(0, lag), (0, 0)])
  if w > lag:
    d = v[..., :, lag:] - v[..., :, :-lag]
    pad = [(0, 0)] * (v.ndim - 2)
    out = out + jnp.pad(d, pad + [(0, 0), (lag, 0)]) - jnp.pad(d, pad + [(0, 0), (0, lag)])
  return out


def _lag_degree(h: int, w: int, lag: int) -> jax.Array:
  """Number of in-image neighbours at distance `lag` (the diagonal of DᵀD), float32[H, W]."""
  i = jnp.arange(h)
  j = jnp.arange(w)
  dv = (i >= lag).astype(jnp.float32) + (i < h - lag).astype(jnp.float32)
  dh = (j >= lag).astype(jnp.float32) + (j < w - lag).astype(jnp.float32)
  return dv[:, None] + dh[None, :]


def _sum_hw(a, b):
  return jnp.einsum("...hw,...hw->...", a, b, precision=jax.lax.Precision.HIGHEST)


def inpaint_l2(planes, mask, *, lag: int = 3, iterations: int = 16) -> jax.Array:
  """Least-squares (L2) inpainting of the `mask` pixels with lag-`lag` finite differences.

  The masked pixels x are the unknowns, all others are fixed to their values in `planes`; with
  `v = (1 − m)·planes + m·x`, x minimises

      E(x) = Σ_{p, q in the image, q − p ∈ {(lag, 0), (0, lag)}} (v_q − v_p)²,

  i.e. the discrete Dirichlet energy of the image sampled at distance `lag` (lag = 1: the harmonic fill). The
  normal equations `m⊙DᵀD(m⊙x) = −m⊙DᵀD((1 − m)⊙planes)` are solved matrix-free by conjugate gradients with the
  Jacobi preconditioner `diag(DᵀD) = number of in-image neighbours`, starting from 0 (so the masked pixels'
  own values never enter the result), for a fixed number of iterations (no tolerance). The system is
  symmetric positive definite when every connected component of masked pixels (under the lag-`lag`
  neighbourhood) touches a fixed pixel; isolated pixels are solved exactly in one iteration, a component of
  m unknowns in at most m.

  Args:
    planes: float[..., H, W] (one colour plane per leading index).
    mask: bool or 0/1 [..., H, W] broadcastable to `planes`, True = unknown.
    lag: finite-difference distance (static).
    iterations: CG iterations (static).

  Returns:
    float32[..., H, W]: `planes` with the masked pixels replaced by the least-squares fill.
  """
  v = jnp.asarray(planes, jnp.float32)
  m = jnp.broadcast_to(jnp.asarray(mask, jnp.float32), v.shape)
  h, w = v.shape[-2:]
  if lag < 1 or (h <= lag and w <= lag):
    raise ValueError(f"lag must be ≥ 1 and smaller than the image side, got lag {lag} for {h}×{w}")
  inv_deg = 1.0 / jnp.maximum(_lag_degree(h, w, lag), 1.0)
  fixed = (1.0 - m) * v

  def apply_a(x):
    return m * _lag_laplacian(m * x, lag)

  b = -m * _lag_laplacian(fixed, lag)
  x = jnp.zeros_like(v)
  r = b
  z = m * inv_deg * r
  p = z
  rz = _sum_hw(r, z)

  def body(_, carry):
    x, r, p, rz = carry
    ap = apply_a(p)
    alpha = common.safe_div(rz, _sum_hw(p, ap))[..., None, None]
    x = x + alpha * p
    r = r - alpha * ap
    z = m * inv_deg * r
    rz_new = _sum_hw(r, z)
    beta = common.safe_div(rz_new, rz)[..., None, None]
    return x, r, z + beta * p, rz_new

  x, _, _, _ = jax.lax.fori_loop(0, iterations, body, (x, r, p, rz))
  return fixed + m * x


def lattice_masks(height: int, width: int, *, block: int, period: int) -> np.ndarray:
  """The pixel-selector lattice: `(period/block)²` masks of B×B holes repeating with `period`, bool[S, H, W].

  Selector s = (a, b), a, b ∈ [0, period/block), selects the pixels (i, j) with `(i − a·B) mod P < B` and
  `(j − b·B) mod P < B`: B×B blocks whose top-left corners lie on the lattice `(a·B, b·B) + P·ℤ²`. Every pixel is
  selected by exactly one selector (the masks partition the image), in row-major order of (a, b).
  """
  if block < 1 or period < block or period % block:
    raise ValueError(f"period must be a multiple of block ≥ 1, got block {block}, period {period}")
  k = period // block
  i = np.arange(height)[:, None]
  j = np.arange(width)[None, :]
  return np.stack([(((i - a * block) % period) < block) & (((j - b * block) % period) < block)
                   for a in range(k) for b in range(k)])


@functools.partial(jax.jit, static_argnames=("block", "period", "lag", "iterations"))
def inpaint_lattice(planes, *, block: int = 3, period: Optional[int] = None, lag: int = 3,
                    iterations: int = 16) -> jax.Array:
  """Every pixel re-estimated once: each lattice selector's holes inpainted (`inpaint_l2`) from the others.

  For each selector s of `lattice_masks(H, W, block=B, period=P)` the image with the s-holes removed is filled
  by `inpaint_l2`; the output takes each pixel from the one selector that inpainted it, so no output pixel
  depends on its own input value (the PRNU at that pixel is replaced by a prediction from its lag-distance
  neighbours). Selectors are processed sequentially (`lax.scan`) to keep memory at one image.

  Args:
    planes: float[..., H, W].
    block: B, the side of a hole.
    period: P, the lattice period (default 2B: holes separated by B-pixel gaps, 4 selectors).
    lag: finite-difference distance.
    iterations: CG iterations per selector.

  Returns:
    float32[..., H, W].
  """
  v = jnp.asarray(planes, jnp.float32)
  period = 2 * block if period is None else period
  masks = jnp.asarray(lattice_masks(v.shape[-2], v.shape[-1], block=block, period=period))

  def step(acc, mask):
    filled = inpaint_l2(v, mask, lag=lag, iterations=iterations)
    return acc + jnp.where(mask, filled, 0.0), None

  out, _ = jax.lax.scan(step, jnp.zeros_like(v), masks)
  return out


class InpaintingResult(NamedTuple):
  """Output of `inpainting`: `image` float32[N, H, W, 3] in [0, 255]; `block` int32[N]."""
  image: jax.Array
  block: jax.Array


def inpainting(images, *, fingerprint=None, block: int = 3, period: Optional[int] = None, lag: int = 3,
               iterations: int = 16) -> InpaintingResult:
  """Inpainting-based anonymization (Mandelli et al., ICIP 2017), L2 variant, one colour plane at a time.

  The image is partitioned by a lattice of pixel selectors (`lattice_masks`): B×B holes (B = 3 or 5) whose
  top-left corners repeat with period P in both directions, shifted by multiples of B so that the
  (P/B)² selectors cover every pixel exactly once. For each selector its pixels are removed and re-estimated by
  the least-squares fit with lag-`lag` finite differences (`inpaint_l2`, conjugate gradients), independently
  per colour plane; the output pixel is the value from the selector that removed it.

  Lattice period: the paper's value could not be retrieved while writing this; we use P = 2B by default
  (each hole surrounded by a B-pixel frame of fixed pixels, so that with lag ≤ B a hole's differences only
  reach fixed pixels or the hole itself). Any multiple of B larger than B can be passed. With lag = 3 a 3×3
  hole's pixels are independent (each becomes the mean of its four lag-3 neighbours); a 5×5 hole couples
  pixels 3 apart inside the hole, which CG solves exactly within a few iterations.

  PRNU-blind (`fingerprint` is accepted for a uniform registry signature and ignored).

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255].
    block: B, side of the holes.
    period: lattice period (default 2B).
    lag: finite-difference distance (3 in this method).
    iterations: CG iterations per selector.

  Returns:
    `InpaintingResult` (image clipped to [0, 255]).
  """
  del fingerprint
  x = common.check_images(images)
  period = 2 * block if period is None else int(period)
  if period <= block:
    raise ValueError(f"period must exceed block (else no pixel is left to inpaint from), got {period} ≤ {block}")
  planes = jnp.moveaxis(x, -1, 1)  # [N, 3, H, W]
  out = inpaint_lattice(planes, block=int(block), period=period, lag=int(lag), iterations=int(iterations))
  out = jnp.clip(jnp.moveaxis(out, 1, -1), 0.0, 255.0)
  return InpaintingResult(image=out, block=jnp.full((x.shape[0],), block, jnp.int32))
