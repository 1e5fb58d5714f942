"""The network's numerical layers, with hand-written gradients where XLA:CPU is slow.

`conv2d`: a zero-padded k×k convolution (pad (k-1)//2 per side, NHWC × HWIO), in three formulations that compute
the same function and gradients up to float rounding: "xla" (XLA's convolution and its autodiff),
"xla_gemm_grad" (XLA's forward and input gradient, the kernel gradient as one matrix product; XLA:CPU's own
kernel-gradient convolution of the 512→4 layer is ~20× slower) and "gemm" (everything as matrix products over the
pixels plus tap shifts, the fastest on CPU). `batch_norm_act`: training-mode BatchNorm (+ LeakyReLU) with a
two-pass backward.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Precision = Any  # None, a string ("highest", "default", ...) or a `jax.lax.Precision`.


def _conv_xla(x, kernel, stride, precision):
  pad = (kernel.shape[0] - 1) // 2
  return lax.conv_general_dilated(x, kernel, window_strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)


def _taps(x, k, offset, stride=1, out_hw=None):
  """The k·k taps of a zero-padded x stacked on the channel axis:
  out[n, o, p, (dy·k + dx)·C + c] = x[n, stride·o + dy - offset, stride·p + dx - offset, c] (zero outside)."""
  _, h, w, _ = x.shape
  ho, wo = out_hw or (h // stride, w // stride)
  hi = max(stride * (ho - 1) + k - offset - h, 0)
  wi = max(stride * (wo - 1) + k - offset - w, 0)
  xp = jnp.pad(x, ((0, 0), (offset, hi), (offset, wi), (0, 0)))
  return jnp.concatenate(
      [xp[:, dy:dy + stride * (ho - 1) + 1:stride, dx:dx + stride * (wo - 1) + 1:stride, :]
       for dy in range(k) for dx in range(k)], axis=-1)


def _mm(a, b, precision):
  """[..., K] @ [K, M] over the leading (pixel) axes."""
  return jnp.einsum("nhwk,km->nhwm", a, b, precision=precision)


def _conv_gemm(x, kernel, stride, precision):
  """Zero-padded k×k conv as matrix products over the pixels (no XLA convolution).

  Stride 1: if C_out < C_in, P = x·W (all k² taps at once, k²·C_out channels) then shift-and-add the taps; else
  the k² taps of x (im2col) times W. Stride 2: the k² strided taps of x times W.
  """
  k, _, cin, cout = kernel.shape
  pad = (k - 1) // 2
  if k == 1:
    return _mm(x[:, ::stride, ::stride], kernel[0, 0], precision)
  if stride == 1 and cout < cin:
    p = _mm(x, kernel.transpose(2, 0, 1, 3).reshape(cin, k * k * cout), precision)
    return _sum_taps(p, k, pad, cout)
  taps = _taps(x, k, pad, stride)
  return _mm(taps, kernel.reshape(k * k * cin, cout), precision)


def _sum_taps(p, k, pad, d):
  """y[n, h, w] = Σ_(dy,dx) p[n, h + dy - pad, w + dx - pad, tap (dy, dx) block] (zero outside)."""
  _, h, w, _ = p.shape
  pp = jnp.pad(p, ((0, 0), (pad, k - 1 - pad), (pad, k - 1 - pad), (0, 0)))
  out = None
  for t, (dy, dx) in enumerate((dy, dx) for dy in range(k) for dx in range(k)):
    term = pp[:, dy:dy + h, dx:dx + w, t * d:(t + 1) * d]
    out = term if out is None else out + term
  return out


def _conv_gemm_input_grad(g, kernel, stride, x_shape, precision):
  """dL/dx of `_conv_gemm` (= the transposed convolution of g), by matrix products."""
  k, _, cin, cout = kernel.shape
  pad = (k - 1) // 2
  if stride == 1:
    # dx[q] = Σ_d W_d g[q - d + pad]: a conv of g with the flipped, transposed kernel.
    return _conv_gemm(g, kernel[::-1, ::-1].transpose(0, 1, 3, 2), 1, precision)
  n, h, w, _ = x_shape
  if k == 1:
    return jnp.zeros(x_shape, g.dtype).at[:, ::stride, ::stride].set(_mm(g, kernel[0, 0].T, precision))
  # dx[s·o + d - pad] += W_d g[o]: P = g·Wᵀ for all taps, each tap placed on the stride-s grid at offset d - pad.
  ho, wo = g.shape[1], g.shape[2]
  p = _mm(g, kernel.transpose(3, 0, 1, 2).reshape(cout, k * k * cin), precision)
  zero = jnp.zeros((), g.dtype)
  out = None
  for t, (dy, dx) in enumerate((dy, dx) for dy in range(k) for dx in range(k)):
    # Padded coordinates (offset pad): tap (dy, dx) lands on rows dy, dy + s, ..., of an (h + 2·pad + s) canvas.
    cfg = ((0, 0, 0), (dy, h + 2 * pad + stride - dy - (stride * (ho - 1) + 1), stride - 1),
           (dx, w + 2 * pad + stride - dx - (stride * (wo - 1) + 1), stride - 1), (0, 0, 0))
    term = lax.pad(p[..., t * cin:(t + 1) * cin], zero, cfg)
    out = term if out is None else out + term
  return out[:, pad:pad + h, pad:pad + w, :]


def _conv_kernel_grad(x, g, k, stride, precision):
  """dL/dkernel [k, k, C, D] of a zero-padded k×k conv, as one matrix product contracting the N·H·W axes.

  dW[dy, dx] = Σ_p x[s·p + (dy, dx) - pad] ⊗ g[p]. With stride 1 the shifts go on whichever operand has fewer
  channels (g shifted by pad - (dy, dx), or the k² taps of x); with stride 2 on the k² strided taps of x.
  XLA:CPU lowers the native kernel-gradient convolution of a wide, short conv (512 -> 4) some 20× slower than this.
  """
  _, _, _, c = x.shape
  d = g.shape[-1]
  pad = (k - 1) // 2
  if k == 1:
    return jnp.einsum("nhwc,nhwd->cd", x[:, ::stride, ::stride], g, precision=precision)[None, None]
  if stride == 1 and d <= c:
    # Tap (ey, ex) of g with offset k-1-pad holds g[q + (ey, ex) - (k-1-pad)] = g[q - (dy, dx) + pad] for
    # (dy, dx) = (k-1-ey, k-1-ex).
    out = jnp.einsum("nhwc,nhwe->ce", x, _taps(g, k, k - 1 - pad), precision=precision).reshape(c, k, k, d)
    return out[:, ::-1, ::-1, :].transpose(1, 2, 0, 3)
  taps = _taps(x, k, pad, stride, out_hw=g.shape[1:3])
  return jnp.einsum("nhwe,nhwd->ed", taps, g, precision=precision).reshape(k, k, c, d)


@partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv_custom(x, kernel, stride, precision, impl):
  return _conv_gemm(x, kernel, stride, precision) if impl == "gemm" else _conv_xla(x, kernel, stride, precision)


def _conv_custom_fwd(x, kernel, stride, precision, impl):
  return _conv_custom(x, kernel, stride, precision, impl), (x, kernel)


def _conv_custom_bwd(stride, precision, impl, res, g):
  x, kernel = res
  if impl == "gemm":
    dx = _conv_gemm_input_grad(g, kernel, stride, x.shape, precision)
  else:
    dx, = jax.vjp(lambda x_: _conv_xla(x_, kernel, stride, precision), x)[1](g)
  dw = _conv_kernel_grad(x, g, kernel.shape[0], stride, precision)
  return dx.astype(x.dtype), dw.astype(kernel.dtype)


_conv_custom.defvjp(_conv_custom_fwd, _conv_custom_bwd)

CONV_IMPLS = ("xla", "xla_gemm_grad", "gemm")


def conv2d(x: jax.Array, kernel: jax.Array, *, stride: int = 1, precision: Precision = "highest",
           impl: str = "xla") -> jax.Array:
  """Zero-padded k×k convolution (pad (k-1)//2 per side), NHWC x HWIO -> NHWC, no bias.

  impl: "xla" (XLA's convolution and its autodiff), "xla_gemm_grad" (XLA's convolution forward and input
  gradient, the kernel gradient as one matrix product), "gemm" (everything as matrix products over the pixels,
  often fastest on CPU). All three compute the same function and gradients up to float rounding.
  """
  if impl == "xla":
    return _conv_xla(x, kernel, stride, precision)
  if impl in ("xla_gemm_grad", "gemm"):
    return _conv_custom(x, kernel, stride, precision, impl)
  raise ValueError(f"Unsupported conv impl {impl!r}; expected one of {CONV_IMPLS}.")


@partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def batch_norm_act(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float = 1e-5,
                   negative_slope: float | None = None) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Training-mode BatchNorm over all axes but the last, optionally followed by LeakyReLU, with a hand-written
  gradient (two fused passes over x backwards instead of autodiff's many small ones).

  x float[..., C], scale/bias float[C] -> (y float[..., C], mean float[C], biased var float[C]).
  var = E[x²] - E[x]² (one pass, clipped at 0, like Flax's default); y = act(scale·(x - mean)/sqrt(var + eps) + bias).
  mean and var are returned for the running statistics only; no gradient flows through them.
  """
  return _bn_fwd(x, scale, bias, epsilon, negative_slope)[0]


def _bn_stats(x):
  axes = tuple(range(x.ndim - 1))
  mean = jnp.mean(x, axis=axes)
  var = jnp.maximum(jnp.mean(jnp.square(x), axis=axes) - jnp.square(mean), 0.0)
  return mean, var


def _bn_fwd(x, scale, bias, epsilon, negative_slope):
  mean, var = _bn_stats(x)
  inv = lax.rsqrt(var + epsilon)
  u = (x - mean) * (inv * scale) + bias
  y = u if negative_slope is None else jnp.where(u >= 0, u, negative_slope * u)
  return (y, mean, var), (x, scale, bias, mean, inv)


def _bn_bwd(epsilon, negative_slope, res, cotangents):
  del epsilon
  x, scale, bias, mean, inv = res
  gy = cotangents[0]
  axes = tuple(range(x.ndim - 1))
  n = math.prod(x.shape[:-1])
  xhat = (x - mean) * inv
  if negative_slope is not None:
    u = xhat * scale + bias
    gy = jnp.where(u >= 0, gy, negative_slope * gy)
  dbias = jnp.sum(gy, axis=axes)
  dscale = jnp.sum(gy * xhat, axis=axes)
  dx = (scale * inv) * (gy - dbias / n - xhat * (dscale / n))
  return dx, dscale, dbias


batch_norm_act.defvjp(_bn_fwd, _bn_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(1,))
def sigmoid(x: jax.Array, grad_floor: float = 0.0) -> jax.Array:
  """The sigmoid; its gradient is max(σ'(x), grad_floor). With a floor > 0 an output pushed into saturation
  (a clipped highlight the target holds at 255, or a deep shadow) keeps receiving gradient and is not stuck
  ('dead'); the forward value is unchanged. grad_floor 0 is the plain sigmoid."""
  return jax.nn.sigmoid(x)


def _sigmoid_fwd(x, grad_floor):
  y = jax.nn.sigmoid(x)
  return y, y


def _sigmoid_bwd(grad_floor, y, g):
  return (g * jnp.maximum(y * (1.0 - y), grad_floor),)


sigmoid.defvjp(_sigmoid_fwd, _sigmoid_bwd)
