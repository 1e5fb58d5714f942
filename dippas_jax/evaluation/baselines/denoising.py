"""PRNU-blind baseline: repeated wavelet denoising."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dippas_jax.evaluation.baselines import common
from dippas_jax.prnu import denoise


class DenoisingResult(NamedTuple):
  """Output of `wavelet_denoising`: `image` float32[N, H, W, 3] in [0, 255]; `passes` int32[N]."""
  image: jax.Array
  passes: jax.Array


def wavelet_denoising(images, *, fingerprint=None, passes: int = 1, sigma: float = 3.0,
                      levels: int = 4) -> DenoisingResult:
  """Repeated wavelet denoising: `passes` times `J ← clip(denoise.denoise(J, sigma=sigma), 0, 255)`.

  PRNU-blind (`fingerprint` is accepted for a uniform registry signature and ignored). The evaluation sweeps
  `passes ∈ {1, 2, 3}`; the output stays in float between passes (quantise once at the end with `imaging.to_uint8`).

  The NCC is scale-free, so denoising only helps once it removes the PRNU-bearing noise rather than shrinking
  it: where σ is far below the sensor noise the residual keeps its direction and the NCC barely moves (the
  synthetic camera, noise std ≈ 6: σ = 3 leaves the NCC at 0.26; σ = 10 × 2 passes brings it to ≈ 0.01 at
  ≈ 28 dB). On the Dresden 512² crops one pass at σ = 3 lowers the NCC from 0.032 to 0.0075 at ≈ 44 dB.

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255].
    passes: number of denoising passes (≥ 1).
    sigma: denoiser noise std in grey levels.
    levels: wavelet decomposition levels.
  """
  del fingerprint
  x = common.check_images(images)
  if passes < 1:
    raise ValueError(f"passes must be ≥ 1, got {passes}")
  out = x
  for _ in range(int(passes)):
    out = jnp.clip(denoise.denoise(out, levels=int(levels), sigma=float(sigma)), 0.0, 255.0)
  return DenoisingResult(image=out, passes=jnp.full((x.shape[0],), passes, jnp.int32))
