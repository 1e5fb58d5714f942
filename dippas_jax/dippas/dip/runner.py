"""The jitted DIP runner: per-image state, one optimisation step, the chunk of K steps over a batch, sharding.

Per image, iteration t (0-based) does, in this order (SPEC §2.8, with the decisions of §0):

  1. forward   x̂ = f_θ(z + σ_r·n_t),  y = x̂ ⊙ (1 + γK)          n_t ~ N(0, 1) fresh, z fixed
  2. record    loss = MSE(y, I), PSNR(q(x̂), q(I)), γ (the value used in this forward)
  3. hook      candidates <- hook.update(candidates, q(x̂), PSNR, t, active)     (on the batch, see below)
  4. stop      if PSNR > τ_stop (strict): done; this iteration is recorded, no update is applied
  5. update    θ, γ <- optimizer step on the gradient of the loss
  6. project   γ <- max(γ, 0)

with q(v) = floor(clip(255·v, 0, 255)) (uint8 truncation; `rounding='nearest'`: floor(clip(255·v + 0.5, 0, 255)))
and PSNR = `metrics.psnr` of q(x̂) against q(I) (float
math, no uint8 wrap-around). The kept image is x̂, never the injected y (SPEC §4.1 item 2), or what a kept-image
transform makes of it (`PlainKept`: DIPPAS's low-pass correction and flat path live outside the engine). An image
is also done after `max_steps` forwards.

Design:
  * State is an explicit pytree (`DipState`), one entry per image along a leading axis N; the constant per-image
    data (target, fingerprint, the injected pattern, the fixed input z, the stop rule) is `DipInputs`. The
    injection mode, τ_stop and max_steps are data, so switching between them never recompiles.
  * Keys: `k_i = fold_in(key(seed), image_id)`; params, z and the perturbation stream are fold_in(k_i, 0 | 1 | 2);
    the perturbation of step t is drawn from fold_in(stream, t) inside the step. A result therefore depends on
    (seed, image_id, image, fingerprint, initial params, settings) only, never on which images share the batch
    (up to float rounding: batched matrix products may sum in another order).
  * A chunk is `lax.scan` over K steps. Batching over the images of a device ('vmap', the default) scans a
    vmapped step, and the hook sees the whole batch, so it can skip work that no image needs with one
    `lax.cond` (a per-image `lax.cond` under vmap runs both branches). 'map' (`lax.map`) and 'loop' (unrolled)
    scan each image alone, skip finished images with `lax.cond` and hand the hook batches of one image.
    Finished images are masked (`tree_map(partial(jnp.where, active), new, old)`). BatchNorm statistics are per
    image (no `axis_name`). The chunk is `shard_map`ped over a 1-D device mesh on the image axis, jitted with the
    state donated, and compiled once per (shapes, compile key of the settings, hook, mesh).
  * Multi-host: call `jax.distributed.initialize()` in every process first, build the mesh over the global
    `jax.devices()` (`make_mesh()`), and give each process the images of its own devices; nothing in the step
    communicates across images. `driver.optimize` is the single-process driver.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dippas_jax.dippas import injection as injection_lib
from dippas_jax.dippas import optim
from dippas_jax.dippas.dip import parameters
from dippas_jax.dippas.dip import perturbation
from dippas_jax.dippas.dip.settings import DipSettings
from dippas_jax.dippas.dip.settings import precision_of
from dippas_jax.dippas.dip.settings import resolve
from dippas_jax.prnu import metrics

IMAGE_AXIS = "images"


@flax.struct.dataclass
class DipState:
  """Per-image optimisation state (leading axis N when batched).

  step: int32, forwards done = index of the next iteration. done: no more iterations (stopped or capped).
  stopped: PSNR crossed τ_stop. best_psnr / best_step: the best PSNR so far and its iteration (-inf / -1 at start).
  rng: the image's perturbation stream (a typed key). candidates: the hook's pytree.
  params, batch_stats: float32[P], float32[S] flat vectors (`parameters.FlatSpec`; `DipRunner.params_tree` gives
  the Flax tree {'unet': ..., 'injection': {'gamma'}}); opt_state: the optimizer state of the flat params.
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
  the output: K, Kᵀ or 0 by injection mode), z float32[D, H, W] (planar), image_id int32[], the stop rule
  tau_stop float32[] (dB) and max_steps int32[], and kept: what the kept-image transform prepared for this image
  (`PlainKept` describes the protocol; () for the paper's x̂)."""
  target: jax.Array
  target_u8: jax.Array
  fingerprint: jax.Array
  injected: jax.Array
  z: jax.Array
  image_id: jax.Array
  tau_stop: jax.Array
  max_steps: jax.Array
  kept: Any = ()


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
  """A hook made of two functions (tests, experiments). Any object with these two methods is a hook; it must be
  hashable, since it is part of the compiled runner's cache key: a frozen dataclass of its settings (see
  `dippas.candidates.AssemblyHook`) makes equal hooks share one compilation; this NamedTuple hashes its
  functions by identity, so build it once.

  init(image float32[H, W, 3], fingerprint float32[H, W]) -> candidates of one image (any pytree of arrays).
  update(candidates, image_u8 uint8[N, H, W, 3], psnr float32[N], step int32[N], active bool[N]) -> candidates,
    on a batch: leading axis N on every argument (the images of one device under 'vmap' batching, N = 1 under
    'map' and 'loop'). Called at every iteration after the record and before the stop check, with x̂ quantised
    (the kept image, not the injected output) and its PSNR; the crossing iteration is included. The runner
    discards what it returns for inactive images, so work that no active image needs may be skipped.
  finished (optional): candidates -> bool[N] after `update`: the hook has what it needs from these images, which
    are then done (a stop by need; it never delays the τ_stop and max_steps rules).
  """
  init: Callable[[jax.Array, jax.Array], Any]
  update: Callable[[Any, jax.Array, jax.Array, jax.Array, jax.Array], Any]
  finished: Callable[[Any], jax.Array] | None = None


@dataclasses.dataclass(frozen=True)
class NoHook:
  """The hook that keeps nothing."""

  def init(self, image, fingerprint):
    del image, fingerprint
    return ()

  def update(self, candidates, image_u8, psnr, step, active):
    del image_u8, psnr, step, active
    return candidates


NO_HOOK = NoHook()


@dataclasses.dataclass(frozen=True)
class PlainKept:
  """The kept-image transform of the paper: the kept image is x̂ and the loss MSE(y, I).

  A kept-image transform is any hashable object with these three methods (part of the compiled runner's cache key,
  like the hook; DIPPAS's is `dippas.kept_image.KeptImage`): prepare(target float32[H, W, 3]) -> a pytree computed
  once per image (its `DipInputs.kept`); apply(x̂, target, prepared) -> the kept image float32[H, W, 3] (what the
  PSNR, the hook and the stop rule see); loss(mse, y, target, prepared) -> the loss, given MSE(y, I) of the
  injected output y.
  """

  def prepare(self, target):
    del target
    return ()

  def apply(self, x, target, prepared):
    del target, prepared
    return x

  def loss(self, mse, y, target, prepared):
    del y, target, prepared
    return mse


PLAIN_KEPT = PlainKept()


def quantize_u8(x: jax.Array, rounding: str = "floor") -> jax.Array:
  """q(x) = floor(clip(255·x, 0, 255)) as uint8 (truncation, like `astype(uint8)` in the reference; 'floor') or
  floor(clip(255·x + 0.5, 0, 255)) (round half up; 'nearest': no −0.5 bias)."""
  offset = {"floor": 0.0, "nearest": 0.5}[rounding]
  return jnp.floor(jnp.clip(255.0 * x + offset, 0.0, 255.0)).astype(jnp.uint8)


def _where(cond, new, old):
  return jax.tree.map(functools.partial(jnp.where, cond), new, old)


def _make_step(settings: DipSettings, kept=PLAIN_KEPT):
  """The per-image step (state, inputs) -> (state, record, q(kept image), PSNR), without the hook (module
  docstring; the kept image is `kept.apply(x̂, ...)`)."""
  settings = resolve(settings)
  model = parameters.make_model(dataclasses.replace(settings, injection="paper"))  # mode: inputs.injected
  precision = precision_of(settings)
  pspec, sspec = parameters.flat_specs(settings)
  gamma_index = pspec.index(("injection", "gamma"))
  tx = optim.make_optimizer(settings.optimizer, gamma_index=gamma_index)

  def step(state: DipState, inputs: DipInputs):
    key = jax.random.fold_in(state.rng, state.step)

    def loss_fn(flat_params):
      net_in = perturbation.PlanarInput(inputs.z, key, settings.reg_noise_std, settings.perturbation, precision,
                                        settings.projected_min_size)
      variables = {"params": pspec.unravel(flat_params), "batch_stats": sspec.unravel(state.batch_stats)}
      (x_hat, y), mutated = model.apply(variables, net_in, inputs.injected, mutable=["batch_stats"])
      x_hat, y = x_hat[0], y[0]
      loss = kept.loss(jnp.mean(jnp.square(y - inputs.target)), y, inputs.target, inputs.kept)
      x_hat = kept.apply(x_hat, inputs.target, inputs.kept)
      return loss, (x_hat, sspec.ravel(mutated["batch_stats"]))

    (loss, (x_hat, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    image_u8 = quantize_u8(x_hat, settings.rounding)
    psnr = metrics.psnr(image_u8, inputs.target_u8)
    stop = psnr > inputs.tau_stop
    updates, opt_state = tx.update(grads, state.opt_state, state.params, value=loss)
    params = state.params + updates
    params = params.at[gamma_index].set(jnp.maximum(params[gamma_index], 0.0))  # project γ >= 0
    next_step = state.step + 1
    better = psnr > state.best_psnr
    # params / opt_state are returned updated; `_masked` keeps the old ones where the image stopped (no update at
    # the crossing step) or was inactive, in one select per array.
    new_state = state.replace(
        step=next_step, params=params, opt_state=opt_state, batch_stats=batch_stats,
        done=stop | (next_step >= inputs.max_steps), stopped=stop,
        best_psnr=jnp.where(better, psnr, state.best_psnr), best_step=jnp.where(better, state.step, state.best_step))
    record = DipHistory(step=state.step, loss=loss, psnr=psnr, gamma=state.params[gamma_index],
                        active=jnp.asarray(True))
    return new_state, record, image_u8, psnr

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


def _make_chunk(settings: DipSettings, hook, kept=PLAIN_KEPT):
  """chunk(states, inputs) -> (states, history[N, K]) over the images of one device, without sharding."""
  step = _make_step(settings, kept)
  length = settings.chunk_size
  finished = getattr(hook, "finished", None)

  def advance(states, inputs):  # one iteration of a batch [N]
    active = jnp.logical_not(states.done)
    new, record, image_u8, psnr = jax.vmap(step)(states, inputs)
    new = new.replace(candidates=hook.update(states.candidates, image_u8, psnr, states.step, active))
    if finished is not None:  # the hook has what it needs: stop (no later than τ_stop and max_steps)
      new = new.replace(done=new.done | finished(new.candidates))
    return jax.vmap(_masked)(active, new, states, record)

  def chunk_batch(states, inputs):
    states, history = lax.scan(lambda s, _: advance(s, inputs), states, None, length=length)
    return states, jax.tree.map(lambda h: jnp.swapaxes(h, 0, 1), history)  # [K, N] -> [N, K]

  if settings.batching == "vmap":
    return chunk_batch

  def one_step(state, inputs):  # one image; a finished one is skipped
    def run(s):
      new, record = advance(*jax.tree.map(lambda x: x[None], (s, inputs)))
      return jax.tree.map(lambda x: x[0], (new, record))

    def skip(s):
      nan = jnp.float32(jnp.nan)
      return s, DipHistory(step=jnp.int32(-1), loss=nan, psnr=nan, gamma=nan, active=jnp.asarray(False))

    return lax.cond(jnp.logical_not(state.done), run, skip, state)

  def chunk_one(state, inputs):
    return lax.scan(lambda s, _: one_step(s, inputs), state, None, length=length)

  if settings.batching == "map":
    return lambda states, inputs: lax.map(lambda si: chunk_one(*si), (states, inputs))

  def loop(states, inputs):
    n = jax.tree.leaves(inputs)[0].shape[0]
    outs = [chunk_one(jax.tree.map(lambda x: x[i], states), jax.tree.map(lambda x: x[i], inputs)) for i in range(n)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

  return loop


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D mesh over `devices` (default: all of `jax.devices()`) with the axis 'images'."""
  return Mesh(np.asarray(list(devices if devices is not None else jax.devices())), (IMAGE_AXIS,))


@dataclasses.dataclass(frozen=True)
class DipRunner:
  """Compiled entry points for one (settings, hook, mesh).

  init(...) -> (DipState, DipInputs): see the method. run_chunk(state, inputs) -> (state, DipHistory[N, K]):
  `chunk_size` steps, jitted, state donated. N must be a multiple of the mesh size (`driver.optimize` pads).
  `settings` are the settings the runner was asked for (the compiled code depends only on their compile key).
  """
  settings: DipSettings
  mesh: Mesh
  init_fn: Callable[..., tuple[DipState, DipInputs]]
  run_chunk: Callable[[DipState, DipInputs], tuple[DipState, DipHistory]]
  chunk_fn: Callable[[DipState, DipInputs], tuple[DipState, DipHistory]]
  param_spec: parameters.FlatSpec
  stats_spec: parameters.FlatSpec

  def init(self, seed, image_ids, images, images_u8, fingerprints, active, tau_stop=None, max_steps=None, *,
           injection=None, params0=None, prepared=None) -> tuple[DipState, DipInputs]:
    """Initial state and inputs of N images, jitted and sharded on the image axis.

    seed int, image_ids int32[N], images float32[N, H, W, 3] in [0, 1], images_u8 uint8[N, H, W, 3],
    fingerprints float32[N, H, W], active bool[N]; tau_stop, max_steps, injection default to `settings`';
    params0: optional initial flat params float32[N, P] (a learned initialisation or a warm start) instead of
    the random initialisation (z and the perturbation stream are drawn either way); prepared: the kept-image
    transform's inputs of every image (leading axis N, as its `prepare` returns them per image) computed by the
    caller on a larger context, or None (`kept.prepare` of each image).
    """
    s = self.settings
    injection = s.injection if injection is None else injection
    injection_lib.check_mode(injection)
    if params0 is not None:
      params0 = jnp.asarray(params0, jnp.float32)
      if params0.shape != (len(image_ids), self.param_spec.size):
        raise ValueError(f"params0 must be float32[N, P] = [{len(image_ids)}, {self.param_spec.size}], got "
                         f"{tuple(params0.shape)}.")
    return self.init_fn(seed, image_ids, images, images_u8, fingerprints, active,
                        s.tau_stop if tau_stop is None else tau_stop, s.max_steps if max_steps is None else max_steps,
                        params0, prepared, injection=injection)

  @property
  def sharding(self) -> NamedSharding:
    return NamedSharding(self.mesh, P(IMAGE_AXIS))

  def params_tree(self, state: DipState) -> Any:
    """The Flax params tree of `state` (leading image axis kept)."""
    return self.param_spec.unravel(state.params)

  def gamma(self, state: DipState) -> jax.Array:
    """γ of every image, float32[N]."""
    return state.params[..., self.param_spec.index(("injection", "gamma"))]


def build_runner(settings: DipSettings, *, hook=None, kept=None, mesh: Mesh | None = None,
                 wrap_chunk_fn: Callable | None = None) -> DipRunner:
  """Build (and cache per compile key, hook, kept-image transform and mesh) the jitted init and chunk runner.
  `kept`: see `PlainKept` (default: the paper's x̂). `wrap_chunk_fn` wraps the per-device chunk function before
  shard_map and jit (tests pass `chex.assert_max_traces(n=1)`); runners built with it are not cached."""
  settings.check()
  hook = NO_HOOK if hook is None else hook
  kept = PLAIN_KEPT if kept is None else kept
  mesh = mesh or make_mesh()
  if wrap_chunk_fn is not None:
    runner = _build_runner(settings.compile_key(), hook, kept, mesh, wrap_chunk_fn)
  else:
    runner = _build_runner_cached(settings.compile_key(), hook, kept, mesh)
  return dataclasses.replace(runner, settings=settings)


@functools.lru_cache(maxsize=16)
def _build_runner_cached(settings, hook, kept, mesh):
  return _build_runner(settings, hook, kept, mesh, None)


def compiler_options(settings: DipSettings) -> dict | None:
  """XLA options of the runner's jits: backend optimization level 0 with `fast_compile` (tests, smoke runs)."""
  return {"xla_backend_optimization_level": 0} if settings.fast_compile else None


def _make_init(settings: DipSettings, hook, kept, sharding: NamedSharding):
  """The jitted init (module docstring), one compile per injection mode and per params0 given or not."""
  tx = optim.make_optimizer(settings.optimizer,
                            gamma_index=parameters.flat_specs(settings)[0].index(("injection", "gamma")))
  vectors = tuple(jnp.asarray(v) for v in parameters.init_vectors(settings))  # arguments, not HLO constants

  def init_one(seed, image_id, image, image_u8, fingerprint, active, tau_stop, max_steps, params0, prepared,
               vectors, injection):
    key = jax.random.fold_in(jax.random.key(seed, impl=settings.prng_impl), image_id)
    params, batch_stats = parameters.init_flat(settings, jax.random.fold_in(key, 0), vectors)
    if params0 is not None:
      params = params0
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
                       max_steps=jnp.asarray(max_steps, jnp.int32),
                       kept=kept.prepare(image) if prepared is None else prepared)
    return state, inputs

  def init(seed, image_ids, images, images_u8, fingerprints, active, tau_stop, max_steps, params0, prepared,
           vectors, *, injection):
    axes = (None, 0, 0, 0, 0, 0, None, None, None if params0 is None else 0, None if prepared is None else 0, None)
    return jax.vmap(functools.partial(init_one, injection=injection), in_axes=axes)(
        seed, image_ids, images, images_u8, fingerprints, active, tau_stop, max_steps, params0, prepared, vectors)

  @functools.lru_cache(maxsize=None)
  def init_for(injection, with_params, with_prepared):
    params_sharding = sharding if with_params else None
    prepared_sharding = sharding if with_prepared else None
    return jax.jit(functools.partial(init, injection=injection),
                   in_shardings=(None,) + (sharding,) * 5 + (None, None, params_sharding, prepared_sharding, None),
                   out_shardings=sharding, compiler_options=compiler_options(settings))

  def init_jit(seed, image_ids, images, images_u8, fingerprints, active, tau_stop, max_steps, params0, prepared, *,
               injection):
    return init_for(injection, params0 is not None, prepared is not None)(
        seed, image_ids, images, images_u8, fingerprints, active, tau_stop, max_steps, params0, prepared, vectors)

  return init_jit


def _build_runner(settings: DipSettings, hook, kept, mesh: Mesh, wrap_chunk_fn) -> DipRunner:
  settings = resolve(settings, mesh.devices.flat[0].platform)
  sharding = NamedSharding(mesh, P(IMAGE_AXIS))
  spec = P(IMAGE_AXIS)
  pspec, sspec = parameters.flat_specs(settings)
  local_chunk = _make_chunk(settings, hook, kept)  # the images of one device
  if wrap_chunk_fn is not None:
    local_chunk = wrap_chunk_fn(local_chunk)
  chunk_fn = jax.shard_map(local_chunk, mesh=mesh, in_specs=(spec, spec), out_specs=(spec, spec), check_vma=False)
  # Explicit shardings: on a 1-device mesh XLA would otherwise return some outputs as replicated, and the next
  # call would compile again for the new input shardings.
  run_chunk = jax.jit(chunk_fn, donate_argnums=0, in_shardings=sharding, out_shardings=sharding,
                      compiler_options=compiler_options(settings))
  return DipRunner(settings=settings, mesh=mesh, init_fn=_make_init(settings, hook, kept, sharding),
                   run_chunk=run_chunk, chunk_fn=chunk_fn, param_spec=pspec, stats_spec=sspec)
