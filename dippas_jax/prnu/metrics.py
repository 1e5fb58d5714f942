"""Correlation metrics for PRNU forensics: NCC (DIPPAS Eq. 2), block NCC, aligned scores, cross-correlation, PCE, PSNR.

All public functions are jitted `jax.numpy` code (keyword-only configuration arguments such as `block_size`,
`neigh_radius`, `mode` and `shift_range` are static: a new value compiles a new version); they compose with an
outer `jax.jit` and `jax.vmap`, and they are batched over any leading axes. Argument errors raise `ValueError` at
trace time. Shapes use the project vocabulary: N images, M fingerprints, H, W, C.

Precision: inputs are promoted to at least float32 (uint8 images become float32 before any difference), every
contraction is computed with `precision=jax.lax.Precision.HIGHEST` (so GPUs do not fall back to TF32), and
results are returned as float32. Under `jax.experimental.enable_x64` float64 inputs are computed in float64 and
only the result is rounded to float32.

Conventions shared with prnu-python (SPEC §1.11-§1.13):
- NCC is the *uncentred* cosine similarity (no mean removal). There is no epsilon: a zero norm gives NaN (0/0),
  exactly like prnu-python's `aligned_cc` and the DIPPAS block NCC. Use `pearson` for the centred version.
- `crosscorr_2d` places zero lag at (H-1, W-1).
- `pce` has a `legacy` mode that reproduces prnu-python's `pce` and a `standard` mode (the default) with a
  symmetric, wrap-around exclusion neighbourhood; see its docstring.
"""

from __future__ import annotations

import functools
import operator
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from dippas_jax.prnu.denoise import rgb2gray

__all__ = [
    "CosineScores",
    "PceResult",
    "block_ncc",
    "cosine_scores",
    "crosscorr_2d",
    "ncc",
    "ncc_eq2",
    "pce",
    "pearson",
    "psnr",
]

_HIGHEST = jax.lax.Precision.HIGHEST
_PCE_MODES = ("standard", "legacy")


class CosineScores(NamedTuple):
  """Aligned (zero-shift) scores between M fingerprints and N residuals (= prnu-python `aligned_cc`).

  Attributes:
    cc: float32[M, N], the raw inner products <k_m, w_n> (what prnu-python's example scores).
    ncc: float32[M, N], cc / (||k_m|| ||w_n||); NaN where a norm is 0.
  """

  cc: jax.Array
  ncc: jax.Array


class PceResult(NamedTuple):
  """Peak-to-correlation energy of cross-correlation maps, with the peak found.

  Attributes:
    pce: float32[...], sign(P) * P**2 / E.
    peak_y: int32[...], row of the peak in the map (zero lag is row H-1).
    peak_x: int32[...], column of the peak in the map (zero lag is column W-1).
    peak: float32[...], P = the map value at the peak (the maximum, not the maximum absolute value).
  """

  pce: jax.Array
  peak_y: jax.Array
  peak_x: jax.Array
  peak: jax.Array


def _as_float(x) -> jax.Array:
  """Converts to a floating array of at least float32 precision (uint8 -> float32, float64 kept under x64)."""
  x = jnp.asarray(x)
  if jnp.issubdtype(x.dtype, jnp.complexfloating):
    raise ValueError(f"expected a real array, got dtype {x.dtype}")
  if jnp.issubdtype(x.dtype, jnp.floating):
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))
  return x.astype(jnp.float32)


def _require_ndim(x: jax.Array, ndim: int, name: str, what: str) -> None:
  if x.ndim < ndim:
    raise ValueError(f"{name} must have shape {what} (at least {ndim} axes), got shape {tuple(x.shape)}")


def _broadcast_pair(a: jax.Array, b: jax.Array, fn: str) -> tuple[jax.Array, jax.Array]:
  try:
    shape = jnp.broadcast_shapes(a.shape, b.shape)
  except ValueError:
    raise ValueError(
        f"{fn}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast; the last two axes (H, W) must "
        "match and leading axes must broadcast") from None
  return jnp.broadcast_to(a, shape), jnp.broadcast_to(b, shape)


def _cosine_last_axis(a: jax.Array, b: jax.Array) -> jax.Array:
  """Uncentred cosine over the last axis of two same-shape arrays; NaN when a norm is 0."""
  cc = jnp.einsum("...k,...k->...", a, b, precision=_HIGHEST)
  norm_a = jnp.sqrt(jnp.einsum("...k,...k->...", a, a, precision=_HIGHEST))
  norm_b = jnp.sqrt(jnp.einsum("...k,...k->...", b, b, precision=_HIGHEST))
  return (cc / (norm_a * norm_b)).astype(jnp.float32)


