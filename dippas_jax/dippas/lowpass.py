"""The photo's own low frequencies under the DIP's detail: x + G_σ * (I − x).

The camera fingerprint is a high-frequency, pixel-wise pattern (K·I): a Gaussian low-pass of σ = 4 px keeps about
1/(4πσ²) ≈ 0.5 % of a white pattern's power. The DIP output drifts at low frequencies (colour blotches in flat
skies, a faint tint across a wall) that PSNR barely sees and a viewer does. `replace_lowpass` keeps the high
frequencies of x (the DIP's, fingerprint-free) and takes the low frequencies from the photo I: it removes the
drift at a negligible cost in anonymity, and the DIP no longer has to fit the low frequencies at all (the DIP
engine's option `lowpass_sigma`; BUILD_NOTES "Whole photos").

Borders are handled by symmetric reflection (scipy.ndimage's 'reflect'), so a tile is filtered like its
mirror-extended self; the kernel is truncated at 3σ and normalised (scipy.ndimage.gaussian_filter, truncate 3).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np


def gaussian_taps(sigma: float) -> np.ndarray:
  """float32[2r + 1]: the normalised 1-D Gaussian of std `sigma` (px), r = int(3σ + 0.5) (as scipy.ndimage's
  gaussian_filter with truncate 3)."""
  if not sigma > 0:
    raise ValueError(f"sigma must be positive, got {sigma}")
  radius = int(3.0 * sigma + 0.5)
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  taps = np.exp(-0.5 * (x / sigma) ** 2)
  return (taps / taps.sum()).astype(np.float32)


def _blur_axis(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
  r = (len(taps) - 1) // 2
  size = x.shape[axis]
  if r >= size:  # repeated reflection for kernels wider than the image (tiny tests)
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = jnp.pad(x, pad, mode="symmetric")
  else:
    lo = jax.lax.slice_in_dim(x, 0, r, axis=axis)
    hi = jax.lax.slice_in_dim(x, size - r, size, axis=axis)
    xp = jnp.concatenate([jnp.flip(lo, axis), x, jnp.flip(hi, axis)], axis=axis)
  out = None
  for i, t in enumerate(taps):
    term = float(t) * jax.lax.slice_in_dim(xp, i, i + size, axis=axis)
    out = term if out is None else out + term
  return out


def blur(x, *, sigma: float) -> jax.Array:
  """Gaussian blur float32[..., H, W, C] of std `sigma` px over H and W (symmetric borders)."""
  x = jnp.asarray(x, jnp.float32)
  if x.ndim < 3:
    raise ValueError(f"blur expects [..., H, W, C], got shape {x.shape}")
  taps = gaussian_taps(sigma)
  return _blur_axis(_blur_axis(x, taps, x.ndim - 3), taps, x.ndim - 2)


def replace_lowpass(x, reference, *, sigma: float) -> jax.Array:
  """x + G_σ * (reference − x): the high frequencies of x over the low frequencies of `reference`.

  Args:
    x, reference: float32[..., H, W, C] on one scale (e.g. both in [0, 1] or both in grey levels).
    sigma: the Gaussian's std in px; 0 returns x unchanged.
  """
  x = jnp.asarray(x, jnp.float32)
  if sigma == 0:
    return x
  return x + blur(jnp.asarray(reference, jnp.float32) - x, sigma=sigma)
