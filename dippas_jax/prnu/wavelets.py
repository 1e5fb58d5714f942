"""pywt-compatible 2-D discrete wavelet transform in JAX ('symmetric' boundary mode).

`wavedec2` / `waverec2` reproduce `pywt.wavedec2(x, wavelet, mode='symmetric', level=L, axes=(-2, -1))` and
`pywt.waverec2(coeffs, wavelet, mode='symmetric', axes=(-2, -1))`: same band order, same coefficient lengths,
same boundary handling, same trimming rule (SPEC 1.4). The filters are pywt's own `filter_bank`, cast to the
input dtype, so float32 input is transformed in float32 and float64 input (inside
`with jax.enable_x64(True):`) in float64. Both functions are jitted (`wavelet` and `level` static).

Definitions, for a filter bank of even length F and a signal of length N along one axis:

* analysis: half-sample symmetric extension x~ (index i -> i mod 2N, r >= N -> 2N-1-r; this repeats the
  reflection when N < F), output length M = floor((N + F - 1) / 2),
  a[o] = sum_j dec_lo[j] x~[2o + 1 - j], d[o] = sum_j dec_hi[j] x~[2o + 1 - j];
* synthesis: output length 2M - F + 2,
  y[n] = sum_k a[k] rec_lo[n + F - 2 - 2k] + d[k] rec_hi[n + F - 2 - 2k] over 0 <= n + F - 2 - 2k < F.

Both are computed as short sums of (strided) slices: elementwise multiply-adds that XLA fuses (no
convolution, so no TF32 on GPUs), with the symmetric extension built from static slices, reversals and a
concatenation. The analysis follows pywt's accumulation order term by term and keeps every product rounded
(no fused multiply-add), so on CPU float32 coefficients are bit-identical to pywt's (`_dwt1`); the few outputs
at the right edge, where pywt changes the order, are gathered separately. Shapes are static, so everything is
jit-friendly and any leading batch axes are carried along.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pywt

__all__ = ["wavedec2", "waverec2", "dwt2", "idwt2", "dwt_coeff_len", "dwt_max_level", "filter_bank"]

Details = tuple[jax.Array, jax.Array, jax.Array]


@functools.lru_cache(maxsize=None)
def filter_bank(wavelet: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """pywt's (dec_lo, dec_hi, rec_lo, rec_hi) for `wavelet`, as float64 numpy arrays of equal even length F."""
  try:
    w = pywt.Wavelet(wavelet)
  except (ValueError, TypeError) as e:
    raise ValueError(f"Unsupported wavelet {wavelet!r}: use a pywt discrete wavelet such as 'db4'.") from e
  bank = tuple(np.asarray(f, dtype=np.float64) for f in w.filter_bank)
  lengths = {len(f) for f in bank}
  if len(lengths) != 1 or next(iter(lengths)) % 2:
    raise ValueError(f"Unsupported wavelet {wavelet!r}: the filters must share one even length, got {lengths}.")
  return bank  # type: ignore[return-value]


def dwt_coeff_len(n: int, filter_len: int) -> int:
  """Coefficient length of one 'symmetric'-mode analysis step: floor((n + F - 1) / 2)."""
  return (n + filter_len - 1) // 2


def dwt_max_level(n: int, filter_len: int) -> int:
  """pywt.dwt_max_level: the deepest level without boundary effects (informational; deeper levels work)."""
  return pywt.dwt_max_level(n, filter_len)


def _symmetric_index(n: int, left: int, right: int) -> np.ndarray:
  """Source index of every sample of the half-sample symmetric extension of a length-n signal."""
  i = np.arange(-left, n + right) % (2 * n)
  return np.where(i >= n, 2 * n - 1 - i, i)


def _runs(index: np.ndarray) -> list[tuple[int, int, int]]:
  """Splits an index map into maximal arithmetic runs (start, length, step), step in {1, -1, 2, -2}."""
  runs = []
  k = 0
  while k < len(index):
    length, step = 1, 1
    if k + 1 < len(index) and index[k + 1] - index[k] in (1, -1, 2, -2):
      step = int(index[k + 1] - index[k])
      while k + length < len(index) and index[k + length] - index[k + length - 1] == step:
        length += 1
    runs.append((int(index[k]), length, step))
    k += length
  return runs