@jax.jit
def ncc(a, b) -> jax.Array:
  """Uncentred normalized cross-correlation (cosine similarity) over the last two axes.

  `ncc(a, b) = sum(a * b) / (sqrt(sum(a**2)) * sqrt(sum(b**2)))`, sums over (H, W). No mean is removed (this is
  the definition of prnu-python's `aligned_cc` and of DIPPAS Eq. 2). As in the reference there is no epsilon:
  if either map is all zeros the result is NaN (0/0), which callers can test with `jnp.isnan`.

  Args:
    a: float[..., H, W].
    b: float[..., H, W]; leading axes broadcast against `a`'s (e.g. residuals [N, H, W] against one map [H, W]).

  Returns:
    float32[...] with the broadcast leading shape.
  """
  a, b = _as_float(a), _as_float(b)
  _require_ndim(a, 2, "a", "[..., H, W]")
  _require_ndim(b, 2, "b", "[..., H, W]")
  a, b = _broadcast_pair(a, b, "ncc")
  lead = a.shape[:-2]
  return _cosine_last_axis(a.reshape(lead + (-1,)), b.reshape(lead + (-1,)))


@jax.jit
def ncc_eq2(residual, images, fingerprint) -> jax.Array:
  """DIPPAS Eq. 2: NCC(W, gray(I) * K), the uncentred cosine between a residual and the expected PRNU term.

  Args:
    residual: float[N, H, W], noise residuals W of the images (e.g. `denoise.extract_residual`).
    images: float or uint8 [N, H, W, 3] (or [..., H, W, 1]); any intensity scale works because the cosine is
      scale-free (the reference uses gray levels in [0, 255]). Converted with `denoise.rgb2gray`.
    fingerprint: float[H, W] (one camera) or float[N, H, W] (one per image), the PRNU K.

  Leading axes of the three arguments broadcast, so any batch shape works in place of [N].

  Returns:
    float32[N]; NaN where W or gray(I) * K is all zeros.
  """
  images = _as_float(images)
  residual = _as_float(residual)
  fingerprint = _as_float(fingerprint)
  _require_ndim(images, 3, "images", "[N, H, W, 3]")
  _require_ndim(residual, 2, "residual", "[N, H, W]")
  _require_ndim(fingerprint, 2, "fingerprint", "[H, W] or [N, H, W]")
  if images.shape[-1] not in (1, 3):
    raise ValueError(f"images must have 3 (RGB) or 1 channels in the last axis, got shape {tuple(images.shape)}")
  hw = tuple(images.shape[-3:-1])
  if tuple(residual.shape[-2:]) != hw or tuple(fingerprint.shape[-2:]) != hw:
    raise ValueError(
        f"ncc_eq2: spatial sizes differ: residual {tuple(residual.shape)}, images {tuple(images.shape)}, "
        f"fingerprint {tuple(fingerprint.shape)}; all must share (H, W) = {hw}")
  return ncc(residual, rgb2gray(images) * fingerprint)


@jax.jit
def pearson(a, b) -> jax.Array:
  """Centred (Pearson) correlation over the last two axes: `ncc` after removing each map's mean.

  Args:
    a, b: float[..., H, W] with broadcastable leading axes.

  Returns:
    float32[...]; NaN where a map is constant.
  """
  a, b = _as_float(a), _as_float(b)
  _require_ndim(a, 2, "a", "[..., H, W]")
  _require_ndim(b, 2, "b", "[..., H, W]")
  a = a - jnp.mean(a, axis=(-2, -1), keepdims=True)
  b = b - jnp.mean(b, axis=(-2, -1), keepdims=True)
  return ncc(a, b)


def common_divisors(h: int, w: int) -> list[int]:
  return [d for d in range(1, min(h, w) + 1) if h % d == 0 and w % d == 0]


