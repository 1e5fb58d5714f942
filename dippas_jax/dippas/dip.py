"""The DIP engine of DIPPAS: one MultiRes U-Net + γ + optimizer per image, optimised to reproduce the image.

Per image, iteration t (0-based) does, in this order (SPEC §2.8, with the decisions of §0):

  1. forward   x̂ = f_θ(z + σ_r·n_t),  y = x̂ ⊙ (1 + γK)          n_t ~ N(0, 1) fresh, z fixed
  2. record    loss = MSE(y, I), PSNR(q(x̂), q(I)), γ (the value used in this forward)
  3. hook      candidates <- hook(candidates, q(x̂), PSNR, t, active)
  4. stop      if PSNR > τ_stop (strict): done; this iteration is recorded, no update is applied
  5. update    θ, γ <- optimizer step on the gradient of the loss
  6. project   γ <- max(γ, 0)

with q(v) = floor(clip(255·v, 0, 255)) (uint8 truncation) and PSNR = 10·log10(255² / mean((q(x̂) - q(I))²)) in
float math (no uint8 wrap-around). The kept image is x̂, never the injected y (SPEC §4.1 item 2). An image is also
done after `max_steps` forwards (10,001 by default).

Shapes: N images, H×W pixels (multiples of 2**(num_scales - 1) = 16 at the defaults), D = input depth (512),
K = chunk size (steps per call of the chunk runner), T = steps recorded.

Design:
  * State is an explicit pytree (`DipState`), one entry per image along a leading axis N; the constant per-image
    data (target, fingerprint, the injected pattern, the fixed input z, the stop rule) is `DipInputs`. Params,
    BatchNorm statistics and the optimizer moments are flat float32 vectors (`FlatSpec`; one fused update per
    step instead of ~100 per-leaf ones, which also cuts compile time); `DipRunner.params_tree` restores the tree.
  * The injection mode, τ_stop and max_steps are data (set at init), so switching between them never recompiles.
  * The candidate hook (`CandidateHook`) runs inside the jitted step, per image, and owns `DipState.candidates`.
  * Keys: `k_i = fold_in(key(seed), image_id)`; params, z and the perturbation stream are fold_in(k_i, 0 | 1 | 2);
    the perturbation of step t is drawn from fold_in(stream, t) inside the jitted step. A result therefore depends
    on (seed, image_id, image, fingerprint, settings) only, never on which other images share the batch.
  * The chunk runner is `lax.scan` over K steps of one image, batched over the images of a device either with
    `vmap` (per-image early stop by masking: `tree_map(partial(jnp.where, active), new, old)`), `lax.map` or an
    unrolled loop (these two skip finished images with `lax.cond`), and `shard_map`ped over a 1-D device mesh on
    the image axis. BatchNorm statistics are per image (each image is its own batch of 1; no `axis_name`). The
    state is donated; the runner compiles once per (shapes, settings).
  * Multi-host: call `jax.distributed.initialize()` in every process first, build the mesh over the global
    `jax.devices()` (`make_mesh()`), and give each process the images of its own devices (e.g. with
    `jax.make_array_from_process_local_data`); nothing in the step communicates across images, so the runner is
    unchanged. `optimize` itself is the single-process driver.
  * The network input. z is stored planar, float32[D, H, W], because the only consumers of the D = 512 channels
    are the first two convolutions (3×3 512→4 and 1×1 512→25 at the defaults), which are computed together as one
    matrix product [M, D]·[D, H·W] (M = 9·4 + 25 = 61) followed by a shift-and-add of the 3×3 taps. The
    perturbation is applied there, in one of two ways (`perturbation`):
      'full'       n_t ~ N(0, 1)^{D×H×W} is drawn and the product taken with z + σ_r·n_t (the reference).
      'projected'  the same distribution, with D/M times fewer random numbers: the forward only sees n_t through
                   Aᵀn_t (A = the [D, M] kernel matrix), so n_t is drawn only in span(A) as Q·ε (Q = A·L⁻ᵀ, L the
                   Cholesky factor of AᵀA: an orthonormal basis of span(A), with AᵀQ·ε = L·ε; ε ~ N(0, 1)^{M×H·W});
                   the part of n_t orthogonal to span(A), which only enters the kernel gradient as
                   σ_r·(I - QQᵀ)·n_t·Gᵀ, is drawn exactly given G (the output gradient) as σ_r·(I - QQᵀ)·E·L_Gᵀ
                   with E ~ N(0, 1)^{D×M} and L_G·L_Gᵀ = G·Gᵀ. Forward outputs and gradients have the joint
                   distribution of 'full' (up to a 1e-6 relative Cholesky jitter); only the random stream differs.
                   Cholesky factors are unique, so the sample does not depend on batching. With M ≥ D (tiny
                   networks) or D·H·W < PROJECTED_MIN_SIZE (small inputs) it draws in full, which is cheaper there.
    'auto' picks 'projected' on CPU (where drawing 134 M Gaussians per step at 512² dominates) and 'full'
    elsewhere.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax
import jax
import jax.extend.random  # noqa: F401  (threefry_2x32, for `standard_normal`)
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dippas_jax.dippas import optim
from dippas_jax.dippas import injection as injection_lib
from dippas_jax.dippas import unet as multires_unet

IMAGE_AXIS = "images"
# 'projected' draws the perturbation in full below this many input values D·H·W per image (on a 2-core CPU at
# D = 512 the full draw is faster at 64² = 2.1 M values, the projection from 128² = 8.4 M on).
PROJECTED_MIN_SIZE = 4 * 2**20
BATCHINGS = ("vmap", "map", "loop")
PERTURBATIONS = ("auto", "full", "projected")
PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")


# ----------------------------------------------------------------------------------------------- settings

@dataclasses.dataclass(frozen=True)
class PlateauSettings:
  """ReduceLROnPlateau(mode='min') on the loss, as the reference's `--use_scheduler` (off by default)."""
  enabled: bool = False
  factor: float = 0.9
  patience: int = 10
  threshold: float = 1e-4
  threshold_mode: str = "rel"
  cooldown: int = 0
  min_lr: float = 0.0


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
  """See `dippas_jax.optim.make_optimizer`."""
  name: str = "amsgrad_torch"
  learning_rate: float = 1e-3
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  weight_decay: float = 1e-4
  momentum: float = 0.9
  nesterov: bool = False
  plateau: PlateauSettings = PlateauSettings()


