"""The DIP network's parameters: the model for given settings, PyTorch-style initialisation, flat vectors.

The engine keeps params, BatchNorm statistics and the optimizer moments as flat float32 vectors (`FlatSpec`):
one fused update per step instead of one per leaf (~100 leaves), which also cuts compile time several-fold.
Initialisation draws all P numbers at once (`init_flat`), in a second instead of the ~30 s that `model.init`'s
~100 separate draws take to compile on CPU.
"""

from __future__ import annotations

import functools
import json
import math
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.dippas import injection as injection_lib
from dippas_jax.dippas import unet
from dippas_jax.dippas.dip.settings import DipSettings
from dippas_jax.dippas.dip.settings import precision_of
from dippas_jax.dippas.dip.settings import resolve


def make_model(settings: DipSettings) -> injection_lib.InjectedUNet:
  """The U-Net + injection module for these settings. (The runner always builds it in 'paper' mode and applies
  the injection mode to the fingerprint at init, see `DipInputs.injected`, so that modes share one compile.)"""
  net = unet.MultiResUNet(
      filters=settings.filters, skips=settings.skips, alpha=settings.alpha, negative_slope=settings.negative_slope,
      init_scheme=settings.init_scheme, precision=precision_of(settings),
      conv_impl=resolve(settings).conv_impl, sigmoid_grad_floor=settings.sigmoid_grad_floor)
  return injection_lib.InjectedUNet(unet=net, mode=settings.injection)


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


WEIGHTS_DIR = pathlib.Path(__file__).resolve().parents[1] / "weights"


def weights_path(name: str) -> pathlib.Path:
  """A weights file: a path, or the name of one shipped in `dippas_jax/dippas/weights/` (`meta_paper_d32`)."""
  path = pathlib.Path(name)
  if path.suffix != ".npz":
    path = WEIGHTS_DIR / f"{name}.npz"
  return path


def save_params(path, settings: DipSettings, params: np.ndarray, *, metadata: dict) -> None:
  """Writes flat params float32[P] of `settings`' network as an `.npz` of named leaves (`unet/enc_0/...`) plus
  the architecture and `metadata` (how they were made) as JSON; no pickles."""
  pspec, _ = flat_specs(settings)
  params = np.asarray(params, np.float32)
  if params.shape != (pspec.size,):
    raise ValueError(f"params must be float32[{pspec.size}] for these settings, got {params.shape}")
  leaves = {"/".join(p): params[o:o + n].reshape(shape)
            for p, o, n, shape in zip(pspec.paths, pspec.offsets, pspec.sizes, pspec.shapes)}
  info = {"architecture": _architecture(settings), **metadata}
  with open(path, "wb") as f:
    np.savez(f, __metadata__=np.asarray(json.dumps(info)), **leaves)


def _architecture(settings: DipSettings) -> dict:
  return {"filters": list(settings.filters), "skips": list(settings.skips), "alpha": settings.alpha,
          "input_depth": settings.input_depth}


def load_params(name: str, settings: DipSettings) -> np.ndarray:
  """Flat params float32[P] for `settings`' network from a weights file (`weights_path`); γ set to 0 (its
  initial value). ValueError, saying what differs, when the file's network is not this one."""
  path = weights_path(name)
  if not path.is_file():
    shipped = sorted(p.stem for p in WEIGHTS_DIR.glob("*.npz"))
    raise ValueError(f"{name}: no such weights file (shipped: {', '.join(shipped) or 'none'})")
  pspec, _ = flat_specs(settings)
  with np.load(path, allow_pickle=False) as data:
    info = json.loads(str(data["__metadata__"]))
    if info.get("architecture") != _architecture(settings):
      raise ValueError(f"{path}: these weights are for the network {info.get('architecture')}, the config's is "
                       f"{_architecture(settings)}; use weights made for it (scripts/meta_learn_init.py) or no "
                       "weights (config field dip.model.init_weights='')")
    flat = np.concatenate([np.asarray(data["/".join(p)], np.float32).reshape(-1) for p in pspec.paths])
  flat[pspec.index(("injection", "gamma"))] = 0.0
  return flat
