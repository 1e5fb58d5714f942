"""Settings of the DIP engine: one frozen, hashable dataclass (the compiled runner is cached per settings).

`DipSettings.from_config(config)` reads an ml_collections config laid out like `configs/dip.py`: every field of
the dataclasses below names the config path it comes from (`_field(default, "model.filters")`), so the mapping is
generated from the fields and cannot drift from them. Defaults are the paper's (SPEC §0, §2.1).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax

from dippas_jax.dippas import injection as injection_lib
from dippas_jax.dippas import optim
from dippas_jax.dippas import unet

# 'projected' draws the perturbation in full below this many input values D·H·W per image (on a 2-core CPU at
# D = 512 the full draw is faster at 64² = 2.1 M values, the projection from 128² = 8.4 M on).
PROJECTED_MIN_SIZE = 4 * 2**20
BATCHINGS = ("vmap", "map", "loop")
PERTURBATIONS = ("auto", "full", "projected")
PRNG_IMPLS = ("threefry2x32", "rbg", "unsafe_rbg")
PRECISIONS = ("highest", "high", "default")
ROUNDINGS = ("floor", "nearest")
CONV_IMPLS = ("auto",) + unet.CONV_IMPLS
# The runtime fields: data of the jitted init (`DipInputs`), not part of the compiled runner's cache key.
RUNTIME_FIELDS = ("injection", "tau_stop", "max_steps", "init_weights")


def _field(default: Any, path: str):
  """A dataclass field read from `path` (dotted, relative to the config group) by `from_config`."""
  if dataclasses.is_dataclass(default):
    return dataclasses.field(default_factory=lambda: default, metadata={"config": path})
  return dataclasses.field(default=default, metadata={"config": path})


def _cast(default: Any, value: Any) -> Any:
  """`value` converted to the type of the field's default (tuples element-wise)."""
  if isinstance(default, tuple):
    kind = type(default[0]) if default else (lambda v: v)
    return tuple(kind(v) for v in value)
  return type(default)(value)


def _lookup(config: Any, path: str) -> Any:
  for name in path.split("."):
    config = getattr(config, name)
  return config


def _from_config(cls, config: Any):
  values = {}
  for f in dataclasses.fields(cls):
    value = _lookup(config, f.metadata["config"])
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    values[f.name] = (type(default).from_config(value) if dataclasses.is_dataclass(default)
                      else _cast(default, value))
  return cls(**values)


@dataclasses.dataclass(frozen=True)
class PlateauSettings:
  """ReduceLROnPlateau(mode='min') on the loss, as the reference's `--use_scheduler` (off by default)."""
  enabled: bool = _field(False, "enabled")
  factor: float = _field(0.9, "factor")
  patience: int = _field(10, "patience")
  threshold: float = _field(1e-4, "threshold")
  threshold_mode: str = _field("rel", "threshold_mode")
  cooldown: int = _field(0, "cooldown")
  min_lr: float = _field(0.0, "min_lr")

  from_config = classmethod(_from_config)


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
  """See `dippas_jax.dippas.optim.make_optimizer`."""
  name: str = _field("amsgrad_torch", "name")
  learning_rate: float = _field(1e-3, "learning_rate")
  b1: float = _field(0.9, "b1")
  b2: float = _field(0.999, "b2")
  eps: float = _field(1e-8, "eps")
  weight_decay: float = _field(1e-4, "weight_decay")
  momentum: float = _field(0.9, "momentum")
  nesterov: bool = _field(False, "nesterov")
  warmup_steps: int = _field(0, "warmup_steps")
  decay: str = _field("none", "decay")
  decay_steps: int = _field(1000, "decay_steps")
  final_lr_factor: float = _field(0.1, "final_lr_factor")
  gamma_lr_factor: float = _field(1.0, "gamma_lr_factor")
  plateau: PlateauSettings = _field(PlateauSettings(), "plateau")

  from_config = classmethod(_from_config)