@dataclasses.dataclass(frozen=True)
class DipSettings:
  """Everything the engine needs, hashable (the compiled runner is cached per settings). Defaults = the paper.

  Build it from a config with `DipSettings.from_config(config)` (configs/dip.py documents every field).
  """
  filters: tuple[int, ...] = multires_unet.PAPER_FILTERS
  skips: tuple[int, ...] = multires_unet.PAPER_SKIPS
  alpha: float = multires_unet.PAPER_ALPHA
  input_depth: int = multires_unet.PAPER_INPUT_DEPTH
  negative_slope: float = 0.2
  init_scheme: str = "pytorch"
  precision: str = "highest"
  conv_impl: str = "auto"
  injection: str = "paper"
  input_noise_std: float = 0.1
  reg_noise_std: float = 0.1
  perturbation: str = "auto"
  projected_min_size: int = PROJECTED_MIN_SIZE
  prng_impl: str = "threefry2x32"
  optimizer: OptimizerSettings = OptimizerSettings()
  tau_stop: float = 39.0
  max_steps: int = 10001
  chunk_size: int = 50
  batching: str = "vmap"

  @property
  def downsampling(self) -> int:
    return 2 ** (len(self.filters) - 1)

  @classmethod
  def from_config(cls, config: Any) -> "DipSettings":
    """From an ml_collections ConfigDict laid out like configs/dip.py (or any object with those attributes)."""
    m, n, o, r = config.model, config.noise, config.optimizer, config.runner
    p = o.plateau
    return cls(
        filters=tuple(int(f) for f in m.filters), skips=tuple(int(s) for s in m.skips), alpha=float(m.alpha),
        input_depth=int(m.input_depth), negative_slope=float(m.negative_slope), init_scheme=m.init_scheme,
        precision=m.precision, conv_impl=m.conv_impl, injection=config.injection,
        input_noise_std=float(n.input_std), reg_noise_std=float(n.reg_std), perturbation=n.perturbation,
        projected_min_size=int(n.projected_min_size), prng_impl=n.prng_impl,
        optimizer=OptimizerSettings(
            name=o.name, learning_rate=float(o.learning_rate), b1=float(o.b1), b2=float(o.b2), eps=float(o.eps),
            weight_decay=float(o.weight_decay), momentum=float(o.momentum), nesterov=bool(o.nesterov),
            plateau=PlateauSettings(enabled=bool(p.enabled), factor=float(p.factor), patience=int(p.patience),
                                    threshold=float(p.threshold), threshold_mode=p.threshold_mode,
                                    cooldown=int(p.cooldown), min_lr=float(p.min_lr))),
        tau_stop=float(config.tau_stop), max_steps=int(config.max_steps), chunk_size=int(r.chunk_size),
        batching=r.batching)

  def check(self) -> None:
    """ValueError on unsupported names (before anything is traced)."""
    injection_lib.check_mode(self.injection)
    for name, value, allowed in (("batching", self.batching, BATCHINGS),
                                 ("perturbation", self.perturbation, PERTURBATIONS),
                                 ("prng_impl", self.prng_impl, PRNG_IMPLS),
                                 ("conv_impl", self.conv_impl, ("auto",) + multires_unet.CONV_IMPLS),
                                 ("init_scheme", self.init_scheme, multires_unet.INITS)):
      if value not in allowed:
        raise ValueError(f"Unsupported {name} {value!r}; expected one of {allowed}.")
    if self.optimizer.name not in optim.OPTIMIZERS:
      raise ValueError(f"Unsupported optimizer {self.optimizer.name!r}; expected one of {optim.OPTIMIZERS}.")
    if self.chunk_size < 1 or self.max_steps < 1:
      raise ValueError(f"chunk_size and max_steps must be >= 1, got {self.chunk_size}, {self.max_steps}.")