def _gather_runs(x: jax.Array, index: np.ndarray, axis: int) -> jax.Array:
  """x[..., index, ...] along `axis` for a static index map, built from strided slices, reversals and one
  concatenation (no gather op: XLA:CPU copies these at memory speed)."""
  pieces = []
  for start, length, step in _runs(index):
    stride = abs(step)
    lo = start if step > 0 else start + step * (length - 1)
    piece = jax.lax.slice_in_dim(x, lo, lo + stride * (length - 1) + 1, stride=stride, axis=axis)
    pieces.append(piece if step > 0 else jax.lax.rev(piece, (axis,)))
  return pieces[0] if len(pieces) == 1 else jnp.concatenate(pieces, axis=axis)


def _dwt1(x: jax.Array, axis: int, wavelet: str) -> jax.Array:
  """One 1-D analysis step along `axis`: approximation and detail stacked on a new leading axis.

  Args:
    x: float[..., N, ...] with N along `axis` (a non-negative index).
    axis: the axis to transform.
    wavelet: pywt wavelet name.

  Returns:
    float[2, ..., M, ...] with M = floor((N + F - 1) / 2): [0] approximation (dec_lo), [1] detail (dec_hi).

  out[o] = sum_j filt[j] * x~[2o + 1 - j], accumulated term by term in pywt's order: pywt
  (`downsampling_convolution`, 'symmetric') adds filt[j] * x~[i - j] (i = 2o + 1) with j ascending while
  i < N; for the last outputs (i >= N) it first takes j = i-N, ..., 0 (the reflected samples beyond the right
  edge, nearest first) and then j = i-N+1, ..., F-1. Following the same order with the same float32-rounded
  filter (and no fused multiply-add, see `_rounded`) makes float32 coefficients bit-identical to pywt's. That
  matters for parity: float32 approximation bands reach ~255 * 2^L, where one rounding step is ~5e-4.
  Both filters are evaluated in one stacked expression, so XLA reads the extended signal in one fused loop.
  """
  dec_lo, dec_hi, _, _ = filter_bank(wavelet)
  f = len(dec_lo)
  n = x.shape[axis]
  m = dwt_coeff_len(n, f)
  filt = np.stack([dec_lo, dec_hi]).astype(x.dtype)  # [2, F]
  lead = (2,) + (1,) * x.ndim  # broadcasts a per-filter constant over the output
  # Extended signal xe[k] = x~[k - (F-2)], k < L = 2M + F - 2 (even), used de-interleaved: phases[k'] =
  # xe[2k'] for k' < L/2, then xe[2k' + 1]. Then x~[2o + 1 - j] = xe[2o + t] = phases[(t % 2) L/2 + o + t // 2]
  # with t = F - 1 - j, and every tap is a contiguous slice. Along the last axis the extension is built
  # first and de-interleaved by a reshape/transpose that XLA fuses into the taps; along other axes the phases
  # are copied directly with strided row slices. (Both measured fastest on XLA:CPU.)
  ext = _symmetric_index(n, f - 2, 2 * m - n)
  half = len(ext) // 2
  if axis == x.ndim - 1:
    xe = _gather_runs(x, ext, axis)
    phases = jnp.swapaxes(xe.reshape(xe.shape[:-1] + (half, 2)), -1, -2).reshape(xe.shape)
  else:
    phases = _gather_runs(x, np.concatenate([ext[0::2], ext[1::2]]), axis)
  out = None  # every output in the ascending order; the last ones are overwritten below
  for j in range(f):
    t = f - 1 - j
    start = (t % 2) * half + t // 2
    s = jax.lax.slice_in_dim(phases, start, start + m, axis=axis)
    tap = _rounded(s[None] * filt[:, j].reshape(lead))
    out = tap if out is None else out + tap
  head = n // 2  # outputs with i = 2o + 1 < N use the ascending order
  if head < m:
    # The last outputs (about F/2) each have their own order: gather their taps ([F, T] indices into xe,
    # term r of output o is filt[j] * xe[2o + F - 1 - j] with j = order[r, o]) and add them term by term.
    tail = np.arange(head, m)
    order = np.array([list(range(2 * o + 1 - n, -1, -1)) + list(range(2 * o + 2 - n, f)) for o in tail]).T
    index = 2 * tail[None, :] + f - 1 - order  # [F, T]
    source = ext[index]  # gather from x, so the extension has a single consumer
    taps = jnp.take(x, jnp.asarray(source.ravel()), axis=axis)
    shape = list(taps.shape)
    shape[axis:axis + 1] = list(index.shape)
    taps = taps.reshape(shape)  # [..., F, T, ...]
    coef = filt[:, order].reshape((2,) + (1,) * axis + index.shape + (1,) * (x.ndim - axis - 1))
    prods = taps[None] * coef  # [2, ..., F, T, ...]
    acc = None
    for r in range(f):
      tap = _rounded(jax.lax.index_in_dim(prods, r, axis=axis + 1, keepdims=False))
      acc = tap if acc is None else acc + tap
    out = jax.lax.dynamic_update_slice_in_dim(out, acc, head, axis=axis + 1)
  return out


