"""PRNU injection: the DIPPAS output model `y = x̂ ⊙ (1 + γK)` (SPEC §0, §2.6, §4.1 items 1-2).

x̂ = f_θ(z) is the U-Net output (the image that is kept as a candidate); y is used only in the loss. K is the
fingerprint in image orientation, float[H, W], broadcast over the 3 colour channels; γ is a learned scalar,
initialised to 0 and projected to γ ≥ 0 after every optimizer step (`project_gamma`).

Modes (config `injection`):
  'paper'              y = x̂ ⊙ (1 + γK)        (default)
  'none'               y = x̂                   (γ exists but receives no gradient)
  'legacy_transposed'  y = x̂ ⊙ (1 + γKᵀ)       (the released code's layout bug, SPEC §2.4; square images only)
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

INJECTION_MODES = ("paper", "none", "legacy_transposed")


def check_mode(mode: str) -> None:
  if mode not in INJECTION_MODES:
    raise ValueError(f"Unsupported injection mode {mode!r}; expected one of {INJECTION_MODES}.")


def oriented_fingerprint(fingerprint: jax.Array, mode: str = "paper") -> jax.Array:
  """The pattern actually multiplied into the output: K ('paper'), Kᵀ ('legacy_transposed'), 0 ('none').

  fingerprint: float[..., H, W] -> float[..., H, W]. 'legacy_transposed' needs H == W (ValueError otherwise).
  """
  check_mode(mode)
  if mode == "paper":
    return fingerprint
  if mode == "none":
    return jnp.zeros_like(fingerprint)
  if fingerprint.shape[-1] != fingerprint.shape[-2]:
    raise ValueError(f"injection='legacy_transposed' reproduces a bug that only exists for square images; got a "
                     f"{fingerprint.shape[-2]}x{fingerprint.shape[-1]} fingerprint. Use 'paper' or crop to a square.")
  return jnp.swapaxes(fingerprint, -1, -2)


def inject(x_hat: jax.Array, fingerprint: jax.Array, gamma: jax.Array, *, mode: str = "paper") -> jax.Array:
  """y = x̂ ⊙ (1 + γK') with K' = `oriented_fingerprint(fingerprint, mode)`.

  x_hat: float[..., H, W, C]; fingerprint: float[..., H, W] (broadcast over C); gamma: float[] -> float[..., H, W, C].
  """
  check_mode(mode)
  if fingerprint.shape[-2:] != x_hat.shape[-3:-1]:
    raise ValueError(f"fingerprint shape {fingerprint.shape} does not match the image shape {x_hat.shape} "
                     "(expected [..., H, W] for an image [..., H, W, C]).")
  if mode == "none":
    return x_hat
  k = oriented_fingerprint(fingerprint, mode)
  return x_hat * (1.0 + gamma * k[..., None].astype(x_hat.dtype))


class PrnuInjection(nn.Module):
  """The learned gain γ (param 'gamma', float32[], initialised to `gamma_init` = 0) and `inject`."""
  mode: str = "paper"
  gamma_init: float = 0.0

  @nn.compact
  def __call__(self, x_hat: jax.Array, fingerprint: jax.Array) -> jax.Array:
    gamma = self.param("gamma", nn.initializers.constant(self.gamma_init), (), jnp.float32)
    return inject(x_hat, fingerprint, gamma, mode=self.mode)


class InjectedUNet(nn.Module):
  """x̂ = unet(z) and y = x̂ ⊙ (1 + γK). Params: {'unet': ..., 'injection': {'gamma': float32[]}}.

  __call__(z, fingerprint) -> (x̂, y): z is what the U-Net takes (an array [N, H, W, D] or a network-input
  provider, see `dippas_jax.dip`), fingerprint float[H, W] (or [N, H, W]); x̂ and y float32[N, H, W, 3].
  """
  unet: nn.Module
  mode: str = "paper"
  gamma_init: float = 0.0

  @nn.compact
  def __call__(self, z: Any, fingerprint: jax.Array) -> tuple[jax.Array, jax.Array]:
    x_hat = self.unet(z)
    y = PrnuInjection(self.mode, self.gamma_init, name="injection")(x_hat, fingerprint)
    return x_hat, y


def project_gamma(params: Any) -> Any:
  """The projection applied after every update: γ <- max(γ, 0). Pure; returns new params."""
  injection = dict(params["injection"])
  injection["gamma"] = jnp.maximum(injection["gamma"], 0.0)
  return {**params, "injection": injection}
