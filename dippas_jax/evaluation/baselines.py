"""Competing PRNU anonymizers (baselines), batched and jitted, selectable by name.

Every baseline maps photos `uint8 | float[N, H, W, 3]` in [0, 255] (grey-level scale, like the PRNU core) to a
NamedTuple whose `image` is float32[N, H, W, 3] clipped to [0, 255] and whose other fields are the parameters it
chose (per image where it searches). `to_uint8` quantises an output for saving/evaluation.

Quantisation (decided here, and different from the DIPPAS reference on purpose): the DIPPAS reference *floors*
its averaged output (`astype(uint8)`, SPEC §2.11), which biases every pixel by −0.5 grey levels on average
(quantisation MSE 1/3 instead of 1/12 grey level²). The baselines round half to even (`numpy.rint` /
`jnp.round`) after clipping to [0, 255], the unbiased choice; the DIPPAS anonymizer keeps its own floor rule.
The two PRNU-aware baselines search α on the rounded image by default (`quantize=True`), because on real
photos the change that cancels the NCC is smaller than one grey level and rounding would undo it.

| name | PRNU-aware | method |
|---|---|---|
| `adaptive_prnu_removal` | yes (K) | Karaküçük & Dirik style: `J = I − α·F(I)·K`, α ≥ 0 by Illinois regula falsi |
| `fingerprint_subtraction` | yes (K) | Zeng et al. (ICIP 2015): `J = I − α·I·K`, α by a bracketed secant search |
| `wavelet_denoising` | no | n passes of `J ← denoise.denoise(J)` (the Mihcak wavelet denoiser) |
| `inpainting` | no | Mandelli et al. (ICIP 2017), L2: lattice of B×B holes, lag-3 least-squares fill (CG) |

`dippas_naive` (main_4: the single DIP iterate of smallest |NCC| with PSNR ≥ τ) and `dippas` (block assembly with
(B, L, τ)) are produced by `dippas_jax.anonymize`, not here; an evaluation command adds them next to
`BASELINES` under those names.

The α searches have a fixed iteration count and are vectorised over the batch (each image has its own
bracket); each step is jitted, and the wavelet denoiser / residual extractor are called as the shared jitted
`denoise` functions (compiled once per shape for the process) rather than re-traced inside our own jits.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics

__all__ = [
    "BASELINES",
    "AdaptiveRemovalResult",
    "DenoisingResult",
    "InpaintingResult",
    "SubtractionResult",
    "adaptive_prnu_removal",
    "fingerprint_subtraction",
    "get_baseline",
    "inpaint_l2",
    "inpaint_lattice",
    "inpainting",
    "lattice_masks",
    "to_uint8",
    "wavelet_denoising",
]


# ---------------------------------------------------------------------------------------------------- helpers
def to_uint8(image) -> jax.Array:
  """Quantises images in [0, 255] to uint8: clip to [0, 255], then round half to even (= `np.rint`).

  Args:
    image: float[..., H, W, C] (any shape) on the grey-level scale.

  Returns:
    uint8 array of the same shape (a jax array; `np.asarray` it to save a PNG).
  """
  x = jnp.asarray(image, jnp.float32)
  return jnp.round(jnp.clip(x, 0.0, 255.0)).astype(jnp.uint8)


def _check_images(images) -> jax.Array:
  x = jnp.asarray(images)
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"images must have shape [N, H, W, 3] (uint8 or float in [0, 255]), got {tuple(x.shape)}")
  return x.astype(jnp.float32)


def _check_fingerprint(fingerprint, images: jax.Array) -> jax.Array:
  if fingerprint is None:
    raise ValueError("this baseline is PRNU-aware: pass fingerprint=float[H, W] (or [N, H, W]), the device K")
  k = jnp.asarray(fingerprint, jnp.float32)
  hw = tuple(images.shape[1:3])
  if k.ndim not in (2, 3) or tuple(k.shape[-2:]) != hw or (k.ndim == 3 and k.shape[0] != images.shape[0]):
    raise ValueError(f"fingerprint must have shape {hw} or {(images.shape[0],) + hw} to match images "
                     f"{tuple(images.shape)}, got {tuple(k.shape)}")
  return jnp.broadcast_to(k, images.shape[:3])


def _unit_std(k: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(K / std(K), std(K))` per image (std over H, W; a constant K gets std 1 so nothing divides by 0)."""
  std = jnp.std(k, axis=(-2, -1), keepdims=True)
  std = jnp.where(std > 0, std, 1.0)
  return k / std, std[..., 0, 0]