def _rounded(p: jax.Array) -> jax.Array:
  """`p`, unchanged (NaN stays NaN), but opaque to multiply-add contraction.

  XLA's LLVM backends always allow fusing `acc + a * b` into one FMA, which skips the rounding of the product
  that pywt's C loop performs. A select between `p` and NaN on `p == p` is an identity that LLVM does not see
  through, so the product is rounded on its own, as in pywt. It costs one compare and one select per term.
  """
  return jnp.where(p == p, p, jnp.array(np.nan, p.dtype))


def _idwt1(a: jax.Array, d: jax.Array, axis: int, wavelet: str) -> jax.Array:
  """One 1-D synthesis step along `axis` from equal-length (a, d): output length 2M - F + 2."""
  _, _, rec_lo, rec_hi = filter_bank(wavelet)
  f = len(rec_lo)
  m = a.shape[axis]
  if d.shape != a.shape:
    raise ValueError(f"Approximation and detail shapes differ: {a.shape} vs {d.shape}.")
  half = f // 2
  out_half = m - half + 1
  if out_half < 1:
    raise ValueError(f"Coefficients of length {m} are too short to invert a filter of length {f}.")
  dt = a.dtype.type
  even = odd = None
  for s in range(half):
    a_s = jax.lax.slice_in_dim(a, s, s + out_half, axis=axis)
    d_s = jax.lax.slice_in_dim(d, s, s + out_half, axis=axis)
    e = a_s * dt(rec_lo[f - 2 - 2 * s]) + d_s * dt(rec_hi[f - 2 - 2 * s])
    o = a_s * dt(rec_lo[f - 1 - 2 * s]) + d_s * dt(rec_hi[f - 1 - 2 * s])
    even = e if even is None else even + e
    odd = o if odd is None else odd + o
  y = jnp.stack([even, odd], axis=axis + 1)
  shape = list(even.shape)
  shape[axis] = 2 * out_half
  return y.reshape(shape)


