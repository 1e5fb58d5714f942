"""DIP engine configuration (the paper's defaults, SPEC §0 and §2.1).

    get_config()                      the paper: 512-deep input, filters (16..256), τ_stop 39 dB, ≤ 10,001 steps
    get_config("tiny")                a CPU-sized network for tests and smoke runs (seconds per hundred steps,
                                      compiled with runner.fast_compile)
    get_config("injection=none")      ablations: field overrides after the base (configs/arguments.py)
    get_config("tiny,injection=legacy_transposed,optimizer=adam")

Aliases of the overrides: `injection`, `optimizer` (optimizer.name), `batching` (runner.batching), `perturbation`
(noise.perturbation), `precision` (model.precision); any other field by its dotted path. Valid values are the
engine's (`dippas_jax.dippas.dip.settings`); a wrong one is a ValueError here, before anything runs.

With absl: `--config=configs/dip.py:tiny,injection=none --config.tau_stop=37`. The config is locked: a misspelt
field is an error. Every field has a comment above it.
"""

from __future__ import annotations

import ml_collections

from dippas_jax.configs import arguments
from dippas_jax.dippas.dip import settings as dip_settings

ALIASES = {"optimizer": "optimizer.name", "batching": "runner.batching", "perturbation": "noise.perturbation",
           "precision": "model.precision"}
# Bases: overrides of the paper's defaults.
BASES = {
    "paper": {},
    "tiny": {"model.filters": (4, 8, 8), "model.skips": (4, 4), "model.input_depth": 8, "tau_stop": 30.0,
             "max_steps": 500, "runner.chunk_size": 25, "runner.fast_compile": True},
}


def _model() -> ml_collections.ConfigDict:
  model = ml_collections.ConfigDict()
  # MultiRes units per scale, finest first (5 scales = 4 down-samplings: H, W multiples of 16).
  model.filters = (16, 32, 64, 128, 256)
  # ResPath widths per scale except the coarsest.
  model.skips = (16, 32, 64, 128)
  # MultiRes width multiplier: branch widths int(0.167·αU), int(0.333·αU), int(0.5·αU).
  model.alpha = 1.67
  # Channels of the fixed random input z.
  model.input_depth = 512
  # LeakyReLU slope.
  model.negative_slope = 0.2
  # Weight init: 'pytorch' (conv weight and bias ~ U(±1/sqrt(fan_in)), as the reference) or 'flax'.
  model.init_scheme = "pytorch"
  # Convolution precision: 'highest' (true float32 also on TF32 GPUs), 'high' or 'default' (backend default).
  model.precision = "highest"
  # How convolutions are computed: 'auto' ('gemm' on CPU, 'xla' elsewhere), 'xla', 'xla_gemm_grad', 'gemm'.
  model.conv_impl = "auto"
  # Initial weights: '' = PyTorch's random init (the paper), else a weights file (a path, or the name of one
  # shipped in dippas_jax/dippas/weights/, e.g. a meta-learned initialisation) made for this very network.
  model.init_weights = ""
  # Lower bound of the output sigmoid's gradient: with 0 (the paper) an output driven into saturation (a clipped
  # highlight) gets no gradient back and stays stuck; e.g. 0.05 keeps it learning. The forward is unchanged.
  model.sigmoid_grad_floor = 0.0
  return model


def _noise() -> ml_collections.ConfigDict:
  noise = ml_collections.ConfigDict()
  # Std of the fixed input z ~ input_std · N(0, 1).
  noise.input_std = 0.1
  # Std of the fresh perturbation added to z at every step (0 disables it).
  noise.reg_std = 0.1
  # How the perturbation is drawn: 'full' (D·H·W Gaussians per step, the reference), 'projected' (the same
  # distribution with ~8× fewer random numbers, see dippas/dip/perturbation.py), 'auto' (projected on CPU).
  noise.perturbation = "auto"
  # 'projected' draws in full below this many input values D·H·W per image (cheaper there; 4 Mi ≈ 90² at D = 512).
  noise.projected_min_size = dip_settings.PROJECTED_MIN_SIZE
  # jax.random implementation: 'threefry2x32' (default, identical under vmap), 'rbg' or 'unsafe_rbg'.
  noise.prng_impl = "threefry2x32"
  return noise