def _safe_div(a, b):
  ok = b != 0
  return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)


# ------------------------------------------------------------------------------------------ PRNU-aware removal
class AdaptiveRemovalResult(NamedTuple):
  """Output of `adaptive_prnu_removal`.

  Attributes:
    image: float32[N, H, W, 3] in [0, 255], `J = clip(I − α·F(I)·K)` (integer-valued when `quantize`).
    alpha: float32[N], the chosen α ≥ 0 in the units of the given fingerprint K.
    beta: float32[N], the same strength for the unit-std fingerprint, `β = α·std(K)` (a relative, physical
      PRNU amplitude: β = 0.01 subtracts a 1 % multiplicative pattern).
    ncc: float32[N], the Eq. 2 NCC of the output J with K (the search target, ≈ 0).
    ncc_original: float32[N], the same for the input image (α = 0).
  """
  image: jax.Array
  alpha: jax.Array
  beta: jax.Array
  ncc: jax.Array
  ncc_original: jax.Array


class SubtractionResult(NamedTuple):
  """Output of `fingerprint_subtraction` (fields as in `AdaptiveRemovalResult`; α may be negative here)."""
  image: jax.Array
  alpha: jax.Array
  beta: jax.Array
  ncc: jax.Array
  ncc_original: jax.Array


@jax.jit
def _eq2(residual, images, k):
  return metrics.ncc_eq2(residual, images, k)


def _ncc_of(images: jax.Array, k: jax.Array, sigma: float) -> jax.Array:
  """Eq. 2 NCC of float32 images with K. `denoise.extract_residual` is called on its own (not inside another
  jit), so its compilation for a shape is shared by every caller in the process."""
  return _eq2(denoise.extract_residual(images, sigma=sigma), images, k)


@functools.partial(jax.jit, static_argnames=("quantize",))
def _apply(x, pattern, beta, *, quantize):
  """`clip(x − β·pattern, 0, 255)` with one β per image, rounded half to even when `quantize`."""
  out = jnp.clip(x - beta[:, None, None, None] * pattern, 0.0, 255.0)
  return jnp.round(out) if quantize else out


@jax.jit
def _pattern(base, k):
  """`(base ⊙ K̂, std(K))` with K̂ = K / std(K) per image, broadcast over the colour channels."""
  k_unit, k_std = _unit_std(k)
  return base * k_unit[..., None], k_std


@jax.jit
def _illinois_init(lo, hi, f_lo, f_hi):
  best = jnp.where(jnp.abs(f_hi) < jnp.abs(f_lo), hi, lo)
  return lo, hi, f_lo, f_hi, jnp.zeros(f_lo.shape, jnp.int32), best, jnp.minimum(jnp.abs(f_lo), jnp.abs(f_hi))


@jax.jit
def _illinois_point(lo, hi, f_lo, f_hi):
  """The secant point of the bracket, clipped into it."""
  return jnp.clip(lo - f_lo * _safe_div(hi - lo, f_hi - f_lo), lo, hi)


@jax.jit
def _illinois_update(state, mid, f_mid):
  """One Illinois step: `mid` replaces the bracket end whose f has its sign (f > 0 at lo, ≤ 0 at hi); the end
  kept twice in a row has its f halved. Tracks the evaluated point of smallest |f|."""
  lo, hi, f_lo, f_hi, side, best, f_best = state
  go_hi = f_mid > 0  # The root lies in [mid, hi]: mid becomes the new lo.
  new_f_lo = jnp.where(go_hi, f_mid, jnp.where(side == -1, f_lo * 0.5, f_lo))
  new_f_hi = jnp.where(go_hi, jnp.where(side == 1, f_hi * 0.5, f_hi), f_mid)
  better = jnp.abs(f_mid) < f_best
  return (jnp.where(go_hi, mid, lo), jnp.where(go_hi, hi, mid), new_f_lo, new_f_hi,
          jnp.where(go_hi, 1, -1).astype(jnp.int32), jnp.where(better, mid, best),
          jnp.where(better, jnp.abs(f_mid), f_best))


