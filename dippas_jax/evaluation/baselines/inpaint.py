"""PRNU-blind baseline: inpainting-based anonymization (Mandelli et al., ICIP 2017), the L2 variant, with the
edge restoration of its published pipeline (the authors' MATLAB code, github.com/polimi-ispl/image-anonymization):

1. every pixel is re-estimated from its neighbours: a lattice of B×B holes (pixel selectors) with period
   P = max(ceil(2(δ+1)/B)·B, 2B) (δ = 3, the finite-difference lag: P = 9 for B = 3, 10 for B = 5), each selector's
   holes filled by least squares on lag-δ differences (`inpaint_lattice`);
2. the edges, where inpainting blurs, are put back from a denoised original (`restore_edges`): two passes of
   colour BM3D (σ = 7 grey levels) where the optional `bm3d` package is installed, else two passes of our
   wavelet denoiser (σ = 7); edges by Canny with MATLAB's automatic thresholds (σ = √2) on that denoised image,
   dilated by a disk of radius 3. The denoiser that ran is part of the result.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.evaluation import edges
from dippas_jax.evaluation.baselines import common
from dippas_jax.prnu import denoise

DENOISERS = ("auto", "bm3d", "wavelet")


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
    period: P, the lattice period (default `lattice_period(B, lag)`).
    lag: finite-difference distance.
    iterations: CG iterations per selector.

  Returns:
    float32[..., H, W].
  """
  v = jnp.asarray(planes, jnp.float32)
  period = lattice_period(block, lag) if period is None else period
  masks = jnp.asarray(lattice_masks(v.shape[-2], v.shape[-1], block=block, period=period))

  def step(acc, mask):
    filled = inpaint_l2(v, mask, lag=lag, iterations=iterations)
    return acc + jnp.where(mask, filled, 0.0), None

  out, _ = jax.lax.scan(step, jnp.zeros_like(v), masks)
  return out


def lattice_period(block: int, lag: int = 3) -> int:
  """The authors' selector period: P = max(ceil(2(lag + 1)/B)·B, 2B), a multiple of B that leaves every hole a
  frame of fixed pixels at least lag + 1 wide (9 for B = 3, 10 for B = 5 at lag 3)."""
  return max(math.ceil(2 * (lag + 1) / block) * block, 2 * block)


def edge_denoiser(name: str = "auto") -> str:
  """The edge-restoration denoiser that will run: 'bm3d' (the optional `bm3d` package, as the authors) or
  'wavelet'; 'auto' picks BM3D when it is installed."""
  if name not in DENOISERS:
    raise ValueError(f"Unsupported denoiser {name!r}; expected one of {DENOISERS}")
  if name != "auto":
    return name
  try:
    import bm3d  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
    return "bm3d"
  except ImportError:
    return "wavelet"


@functools.lru_cache(maxsize=64)
def _bm3d_twice(image_bytes: bytes, shape: tuple[int, ...], sigma: float) -> np.ndarray:
  """Two passes of colour BM3D on one image (cached: the evaluation restores edges of the same photos for every
  block size, and BM3D takes tens of seconds per 512² photo on a CPU)."""
  import bm3d  # pylint: disable=g-import-not-at-top
  out = np.frombuffer(image_bytes, np.float32).reshape(shape) / 255.0
  for _ in range(2):
    out = np.clip(bm3d.bm3d_rgb(out, sigma / 255.0), 0.0, 1.0)
  return (255.0 * out).astype(np.float32)


def denoise_twice(images, *, denoiser: str, sigma: float = 7.0) -> np.ndarray:
  """Two passes of a denoiser (`edge_denoiser` name, σ in grey levels): float32[N, H, W, 3] in [0, 255]."""
  x = np.asarray(images, np.float32)
  if denoiser == "bm3d":
    return np.stack([_bm3d_twice(im.tobytes(), im.shape, float(sigma)) for im in x])
  out = jnp.asarray(x)
  for _ in range(2):
    out = jnp.clip(denoise.denoise(out, sigma=float(sigma)), 0.0, 255.0)
  return np.asarray(out, np.float32)


