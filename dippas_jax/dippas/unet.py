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

Speed: `conv_impl` picks one of the three formulations of `layers.conv2d` ("xla", "xla_gemm_grad", "gemm": the
same function); BatchNorm(+LeakyReLU) has a hand-written gradient (`layers.batch_norm_act`). The first block can take
a `NetworkInput` instead of an array, which computes its two convolutions of the 512-deep input at once (the DIP
engine uses this to fold the per-step perturbation into them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from dippas_jax.dippas import layers
from dippas_jax.dippas.layers import Precision

PAPER_FILTERS = (16, 32, 64, 128, 256)
PAPER_SKIPS = (16, 32, 64, 128)


def check_size(height: int, width: int, *, downsampling: int, hint: str = "") -> None:
  """ValueError unless H and W are multiples of the U-Net's down-sampling factor 2^(scales − 1) (the one place
  this rule is written: the driver, the anonymizer's geometry check and the network call it); the message names
  the nearest crop and pad and ends with `hint` (where the caller's user sets the size)."""
  if height % downsampling or width % downsampling:
    lo = [max(downsampling, n // downsampling * downsampling) for n in (height, width)]
    hi = [-(-n // downsampling) * downsampling for n in (height, width)]
    raise ValueError(f"image size {height}x{width} is not a multiple of {downsampling} (the U-Net down-samples "
                     f"{int(math.log2(downsampling))} times): crop to {lo[0]}x{lo[1]} or pad to {hi[0]}x{hi[1]}"
                     + (f" ({hint})" if hint else ""))
PAPER_ALPHA = 1.67
PAPER_INPUT_DEPTH = 512
INITS = ("pytorch", "flax")
CONV_IMPLS = layers.CONV_IMPLS


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


class _ConvFields(nn.Module):
  """The fields of a convolution layer (shared by `Conv` and `ConvBNAct`)."""
  features: int
  kernel_size: int = 3
  stride: int = 1
  init_scheme: str = "pytorch"
  precision: Precision = "highest"
  conv_impl: str = "xla"


class Conv(_ConvFields):
  """A k×k convolution with bias and zero padding (k - 1) // 2 on each side (PyTorch `Conv2d(pad=(k-1)//2)`).

  With stride 2 and even input sizes the output is input/2 and samples input rows 2o-1, 2o, 2o+1, as in
  PyTorch. (`padding="SAME"` would pad (0, 1) and shift the sampling grid.) `conv_impl`: see `conv2d`.

  Called with x=None (and `in_features`) it only creates/returns (kernel, bias): the first MultiRes block uses this
  to hand its kernels to a network-input provider (see `MultiResBlock`).
  """

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
    y = layers.conv2d(x, kernel, stride=self.stride, precision=self.precision, impl=self.conv_impl)
    return y + bias



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
    y, mean, var = layers.batch_norm_act(x, scale, bias, self.epsilon, self.negative_slope)
    if not self.is_initializing():
      n = math.prod(x.shape[:-1])
      mean, var = lax.stop_gradient(mean), lax.stop_gradient(var) * (n / max(n - 1, 1))
      ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
      ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * var
    return y


class ConvBNAct(_ConvFields):
  """conv(k, stride) -> BatchNorm -> LeakyReLU (the reference's `conv_bn_act`).

  `__call__(x)` runs all three. `__call__(None, in_features=C)` only returns the conv kernel;
  `__call__(None, in_features=C, conv_out=y)` continues from a conv output y computed elsewhere (bias not added).
  """
  negative_slope: float = 0.2

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
    sigmoid_grad_floor: lower bound of the output sigmoid's gradient (`layers.sigmoid`; 0 = the paper).
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
  sigmoid_grad_floor: float = 0.0

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
    check_size(*spatial, downsampling=self.downsampling)
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
    return layers.sigmoid(y, self.sigmoid_grad_floor)