def _illinois_search(f, lo, hi, f_lo, f_hi, iterations: int) -> jax.Array:
  """Root of a decreasing f on per-image brackets [lo, hi] (f(lo) > 0 ≥ f(hi)) by `iterations` Illinois steps.

  Returns the evaluated point with the smallest |f|; where the bracket holds no sign change, the end with the
  smaller |f|.
  """
  state = _illinois_init(lo, hi, f_lo, f_hi)
  for _ in range(int(iterations)):
    mid = _illinois_point(*state[:4])
    state = _illinois_update(state, mid, f(mid))
  bracketed = (f_lo > 0) & (f_hi <= 0)
  return jnp.where(bracketed, state[5], jnp.where(jnp.abs(f_hi) < jnp.abs(f_lo), hi, lo)).astype(jnp.float32)


def adaptive_prnu_removal(images, *, fingerprint, sigma: float = 3.0, denoiser_sigma: float = 3.0,
                          beta_max: float = 0.2, iterations: int = 12,
                          quantize: bool = True) -> AdaptiveRemovalResult:
  """PRNU-aware adaptive removal (Karaküçük & Dirik style): `J = I − α·F(I)·K` with α ≥ 0 per image.

  F(I) is our denoised image (`denoise.denoise(I, sigma=denoiser_sigma)`, the image without its wavelet
  noise, i.e. the best estimate of the PRNU-free scene that multiplies K in the sensor model `I ≈ I⁰(1 + K)`);
  K is the device fingerprint, the same for the three colour channels. The result is clipped to [0, 255].

  The search (exactly): K is first normalised to unit standard deviation, `K̂ = K / std(K)`, because
  fingerprints come at very different scales (prnu-python / Binghamton fingerprints have std ≈ 0.3–0.5 in
  grey-level units, the physical PRNU of the synthetic camera ≈ 0.02); the search variable is `β = α·std(K)` on
  a *linear* scale, the relative amplitude of the subtracted pattern. With

      f(β) = NCC_Eq2( W(J_β), gray(J_β) ⊙ K ),   J_β = Q(clip(I − β·F(I)·K̂, 0, 255)),
      W = denoise.extract_residual(·, sigma=sigma),   Q = `to_uint8` rounding when `quantize` (else identity),

  - if f(0) ≤ 0 the image already carries no positive PRNU correlation: β = 0 (the image is returned
    unchanged; α ≥ 0 by definition of the method);
  - if f(beta_max) > 0 the bracket holds no root: β = beta_max (the strongest allowed removal; `ncc` shows
    how far from 0 it stayed);
  - otherwise `iterations` steps of the Illinois variant of regula falsi on the bracket [0, beta_max] (the
    secant point of the bracket replaces the end with the same sign of f; an end kept twice in a row has its
    f halved, which guarantees superlinear convergence), and β is the evaluated point with the smallest |f|.
    Without quantisation f is close to linear in β and a few steps bring |f| to ~1e-6; with it f is a fine
    staircase and the result lands within a few 1e-4 of 0 (the non-matching band of real 512² crops is
    ±1e-3). No tolerance stops the loop early: every image of the batch runs the same fixed count.

  Why quantise inside the search (default): on real photos the fingerprint-aligned change needed to cancel
  the NCC is tiny (β ≈ 1e-4–1e-3, i.e. ≈ 0.1 grey level), so rounding the float result to uint8 would undo
  it and the saved image would keep the original NCC. Searching on the quantised image makes the NCC of
  the *saved* image ≈ 0; `image` is then integer-valued (`to_uint8(image)` is exact).

  Every step is a jitted function of the whole batch (each image has its own bracket); the fixed-count loop
  runs on the host so that the residual extractor (`denoise.extract_residual`) is compiled once per shape for
  the whole process instead of once more inside this search. Cost: `iterations + 3` residual extractions and
  one denoising of the batch.

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255].
    fingerprint: float[H, W] (one device) or float[N, H, W] (one per image), the device K.
    sigma: residual denoiser σ of the NCC (DIPPAS uses 3).
    denoiser_sigma: σ of the wavelet denoiser F.
    beta_max: upper end of the β bracket (relative amplitude; 0.2 = 20 % of the signal per std of K).
    iterations: Illinois steps.
    quantize: search and return the rounded image (see above); False searches on the float image.

  Returns:
    `AdaptiveRemovalResult`.
  """
  x = _check_images(images)
  k = _check_fingerprint(fingerprint, x)
  if beta_max <= 0 or iterations < 1:
    raise ValueError(f"need beta_max > 0 and iterations ≥ 1, got {beta_max}, {iterations}")
  pattern, k_std = _pattern(denoise.denoise(x, sigma=float(denoiser_sigma)), k)
  quantize = bool(quantize)

  def f(beta):
    return _ncc_of(_apply(x, pattern, beta, quantize=quantize), k, sigma)

  n = x.shape[0]
  lo, hi = jnp.zeros((n,), jnp.float32), jnp.full((n,), beta_max, jnp.float32)
  f0 = f(lo)
  beta = _illinois_search(f, lo, hi, f0, f(hi), iterations)
  beta = jnp.where(f0 <= 0, 0.0, beta)  # α ≥ 0: nothing to remove when the NCC is not positive.
  out = _apply(x, pattern, beta, quantize=quantize)
  return AdaptiveRemovalResult(image=out, alpha=beta / k_std, beta=beta, ncc=_ncc_of(out, k, sigma),
                               ncc_original=f0)