def _check_input(x: jax.Array, what: str) -> jax.Array:
  x = jnp.asarray(x)
  if x.ndim < 2:
    raise ValueError(f"{what} needs an array of rank >= 2 ([..., H, W]), got shape {x.shape}.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  return x


def dwt2(x: jax.Array, *, wavelet: str = "db4") -> tuple[jax.Array, Details]:
  """One 2-D analysis level, = pywt.dwt2(x, wavelet, mode='symmetric', axes=(-2, -1)).

  Args:
    x: float[..., H, W].
    wavelet: pywt wavelet name.

  Returns:
    (cA, (cH, cV, cD)), each float[..., M_H, M_W] with M = floor((N + F - 1) / 2); cH is high-pass along H and
    low-pass along W, cV the converse, cD high-pass along both.
  """
  x = _check_input(x, "dwt2")
  y = _dwt1(x, x.ndim - 2, wavelet)  # [2(H filter), ..., M_H, W]
  y = _dwt1(y, y.ndim - 1, wavelet)  # [2(W filter), 2(H filter), ..., M_H, M_W]
  ca, cv, ch, cd = y[0, 0], y[1, 0], y[0, 1], y[1, 1]
  return ca, (ch, cv, cd)


def idwt2(ca: jax.Array, details: Sequence[jax.Array], *, wavelet: str = "db4") -> jax.Array:
  """One 2-D synthesis level, = pywt.idwt2((cA, (cH, cV, cD)), wavelet, mode='symmetric', axes=(-2, -1)).

  Args:
    ca: float[..., M_H, M_W] approximation.
    details: (cH, cV, cD), each float[..., M_H, M_W].
    wavelet: pywt wavelet name.

  Returns:
    float[..., 2 M_H - F + 2, 2 M_W - F + 2].
  """
  ch, cv, cd = details
  ndim = ca.ndim
  if ndim < 2:
    raise ValueError(f"idwt2 needs arrays of rank >= 2, got shape {ca.shape}.")
  h_axis, w_axis = ndim - 2, ndim - 1
  lo = _idwt1(ca, cv, w_axis, wavelet)
  hi = _idwt1(ch, cd, w_axis, wavelet)
  return _idwt1(lo, hi, h_axis, wavelet)


@functools.partial(jax.jit, static_argnames=("wavelet", "level"))
def wavedec2(x: jax.Array, *, wavelet: str = "db4", level: int = 4) -> list:
  """Multi-level 2-D analysis, = pywt.wavedec2(x, wavelet, mode='symmetric', level=level, axes=(-2, -1)).

  Unlike pywt, a `level` above pywt.dwt_max_level is accepted silently (pywt only warns); the result is the
  same as pywt's.

  Args:
    x: float[..., H, W] (integer input is cast to float32). Leading axes are batch axes.
    wavelet: pywt wavelet name, e.g. 'db4' (8 taps) or any 'db1'..'db20'.
    level: number of levels L >= 1.

  Returns:
    [cA_L, (cH_L, cV_L, cD_L), ..., (cH_1, cV_1, cD_1)] in x's dtype; level-k bands have, per axis,
    N_k = floor((N_{k-1} + F - 1) / 2) samples, N_0 = H or W.
  """
  if not isinstance(level, (int, np.integer)) or level < 1:
    raise ValueError(f"level must be a positive int, got {level!r}.")
  x = _check_input(x, "wavedec2")
  details = []
  a = x
  for _ in range(level):
    a, d = dwt2(a, wavelet=wavelet)
    details.append(d)
  return [a] + details[::-1]


@functools.partial(jax.jit, static_argnames=("wavelet",))
def waverec2(coeffs: Sequence, *, wavelet: str = "db4") -> jax.Array:
  """Multi-level 2-D synthesis, = pywt.waverec2(coeffs, wavelet, mode='symmetric', axes=(-2, -1)).

  Before each level, along every axis where the running approximation is one sample longer than the detail
  bands, its last sample is dropped (pywt's rule for odd sizes); any other mismatch raises ValueError.

  Args:
    coeffs: [cA_L, (cH_L, cV_L, cD_L), ..., (cH_1, cV_1, cD_1)] as returned by `wavedec2`; arrays float[..., h, w].
    wavelet: pywt wavelet name.

  Returns:
    float[..., H', W'] with H' = 2 h_1 - F + 2 (h_1 = first-level band height), likewise W'; for odd original
    sizes this is one more than the original size (crop it).
  """
  if len(coeffs) < 2:
    raise ValueError("waverec2 needs [cA, (cH, cV, cD), ...] with at least one detail level.")
  a = jnp.asarray(coeffs[0])
  for d in coeffs[1:]:
    if len(d) != 3:
      raise ValueError("Each detail level must be a (cH, cV, cD) triple.")
    d = tuple(jnp.asarray(b) for b in d)
    dshape = d[0].shape
    if any(b.shape != dshape for b in d):
      raise ValueError(f"Detail bands of one level differ in shape: {[b.shape for b in d]}.")
    if a.ndim != len(dshape):
      raise ValueError(f"Approximation rank {a.ndim} differs from detail rank {len(dshape)}.")
    for axis in (a.ndim - 2, a.ndim - 1):
      if a.shape[axis] == dshape[axis] + 1:
        a = jax.lax.slice_in_dim(a, 0, dshape[axis], axis=axis)
      elif a.shape[axis] != dshape[axis]:
        raise ValueError(f"Coefficient shapes do not match: approximation {a.shape}, details {dshape}.")
    if a.shape[:-2] != dshape[:-2]:
      raise ValueError(f"Batch axes differ: approximation {a.shape}, details {dshape}.")
    dtype = jnp.result_type(a, *d)
    a = idwt2(a.astype(dtype), tuple(b.astype(dtype) for b in d), wavelet=wavelet)
  return a
