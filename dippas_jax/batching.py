"""Fixed-size batching on the host: one compilation per shape, whatever the number of images."""

from __future__ import annotations

from typing import Callable

import numpy as np


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
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.zeros((batch_size - n,) + chunk.shape[1:], chunk.dtype)])
    outputs.append(np.asarray(fn(chunk))[:n])
    if progress is not None:
      progress(start + n)
  return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)