def fingerprint_subtraction(images, *, fingerprint, sigma: float = 3.0, beta_max: float = 0.2,
                            iterations: int = 12, quantize: bool = True) -> SubtractionResult:
  """Fingerprint subtraction (Zeng et al., ICIP 2015): `J = I − α·I·K`, α by a secant search to NCC = 0.

  The model `I = I⁰(1 + K)` gives `I⁰ ≈ I − I·K`; the strength α is tuned per image so that the Eq. 2 NCC of
  the result with K vanishes. As in `adaptive_prnu_removal`, K is normalised to unit std and the search
  variable is `β = α·std(K)`, with `f(β) = NCC_Eq2(W(J_β), gray(J_β) ⊙ K)`, `J_β = Q(clip(I − β·I·K̂, 0, 255))`
  and Q the rounding to integers when `quantize` (default; see `adaptive_prnu_removal` for why).

  The search (exactly): a *bracketed* secant — regula falsi with the Illinois modification, the same
  iteration as `adaptive_prnu_removal` — on [0, beta_max] when f(0) > 0 and on [−beta_max, 0] otherwise (α is
  signed here: an image whose NCC is already negative gets the pattern added), `iterations` steps, no early
  stop; β is the evaluated point with the smallest |f| (the bracket end with the smaller |f| when the bracket
  holds no sign change). Why not the plain two-point secant: on quantised real photos f(β) is flat up to
  β ≈ 1e-3 (no pixel flips) and then falls steeply (to −0.46 at β = 0.01 on a Dresden crop), and the
  unbracketed secant from (0, 0.01) stalls on the flat part near 0 and never reaches the root.
  Cost: `iterations + 2` residual extractions.

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255].
    fingerprint: float[H, W] or float[N, H, W], the device K.
    sigma: residual denoiser σ of the NCC.
    beta_max: half-width of the β range searched (relative amplitude).
    iterations: Illinois steps.
    quantize: search and return the rounded image.

  Returns:
    `SubtractionResult` (α in the units of the given K, β = α·std(K)).
  """
  x = _check_images(images)
  k = _check_fingerprint(fingerprint, x)
  if beta_max <= 0 or iterations < 1:
    raise ValueError(f"need beta_max > 0 and iterations ≥ 1, got {beta_max}, {iterations}")
  pattern, k_std = _pattern(x, k)
  quantize = bool(quantize)

  def f(beta):
    return _ncc_of(_apply(x, pattern, beta, quantize=quantize), k, sigma)

  n = x.shape[0]
  zero = jnp.zeros((n,), jnp.float32)
  f0 = f(zero)
  positive = f0 > 0
  other = jnp.where(positive, beta_max, -beta_max).astype(jnp.float32)
  f_other = f(other)
  lo, hi = jnp.where(positive, zero, other), jnp.where(positive, other, zero)
  f_lo, f_hi = jnp.where(positive, f0, f_other), jnp.where(positive, f_other, f0)
  beta = _illinois_search(f, lo, hi, f_lo, f_hi, iterations)
  out = _apply(x, pattern, beta, quantize=quantize)
  return SubtractionResult(image=out, alpha=beta / k_std, beta=beta, ncc=_ncc_of(out, k, sigma),
                           ncc_original=f0)


