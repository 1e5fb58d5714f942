"""Optimizers for the DIP engine: PyTorch-semantics AMSGrad, PyTorch-semantics ReduceLROnPlateau, a keyed factory.

The DIPPAS reference optimises with `torch.optim.Adam(lr=1e-3, amsgrad=True)` (SPEC §2.7). Per step t (1-based):

    m     <- b1·m + (1 - b1)·g
    v     <- b2·v + (1 - b2)·g²
    v_max <- max(v_max, v)                                   (the raw, uncorrected v)
    θ     <- θ - (lr / (1 - b1^t)) · m / (sqrt(v_max) / sqrt(1 - b2^t) + eps)

`optax.amsgrad` takes the max of the bias-corrected v̂ = v / (1 - b2^t) instead, which changes the early step
sizes; `pytorch_amsgrad` below is the reference's rule. Plain Adam has no such difference (`optax.adam` is
algebraically `torch.optim.Adam(amsgrad=False)`).

All transforms returned by `make_optimizer` accept the extra keyword `value=` (the loss) in `update`, which the
optional reduce-on-plateau stage reads; the other stages ignore it.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("amsgrad_torch", "adam", "amsgrad_optax", "adamw", "sgd")


class PytorchAmsgradState(NamedTuple):
  """State of `pytorch_amsgrad`: step count t, first moment m, second moment v and its running max v_max."""
  count: jax.Array  # int32[]
  mu: optax.Updates
  nu: optax.Updates
  nu_max: optax.Updates


def pytorch_amsgrad(learning_rate: float | optax.Schedule, b1: float = 0.9, b2: float = 0.999,
                    eps: float = 1e-8) -> optax.GradientTransformation:
  """`torch.optim.Adam(params, lr, betas=(b1, b2), eps, weight_decay=0, amsgrad=True)` as an optax transform.

  The update is `-(lr / (1 - b1^t)) · m / (sqrt(v_max) / sqrt(1 - b2^t) + eps)` with v_max the running max of the
  raw second moment (see the module docstring). `learning_rate` may be a float or an optax schedule of the step
  count (0-based, like optax).
  """

  def init_fn(params):
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
    return PytorchAmsgradState(count=jnp.zeros((), jnp.int32), mu=zeros(), nu=zeros(), nu_max=zeros())

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)
    mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
    nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g), state.nu, updates)
    nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate

    def leaf_update(m, v_max):
      t = count.astype(m.dtype)  # bias corrections in the parameters' precision
      step_size = lr / (1.0 - jnp.power(jnp.asarray(b1, m.dtype), t))
      denom = jnp.sqrt(v_max) / jnp.sqrt(1.0 - jnp.power(jnp.asarray(b2, m.dtype), t)) + eps
      return (-step_size * m / denom).astype(m.dtype)

    new_updates = jax.tree.map(leaf_update, mu, nu_max)
    return new_updates, PytorchAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)

  return optax.GradientTransformation(init_fn, update_fn)


class PlateauState(NamedTuple):
  """State of `torch_reduce_on_plateau` (the fields of `torch.optim.lr_scheduler.ReduceLROnPlateau`)."""
  scale: jax.Array           # float32[], multiplies the updates (lr / initial lr)
  best: jax.Array            # float32[], best value seen (inf at start)
  num_bad: jax.Array         # int32[], steps without improvement
  cooldown_counter: jax.Array  # int32[]


def torch_reduce_on_plateau(factor: float = 0.1, patience: int = 10, threshold: float = 1e-4,
                            threshold_mode: str = "rel", cooldown: int = 0, min_scale: float = 0.0,
                            min_delta: float = 0.0) -> optax.GradientTransformationExtraArgs:
  """`ReduceLROnPlateau(mode='min')` stepped once per iteration on `value`, after the optimizer step, as in the
  reference: the update of step t is scaled by the factor in force before `value_t` is seen, then `value_t`
  updates the plateau state. The scale is reduced when more than `patience` steps have passed without improvement
  (`value < best·(1 - threshold)` in 'rel' mode, `value < best - threshold` in 'abs' mode); a reduction smaller
  than `min_delta` (in scale units; torch's eps / lr) is skipped.

  Chain it *after* the optimizer (it multiplies the final updates).
  """
  if not 0.0 < factor < 1.0:
    raise ValueError(f"factor must be in (0, 1), got {factor}.")
  if threshold_mode not in ("rel", "abs"):
    raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}.")

  def init_fn(params):
    del params
    return PlateauState(scale=jnp.ones((), jnp.float32), best=jnp.full((), jnp.inf, jnp.float32),
                        num_bad=jnp.zeros((), jnp.int32), cooldown_counter=jnp.zeros((), jnp.int32))

  def update_fn(updates, state, params=None, *, value, **extra_args):
    del params, extra_args
    updates = jax.tree.map(lambda u: (state.scale * u).astype(u.dtype), updates)
    value = jnp.asarray(value, jnp.float32)
    limit = state.best * (1.0 - threshold) if threshold_mode == "rel" else state.best - threshold
    better = value < limit
    best = jnp.where(better, value, state.best)
    num_bad = jnp.where(better, 0, state.num_bad + 1)
    in_cooldown = state.cooldown_counter > 0
    cooldown_counter = jnp.where(in_cooldown, state.cooldown_counter - 1, state.cooldown_counter)
    num_bad = jnp.where(in_cooldown, 0, num_bad)
    reduce = num_bad > patience
    new_scale = jnp.maximum(state.scale * factor, min_scale)
    scale = jnp.where(reduce & (state.scale - new_scale > min_delta), new_scale, state.scale)
    cooldown_counter = jnp.where(reduce, cooldown, cooldown_counter)
    num_bad = jnp.where(reduce, 0, num_bad)
    return updates, PlateauState(scale=scale, best=best, num_bad=num_bad.astype(jnp.int32),
                                 cooldown_counter=cooldown_counter.astype(jnp.int32))

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _get(config: Any, name: str, default: Any) -> Any:
  return getattr(config, name, default) if config is not None else default


DECAYS = ("none", "cosine")


def learning_rate_schedule(learning_rate: float, *, warmup_steps: int = 0, decay: str = "none",
                           decay_steps: int = 1000, final_lr_factor: float = 0.1) -> float | optax.Schedule:
  """The learning rate as a function of the 0-based step: a linear warm-up from lr/warmup_steps to lr over the
  first `warmup_steps`, then constant ('none') or a cosine decay to `final_lr_factor`·lr at step `decay_steps`
  (constant after). Without warm-up or decay, the plain float (the reference)."""
  if decay not in DECAYS:
    raise ValueError(f"Unsupported decay {decay!r}; expected one of {DECAYS}.")
  if warmup_steps <= 0 and decay == "none":
    return learning_rate

  def schedule(count):
    step = jnp.asarray(count, jnp.float32)
    warm = jnp.minimum(1.0, (step + 1.0) / warmup_steps) if warmup_steps > 0 else 1.0
    if decay == "none":
      return learning_rate * warm
    t = jnp.clip((step - warmup_steps) / max(decay_steps - warmup_steps, 1), 0.0, 1.0)
    return learning_rate * warm * (final_lr_factor + (1.0 - final_lr_factor) * 0.5 * (1.0 + jnp.cos(jnp.pi * t)))

  return schedule


def scale_entry(index: int, factor: float) -> optax.GradientTransformation:
  """Multiplies entry `index` of a flat update vector by `factor` (a separate learning rate for one parameter,
  e.g. the injection gain γ of the DIP engine's flat params)."""

  def update_fn(updates, state, params=None):
    del params
    return updates.at[index].multiply(factor), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def make_optimizer(config: Any, *, gamma_index: int | None = None) -> optax.GradientTransformationExtraArgs:
  """The optimizer named by `config.name`, with the optional plateau stage, accepting `update(..., value=loss)`.

  config fields (see configs/dip.py, `config.optimizer`): name (one of OPTIMIZERS), learning_rate, b1, b2, eps,
  weight_decay (adamw), momentum and nesterov (sgd), the schedule (warmup_steps, decay, decay_steps,
  final_lr_factor: `learning_rate_schedule`), gamma_lr_factor (γ's learning rate relative to the others, applied
  at `gamma_index` of flat params) and `plateau` (enabled, factor, patience, threshold, cooldown, min_lr).
  Names:
    amsgrad_torch  `pytorch_amsgrad` (the reference's Adam(amsgrad=True); default)
    adam           optax.adam (= torch Adam without amsgrad)
    amsgrad_optax  optax.amsgrad (max of the bias-corrected v̂; differs from torch early on)
    adamw          optax.adamw
    sgd            optax.sgd with momentum / nesterov
  Raises ValueError('Unsupported optimizer ...') for other names.
  """
  name = config.name
  lr = learning_rate_schedule(config.learning_rate, warmup_steps=_get(config, "warmup_steps", 0),
                              decay=_get(config, "decay", "none"), decay_steps=_get(config, "decay_steps", 1000),
                              final_lr_factor=_get(config, "final_lr_factor", 0.1))
  b1, b2, eps = _get(config, "b1", 0.9), _get(config, "b2", 0.999), _get(config, "eps", 1e-8)
  if name == "amsgrad_torch":
    tx = pytorch_amsgrad(lr, b1=b1, b2=b2, eps=eps)
  elif name == "adam":
    tx = optax.adam(lr, b1=b1, b2=b2, eps=eps)
  elif name == "amsgrad_optax":
    tx = optax.amsgrad(lr, b1=b1, b2=b2, eps=eps)
  elif name == "adamw":
    tx = optax.adamw(lr, b1=b1, b2=b2, eps=eps, weight_decay=_get(config, "weight_decay", 1e-4))
  elif name == "sgd":
    momentum = _get(config, "momentum", 0.0)
    tx = optax.sgd(lr, momentum=momentum or None, nesterov=_get(config, "nesterov", False))
  else:
    raise ValueError(f"Unsupported optimizer {name!r}; expected one of {OPTIMIZERS}.")
  gamma_factor = _get(config, "gamma_lr_factor", 1.0)
  if gamma_index is not None and gamma_factor != 1.0:
    tx = optax.chain(tx, scale_entry(gamma_index, gamma_factor))
  plateau = _get(config, "plateau", None)
  if plateau is not None and plateau.enabled:
    if callable(lr):
      raise ValueError("plateau.enabled needs a constant learning_rate, not a schedule.")
    stage = torch_reduce_on_plateau(
        factor=plateau.factor, patience=plateau.patience, threshold=plateau.threshold,
        threshold_mode=_get(plateau, "threshold_mode", "rel"), cooldown=_get(plateau, "cooldown", 0),
        min_scale=_get(plateau, "min_lr", 0.0) / lr, min_delta=1e-8 / lr)
    return optax.chain(tx, stage)
  return optax.with_extra_args_support(tx)