def restore_edges(original, inpainted, *, denoiser: str = "auto", sigma: float = 7.0,
                  radius: int = 3) -> tuple[np.ndarray, np.ndarray, str]:
  """The authors' edge reconstruction: the dilated Canny edges of a twice-denoised original replace the
  inpainted pixels there (module docstring).

  Args:
    original: uint8 or float[N, H, W, 3] in [0, 255], the photos.
    inpainted: float[N, H, W, 3], `inpaint_lattice`'s output.
    denoiser: 'auto', 'bm3d' or 'wavelet' (`edge_denoiser`); sigma: its σ in grey levels; radius: dilation.

  Returns:
    (image float32[N, H, W, 3], edge mask bool[N, H, W], the denoiser that ran).
  """
  name = edge_denoiser(denoiser)
  clean = denoise_twice(original, denoiser=name, sigma=sigma)
  mask = edges.edge_mask(clean, radius=radius, canny_sigma=math.sqrt(2.0), denoiser_sigma=0.0,
                         auto_thresholds=True)
  return np.where(mask[..., None], clean, np.asarray(inpainted, np.float32)), mask, name


class InpaintingResult(NamedTuple):
  """Output of `inpainting`: `image` float32[N, H, W, 3] in [0, 255]; `block` int32[N]; `edge_fraction`
  float32[N] (share of pixels restored from the denoised original; 0 without edge restoration); `denoiser`:
  the edge-restoration denoiser that ran ('bm3d', 'wavelet' or 'none')."""
  image: jax.Array
  block: jax.Array
  edge_fraction: jax.Array
  denoiser: str


def inpainting(images, *, fingerprint=None, block: int = 3, period: Optional[int] = None, lag: int = 3,
               iterations: int = 16, edge_restoration: bool = True, denoiser: str = "auto",
               denoiser_sigma: float = 7.0) -> InpaintingResult:
  """Inpainting-based anonymization (Mandelli et al., ICIP 2017), L2 variant, one colour plane at a time, with
  the authors' edge restoration (module docstring).

  The image is partitioned by a lattice of pixel selectors (`lattice_masks`): B×B holes (B = 3 or 5) whose
  top-left corners repeat with period P in both directions, shifted by multiples of B so that the
  (P/B)² selectors cover every pixel exactly once. For each selector its pixels are removed and re-estimated by
  the least-squares fit with lag-`lag` finite differences (`inpaint_l2`, conjugate gradients; the authors use
  LSQR on the same normal equations), independently per colour plane; the output pixel is the value from the
  selector that removed it. Then, with `edge_restoration`, `restore_edges`.

  PRNU-blind (`fingerprint` is accepted for a uniform registry signature and ignored).

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255].
    block: B, side of the holes.
    period: lattice period (default `lattice_period(B, lag)`, the authors').
    lag: finite-difference distance (3 in this method).
    iterations: CG iterations per selector.
    edge_restoration: put the denoised original's edges back (the published method; False = an ablation).
    denoiser, denoiser_sigma: the edge restoration's denoiser ('auto', 'bm3d', 'wavelet') and its σ.

  Returns:
    `InpaintingResult` (image clipped to [0, 255]).
  """
  del fingerprint
  x = common.check_images(images)
  period = lattice_period(int(block), int(lag)) if period is None else int(period)
  if period <= block:
    raise ValueError(f"period must exceed block (else no pixel is left to inpaint from), got {period} ≤ {block}")
  planes = jnp.moveaxis(x, -1, 1)  # [N, 3, H, W]
  out = inpaint_lattice(planes, block=int(block), period=period, lag=int(lag), iterations=int(iterations))
  out = jnp.clip(jnp.moveaxis(out, 1, -1), 0.0, 255.0)
  fraction = np.zeros(x.shape[0], np.float32)
  name = "none"
  if edge_restoration:
    out, mask, name = restore_edges(np.asarray(x), out, denoiser=denoiser, sigma=denoiser_sigma)
    fraction = mask.reshape(len(mask), -1).mean(axis=1).astype(np.float32)
  return InpaintingResult(image=jnp.asarray(out), block=jnp.full((x.shape[0],), block, jnp.int32),
                          edge_fraction=jnp.asarray(fraction), denoiser=name)