@functools.partial(jax.jit, static_argnames="block_size")
def block_ncc(a, b, *, block_size: int) -> jax.Array:
  """Uncentred NCC of every non-overlapping `block_size` x `block_size` block (DIPPAS main_2, SPEC §2.10).

  Blocks are numbered in row-major order: block `r * (W // B) + c` covers rows `[r*B, (r+1)*B)` and columns
  `[c*B, (c+1)*B)`. Computed with reshapes (no loops). `block_size == H == W` gives the whole-image `ncc`.
  A block where either input is all zeros gives NaN (as in the reference).

  Args:
    a: float[..., H, W] (e.g. residuals W).
    b: float[..., H, W] (e.g. gray(I) * K); leading axes broadcast.
    block_size: B, a Python int dividing both H and W (static under jit).

  Returns:
    float32[..., (H // B) * (W // B)].

  Raises:
    ValueError: if B does not divide H and W (the message lists the sizes that do).
  """
  a, b = _as_float(a), _as_float(b)
  _require_ndim(a, 2, "a", "[..., H, W]")
  _require_ndim(b, 2, "b", "[..., H, W]")
  a, b = _broadcast_pair(a, b, "block_ncc")
  h, w = a.shape[-2:]
  try:
    bs = operator.index(block_size)
  except TypeError:
    raise ValueError(f"block_size must be a Python int, got {block_size!r}") from None
  if bs <= 0 or h % bs or w % bs:
    raise ValueError(
        f"block_size={bs} must be a positive divisor of both H={h} and W={w}; "
        f"sizes that work: {common_divisors(h, w)}")
  lead = a.shape[:-2]
  nh, nw = h // bs, w // bs

  def to_blocks(x):
    x = x.reshape(lead + (nh, bs, nw, bs))
    x = jnp.swapaxes(x, -3, -2)  # [..., nh, nw, B, B]
    return x.reshape(lead + (nh * nw, bs * bs))

  return _cosine_last_axis(to_blocks(a), to_blocks(b))


@jax.jit
def cosine_scores(k, w) -> CosineScores:
  """All-pairs aligned scores between fingerprints and residuals (= prnu-python `aligned_cc`).

  No mean is removed and no shift is searched: `cc[m, n] = <k_m, w_n>` and `ncc = cc / (||k_m|| ||w_n||)`.

  Args:
    k: float[M, H, W] (any trailing shape; flattened after the first axis).
    w: float[N, H, W] (same trailing shape as `k`).

  Returns:
    CosineScores(cc float32[M, N], ncc float32[M, N]); ncc is NaN where a norm is 0.
  """
  k, w = _as_float(k), _as_float(w)
  _require_ndim(k, 2, "k", "[M, H, W]")
  _require_ndim(w, 2, "w", "[N, H, W]")
  if tuple(k.shape[1:]) != tuple(w.shape[1:]):
    raise ValueError(
        f"cosine_scores: k {tuple(k.shape)} and w {tuple(w.shape)} must have the same shape after the first axis")
  kf = k.reshape(k.shape[0], -1)
  wf = w.reshape(w.shape[0], -1)
  cc = jnp.einsum("mp,np->mn", kf, wf, precision=_HIGHEST)
  norm_k = jnp.sqrt(jnp.einsum("mp,mp->m", kf, kf, precision=_HIGHEST))
  norm_w = jnp.sqrt(jnp.einsum("np,np->n", wf, wf, precision=_HIGHEST))
  cc32 = cc.astype(jnp.float32)
  ncc_ = (cc32 / (norm_k[:, None] * norm_w[None, :]).astype(jnp.float32)).astype(jnp.float32)
  return CosineScores(cc=cc32, ncc=ncc_)


@jax.jit
def crosscorr_2d(k1, k2) -> jax.Array:
  """Circular 2-D cross-correlation of two maps, exactly as prnu-python's `crosscorr_2d` (SPEC §1.11).

  Steps: subtract each map's global mean (the inputs are not modified), zero-pad both at the bottom/right to
  (max H, max W), rotate k2 by 180 degrees *after* padding, and return
  `real(ifft2(fft2(k1p) * fft2(rot180(k2p))))` with a full complex FFT. Equivalently
  `c[y, x] = sum_{m,n} k1p[m, n] * k2p[(m - y - 1) mod H, (n - x - 1) mod W]`, so zero lag is at (H-1, W-1):
  for `k1 = A[dy:, dx:]`, `k2 = A` the peak is at (H-1-dy, W-1-dx); for `k1 = A`, `k2 = A[dy:, dx:]` it is at
  (dy-1, dx-1).

  Args:
    k1: float[..., H1, W1] (e.g. a fingerprint).
    k2: float[..., H2, W2] (e.g. a residual); leading axes broadcast against k1's.

  Returns:
    float32[..., max(H1, H2), max(W1, W2)].
  """
  k1, k2 = _as_float(k1), _as_float(k2)
  _require_ndim(k1, 2, "k1", "[..., H, W]")
  _require_ndim(k2, 2, "k2", "[..., H, W]")
  try:
    jnp.broadcast_shapes(k1.shape[:-2], k2.shape[:-2])
  except ValueError:
    raise ValueError(
        f"crosscorr_2d: leading axes of k1 {tuple(k1.shape)} and k2 {tuple(k2.shape)} do not broadcast") from None
  h = max(k1.shape[-2], k2.shape[-2])
  w = max(k1.shape[-1], k2.shape[-1])

  def prepare(x):
    x = x - jnp.mean(x, axis=(-2, -1), keepdims=True)
    pad = [(0, 0)] * (x.ndim - 2) + [(0, h - x.shape[-2]), (0, w - x.shape[-1])]
    return jnp.pad(x, pad)

  k1p = prepare(k1)
  k2p = jnp.flip(prepare(k2), axis=(-2, -1))
  spectrum = jnp.fft.fft2(k1p) * jnp.fft.fft2(k2p)
  return jnp.real(jnp.fft.ifft2(spectrum)).astype(jnp.float32)


