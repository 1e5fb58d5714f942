"""Fixed-size batching on the host: one compilation per shape, whatever the number of images."""

from __future__ import annotations

from typing import Callable

import numpy as np


def pad_batch(a: np.ndarray, size: int, *, fill: str = "zeros") -> np.ndarray:
  """Pads the leading axis of `a` to `size`: with zeros (`fill='zeros'`: a zero image adds exactly nothing to the
  fingerprint sums) or with copies of the last entry (`fill='last'`: keeps searches and NCCs finite)."""
  a = np.asarray(a)
  if len(a) >= size:
    return a
  if fill == "last":
    return np.concatenate([a, np.repeat(a[-1:], size - len(a), axis=0)])
  if fill != "zeros":
    raise ValueError(f"Unsupported fill {fill!r}; expected 'zeros' or 'last'")
  return np.concatenate([a, np.zeros((size - len(a),) + a.shape[1:], a.dtype)])


def map_batches(fn: Callable, images: np.ndarray, *, batch_size: int, progress=None) -> np.ndarray:
  """Applies `fn` (a jitted function of `[batch_size, ...]`) to `images [N, ...]` in zero-padded batches.

  Args:
    fn: maps `[batch_size, ...]` to `[batch_size, ...]` independently per image.
    images: `[N, ...]` host array.
    batch_size: images per call; the last batch is padded with zeros and the padding's outputs dropped.
    progress: optional callable called with the number of images done after each batch.

  Returns:
    numpy `[N, ...]`, the concatenated outputs.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
  outputs = []
  for start in range(0, len(images), batch_size):
    chunk = np.asarray(images[start:start + batch_size])
    outputs.append(np.asarray(fn(pad_batch(chunk, batch_size)))[:len(chunk)])
    if progress is not None:
      progress(start + len(chunk))
  return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
