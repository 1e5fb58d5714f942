"""Tests for dippas_jax.optim: PyTorch-semantics AMSGrad and ReduceLROnPlateau, and the optimizer factory."""

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dippas_jax.dippas import optim

# Gradients chosen so that the raw second moment decreases after step 2: the max of the raw v and the max of the
# bias-corrected v̂ then pick different steps, which is where PyTorch and optax.amsgrad part ways.
GRADS = np.array([[0.5, -1.0, 2.0], [3.0, 0.1, -0.2], [0.01, 0.02, 0.5], [-0.3, 0.4, 0.0], [0.2, -2.0, 1.0]])
PARAMS0 = np.array([0.3, -0.2, 0.1])
LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8


def _x64():
  enable = getattr(jax, "enable_x64", None)
  if enable is None:  # older jax
    from jax.experimental import enable_x64 as enable  # pylint: disable=g-import-not-at-top
  return enable(True)


def torch_amsgrad_reference(params, grads, lr=LR, b1=B1, b2=B2, eps=EPS, amsgrad=True):
  """torch.optim.Adam(amsgrad=...).step, transcribed line by line (float64 numpy), one row of grads per step."""
  p = np.array(params, np.float64)
  m = np.zeros_like(p)
  v = np.zeros_like(p)
  v_max = np.zeros_like(p)
  trace = []
  for t, g in enumerate(grads, start=1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    bias_correction1 = 1 - b1 ** t
    bias_correction2 = 1 - b2 ** t
    step_size = lr / bias_correction1
    if amsgrad:
      v_max = np.maximum(v_max, v)
      denom = np.sqrt(v_max) / math.sqrt(bias_correction2) + eps
    else:
      denom = np.sqrt(v) / math.sqrt(bias_correction2) + eps
    p = p - step_size * m / denom
    trace.append(p.copy())
  return np.stack(trace)


def run_transform(tx, params, grads):
  state = tx.init(params)
  update = jax.jit(tx.update)
  trace = []
  for g in grads:
    updates, state = update(jnp.asarray(g, params.dtype), state, params)
    params = optax.apply_updates(params, updates)
    trace.append(np.asarray(params))
  return np.stack(trace)


def test_pytorch_amsgrad_matches_hand_computed_trace_float64():
  expected = torch_amsgrad_reference(PARAMS0, GRADS)
  with _x64():
    got = run_transform(optim.pytorch_amsgrad(LR), jnp.asarray(PARAMS0, jnp.float64), GRADS)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_pytorch_amsgrad_matches_hand_computed_trace_float32():
  expected = torch_amsgrad_reference(PARAMS0, GRADS)
  got = run_transform(optim.pytorch_amsgrad(LR), jnp.asarray(PARAMS0, jnp.float32), GRADS)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)
  # The per-step displacements too (a stricter check than the positions at this scale).
  np.testing.assert_allclose(np.diff(got, axis=0), np.diff(expected, axis=0), rtol=1e-4, atol=1e-9)


def test_pytorch_amsgrad_differs_from_optax_amsgrad():
  ours = run_transform(optim.pytorch_amsgrad(LR), jnp.asarray(PARAMS0, jnp.float32), GRADS)
  theirs = run_transform(optax.amsgrad(LR, b1=B1, b2=B2, eps=EPS), jnp.asarray(PARAMS0, jnp.float32), GRADS)
  assert np.max(np.abs(ours - theirs)) > 1e-5


def test_adam_is_torch_adam_without_amsgrad():
  expected = torch_amsgrad_reference(PARAMS0, GRADS, amsgrad=False)
  got = run_transform(optax.adam(LR, b1=B1, b2=B2, eps=EPS), jnp.asarray(PARAMS0, jnp.float32), GRADS)
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-7)


def test_pytorch_amsgrad_on_a_pytree_and_schedule():
  params = {"a": jnp.ones((2, 2)), "b": jnp.zeros(3)}
  tx = optim.pytorch_amsgrad(optax.constant_schedule(LR))
  state = tx.init(params)
  updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
  # First AMSGrad step moves every coordinate by -lr·sign(g) (up to eps).
  for leaf in jax.tree.leaves(updates):
    np.testing.assert_allclose(leaf, -LR, rtol=1e-5)
  assert int(state.count) == 1


def torch_plateau_reference(values, factor, patience, threshold, cooldown=0, min_lr=0.0, lr=1.0, eps=1e-8):
  """The lr used at each step when ReduceLROnPlateau(mode='min', 'rel').step(value) follows optimizer.step."""
  best, bad, cool, used = math.inf, 0, 0, []
  for value in values:
    used.append(lr)
    if value < best * (1 - threshold):
      best, bad = value, 0
    else:
      bad += 1
    if cool > 0:
      cool -= 1
      bad = 0
    if bad > patience:
      new = max(lr * factor, min_lr)
      if lr - new > eps:
        lr = new
      cool, bad = cooldown, 0
  return np.array(used)