def _circular_distance(index: jax.Array, centre, n: int) -> jax.Array:
  """min((i - c) mod n, (c - i) mod n) for integer arrays (broadcasting)."""
  d = jnp.mod(index - centre, n)
  return jnp.minimum(d, n - d)


def _static_nonneg_int(value, name: str) -> int:
  if isinstance(value, bool):
    raise ValueError(f"{name} must be a non-negative Python int, got {value!r}")
  try:
    value = operator.index(value)
  except TypeError:
    raise ValueError(f"{name} must be a non-negative Python int (static under jit), got {value!r}") from None
  if value < 0:
    raise ValueError(f"{name} must be >= 0, got {value}")
  return value


@functools.partial(jax.jit, static_argnames=("neigh_radius", "mode", "shift_range"))
def pce(cc, *, neigh_radius: int = 2, mode: str = "standard", shift_range: Optional[int] = None) -> PceResult:
  """Peak-to-correlation energy of cross-correlation maps from `crosscorr_2d`.

  The peak (y, x) is the first maximum of the map in row-major order and `P = cc[y, x]` (the maximum, not the
  maximum absolute value). `PCE = sign(P) * P**2 / E`, where E is the energy of the map away from the peak;
  `E == 0` gives +-inf (and `P == 0` with `E == 0` gives NaN), exactly as numpy's arithmetic does. A NaN in the
  map is taken as the peak (first NaN, like `np.argmax`) and gives NaN.

  Modes (r = `neigh_radius`):
    "standard" (default; Binghamton style): exclude the full (2r+1) x (2r+1) neighbourhood centred on the peak,
      with circular wrap-around at every border (the map is circular), and E = mean of cc**2 over the
      *non-excluded* entries only. If the neighbourhood covers the whole map (2r+1 >= H and W) there is nothing
      left and E is taken as 0.
    "legacy": bit-for-bit the semantics of prnu-python `pce` (SPEC §1.13): zero the Python slice
      `cc[y-r:y+r, x-r:x+r]` (a 2r x 2r box, rows y-r..y+r-1, asymmetric); a negative start is read by Python as
      counting from the end, which for maps larger than the box makes the slice *empty*, so a peak in the top r
      rows or left r columns excludes nothing in that direction; no wrap-around at the bottom/right edges. E is
      the mean of cc**2 over *all* H*W entries, including the zeroed ones. (Values equal the reference up to
      float32 rounding of the sums.)

  Peak search (`shift_range`), with zero lag at (H-1, W-1) as `crosscorr_2d` produces it:
    None: the peak is searched over the whole map (the reference behaviour: any translation).
    s (int >= 0): the peak is searched only among lags within s of zero lag in both directions, measured
      circularly: rows i with min((i - (H-1)) mod H, ((H-1) - i) mod H) <= s and the same for columns, i.e. a
      (2s+1) x (2s+1) box centred on (H-1, W-1) that wraps around to row/column 0. This is what users with
      aligned images want (prnu-python issue #2): a spurious far-away maximum can no longer be taken for the
      peak. `shift_range=0` scores the aligned (zero-lag) value only. E is then computed as in the chosen mode
      around the peak that was found.

  Args:
    cc: float[..., H, W] cross-correlation maps (batched over leading axes).
    neigh_radius: r >= 0, Python int (static under jit).
    mode: "standard" or "legacy" (static under jit).
    shift_range: None or a Python int >= 0 (static under jit).

  Returns:
    PceResult(pce float32[...], peak_y int32[...], peak_x int32[...], peak float32[...]).
  """
  if mode not in _PCE_MODES:
    raise ValueError(f"Unsupported pce mode {mode!r}; expected one of {_PCE_MODES}")
  r = _static_nonneg_int(neigh_radius, "neigh_radius")
  if shift_range is not None:
    shift_range = _static_nonneg_int(shift_range, "shift_range")
  cc = _as_float(cc)
  _require_ndim(cc, 2, "cc", "[..., H, W]")
  h, w = cc.shape[-2:]
  if h == 0 or w == 0:
    raise ValueError(f"cc must be a non-empty map, got shape {tuple(cc.shape)}")
  lead = cc.shape[:-2]
  rows = jnp.arange(h, dtype=jnp.int32)
  cols = jnp.arange(w, dtype=jnp.int32)

  search = cc
  if shift_range is not None:
    allowed = ((_circular_distance(rows, h - 1, h) <= shift_range)[:, None]
               & (_circular_distance(cols, w - 1, w) <= shift_range)[None, :])
    search = jnp.where(allowed, cc, -jnp.inf)
  flat_cc = cc.reshape(lead + (h * w,))
  idx = jnp.argmax(search.reshape(lead + (h * w,)), axis=-1).astype(jnp.int32)
  peak_y, peak_x = idx // w, idx % w
  peak = jnp.take_along_axis(flat_cc, idx[..., None], axis=-1)[..., 0]

  if mode == "legacy":
    def python_slice(centre, n):
      start = centre - r
      start = jnp.where(start < 0, jnp.maximum(start + n, 0), start)  # Python's negative-index rule
      stop = jnp.minimum(centre + r, n)
      return start[..., None], stop[..., None]

    y0, y1 = python_slice(peak_y, h)
    x0, x1 = python_slice(peak_x, w)
    row_excl = (rows >= y0) & (rows < y1)  # [..., H]
    col_excl = (cols >= x0) & (cols < x1)  # [..., W]
    count = h * w
  else:
    row_excl = _circular_distance(rows, peak_y[..., None], h) <= r
    col_excl = _circular_distance(cols, peak_x[..., None], w) <= r
    n_excl = (jnp.sum(row_excl, axis=-1, dtype=jnp.int32) * jnp.sum(col_excl, axis=-1, dtype=jnp.int32))
    count = jnp.maximum(h * w - n_excl, 1).astype(cc.dtype)
  excluded = row_excl[..., :, None] & col_excl[..., None, :]
  floor = jnp.where(excluded, jnp.zeros((), cc.dtype), cc).reshape(lead + (h * w,))
  energy = jnp.einsum("...k,...k->...", floor, floor, precision=_HIGHEST) / count
  value = peak ** 2 / energy * jnp.sign(peak)
  return PceResult(pce=value.astype(jnp.float32), peak_y=peak_y, peak_x=peak_x, peak=peak.astype(jnp.float32))