def resolve(settings: DipSettings, platform: str | None = None) -> DipSettings:
  """Replace the 'auto' choices by concrete ones for `platform` (default: the default backend)."""
  platform = platform or jax.default_backend()
  cpu = platform == "cpu"
  return dataclasses.replace(
      settings,
      conv_impl=("gemm" if cpu else "xla") if settings.conv_impl == "auto" else settings.conv_impl,
      perturbation=("projected" if cpu else "full") if settings.perturbation == "auto" else settings.perturbation)


def _precision(settings: DipSettings):
  return None if settings.precision in ("default", None) else settings.precision


def make_model(settings: DipSettings) -> injection_lib.InjectedUNet:
  """The U-Net + injection module for these settings. (The runner always builds it in 'paper' mode and applies
  the injection mode to the fingerprint at init, see `DipInputs.injected`, so that modes share one compile.)"""
  unet = multires_unet.MultiResUNet(
      filters=settings.filters, skips=settings.skips, alpha=settings.alpha, negative_slope=settings.negative_slope,
      init_scheme=settings.init_scheme, precision=_precision(settings),
      conv_impl=resolve(settings).conv_impl)
  return injection_lib.InjectedUNet(unet=unet, mode=settings.injection)


# ----------------------------------------------------------------------------------------------- initialisation

def variable_shapes(settings: DipSettings) -> Any:
  """Abstract {'params', 'batch_stats'} of `make_model(settings)` (jax.eval_shape, nothing allocated)."""
  model = make_model(settings)
  ds = settings.downsampling
  dummy = jax.ShapeDtypeStruct((1, ds, ds, settings.input_depth), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), dummy, jax.ShapeDtypeStruct((ds, ds), jnp.float32))


