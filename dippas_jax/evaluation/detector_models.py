"""The anonymization detector's trainable parts: a small ResNet on the handcrafted features, and a logistic
classifier on residual statistics; both trained from scratch here (`train_resnet`, `train_logistic`).

The authors (Bonettini et al., ICIP 2019, `finetuning.py`) fine-tune an ImageNet ResNet-18 (one logit, sigmoid +
BCE, Adam lr 0.01 with a ×0.1 step every 7 epochs, 30 epochs, batches of 48, 224² patches). That needs a GPU
and pretrained weights; this detector is the same kind of network shrunk to CPU-sized tiles and trained from
scratch: a 3 × 3 stem (stride `stem_stride`, 2 by default) and one basic residual block per stage (`widths`,
stride 2 from the second stage on, BatchNorm, ReLU, the ResNet-v1 shortcut: a strided 1 × 1 conv + BatchNorm
where the shape changes), global average pooling and one logit. Loss: binary cross-entropy with logits (label
1 = anonymized); optimizer AdamW with a cosine decay of the learning rate; batches drawn by a permutation per
epoch seeded from `fold_in(key, epoch)`.

Linen's functional `init`/`apply` keeps params and BatchNorm statistics as explicit pytrees (the project's
convention, BUILD_NOTES); one jitted `_train_step` owns the update and the batch-statistics bookkeeping.
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax


class _Block(nn.Module):
  """ResNet basic block: conv3×3-BN-ReLU-conv3×3-BN + shortcut, ReLU."""
  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9)
    y = nn.Conv(self.features, (3, 3), strides=self.stride, use_bias=False)(x)
    y = nn.relu(norm()(y))
    y = nn.Conv(self.features, (3, 3), use_bias=False)(y)
    y = norm(scale_init=nn.initializers.zeros)(y)  # each block starts as the identity (Goyal et al. 2017)
    if x.shape[-1] != self.features or self.stride != 1:
      x = norm()(nn.Conv(self.features, (1, 1), strides=self.stride, use_bias=False)(x))
    return nn.relu(x + y)


class ResNetDetector(nn.Module):
  """Logit (anonymized vs original) of feature tiles float32[B, t, t, C] → float32[B].

  Attributes:
    widths: channels per stage; one basic block per stage, stride 2 from the second stage on.
    stem_stride: stride of the 3 × 3 stem convolution (2 halves the cost of the first stage).
  """
  widths: Sequence[int] = (16, 32, 64)
  stem_stride: int = 2

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = nn.Conv(self.widths[0], (3, 3), strides=self.stem_stride, use_bias=False)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
    for i, width in enumerate(self.widths):
      x = _Block(width, stride=1 if i == 0 else 2)(x, train=train)
    return nn.Dense(1)(jnp.mean(x, axis=(1, 2)))[:, 0]


@flax.struct.dataclass
class TrainState:
  """params, batch_stats (BatchNorm running statistics) and optimizer state of the ResNet."""
  params: dict
  batch_stats: dict
  opt_state: optax.OptState


def _loss(params, batch_stats, model, x, y):
  logits, updates = model.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                                mutable=["batch_stats"])
  return optax.sigmoid_binary_cross_entropy(logits, y).mean(), updates["batch_stats"]


@functools.lru_cache(maxsize=None)
def _optimizer(weight_decay: float) -> optax.GradientTransformation:
  """AdamW whose learning rate is a state entry (set per step), one object per weight decay: the jitted step
  takes it as a static argument, so a new object would recompile the step for every fold."""
  return optax.inject_hyperparams(optax.adamw)(learning_rate=0.0, weight_decay=weight_decay)


@functools.partial(jax.jit, static_argnames=("model",))
def _init(key, x, *, model):
  return model.init(key, x, train=False)


@functools.partial(jax.jit, static_argnames=("model", "tx"), donate_argnums=(0,))
def _train_step(state: TrainState, x, y, learning_rate, *, model, tx):
  (loss, stats), grads = jax.value_and_grad(_loss, has_aux=True)(state.params, state.batch_stats, model, x, y)
  opt_state = state.opt_state._replace(hyperparams={**state.opt_state.hyperparams, "learning_rate": learning_rate})
  updates, opt_state = tx.update(grads, opt_state, state.params)
  return TrainState(optax.apply_updates(state.params, updates), stats, opt_state), loss


@functools.partial(jax.jit, static_argnames=("model",))
def _predict(params, batch_stats, x, *, model):
  return model.apply({"params": params, "batch_stats": batch_stats}, x, train=False)


def _cosine(peak: float, step: int, total: int) -> float:
  """`optax.cosine_decay_schedule(peak, total)(step)`, on the host."""
  return 0.5 * peak * (1.0 + math.cos(math.pi * min(step, total) / total))


def train_resnet(features: np.ndarray, labels: np.ndarray, *, key: jax.Array, widths: Sequence[int] = (16, 32, 64),
                 stem_stride: int = 2, epochs: int = 4, batch_size: int = 32, learning_rate: float = 1e-2,
                 weight_decay: float = 1e-4) -> tuple[ResNetDetector, dict]:
  """Trains the ResNet from scratch on feature tiles; returns (model, variables) for `predict_resnet`.

  Args:
    features: float32[T, t, t, C] (`detector_features.handcrafted`).
    labels: bool or 0/1 [T] (1 = anonymized).
    key: PRNG key (initialisation and batch order).
    widths, stem_stride: the network (`ResNetDetector`).
    epochs, batch_size, learning_rate, weight_decay: its optimization (AdamW, cosine decay to 0 over all steps;
      the last partial batch of an epoch is dropped).
  """
  x = np.asarray(features, np.float32)
  y = np.asarray(labels, np.float32)
  if x.ndim != 4 or len(x) != len(y):
    raise ValueError(f"features must be [T, t, t, C] with one label each, got {x.shape} and {y.shape}")
  batch_size = min(int(batch_size), len(x))
  steps_per_epoch = max(1, len(x) // batch_size)
  model = ResNetDetector(widths=tuple(int(w) for w in widths), stem_stride=int(stem_stride))
  init_key, order_key = jax.random.split(key)
  variables = _init(init_key, jnp.zeros((1,) + x.shape[1:], jnp.float32), model=model)
  total = max(1, epochs * steps_per_epoch)
  tx = _optimizer(float(weight_decay))
  state = TrainState(variables["params"], variables["batch_stats"], tx.init(variables["params"]))
  loss, step = jnp.zeros(()), 0
  for epoch in range(int(epochs)):
    order = np.random.default_rng(np.asarray(jax.random.key_data(jax.random.fold_in(order_key, epoch)))
                                  ).permutation(len(x))
    for s in range(steps_per_epoch):
      idx = order[s * batch_size:(s + 1) * batch_size]
      lr = jnp.float32(_cosine(learning_rate, step, total))
      state, loss = _train_step(state, jnp.asarray(x[idx]), jnp.asarray(y[idx]), lr, model=model, tx=tx)
      step += 1
  jax.block_until_ready(loss)
  return model, {"params": state.params, "batch_stats": state.batch_stats}


def predict_resnet(model: ResNetDetector, variables: dict, features: np.ndarray, *,
                   batch_size: int = 64) -> np.ndarray:
  """Logits float64[T] of feature tiles float32[T, t, t, C] (inference BatchNorm; fixed padded batches)."""
  x = np.asarray(features, np.float32)
  out = []
  for start in range(0, len(x), batch_size):
    chunk = x[start:start + batch_size]
    padded = np.concatenate([chunk, np.zeros((batch_size - len(chunk),) + x.shape[1:], np.float32)])
    out.append(np.asarray(_predict(variables["params"], variables["batch_stats"], jnp.asarray(padded),
                                   model=model))[:len(chunk)])
  return np.concatenate(out).astype(np.float64) if out else np.zeros((0,))


# ------------------------------------------------------------------------------------------------- logistic
_LOGISTIC_ROWS = 1024  # training rows are zero-weight padded to a multiple of this (few shapes to compile)


@functools.partial(jax.jit, static_argnames=("steps",))
def _fit_logistic(x, y, weight, l2, learning_rate, *, steps):
  """Full-batch Adam on the weighted mean BCE of rows x float32[R, F] (weight 0 = padding) + l2·|w|²."""
  tx = optax.adam(learning_rate)
  params = (jnp.zeros(x.shape[1], jnp.float32), jnp.zeros((), jnp.float32))

  def loss(p):
    w, b = p
    bce = optax.sigmoid_binary_cross_entropy(x @ w + b, y)
    return jnp.sum(weight * bce) / jnp.sum(weight) + l2 * jnp.sum(w * w)

  def step(carry, _):
    p, opt = carry
    g = jax.grad(loss)(p)
    updates, opt = tx.update(g, opt, p)
    return (optax.apply_updates(p, updates), opt), None

  (params, _), _ = jax.lax.scan(step, (params, tx.init(params)), None, length=steps)
  return params


def train_logistic(statistics: np.ndarray, labels: np.ndarray, *, l2: float = 1e-3, steps: int = 500,
                   learning_rate: float = 0.05) -> dict:
  """Logistic regression on standardised statistics float[T, F] (train-set mean/std), full-batch Adam with an
  L2 penalty; returns {'mean', 'std', 'w', 'b'} for `predict_logistic`."""
  x = np.asarray(statistics, np.float64)
  if x.ndim != 2 or len(x) != len(labels):
    raise ValueError(f"statistics must be [T, F] with one label each, got {x.shape} and {np.shape(labels)}")
  mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
  rows = -(-len(x) // _LOGISTIC_ROWS) * _LOGISTIC_ROWS
  pad = rows - len(x)
  z = np.concatenate([(x - mean) / std, np.zeros((pad, x.shape[1]))]).astype(np.float32)
  y = np.concatenate([np.asarray(labels, np.float32), np.zeros(pad, np.float32)])
  weight = np.concatenate([np.ones(len(x), np.float32), np.zeros(pad, np.float32)])
  w, b = _fit_logistic(jnp.asarray(z), jnp.asarray(y), jnp.asarray(weight), jnp.float32(l2),
                       jnp.float32(learning_rate), steps=int(steps))
  return {"mean": mean, "std": std, "w": np.asarray(w, np.float64), "b": float(b)}


def predict_logistic(model: dict, statistics: np.ndarray) -> np.ndarray:
  """Logits float64[T] of statistics float[T, F]."""
  return ((np.asarray(statistics, np.float64) - model["mean"]) / model["std"]) @ model["w"] + model["b"]
