"""The MultiRes U-Net of DIPPAS (SPEC §3), as a Flax linen module.

Layout NHWC, image orientation. At the paper defaults (filters (16, 32, 64, 128, 256), skips (16, 32, 64, 128),
alpha 1.67, input depth 512) the network has 2,219,718 trainable parameters and 22,679,433,216 conv MACs per
forward at 512×512, exactly like the authors' PyTorch `MulResUnet` (SPEC §3.3, §3.4).

Graph (5 scales, s = 0..4; `E_s` encoder MultiRes block, `S_s` ResPath skip, `D_s` stride-2 3×3 conv,
`Dec_s` decoder MultiRes block, `Up` nearest 2× up-sampling):

    a0 = E0(x);  a_s = E_s(D_s(a_{s-1}))                    s = 1..4
    u4 = a4;     u_s = Dec_s(concat[S_s(a_s), Up(u_{s+1})])  s = 3..0
    x̂ = sigmoid(conv1×1(u0))

Every convolution has a bias and zero padding `(k - 1) // 2`; BatchNorm always uses the statistics of the
current input (training mode, one image per call, so per-image statistics), eps 1e-5; the running averages are
kept in the `batch_stats` collection only because the reference updates them (they are never read).

Initialisation `"pytorch"` (the default) reproduces PyTorch's defaults: conv weight and bias
~ U(±1/sqrt(fan_in)) with fan_in = k·k·C_in, BatchNorm scale 1 and shift 0. `"flax"` uses Flax's defaults
(lecun_normal kernels, zero biases).

Speed (all variants compute the same function): `conv_impl` picks XLA's convolution ("xla"), XLA's forward with
the kernel gradient as one matrix product ("xla_gemm_grad"; XLA:CPU's own kernel-gradient convolution of the
512→4 layer is ~20× slower), or everything as matrix products over the pixels plus tap shifts ("gemm", the
fastest on CPU). BatchNorm(+LeakyReLU) has a hand-written gradient (`batch_norm_act`). The first block can take
a `NetworkInput` instead of an array, which computes its two convolutions of the 512-deep input at once (the DIP
engine uses this to fold the per-step perturbation into them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any, Protocol, runtime_checkable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

PAPER_FILTERS = (16, 32, 64, 128, 256)
PAPER_SKIPS = (16, 32, 64, 128)
PAPER_ALPHA = 1.67
PAPER_INPUT_DEPTH = 512
INITS = ("pytorch", "flax")

Precision = Any  # None, a string ("highest", "default", ...) or a `jax.lax.Precision`.


def multires_widths(units: int, alpha: float = PAPER_ALPHA) -> tuple[int, int, int]:
  """The three branch widths (c1, c2, c3) of a MultiRes block with `units` U (Python `int` truncation)."""
  width = alpha * units
  return int(0.167 * width), int(0.333 * width), int(0.5 * width)


def multires_out(units: int, alpha: float = PAPER_ALPHA) -> int:
  """Output channels `c1 + c2 + c3` of a MultiRes block with `units` U."""
  return sum(multires_widths(units, alpha))


def _torch_uniform(fan_in: int):
  """U(±1/sqrt(fan_in)): PyTorch's default for conv weights (kaiming_uniform, a=√5) and biases."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


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


class Conv(nn.Module):
  """A k×k convolution with bias and zero padding (k - 1) // 2 on each side (PyTorch `Conv2d(pad=(k-1)//2)`).

  With stride 2 and even input sizes the output is input/2 and samples input rows 2o-1, 2o, 2o+1, as in
  PyTorch. (`padding="SAME"` would pad (0, 1) and shift the sampling grid.) `conv_impl`: see `conv2d`.

  Called with x=None (and `in_features`) it only creates/returns (kernel, bias): the first MultiRes block uses this
  to hand its kernels to a network-input provider (see `MultiResBlock`).
  """
  features: int
  kernel_size: int = 3
  stride: int = 1
  init_scheme: str = "pytorch"
  precision: Precision = "highest"
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array | None, *, in_features: int | None = None):
    """x: float[N, H, W, C_in] -> float[N, H/stride, W/stride, features]; x=None -> (kernel, bias)."""
    k = self.kernel_size
    cin = in_features if x is None else x.shape[-1]
    fan_in = k * k * cin
    if self.init_scheme == "pytorch":
      kernel_init = bias_init = _torch_uniform(fan_in)
    elif self.init_scheme == "flax":
      kernel_init, bias_init = nn.initializers.lecun_normal(), nn.initializers.zeros_init()
    else:
      raise ValueError(f"Unsupported init_scheme {self.init_scheme!r}; expected one of {INITS}.")
    kernel = self.param("kernel", kernel_init, (k, k, cin, self.features), jnp.float32)
    bias = self.param("bias", bias_init, (self.features,), jnp.float32)
    if x is None:
      return kernel, bias
    y = conv2d(x, kernel, stride=self.stride, precision=self.precision, impl=self.conv_impl)
    return y + bias


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


