"""DIP engine configuration (the paper's defaults, SPEC §0 and §2.1).

    get_config()                      the paper: 512-deep input, filters (16..256), τ_stop 39 dB, ≤ 10,001 steps
    get_config("tiny")                a CPU-sized network for tests and smoke runs (seconds per hundred steps)
    get_config("injection=none")      ablations, comma-separated with any base:
    get_config("tiny,injection=legacy_transposed,optimizer=adam")

Keys of `arg`: a base ('paper' | 'tiny'), `injection=paper|none|legacy_transposed`,
`optimizer=amsgrad_torch|adam|amsgrad_optax|adamw|sgd`, `batching=vmap|map|loop`,
`perturbation=auto|full|projected`, `precision=highest|high|default`.

With absl: `--config=configs/dip.py:tiny,injection=none --config.tau_stop=37`. The config is locked: a misspelt
field is an error. Every field has a comment above it.
"""

from __future__ import annotations

import ml_collections

BASES = ("paper", "tiny")
_CHOICES = {
    "injection": ("paper", "none", "legacy_transposed"),
    "optimizer": ("amsgrad_torch", "adam", "amsgrad_optax", "adamw", "sgd"),
    "batching": ("vmap", "map", "loop"),
    "perturbation": ("auto", "full", "projected"),
    "precision": ("highest", "high", "default"),
}


def _parse(arg: str | None) -> tuple[str, dict[str, str]]:
  base, options = "paper", {}
  for token in filter(None, (t.strip() for t in (arg or "").split(","))):
    if "=" not in token:
      if token not in BASES:
        raise ValueError(f"Unknown config base {token!r}; expected one of {BASES}.")
      base = token
      continue
    key, value = (s.strip() for s in token.split("=", 1))
    if key not in _CHOICES:
      raise ValueError(f"Unknown config option {key!r}; expected one of {tuple(_CHOICES)}.")
    if value not in _CHOICES[key]:
      raise ValueError(f"Unsupported {key} {value!r}; expected one of {_CHOICES[key]}.")
    options[key] = value
  return base, options


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The DIP config for `arg` (see the module docstring); locked."""
  base, options = _parse(arg)
  config = ml_collections.ConfigDict()

  # Centre crop (pixels, square) that the apps take from each photo; the engine itself accepts any H×W that are
  # multiples of 2**(len(model.filters) - 1).
  config.crop_size = 512
  # Seed of every random draw: per image, keys are fold_in(key(seed), image_id).
  config.seed = 0
  # How the output is tied to the fingerprint K: 'paper' y = x̂(1 + γK); 'none' y = x̂; 'legacy_transposed'
  # y = x̂(1 + γKᵀ), the released code's layout bug (square images only).
  config.injection = "paper"
  # Stop an image when the PSNR of its kept output q(x̂) exceeds this (dB, strict), before the update.
  config.tau_stop = 39.0
  # At most this many forwards (iterations) per image.
  config.max_steps = 10001

  config.model = ml_collections.ConfigDict()
  # MultiRes units per scale, finest first (5 scales = 4 down-samplings: H, W multiples of 16).
  config.model.filters = (16, 32, 64, 128, 256)
  # ResPath widths per scale except the coarsest.
  config.model.skips = (16, 32, 64, 128)
  # MultiRes width multiplier: branch widths int(0.167·αU), int(0.333·αU), int(0.5·αU).
  config.model.alpha = 1.67
  # Channels of the fixed random input z.
  config.model.input_depth = 512
  # LeakyReLU slope.
  config.model.negative_slope = 0.2
  # Weight init: 'pytorch' (conv weight and bias ~ U(±1/sqrt(fan_in)), as the reference) or 'flax'.
  config.model.init_scheme = "pytorch"
  # Convolution precision: 'highest' (true float32 also on TF32 GPUs), 'high' or 'default' (backend default).
  config.model.precision = "highest"
  # How convolutions are computed: 'auto' ('gemm' on CPU, 'xla' elsewhere), 'xla', 'xla_gemm_grad', 'gemm'.
  config.model.conv_impl = "auto"

  config.noise = ml_collections.ConfigDict()
  # Std of the fixed input z ~ input_std · N(0, 1).
  config.noise.input_std = 0.1
  # Std of the fresh perturbation added to z at every step (0 disables it).
  config.noise.reg_std = 0.1
  # How the perturbation is drawn: 'full' (D·H·W Gaussians per step, the reference), 'projected' (the same
  # distribution with ~8× fewer random numbers, see dippas_jax/dip.py), 'auto' (projected on CPU, full elsewhere).
  config.noise.perturbation = "auto"
  # 'projected' draws in full below this many input values D·H·W per image (cheaper there; 4 Mi ≈ 90² at D = 512).
  config.noise.projected_min_size = 4 * 2**20
  # jax.random implementation: 'threefry2x32' (default, identical under vmap), 'rbg' or 'unsafe_rbg'.
  config.noise.prng_impl = "threefry2x32"

  config.optimizer = ml_collections.ConfigDict()
  # 'amsgrad_torch' (the reference's Adam(amsgrad=True)), 'adam', 'amsgrad_optax', 'adamw' or 'sgd'.
  config.optimizer.name = "amsgrad_torch"
  # Learning rate (also γ's).
  config.optimizer.learning_rate = 1e-3
  # Adam β1.
  config.optimizer.b1 = 0.9
  # Adam β2.
  config.optimizer.b2 = 0.999
  # Adam ε (added to sqrt of the second moment).
  config.optimizer.eps = 1e-8
  # Decoupled weight decay (adamw only).
  config.optimizer.weight_decay = 1e-4
  # Momentum (sgd only; 0 = plain SGD).
  config.optimizer.momentum = 0.9
  # Nesterov momentum (sgd only).
  config.optimizer.nesterov = False
  config.optimizer.plateau = ml_collections.ConfigDict()
  # Reduce the learning rate on a loss plateau (torch ReduceLROnPlateau, the reference's --use_scheduler).
  config.optimizer.plateau.enabled = False
  # Multiply the learning rate by this on a plateau.
  config.optimizer.plateau.factor = 0.9
  # Steps without improvement tolerated before reducing.
  config.optimizer.plateau.patience = 10
  # Improvement threshold (relative in 'rel' mode).
  config.optimizer.plateau.threshold = 1e-4
  # 'rel' or 'abs' threshold.
  config.optimizer.plateau.threshold_mode = "rel"
  # Steps to wait after a reduction.
  config.optimizer.plateau.cooldown = 0
  # Lower bound of the learning rate.
  config.optimizer.plateau.min_lr = 0.0

  config.runner = ml_collections.ConfigDict()
  # Steps per call of the jitted chunk runner (host round trip, history transfer and early-exit granularity).
  config.runner.chunk_size = 50
  # How images of one device are batched: 'vmap' (masked early stop), 'map' (lax.map) or 'loop' (unrolled).
  config.runner.batching = "vmap"

  if base == "tiny":
    config.crop_size = 64
    config.model.filters = (4, 8, 8)
    config.model.skips = (4, 4)
    config.model.input_depth = 8
    config.tau_stop = 30.0
    config.max_steps = 500
    config.runner.chunk_size = 25

  for key, value in options.items():
    if key == "injection":
      config.injection = value
    elif key == "optimizer":
      config.optimizer.name = value
    elif key == "batching":
      config.runner.batching = value
    elif key == "perturbation":
      config.noise.perturbation = value
    elif key == "precision":
      config.model.precision = value

  config.lock()
  return config