@dataclasses.dataclass(frozen=True)
class DipSettings:
  """Everything the engine needs, hashable. Defaults = the paper. `from_config` reads configs/dip.py's layout."""
  filters: tuple[int, ...] = _field(unet.PAPER_FILTERS, "model.filters")
  skips: tuple[int, ...] = _field(unet.PAPER_SKIPS, "model.skips")
  alpha: float = _field(unet.PAPER_ALPHA, "model.alpha")
  input_depth: int = _field(unet.PAPER_INPUT_DEPTH, "model.input_depth")
  negative_slope: float = _field(0.2, "model.negative_slope")
  init_scheme: str = _field("pytorch", "model.init_scheme")
  precision: str = _field("highest", "model.precision")
  conv_impl: str = _field("auto", "model.conv_impl")
  init_weights: str = _field("", "model.init_weights")
  sigmoid_grad_floor: float = _field(0.0, "model.sigmoid_grad_floor")
  injection: str = _field("paper", "injection")
  input_noise_std: float = _field(0.1, "noise.input_std")
  reg_noise_std: float = _field(0.1, "noise.reg_std")
  perturbation: str = _field("auto", "noise.perturbation")
  projected_min_size: int = _field(PROJECTED_MIN_SIZE, "noise.projected_min_size")
  prng_impl: str = _field("threefry2x32", "noise.prng_impl")
  optimizer: OptimizerSettings = _field(OptimizerSettings(), "optimizer")
  tau_stop: float = _field(39.0, "tau_stop")
  max_steps: int = _field(10001, "max_steps")
  rounding: str = _field("floor", "rounding")
  chunk_size: int = _field(50, "runner.chunk_size")
  batching: str = _field("vmap", "runner.batching")
  fast_compile: bool = _field(False, "runner.fast_compile")

  from_config = classmethod(_from_config)

  @property
  def downsampling(self) -> int:
    """H and W must be multiples of this: 2**(number of scales - 1)."""
    return 2 ** (len(self.filters) - 1)

  def check(self) -> None:
    """ValueError on unsupported names or sizes (before anything is traced)."""
    injection_lib.check_mode(self.injection)
    for name, value, allowed in (("batching", self.batching, BATCHINGS),
                                 ("perturbation", self.perturbation, PERTURBATIONS),
                                 ("prng_impl", self.prng_impl, PRNG_IMPLS),
                                 ("precision", self.precision, PRECISIONS),
                                 ("conv_impl", self.conv_impl, CONV_IMPLS),
                                 ("rounding", self.rounding, ROUNDINGS),
                                 ("init_scheme", self.init_scheme, unet.INITS),
                                 ("optimizer", self.optimizer.name, optim.OPTIMIZERS),
                                 ("decay", self.optimizer.decay, optim.DECAYS)):
      if value not in allowed:
        raise ValueError(f"Unsupported {name} {value!r}; expected one of {allowed}.")
    if self.chunk_size < 1 or self.max_steps < 1:
      raise ValueError(f"chunk_size and max_steps must be >= 1, got {self.chunk_size}, {self.max_steps}.")
    if not math.isfinite(self.optimizer.learning_rate) or self.optimizer.learning_rate <= 0:
      raise ValueError(f"learning_rate must be a positive number, got {self.optimizer.learning_rate}.")

  def compile_key(self) -> "DipSettings":
    """These settings with the runtime fields (`RUNTIME_FIELDS`) at their defaults: what a compiled runner
    depends on."""
    return dataclasses.replace(self, **{name: getattr(DipSettings, name) for name in RUNTIME_FIELDS})


def resolve(settings: DipSettings, platform: str | None = None) -> DipSettings:
  """Replace the 'auto' choices by concrete ones for `platform` (default: the default backend)."""
  platform = platform or jax.default_backend()
  cpu = platform == "cpu"
  return dataclasses.replace(
      settings,
      conv_impl=("gemm" if cpu else "xla") if settings.conv_impl == "auto" else settings.conv_impl,
      perturbation=("projected" if cpu else "full") if settings.perturbation == "auto" else settings.perturbation)


def precision_of(settings: DipSettings) -> str | None:
  """The `precision` argument of the network's dots and convolutions (None = the backend default)."""
  return None if settings.precision == "default" else settings.precision