class BatchNorm(nn.Module):
  """Training-mode BatchNorm (statistics of the current input, per channel over N, H, W; eps 1e-5), optionally
  fused with a following LeakyReLU. Variables as Flax's `nn.BatchNorm`: params 'scale' (1), 'bias' (0);
  batch_stats 'mean' (0), 'var' (1), updated as running averages with PyTorch's rule (momentum 0.1, unbiased var);
  they are never read (SPEC §3.5)."""
  epsilon: float = 1e-5
  momentum: float = 0.1
  negative_slope: float | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones_init(), (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (c,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    y, mean, var = batch_norm_act(x, scale, bias, self.epsilon, self.negative_slope)
    if not self.is_initializing():
      n = math.prod(x.shape[:-1])
      mean, var = lax.stop_gradient(mean), lax.stop_gradient(var) * (n / max(n - 1, 1))
      ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
      ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * var
    return y


class ConvBNAct(nn.Module):
  """conv(k, stride) -> BatchNorm -> LeakyReLU (the reference's `conv_bn_act`).

  `__call__(x)` runs all three. `__call__(None, in_features=C)` only returns the conv kernel;
  `__call__(None, in_features=C, conv_out=y)` continues from a conv output y computed elsewhere (bias not added).
  """
  features: int
  kernel_size: int = 3
  stride: int = 1
  negative_slope: float = 0.2
  init_scheme: str = "pytorch"
  precision: Precision = "highest"
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array | None, *, in_features: int | None = None,
               conv_out: jax.Array | None = None) -> jax.Array:
    conv = Conv(self.features, self.kernel_size, self.stride, init_scheme=self.init_scheme,
                precision=self.precision, conv_impl=self.conv_impl, name="conv")
    if x is None:
      kernel, bias = conv(None, in_features=in_features)
      if conv_out is None:
        return kernel
      y = conv_out + bias
    else:
      y = conv(x)
    return BatchNorm(negative_slope=self.negative_slope, name="bn")(y)


@runtime_checkable
class NetworkInput(Protocol):
  """What the U-Net accepts instead of an input array: something that convolves itself.

  The DIP engine feeds `z + σ·n_t` this way, so that the fresh Gaussian perturbation n_t and the 512-channel
  contraction of the first two convolutions can be computed together (see `dippas_jax.dip`).
  """
  depth: int                   # C_in
  spatial: tuple[int, int]     # (H, W)

  def convolve(self, kernels: Sequence[jax.Array]) -> list[jax.Array]:
    """Stride-1 zero-padded convolutions of the input with each kernel float[k, k, C_in, C_j] (no bias), all at
    once; returns [float32[1, H, W, C_j]]."""


class MultiResBlock(nn.Module):
  """MultiRes block MRB(U): three chained 3×3 CBAs (c1, c2, c3), a 1×1 CBA shortcut, BN after the concat and after
  the activated sum (SPEC §3.1):  y = BN_2(LeakyReLU(CBA_1×1(x) + BN_1(concat[o1, o2, o3]))).

  x may be a `NetworkInput` (the first block): its two convolutions of x are then computed by x.convolve.
  """
  units: int
  alpha: float = PAPER_ALPHA
  negative_slope: float = 0.2
  init_scheme: str = "pytorch"
  precision: Precision = "highest"
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array | NetworkInput) -> jax.Array:
    """x: float[N, H, W, C_in] -> float[N, H, W, c1 + c2 + c3]."""
    c1, c2, c3 = multires_widths(self.units, self.alpha)
    kw = dict(negative_slope=self.negative_slope, init_scheme=self.init_scheme, precision=self.precision,
              conv_impl=self.conv_impl)
    first = ConvBNAct(c1, 3, name="conv3x3_1", **kw)
    shortcut = ConvBNAct(c1 + c2 + c3, 1, name="shortcut", **kw)
    if isinstance(x, NetworkInput):  # both convolutions of the input at once
      d = x.depth
      y1, ys = x.convolve([first(None, in_features=d), shortcut(None, in_features=d)])
      o1 = first(None, in_features=d, conv_out=y1)
      s = shortcut(None, in_features=d, conv_out=ys)
    else:
      o1, s = first(x), None
    o2 = ConvBNAct(c2, 3, name="conv3x3_2", **kw)(o1)
    o3 = ConvBNAct(c3, 3, name="conv3x3_3", **kw)(o2)
    if s is None:
      s = shortcut(x)
    cat = BatchNorm(name="bn_concat")(jnp.concatenate([o1, o2, o3], axis=-1))
    return BatchNorm(name="bn_out")(nn.leaky_relu(s + cat, self.negative_slope))