@functools.partial(jax.jit, static_argnames="peak")
def psnr(a, b, *, peak: float = 255.0) -> jax.Array:
  """Peak signal-to-noise ratio `10 log10(peak**2 / mse)` over the last three axes (H, W, C), in dB.

  The one PSNR of the project (DIP stop rule, reports, tables). uint8 pairs are compared exactly: the squared
  differences are summed per row in int32 (no modulo-256 wrap-around, which the DIPPAS main_3 print has, SPEC
  §2.11: an error of 20 on one of 48 values gives 38.92 dB here, not 43.36), the row sums in float32. Other
  inputs are converted to float32 first. Identical inputs give +inf.

  Args:
    a, b: uint8 or float [..., H, W, C] (leading axes broadcast), on the scale given by `peak`.
    peak: the maximum signal value (255 for uint8 images, 1 for images in [0, 1]).

  Returns:
    float32[...].
  """
  a, b = jnp.asarray(a), jnp.asarray(b)
  _require_ndim(a, 3, "a", "[..., H, W, C]")
  _require_ndim(b, 3, "b", "[..., H, W, C]")
  a, b = _broadcast_pair(a, b, "psnr")
  if a.dtype == jnp.uint8 and b.dtype == jnp.uint8:
    d = a.astype(jnp.int32) - b.astype(jnp.int32)
    sse = jnp.sum(jnp.sum(d * d, axis=(-2, -1)).astype(jnp.float32), axis=-1)
  else:
    diff = (_as_float(a) - _as_float(b)).reshape(a.shape[:-3] + (-1,))
    sse = jnp.einsum("...k,...k->...", diff, diff, precision=_HIGHEST)
  mse = sse / (a.shape[-3] * a.shape[-2] * a.shape[-1])
  return (10.0 * jnp.log10(jnp.float32(peak) ** 2 / mse)).astype(jnp.float32)
