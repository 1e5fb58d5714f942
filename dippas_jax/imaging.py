"""Pixel conventions shared by every layer (numpy or JAX arrays alike)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def to_uint8(image):
  """uint8 pixels of an image on the [0, 255] grey-level scale: uint8 unchanged; floats (16-bit photos read as
  value / 257, baseline outputs) clipped to [0, 255] and rounded half to even (= `np.rint`). A numpy input gives
  a numpy array, anything else a JAX array."""
  xp = np if isinstance(image, np.ndarray) else jnp
  image = xp.asarray(image)
  if image.dtype == xp.uint8:
    return image
  return xp.round(xp.clip(image.astype(xp.float32), 0.0, 255.0)).astype(xp.uint8)


def is_grey(image: np.ndarray) -> bool:
  """True when the three channels of `uint8|float[H, W, 3]` are identical (a grey photo read as RGB)."""
  image = np.asarray(image)
  return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2]))


def grey_of(image: np.ndarray) -> np.ndarray:
  """uint8[H, W]: the rounded mean of the channels of uint8[H, W, 3] (how a grey photo's result is written)."""
  return np.round(np.asarray(image, np.float32).mean(axis=-1)).astype(np.uint8)