@functools.lru_cache(maxsize=32)
def init_vectors(settings: DipSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Host vectors (scale float32[P], shift float32[P], batch_stats float32[S]) with params = shift + scale·u.

  Conv kernels and their biases: scale = 1/sqrt(k·k·C_in) ('pytorch', u ~ U(-1, 1)) or kernel scale
  sqrt(1/fan_in)/0.8796 and bias 0 ('flax', u ~ truncated N(0, 1) on [-2, 2], as lecun_normal); BatchNorm scale:
  shift 1; everything else (BN shift, γ) 0. Running var 1, mean 0.
  """
  pspec, sspec = flat_specs(settings)
  fan_in = {path[:-1]: math.prod(shape[:3]) for path, shape in zip(pspec.paths, pspec.shapes)
            if path[-1] == "kernel" and len(shape) == 4}
  scale, shift = [], []
  for path in pspec.paths:
    conv = fan_in.get(path[:-1])
    if conv is not None and settings.init_scheme == "pytorch":
      scale.append(1.0 / math.sqrt(conv))
    elif conv is not None and path[-1] == "kernel":
      scale.append(math.sqrt(1.0 / conv) / 0.87962566103423978)
    else:
      scale.append(0.0)
    shift.append(1.0 if path[-1] == "scale" else 0.0)
  stats = [1.0 if path[-1] == "var" else 0.0 for path in sspec.paths]
  expand = lambda v, sizes: np.repeat(np.asarray(v, np.float32), sizes)  # noqa: E731
  return expand(scale, pspec.sizes), expand(shift, pspec.sizes), expand(stats, sspec.sizes)


def init_flat(settings: DipSettings, key: jax.Array,
              vectors: tuple[Any, Any, Any] | None = None) -> tuple[jax.Array, jax.Array]:
  """Fresh flat (params float32[P], batch_stats float32[S]) for one image (see `init_variables`): one random draw
  of P numbers, so that initialisation compiles in a second instead of the ~30 s that `model.init`'s ~100
  separate draws take on CPU. `vectors`: `init_vectors(settings)`, possibly already on the device."""
  scale, shift, stats = vectors if vectors is not None else init_vectors(settings)
  total = scale.shape[0]
  if settings.init_scheme == "pytorch":
    u = jax.random.uniform(key, (total,), jnp.float32, -1.0, 1.0)
  else:
    u = jax.random.truncated_normal(key, -2.0, 2.0, (total,), jnp.float32)
  return jnp.asarray(shift) + jnp.asarray(scale) * u, jnp.asarray(stats)


def init_variables(settings: DipSettings, key: jax.Array) -> dict[str, Any]:
  """Fresh {'params', 'batch_stats'} for one image, with the same tree and distributions as `model.init`:
  'pytorch' conv kernels and biases ~ U(±1/sqrt(k·k·C_in)); 'flax' lecun_normal kernels, zero biases; BatchNorm
  scale 1, shift 0, running mean 0, var 1; γ = 0. (`model.init` draws the same distributions leaf by leaf.)"""
  params, stats = init_flat(settings, key)
  pspec, sspec = flat_specs(settings)
  return {"params": pspec.unravel(params), "batch_stats": sspec.unravel(stats)}


class FlatSpec:
  """Layout of a pytree of float32 arrays as one flat vector (tree_flatten order): ravel / unravel.

  The engine keeps params, BatchNorm statistics and the optimizer moments as flat vectors: one fused update per
  step instead of one per leaf (~100 leaves), which also cuts compile time several-fold.
  """

  def __init__(self, abstract_tree: Any):
    leaves, self.treedef = jax.tree_util.tree_flatten(abstract_tree)
    self.shapes = [tuple(leaf.shape) for leaf in leaves]
    self.sizes = [math.prod(shape) for shape in self.shapes]
    self.offsets = list(np.cumsum([0] + self.sizes[:-1]))
    self.size = int(sum(self.sizes))
    self.paths = [tuple(getattr(k, "key", k) for k in path)
                  for path, _ in jax.tree_util.tree_flatten_with_path(abstract_tree)[0]]

  def ravel(self, tree: Any) -> jax.Array:
    """pytree -> float32[size] (batch axes not allowed)."""
    return jnp.concatenate([jnp.reshape(leaf, (-1,)).astype(jnp.float32) for leaf in jax.tree.leaves(tree)])

  def unravel(self, flat: jax.Array) -> Any:
    """float32[..., size] -> pytree (leading batch axes kept). Its gradient is a concatenation (autodiff of the
    slices would pad every leaf's cotangent to the full size and add them up)."""
    return _unravel(self, flat)

  def index(self, path: tuple[str, ...]) -> int:
    """Offset of the (scalar or first) element of the leaf at `path`."""
    return int(self.offsets[self.paths.index(path)])


def _unravel_impl(spec: FlatSpec, flat: jax.Array) -> Any:
  batch = flat.shape[:-1]
  leaves = [flat[..., o:o + n].reshape(batch + shape) for o, n, shape in zip(spec.offsets, spec.sizes, spec.shapes)]
  return jax.tree_util.tree_unflatten(spec.treedef, leaves)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _unravel(spec: FlatSpec, flat: jax.Array) -> Any:
  return _unravel_impl(spec, flat)


def _unravel_fwd(spec, flat):
  return _unravel_impl(spec, flat), flat.shape[:-1]


def _unravel_bwd(spec, batch, cotangent):
  leaves = jax.tree.leaves(cotangent)
  return (jnp.concatenate([jnp.reshape(leaf, batch + (-1,)).astype(jnp.float32) for leaf in leaves], axis=-1),)


_unravel.defvjp(_unravel_fwd, _unravel_bwd)


@functools.lru_cache(maxsize=32)
def flat_specs(settings: DipSettings) -> tuple[FlatSpec, FlatSpec]:
  """(params spec, batch_stats spec) of `make_model(settings)`."""
  shapes = variable_shapes(settings)
  return FlatSpec(shapes["params"]), FlatSpec(shapes["batch_stats"])


# ----------------------------------------------------------------------------------------------- network input

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
  c1, c2, c3 = multires_unet.multires_widths(settings.filters[0], settings.alpha)
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


# ----------------------------------------------------------------------------------------------- state, hooks

@flax.struct.dataclass
class DipState:
  """Per-image optimisation state (leading axis N when batched).

  step: int32, forwards done = index of the next iteration. done: no more iterations (stopped or capped).
  stopped: PSNR crossed τ_stop. best_psnr / best_step: the best PSNR so far and its iteration (-inf / -1 at start).
  rng: the image's perturbation stream (a typed key). candidates: the hook's pytree.
  params, batch_stats: float32[P], float32[S] flat vectors (`FlatSpec`; `DipRunner.params_tree` gives the Flax
  tree {'unet': ..., 'injection': {'gamma'}}); opt_state: the optimizer state of the flat params.
  """
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  done: jax.Array
  stopped: jax.Array
  best_psnr: jax.Array
  best_step: jax.Array
  candidates: Any


@flax.struct.dataclass
class DipInputs:
  """Constant per-image data: target float32[H, W, 3] in [0, 1], target_u8 uint8[H, W, 3] = q(target),
  fingerprint float32[H, W] (K as given, image orientation), injected float32[H, W] (the pattern multiplied into
  the output: K, Kᵀ or 0 by injection mode), z float32[D, H, W] (planar), image_id int32[], and the stop rule
  tau_stop float32[] (dB) and max_steps int32[]. Injection mode, τ_stop and max_steps are runtime data: changing
  them does not recompile the chunk runner."""
  target: jax.Array
  target_u8: jax.Array
  fingerprint: jax.Array
  injected: jax.Array
  z: jax.Array
  image_id: jax.Array
  tau_stop: jax.Array
  max_steps: jax.Array


@flax.struct.dataclass
class DipHistory:
  """Per-step records, [K] per image ([N, K] batched): step (global iteration index, -1 if the image was not
  active), loss, psnr (of q(x̂)), gamma (used in that forward), NaN where inactive, and the active mask."""
  step: jax.Array
  loss: jax.Array
  psnr: jax.Array
  gamma: jax.Array
  active: jax.Array


class CandidateHook(NamedTuple):
  """Per-image candidate bookkeeping, run inside the jitted step (the runner vmaps/maps it over images).

  init(image float32[H, W, 3], fingerprint float32[H, W]) -> candidates (any pytree of arrays).
  update(candidates, image_u8 uint8[H, W, 3], psnr float32[], step int32[], active bool[]) -> candidates,
    called at every iteration after the record and before the stop check, with x̂ quantised (the kept image, not
    the injected output) and its PSNR; the crossing iteration is included. When `active` is False (a finished
    image in a vmapped batch) the runner discards the returned value anyway.
  """
  init: Callable[[jax.Array, jax.Array], Any]
  update: Callable[[Any, jax.Array, jax.Array, jax.Array, jax.Array], Any]


NO_HOOK = CandidateHook(init=lambda image, fingerprint: (), update=lambda candidates, *args: candidates)


def quantize_u8(x: jax.Array) -> jax.Array:
  """q(x) = floor(clip(255·x, 0, 255)) as uint8 (truncation, like `astype(uint8)` in the reference)."""
  return jnp.floor(jnp.clip(255.0 * x, 0.0, 255.0)).astype(jnp.uint8)


def psnr_u8(a: jax.Array, b: jax.Array) -> jax.Array:
  """10·log10(255² / mean((a - b)²)) of uint8 images [..., H, W, C], in float math (no wrap-around); inf if equal.

  Squared differences are summed exactly per row in int32, then in float32.
  """
  d = a.astype(jnp.int32) - b.astype(jnp.int32)
  rows = jnp.sum(d * d, axis=(-2, -1)).astype(jnp.float32)
  mse = jnp.sum(rows, axis=-1) / (a.shape[-3] * a.shape[-2] * a.shape[-1])
  return 10.0 * jnp.log10(255.0 ** 2 / mse)


def _where(cond, new, old):
  return jax.tree.map(functools.partial(jnp.where, cond), new, old)


# ----------------------------------------------------------------------------------------------- the step

def _make_step(settings: DipSettings, hook: CandidateHook):
  """The per-image step (state, inputs) -> (state, record), see the module docstring for the order."""
  settings = resolve(settings)
  model = make_model(dataclasses.replace(settings, injection="paper"))  # the mode is in inputs.injected
  tx = optim.make_optimizer(settings.optimizer)
  precision = _precision(settings)

  pspec, sspec = flat_specs(settings)
  gamma_index = pspec.index(("injection", "gamma"))

  def step(state: DipState, inputs: DipInputs, active: jax.Array) -> tuple[DipState, DipHistory]:
    key = jax.random.fold_in(state.rng, state.step)

    def loss_fn(flat_params):
      net_in = PlanarInput(inputs.z, key, settings.reg_noise_std, settings.perturbation, precision,
                           settings.projected_min_size)
      variables = {"params": pspec.unravel(flat_params), "batch_stats": sspec.unravel(state.batch_stats)}
      (x_hat, y), mutated = model.apply(variables, net_in, inputs.injected, mutable=["batch_stats"])
      loss = jnp.mean(jnp.square(y[0] - inputs.target))
      return loss, (x_hat[0], sspec.ravel(mutated["batch_stats"]))

    (loss, (x_hat, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    image_u8 = quantize_u8(x_hat)
    psnr = psnr_u8(image_u8, inputs.target_u8)
    gamma = state.params[gamma_index]
    candidates = hook.update(state.candidates, image_u8, psnr, state.step, active)
    stop = psnr > inputs.tau_stop
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
    params = state.params + updates
    params = params.at[gamma_index].set(jnp.maximum(params[gamma_index], 0.0))  # project γ >= 0
    next_step = state.step + 1
    better = psnr > state.best_psnr
    # params / opt_state are returned updated; `_masked` keeps the old ones where the image stopped (no update at
    # the crossing step) or was inactive, in one select per array.
    new_state = state.replace(
        step=next_step,
        params=params,
        opt_state=opt_state,
        batch_stats=batch_stats,
        done=stop | (next_step >= inputs.max_steps),
        stopped=stop,
        best_psnr=jnp.where(better, psnr, state.best_psnr),
        best_step=jnp.where(better, state.step, state.best_step),
        candidates=candidates)
    record = DipHistory(step=state.step, loss=loss, psnr=psnr, gamma=gamma, active=jnp.asarray(True))
    return new_state, record

  return step


def _masked(active, new: DipState, old: DipState, record: DipHistory) -> tuple[DipState, DipHistory]:
  """Keep `new` where active, else `old` (every field but the key; params and optimizer state also stay when the
  image stopped at this step: no update at the crossing iteration); NaN / -1 records where inactive."""
  fields = ("step", "batch_stats", "done", "stopped", "best_psnr", "best_step", "candidates")
  kept = old.replace(**{f: _where(active, getattr(new, f), getattr(old, f)) for f in fields})
  update = active & jnp.logical_not(new.stopped)
  kept = kept.replace(params=_where(update, new.params, old.params),
                      opt_state=_where(update, new.opt_state, old.opt_state))
  nan = jnp.float32(jnp.nan)
  rec = DipHistory(step=jnp.where(active, record.step, -1), loss=jnp.where(active, record.loss, nan),
                   psnr=jnp.where(active, record.psnr, nan), gamma=jnp.where(active, record.gamma, nan),
                   active=jnp.asarray(active))
  return kept, rec


def _make_chunk(settings: DipSettings, hook: CandidateHook):
  """chunk(states, inputs) -> (states, history[N, K]) over the images of one device, without sharding."""
  step = _make_step(settings, hook)
  skip_inactive = settings.batching != "vmap"

  def guarded(state, inputs):
    active = jnp.logical_not(state.done)

    def run(s):
      new, rec = step(s, inputs, active)
      return _masked(active, new, s, rec)

    if skip_inactive:
      def skip(s):
        nan = jnp.float32(jnp.nan)
        return s, DipHistory(step=jnp.int32(-1), loss=nan, psnr=nan, gamma=nan, active=jnp.asarray(False))
      return lax.cond(active, run, skip, state)
    return run(state)

  def chunk_one(state, inputs):
    return lax.scan(lambda s, _: guarded(s, inputs), state, None, length=settings.chunk_size)

  if settings.batching == "vmap":
    return jax.vmap(chunk_one)
  if settings.batching == "map":
    return lambda states, inputs: lax.map(lambda si: chunk_one(*si), (states, inputs))

  def loop(states, inputs):
    n = jax.tree.leaves(inputs)[0].shape[0]
    outs = [chunk_one(jax.tree.map(lambda x: x[i], states), jax.tree.map(lambda x: x[i], inputs)) for i in range(n)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

  return loop


# ----------------------------------------------------------------------------------------------- runner

def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over `devices` (default: all of `jax.devices()`) with the axis 'images'."""
  return Mesh(np.asarray(list(devices if devices is not None else jax.devices())), (IMAGE_AXIS,))


@dataclasses.dataclass(frozen=True)
class DipRunner:
  """Compiled entry points for one (settings, hook, mesh).

  init(seed int, image_ids int32[N], images float32[N, H, W, 3], images_u8 uint8[N, H, W, 3],
       fingerprints float32[N, H, W], active bool[N], tau_stop=None, max_steps=None, *, injection='paper')
       -> (DipState, DipInputs), jitted, sharded on the image axis; tau_stop / max_steps default to the paper's
       39 dB / 10,001.
  run_chunk(state, inputs) -> (state, DipHistory[N, K]): `chunk_size` steps, jitted, state donated.
  N must be a multiple of the mesh size (`optimize` pads).
  """
  settings: DipSettings
  mesh: Mesh
  init: Callable[..., tuple[DipState, DipInputs]]
  run_chunk: Callable[[DipState, DipInputs], tuple[DipState, DipHistory]]
  chunk_fn: Callable[[DipState, DipInputs], tuple[DipState, DipHistory]]
  param_spec: FlatSpec
  stats_spec: FlatSpec

  @property
  def sharding(self) -> NamedSharding:
    return NamedSharding(self.mesh, P(IMAGE_AXIS))

  def params_tree(self, state: DipState) -> Any:
    """The Flax params tree of `state` (leading image axis kept)."""
    return self.param_spec.unravel(state.params)

  def gamma(self, state: DipState) -> jax.Array:
    """γ of every image, float32[N]."""
    return state.params[..., self.param_spec.index(("injection", "gamma"))]


def build_runner(settings: DipSettings, *, hook: CandidateHook | None = None, mesh: Mesh | None = None,
                 wrap_chunk_fn: Callable | None = None) -> DipRunner:
  """Build (and cache) the jitted init and chunk runner. `wrap_chunk_fn` wraps the per-device chunk function
  before shard_map and jit (tests pass `chex.assert_max_traces(n=1)`); runners built with it are not cached."""
  settings.check()
  hook = hook or NO_HOOK
  mesh = mesh or make_mesh()
  # Injection mode, τ_stop and max_steps are arguments of init (runtime data of DipInputs), not part of the key.
  settings = dataclasses.replace(settings, tau_stop=DipSettings.tau_stop, max_steps=DipSettings.max_steps,
                                 injection=DipSettings.injection)
  if wrap_chunk_fn is not None:
    return _build_runner(settings, hook, mesh, wrap_chunk_fn)
  return _build_runner_cached(settings, hook, mesh)


@functools.lru_cache(maxsize=16)
def _build_runner_cached(settings, hook, mesh):
  return _build_runner(settings, hook, mesh, None)


def _build_runner(settings: DipSettings, hook: CandidateHook, mesh: Mesh, wrap_chunk_fn) -> DipRunner:
  platform = mesh.devices.flat[0].platform
  settings = resolve(settings, platform)
  sharding = NamedSharding(mesh, P(IMAGE_AXIS))
  spec = P(IMAGE_AXIS)
  tx = optim.make_optimizer(settings.optimizer)
  pspec, sspec = flat_specs(settings)

  def init_one(seed, image_id, image, image_u8, fingerprint, active, tau_stop, max_steps, vectors, injection):
    key = jax.random.fold_in(jax.random.key(seed, impl=settings.prng_impl), image_id)
    params, batch_stats = init_flat(settings, jax.random.fold_in(key, 0), vectors)
    h, w = image.shape[:2]
    z = settings.input_noise_std * jax.random.normal(jax.random.fold_in(key, 1), (settings.input_depth, h, w))
    state = DipState(
        step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
        opt_state=tx.init(params), rng=jax.random.fold_in(key, 2), done=jnp.logical_not(active),
        stopped=jnp.zeros((), bool), best_psnr=jnp.full((), -jnp.inf, jnp.float32),
        best_step=jnp.full((), -1, jnp.int32), candidates=hook.init(image, fingerprint))
    inputs = DipInputs(target=image, target_u8=image_u8, fingerprint=fingerprint,
                       injected=injection_lib.oriented_fingerprint(fingerprint, injection), z=z,
                       image_id=jnp.asarray(image_id, jnp.int32), tau_stop=jnp.asarray(tau_stop, jnp.float32),
                       max_steps=jnp.asarray(max_steps, jnp.int32))
    return state, inputs

  vectors = tuple(jnp.asarray(v) for v in init_vectors(settings))  # passed as arguments, not HLO constants

  def init(seed, image_ids, images, images_u8, fingerprints, active, tau_stop, max_steps, vectors, *,
           injection="paper"):
    return jax.vmap(functools.partial(init_one, injection=injection),
                    in_axes=(None, 0, 0, 0, 0, 0, None, None, None))(
        seed, image_ids, images, images_u8, fingerprints, active, tau_stop, max_steps, vectors)

  @functools.lru_cache(maxsize=None)
  def init_for(injection):  # one (cheap) init compile per injection mode; the chunk runner is shared
    return jax.jit(functools.partial(init, injection=injection),
                   in_shardings=(None, sharding, sharding, sharding, sharding, sharding, None, None, None),
                   out_shardings=sharding)

  def init_jit(seed, image_ids, images, images_u8, fingerprints, active, tau_stop=None, max_steps=None, *,
               injection="paper"):
    injection_lib.check_mode(injection)
    tau_stop = settings.tau_stop if tau_stop is None else tau_stop
    max_steps = settings.max_steps if max_steps is None else max_steps
    return init_for(injection)(seed, image_ids, images, images_u8, fingerprints, active, tau_stop, max_steps,
                               vectors)

  batched_chunk = _make_chunk(settings, hook)

  def local_chunk(states, inputs):  # the images of one device
    return batched_chunk(states, inputs)

  if wrap_chunk_fn is not None:
    local_chunk = wrap_chunk_fn(local_chunk)
  chunk_fn = jax.shard_map(local_chunk, mesh=mesh, in_specs=(spec, spec), out_specs=(spec, spec), check_vma=False)
  # Explicit shardings: on a 1-device mesh XLA would otherwise return some outputs as replicated, and the next
  # call would compile again for the new input shardings.
  run_chunk = jax.jit(chunk_fn, donate_argnums=0, in_shardings=sharding, out_shardings=sharding)
  return DipRunner(settings=settings, mesh=mesh, init=init_jit, run_chunk=run_chunk, chunk_fn=chunk_fn,
                   param_spec=pspec, stats_spec=sspec)


# ----------------------------------------------------------------------------------------------- driver

def validate_inputs(images: Any, fingerprints: Any, *, downsampling: int = 16,
                    injection: str = "paper") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Check and normalise the driver's inputs on the host, before any compute.

  images: uint8[N, H, W, 3] (0..255) or float[N, H, W, 3] in [0, 1] (a single [H, W, 3] image is allowed);
  fingerprints: float[N, H, W] or one float[H, W] for all images.
  Returns (images float32[N, H, W, 3] in [0, 1], images_u8 uint8[N, H, W, 3] = q(images), fingerprints
  float32[N, H, W]). Raises ValueError with what to change.
  """
  images = np.asarray(images)
  fingerprints = np.asarray(fingerprints)
  if images.ndim == 3:
    images = images[None]
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [N, H, W, 3] RGB, got shape {images.shape}.")
  n, h, w, _ = images.shape
  if n == 0:
    raise ValueError("no images given.")
  if h % downsampling or w % downsampling:
    lo = (h // downsampling * downsampling, w // downsampling * downsampling)
    hi = (-(-h // downsampling) * downsampling, -(-w // downsampling) * downsampling)
    raise ValueError(f"image size {h}x{w} is not a multiple of {downsampling} (the U-Net down-samples "
                     f"{int(math.log2(downsampling))} times): crop to {lo[0]}x{lo[1]} or pad to {hi[0]}x{hi[1]} "
                     "(e.g. a centre crop).")
  if images.dtype == np.uint8:
    images_u8 = images
    images_f = images.astype(np.float32) / np.float32(255.0)
  elif np.issubdtype(images.dtype, np.floating):
    if not np.all(np.isfinite(images)):
      raise ValueError("images contain NaN or inf.")
    if images.min() < 0.0 or images.max() > 1.0:
      raise ValueError(f"float images must lie in [0, 1] (got [{images.min()}, {images.max()}]); divide uint8 "
                       "images by 255 or pass them as uint8.")
    images_u8 = np.floor(np.clip(255.0 * images.astype(np.float64), 0.0, 255.0)).astype(np.uint8)
    images_f = images.astype(np.float32)
  else:
    raise ValueError(f"images must be uint8 or float, got dtype {images.dtype}.")
  if fingerprints.ndim == 2:
    fingerprints = np.broadcast_to(fingerprints, (n,) + fingerprints.shape)
  if fingerprints.shape != (n, h, w):
    raise ValueError(f"fingerprints must be [N, H, W] = {(n, h, w)} (or one [H, W]) to match the images, got "
                     f"{fingerprints.shape}. Crop the fingerprint like the image.")
  if not np.issubdtype(fingerprints.dtype, np.floating) or not np.all(np.isfinite(fingerprints)):
    raise ValueError("fingerprints must be finite floats (found NaN/inf or a non-float dtype).")
  if injection == "legacy_transposed" and h != w:
    raise ValueError(f"injection='legacy_transposed' needs square images, got {h}x{w}.")
  return images_f, images_u8, fingerprints.astype(np.float32)


@dataclasses.dataclass
class ChunkInfo:
  """What `on_chunk` receives after every chunk: chunk index, steps run so far, this chunk's history (numpy
  [N, K] arrays by field), the number of images still active, and seconds since the start of the run."""
  chunk: int
  steps: int
  history: dict[str, np.ndarray]
  num_active: int
  elapsed_s: float


@dataclasses.dataclass
class DipResult:
  """What `optimize` returns (numpy, N = the images given).

  history: dict of [N, T] arrays (step, loss, psnr, gamma, active), T = the longest run; NaN / -1 / False after
  an image's end. num_steps: forwards done per image; stopped: PSNR crossed τ_stop; best_psnr / best_step;
  gamma: final γ. state / inputs: the final device pytrees (padded to a multiple of the mesh size).
  """
  history: dict[str, np.ndarray]
  num_steps: np.ndarray
  stopped: np.ndarray
  best_psnr: np.ndarray
  best_step: np.ndarray
  gamma: np.ndarray
  state: DipState
  inputs: DipInputs
  init_s: float
  run_s: float


def optimize(images: Any, fingerprints: Any, *, config: Any = None, settings: DipSettings | None = None,
             seed: int | None = None, image_ids: Sequence[int] | None = None, hook: CandidateHook | None = None,
             on_chunk: Callable[[ChunkInfo], None] | None = None, mesh: Mesh | None = None,
             max_chunks: int | None = None) -> DipResult:
  """Run DIP on N images until every one is done (PSNR > τ_stop or `max_steps` forwards).

  images uint8|float[N, H, W, 3] (see `validate_inputs`), fingerprints float[N, H, W] or [H, W] (the K injected,
  image orientation); settings from `settings` or `config` (configs/dip.py); seed default config.seed or 0;
  image_ids default 0..N-1 (with the seed they key each image); hook: a `CandidateHook`; on_chunk: called with a
  `ChunkInfo` after every chunk; mesh: default all devices; max_chunks: stop early (benchmarks).
  """
  if settings is None:
    settings = DipSettings.from_config(config) if config is not None else DipSettings()
  if seed is None:
    seed = int(getattr(config, "seed", 0)) if config is not None else 0
  settings.check()
  images_f, images_u8, fps = validate_inputs(images, fingerprints, downsampling=settings.downsampling,
                                             injection=settings.injection)
  n = images_f.shape[0]
  ids = np.arange(n, dtype=np.int32) if image_ids is None else np.asarray(image_ids, np.int32)
  if ids.shape != (n,):
    raise ValueError(f"image_ids must have one id per image ({n}), got shape {ids.shape}.")
  runner = build_runner(settings, hook=hook, mesh=mesh)
  size = runner.mesh.devices.size
  pad = (-n) % size
  active = np.ones(n + pad, bool)
  if pad:  # dummy copies of the last image, done from the start
    take = np.concatenate([np.arange(n), np.full(pad, n - 1)])
    images_f, images_u8, fps, ids = images_f[take], images_u8[take], fps[take], ids[take]
    active[n:] = False
  t0 = time.perf_counter()
  state, inputs = runner.init(seed, ids, images_f, images_u8, fps, active, settings.tau_stop, settings.max_steps,
                              injection=settings.injection)
  jax.block_until_ready(state)
  init_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  chunks, steps = [], 0
  max_chunks = max_chunks or -(-settings.max_steps // settings.chunk_size)
  for c in range(max_chunks):
    state, hist = runner.run_chunk(state, inputs)
    hist_np = {k: np.asarray(v)[:n] for k, v in dataclasses.asdict(jax.device_get(hist)).items()}
    chunks.append(hist_np)
    steps += settings.chunk_size
    num_active = int(np.sum(~np.asarray(state.done)[:n]))
    if on_chunk is not None:
      on_chunk(ChunkInfo(chunk=c, steps=steps, history=hist_np, num_active=num_active,
                         elapsed_s=time.perf_counter() - t0))
    if num_active == 0:
      break
  run_s = time.perf_counter() - t0
  history = {k: np.concatenate([h[k] for h in chunks], axis=1) for k in chunks[0]}
  num_steps = np.asarray(state.step)[:n]
  t_max = int(num_steps.max()) if n else 0
  history = {k: v[:, :t_max] for k, v in history.items()}
  return DipResult(history=history, num_steps=num_steps, stopped=np.asarray(state.stopped)[:n],
                   best_psnr=np.asarray(state.best_psnr)[:n], best_step=np.asarray(state.best_step)[:n],
                   gamma=np.asarray(runner.gamma(state))[:n], state=state, inputs=inputs,
                   init_s=init_s, run_s=run_s)