# ---------------------------------------------------------------------------------------------- PRNU-blind
class DenoisingResult(NamedTuple):
  """Output of `wavelet_denoising`: `image` float32[N, H, W, 3] in [0, 255]; `passes` int32[N]."""
  image: jax.Array
  passes: jax.Array


def wavelet_denoising(images, *, fingerprint=None, passes: int = 1, sigma: float = 3.0,
                      levels: int = 4) -> DenoisingResult:
  """Repeated wavelet denoising: `passes` times `J ← clip(denoise.denoise(J, sigma=sigma), 0, 255)`.

  PRNU-blind (`fingerprint` is accepted for a uniform registry signature and ignored). The evaluation sweeps
  `passes ∈ {1, 2, 3}`; the output stays in float between passes (quantise once at the end with `to_uint8`).

  The NCC is scale-free, so denoising only helps once it removes the PRNU-bearing noise rather than shrinking
  it: where σ is far below the sensor noise the residual keeps its direction and the NCC barely moves (the
  synthetic camera, noise std ≈ 6: σ = 3 leaves the NCC at 0.26; σ = 10 × 2 passes brings it to ≈ 0.01 at
  ≈ 28 dB). On the Dresden 512² crops one pass at σ = 3 lowers the NCC from 0.032 to 0.0075 at ≈ 44 dB.

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255].
    passes: number of denoising passes (≥ 1).
    sigma: denoiser noise std in grey levels.
    levels: wavelet decomposition levels.
  """
  del fingerprint
  x = _check_images(images)
  if passes < 1:
    raise ValueError(f"passes must be ≥ 1, got {passes}")
  out = x
  for _ in range(int(passes)):
    out = jnp.clip(denoise.denoise(out, levels=int(levels), sigma=float(sigma)), 0.0, 255.0)
  return DenoisingResult(image=out, passes=jnp.full((x.shape[0],), passes, jnp.int32))


# ---------------------------------------------------------------------------------------------- inpainting
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
    alpha = _safe_div(rz, _sum_hw(p, ap))[..., None, None]
    x = x + alpha * p
    r = r - alpha * ap
    z = m * inv_deg * r
    rz_new = _sum_hw(r, z)
    beta = _safe_div(rz_new, rz)[..., None, None]
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
  x = _check_images(images)
  period = 2 * block if period is None else int(period)
  if period <= block:
    raise ValueError(f"period must exceed block (else no pixel is left to inpaint from), got {period} ≤ {block}")
  planes = jnp.moveaxis(x, -1, 1)  # [N, 3, H, W]
  out = inpaint_lattice(planes, block=int(block), period=period, lag=int(lag), iterations=int(iterations))
  out = jnp.clip(jnp.moveaxis(out, 1, -1), 0.0, 255.0)
  return InpaintingResult(image=out, block=jnp.full((x.shape[0],), block, jnp.int32))


# ------------------------------------------------------------------------------------------------- registry
BASELINES: dict[str, Callable[..., NamedTuple]] = {
    "adaptive_prnu_removal": adaptive_prnu_removal,
    "fingerprint_subtraction": fingerprint_subtraction,
    "wavelet_denoising": wavelet_denoising,
    "inpainting": inpainting,
}
"""Baselines by name. Each is `fn(images, *, fingerprint=None | K, **options) -> NamedTuple` with a float32
`image` field in [0, 255]. PRNU-aware ones require `fingerprint`. `dippas_naive` and `dippas` live in
`dippas_jax.anonymize`."""


def get_baseline(name: str) -> Callable[..., NamedTuple]:
  """The baseline function registered as `name` (see `BASELINES`)."""
  if name not in BASELINES:
    raise ValueError(f"Unsupported baseline {name!r}; expected one of {sorted(BASELINES)} "
                     "('dippas' and 'dippas_naive' come from dippas_jax.anonymize)")
  return BASELINES[name]