class ResPath(nn.Module):
  """ResPath of length 1: y = BN(LeakyReLU(CBA_3×3(x) + CBA_1×1(x)))."""
  features: int
  negative_slope: float = 0.2
  init_scheme: str = "pytorch"
  precision: Precision = "highest"
  conv_impl: str = "xla"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kw = dict(negative_slope=self.negative_slope, init_scheme=self.init_scheme, precision=self.precision,
              conv_impl=self.conv_impl)
    a = ConvBNAct(self.features, 3, name="conv3x3", **kw)(x)
    b = ConvBNAct(self.features, 1, name="conv1x1", **kw)(x)
    return BatchNorm(name="bn")(nn.leaky_relu(a + b, self.negative_slope))


def upsample_nearest(x: jax.Array, factor: int = 2) -> jax.Array:
  """Nearest-neighbour up-sampling float[N, H, W, C] -> float[N, factor·H, factor·W, C] (each pixel repeated)."""
  n, h, w, c = x.shape
  y = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
  return y.reshape(n, h * factor, w * factor, c)


class MultiResUNet(nn.Module):
  """The DIPPAS MultiRes U-Net (SPEC §3). Input float[N, H, W, input_depth], H and W multiples of
  2**(len(filters) - 1); output x̂ = sigmoid(...) float32[N, H, W, out_channels] in (0, 1).

  Attributes:
    filters: MultiRes units U per scale (encoder and decoder), coarsest last. len(filters) = number of scales.
    skips: ResPath widths per scale except the coarsest; len(skips) = len(filters) - 1.
    alpha: MultiRes width multiplier (1.67).
    out_channels: 3 (RGB).
    negative_slope: LeakyReLU slope (0.2).
    init_scheme: "pytorch" (default; PyTorch's uniform fan-in init) or "flax".
    precision: convolution precision ("highest" keeps float32 on GPUs with TF32; None is the backend default).
    conv_impl: "xla", "xla_gemm_grad" or "gemm" (see `conv2d`): how convolutions and their gradients are
      computed; the function is the same.
  The input depth (512 in the paper) is whatever the input has.
  """
  filters: Sequence[int] = PAPER_FILTERS
  skips: Sequence[int] = PAPER_SKIPS
  alpha: float = PAPER_ALPHA
  out_channels: int = 3
  negative_slope: float = 0.2
  init_scheme: str = "pytorch"
  precision: Precision = "highest"
  conv_impl: str = "xla"

  @property
  def downsampling(self) -> int:
    """H and W must be multiples of this (2**(number of scales - 1))."""
    return 2 ** (len(self.filters) - 1)

  @nn.compact
  def __call__(self, x: jax.Array | NetworkInput) -> jax.Array:
    """x: float[N, H, W, input_depth] (or a `NetworkInput`, one image) -> x̂ float32[N, H, W, out_channels]."""
    if len(self.skips) != len(self.filters) - 1:
      raise ValueError(f"len(skips) must be len(filters) - 1, got skips={tuple(self.skips)} for "
                       f"filters={tuple(self.filters)}.")
    if not isinstance(x, NetworkInput):
      x = jnp.asarray(x)
      if x.ndim != 4:
        raise ValueError(f"input must be [N, H, W, C]; got shape {x.shape}.")
      spatial = x.shape[1:3]
    else:
      spatial = tuple(x.spatial)
    if spatial[0] % self.downsampling or spatial[1] % self.downsampling:
      raise ValueError(f"H and W must be multiples of {self.downsampling} (2**(len(filters) - 1)); got "
                       f"{spatial[0]}x{spatial[1]}. Crop or pad the image.")
    kw = dict(negative_slope=self.negative_slope, init_scheme=self.init_scheme, precision=self.precision,
              conv_impl=self.conv_impl)
    num_scales = len(self.filters)
    # Encoder: E0 at full resolution, then (Down, MRB) per scale.
    encoded = [MultiResBlock(self.filters[0], self.alpha, name="enc_0", **kw)(x)]
    for s in range(1, num_scales):
      prev = encoded[-1]
      down = ConvBNAct(prev.shape[-1], 3, stride=2, name=f"down_{s}", **kw)(prev)
      encoded.append(MultiResBlock(self.filters[s], self.alpha, name=f"enc_{s}", **kw)(down))
    # Decoder: concat [skip, deeper] (skip first), MRB, from the coarsest scale up.
    y = encoded[-1]
    for s in reversed(range(num_scales - 1)):
      skip = ResPath(self.skips[s], name=f"skip_{s}", **kw)(encoded[s])
      y = jnp.concatenate([skip, upsample_nearest(y)], axis=-1)
      y = MultiResBlock(self.filters[s], self.alpha, name=f"dec_{s}", **kw)(y)
    y = Conv(self.out_channels, 1, init_scheme=self.init_scheme, precision=self.precision,
             conv_impl=self.conv_impl, name="head")(y)
    return nn.sigmoid(y)