@pytest.mark.parametrize("cooldown", [0, 2])
def test_reduce_on_plateau_matches_torch(cooldown):
  values = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.79999, 0.8, 0.8, 0.8, 0.8]
  expected = torch_plateau_reference(values, factor=0.5, patience=2, threshold=1e-4, cooldown=cooldown)
  tx = optim.torch_reduce_on_plateau(factor=0.5, patience=2, threshold=1e-4, cooldown=cooldown)
  state = tx.init(None)
  used = []
  for value in values:
    updates, state = tx.update(jnp.ones(()), state, value=value)
    used.append(float(updates))
  np.testing.assert_allclose(used, expected, rtol=1e-6)
  assert expected.min() < 1.0  # the sequence does trigger reductions


def _config(name, **kw):
  plateau = types.SimpleNamespace(enabled=kw.pop("plateau", False), factor=0.9, patience=10, threshold=1e-4,
                                  threshold_mode="rel", cooldown=0, min_lr=0.0)
  fields = dict(name=name, learning_rate=LR, b1=B1, b2=B2, eps=EPS, weight_decay=1e-4, momentum=0.9,
                nesterov=False, plateau=plateau)
  fields.update(kw)
  return types.SimpleNamespace(**fields)


@pytest.mark.parametrize("name", optim.OPTIMIZERS)
@pytest.mark.parametrize("plateau", [False, True])
def test_make_optimizer_accepts_value(name, plateau):
  tx = optim.make_optimizer(_config(name, plateau=plateau))
  params = jnp.ones(3)
  state = tx.init(params)
  updates, _ = jax.jit(lambda g, s, p: tx.update(g, s, p, value=jnp.float32(1.0)))(jnp.ones(3), state, params)
  assert updates.shape == (3,) and np.all(np.isfinite(updates))


def test_make_optimizer_default_is_pytorch_amsgrad():
  expected = torch_amsgrad_reference(PARAMS0, GRADS)
  tx = optim.make_optimizer(_config("amsgrad_torch"))
  params = jnp.asarray(PARAMS0, jnp.float32)
  state = tx.init(params)
  trace = []
  for g in GRADS:
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params, value=jnp.float32(0.0))
    params = params + updates
    trace.append(np.asarray(params))
  np.testing.assert_allclose(np.stack(trace), expected, rtol=0, atol=1e-7)


def test_make_optimizer_rejects_unknown_names():
  with pytest.raises(ValueError, match="Unsupported optimizer"):
    optim.make_optimizer(_config("lbfgs"))


def test_with_ml_collections_config():
  ml_collections = pytest.importorskip("ml_collections")
  try:
    from dippas_jax.configs import dip as dip_config
  except ImportError:
    dip_config = pytest.importorskip("configs.dip")
  config = dip_config.get_config()
  assert isinstance(config, ml_collections.ConfigDict)
  tx = optim.make_optimizer(config.optimizer)
  assert tx.init(jnp.ones(2)) is not None


def test_learning_rate_schedule_warmup_and_cosine():
  assert optim.learning_rate_schedule(0.01) == 0.01  # no schedule: the plain float (the reference)
  sched = optim.learning_rate_schedule(0.01, warmup_steps=10, decay="cosine", decay_steps=110, final_lr_factor=0.1)
  lr = np.asarray([sched(t) for t in (0, 4, 9, 10, 60, 110, 500)])
  np.testing.assert_allclose(lr[:3], [0.001, 0.005, 0.01], rtol=1e-6)          # linear warm-up
  np.testing.assert_allclose(lr[3:], [0.01, 0.0055, 0.001, 0.001], rtol=1e-5)  # cosine to 10 %, then flat
  with pytest.raises(ValueError, match="decay"):
    optim.learning_rate_schedule(0.01, decay="step")


def test_gamma_learning_rate_factor_scales_one_entry():
  config = _config("adam")
  config.gamma_lr_factor = 10.0
  plain = optim.make_optimizer(_config("adam"))
  scaled = optim.make_optimizer(config, gamma_index=1)
  params = jnp.ones(3)
  u0, _ = plain.update(jnp.asarray([0.5, -1.0, 2.0]), plain.init(params), params, value=jnp.float32(0))
  u1, _ = scaled.update(jnp.asarray([0.5, -1.0, 2.0]), scaled.init(params), params, value=jnp.float32(0))
  np.testing.assert_allclose(u1, np.asarray(u0) * [1.0, 10.0, 1.0], rtol=1e-6)
