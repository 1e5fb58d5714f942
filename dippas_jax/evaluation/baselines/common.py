"""Helpers shared by the baselines: input checks, the Eq. 2 NCC, the per-image Illinois root search."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics


def check_images(images) -> jax.Array:
  x = jnp.asarray(images)
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"images must have shape [N, H, W, 3] (uint8 or float in [0, 255]), got {tuple(x.shape)}")
  return x.astype(jnp.float32)


def check_fingerprint(fingerprint, images: jax.Array) -> jax.Array:
  if fingerprint is None:
    raise ValueError("this baseline is PRNU-aware: pass fingerprint=float[H, W] (or [N, H, W]), the device K")
  k = jnp.asarray(fingerprint, jnp.float32)
  hw = tuple(images.shape[1:3])
  if k.ndim not in (2, 3) or tuple(k.shape[-2:]) != hw or (k.ndim == 3 and k.shape[0] != images.shape[0]):
    raise ValueError(f"fingerprint must have shape {hw} or {(images.shape[0],) + hw} to match images "
                     f"{tuple(images.shape)}, got {tuple(k.shape)}")
  return jnp.broadcast_to(k, images.shape[:3])


def unit_std(k: jax.Array) -> tuple[jax.Array, jax.Array]:
  """`(K / std(K), std(K))` per image (std over H, W; a constant K gets std 1 so nothing divides by 0)."""
  std = jnp.std(k, axis=(-2, -1), keepdims=True)
  std = jnp.where(std > 0, std, 1.0)
  return k / std, std[..., 0, 0]


def safe_div(a, b):
  ok = b != 0
  return jnp.where(ok, a / jnp.where(ok, b, 1.0), 0.0)


@jax.jit
def eq2(residual, images, k):
  return metrics.ncc_eq2(residual, images, k)


def ncc_of(images: jax.Array, k: jax.Array, sigma: float) -> jax.Array:
  """Eq. 2 NCC of float32 images with K. `denoise.extract_residual` is called on its own (not inside another
  jit), so its compilation for a shape is shared by every caller in the process."""
  return eq2(denoise.extract_residual(images, sigma=sigma), images, k)


@functools.partial(jax.jit, static_argnames=("quantize",))
def apply(x, pattern, beta, *, quantize):
  """`clip(x − β·pattern, 0, 255)` with one β per image, rounded half to even when `quantize`."""
  out = jnp.clip(x - beta[:, None, None, None] * pattern, 0.0, 255.0)
  return jnp.round(out) if quantize else out


@jax.jit
def pattern(base, k):
  """`(base ⊙ K̂, std(K))` with K̂ = K / std(K) per image, broadcast over the colour channels."""
  k_unit, k_std = unit_std(k)
  return base * k_unit[..., None], k_std


@jax.jit
def illinois_init(lo, hi, f_lo, f_hi):
  best = jnp.where(jnp.abs(f_hi) < jnp.abs(f_lo), hi, lo)
  return lo, hi, f_lo, f_hi, jnp.zeros(f_lo.shape, jnp.int32), best, jnp.minimum(jnp.abs(f_lo), jnp.abs(f_hi))


@jax.jit
def illinois_point(lo, hi, f_lo, f_hi):
  """The secant point of the bracket, clipped into it."""
  return jnp.clip(lo - f_lo * safe_div(hi - lo, f_hi - f_lo), lo, hi)


@jax.jit
def illinois_update(state, mid, f_mid):
  """One Illinois step: `mid` replaces the bracket end whose f has its sign (f > 0 at lo, ≤ 0 at hi); the end
  kept twice in a row has its f halved. Tracks the evaluated point of smallest |f|."""
  lo, hi, f_lo, f_hi, side, best, f_best = state
  go_hi = f_mid > 0  # The root lies in [mid, hi]: mid becomes the new lo.
  new_f_lo = jnp.where(go_hi, f_mid, jnp.where(side == -1, f_lo * 0.5, f_lo))
  new_f_hi = jnp.where(go_hi, jnp.where(side == 1, f_hi * 0.5, f_hi), f_mid)
  better = jnp.abs(f_mid) < f_best
  return (jnp.where(go_hi, mid, lo), jnp.where(go_hi, hi, mid), new_f_lo, new_f_hi,
          jnp.where(go_hi, 1, -1).astype(jnp.int32), jnp.where(better, mid, best),
          jnp.where(better, jnp.abs(f_mid), f_best))


def illinois_search(f, lo, hi, f_lo, f_hi, iterations: int) -> jax.Array:
  """Root of a decreasing f on per-image brackets [lo, hi] (f(lo) > 0 ≥ f(hi)) by `iterations` Illinois steps.

  Returns the evaluated point with the smallest |f|; where the bracket holds no sign change, the end with the
  smaller |f|.
  """
  state = illinois_init(lo, hi, f_lo, f_hi)
  for _ in range(int(iterations)):
    mid = illinois_point(*state[:4])
    state = illinois_update(state, mid, f(mid))
  bracketed = (f_lo > 0) & (f_hi <= 0)
  return jnp.where(bracketed, state[5], jnp.where(jnp.abs(f_hi) < jnp.abs(f_lo), hi, lo)).astype(jnp.float32)