def _plateau() -> ml_collections.ConfigDict:
  plateau = ml_collections.ConfigDict()
  # Reduce the learning rate on a loss plateau (torch ReduceLROnPlateau, the reference's --use_scheduler).
  plateau.enabled = False
  # Multiply the learning rate by this on a plateau.
  plateau.factor = 0.9
  # Steps without improvement tolerated before reducing.
  plateau.patience = 10
  # Improvement threshold (relative in 'rel' mode).
  plateau.threshold = 1e-4
  # 'rel' or 'abs' threshold.
  plateau.threshold_mode = "rel"
  # Steps to wait after a reduction.
  plateau.cooldown = 0
  # Lower bound of the learning rate.
  plateau.min_lr = 0.0
  return plateau


def _optimizer() -> ml_collections.ConfigDict:
  optimizer = ml_collections.ConfigDict()
  # 'amsgrad_torch' (the reference's Adam(amsgrad=True)), 'adam', 'amsgrad_optax', 'adamw' or 'sgd'.
  optimizer.name = "amsgrad_torch"
  # Learning rate (also γ's).
  optimizer.learning_rate = 1e-3
  # Adam β1.
  optimizer.b1 = 0.9
  # Adam β2.
  optimizer.b2 = 0.999
  # Adam ε (added to sqrt of the second moment).
  optimizer.eps = 1e-8
  # Decoupled weight decay (adamw only).
  optimizer.weight_decay = 1e-4
  # Momentum (sgd only; 0 = plain SGD).
  optimizer.momentum = 0.9
  # Nesterov momentum (sgd only).
  optimizer.nesterov = False
  # Linear learning-rate warm-up over this many first steps (0 = none, the reference).
  optimizer.warmup_steps = 0
  # Learning-rate decay after the warm-up: 'none' (the reference) or 'cosine' (to final_lr_factor·lr).
  optimizer.decay = "none"
  # Steps at which the cosine decay reaches its end.
  optimizer.decay_steps = 1000
  # The cosine decay's final learning rate relative to learning_rate.
  optimizer.final_lr_factor = 0.1
  # γ's learning rate relative to the network's (1 = the reference: the same).
  optimizer.gamma_lr_factor = 1.0
  # ReduceLROnPlateau stage (off by default, as in the reference).
  optimizer.plateau = _plateau()
  return optimizer


def _runner() -> ml_collections.ConfigDict:
  runner = ml_collections.ConfigDict()
  # Steps per call of the jitted chunk runner (host round trip, history transfer and early-exit granularity).
  runner.chunk_size = 50
  # How images of one device are batched: 'vmap' (masked early stop), 'map' (lax.map) or 'loop' (unrolled).
  runner.batching = "vmap"
  # Compile the runner with XLA's backend optimization level 0: about 2× faster compilation on a CPU (tiny net:
  # 25 → 13 s; its steps were not slower), unmeasured on large networks. For tests and short smoke runs ('tiny').
  runner.fast_compile = False
  return runner


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The DIP config for `arg` (see the module docstring); locked and validated."""
  base, overrides = arguments.parse(arg, tuple(BASES))
  config = ml_collections.ConfigDict()
  # How the output is tied to the fingerprint K: 'paper' y = x̂(1 + γK); 'none' y = x̂; 'legacy_transposed'
  # y = x̂(1 + γKᵀ), the released code's layout bug (square images only).
  config.injection = "paper"
  # Stop an image when the PSNR of its kept output q(x̂) exceeds this (dB, strict), before the update.
  config.tau_stop = 39.0
  # At most this many forwards (iterations) per image.
  config.max_steps = 10001
  # q(), the uint8 quantisation of the kept output (the candidates and the PSNR of the stop rule): 'floor' (the
  # reference's uint8 truncation: a −0.5 grey-level bias on every pixel) or 'nearest' (round half up: no bias).
  config.rounding = "floor"
  # The network: the MultiRes U-Net of SPEC §3.
  config.model = _model()
  # The network input z and its per-step perturbation.
  config.noise = _noise()
  # The optimizer (the reference's AMSGrad with PyTorch semantics by default).
  config.optimizer = _optimizer()
  # The jitted runner.
  config.runner = _runner()
  arguments.apply(config, BASES[base])
  arguments.apply(config, overrides, ALIASES)
  dip_settings.DipSettings.from_config(config).check()
  config.lock()
  return config
