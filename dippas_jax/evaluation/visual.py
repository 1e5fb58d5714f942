"""What PSNR does not see: colour blotches and tile seams of an anonymized photo, measured against the original.

- `colour_shift`: the mean change of each colour channel over every w×w window (w = 16 by default), its worst
  value and 99.9th percentile. A DIP output drifting at low frequencies leaves blotches in flat skies and walls
  (a 7-grey-level green square in a blue sky is plain to see at a PSNR of 40 dB); sensor noise averages out over a
  window, so this isolates the drift.
- `seam_score`: the mean absolute difference of neighbouring pixels across the tile borders of a whole-photo run,
  over the same statistic everywhere else, for the anonymized photo, divided by that ratio for the original. A
  tile border that shows (a step, a line) raises it above 1; 1 means the borders look like any other place.

Images are uint8|float[H, W, 3] on the grey-level scale. Both are numpy reductions over a single photo.
"""

from __future__ import annotations

import numpy as np

from dippas_jax.dippas import tiling


def window_means(diff: np.ndarray, window: int) -> np.ndarray:
  """float64[H - w + 1, W - w + 1, C]: the mean of float[H, W, C] over every w×w window (summed-area table)."""
  c = np.cumsum(np.cumsum(np.pad(diff.astype(np.float64), ((1, 0), (1, 0), (0, 0))), axis=0), axis=1)
  w = window
  return (c[w:, w:] - c[:-w, w:] - c[w:, :-w] + c[:-w, :-w]) / (w * w)


def colour_shift(anonymized, original, *, window: int = 16) -> dict:
  """{'worst': max |window mean of (anonymized - original)| over windows and channels (grey levels),
  'p999': its 99.9th percentile, 'window': w}. Raises ValueError on mismatched shapes or a photo smaller than w."""
  a, o = np.asarray(anonymized, np.float64), np.asarray(original, np.float64)
  if a.shape != o.shape or a.ndim != 3:
    raise ValueError(f"expected two [H, W, C] images of one shape, got {a.shape} and {o.shape}")
  if min(a.shape[:2]) < window:
    raise ValueError(f"the image {a.shape[0]}×{a.shape[1]} is smaller than the {window}-pixel window")
  shift = np.abs(window_means(a - o, window))
  return {"worst": float(shift.max()), "p999": float(np.percentile(shift, 99.9)), "window": int(window)}


def border_masks(layout: tiling.TileLayout) -> tuple[np.ndarray, np.ndarray]:
  """(rows bool[H - 1], cols bool[W - 1]): the pixel pairs (y, y + 1) / (x, x + 1) that straddle a tile edge
  (the first or last row or column of some tile, inside the photo), where a seam would show."""
  def edges(size: int, count: int) -> np.ndarray:
    mask = np.zeros(max(size - 1, 0), bool)
    for i in range(count):
      start = i * layout.stride
      for y in (start - 1, start + layout.tile_size - 1):  # pairs (start-1, start) and (end-1, end)
        if 0 <= y < size - 1:
          mask[y] = True
    return mask
  return edges(layout.height, layout.rows), edges(layout.width, layout.cols)


def _border_ratio(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> float:
  dy = np.abs(np.diff(image, axis=0))  # [H - 1, W, C]
  dx = np.abs(np.diff(image, axis=1))  # [H, W - 1, C]
  on = np.concatenate([dy[rows].ravel(), dx[:, cols].ravel()])
  off = np.concatenate([dy[~rows].ravel(), dx[:, ~cols].ravel()])
  return float(on.mean() / off.mean()) if on.size and off.size and off.mean() > 0 else float("nan")


def seam_score(anonymized, original, layout: tiling.TileLayout) -> float:
  """(border / elsewhere mean |neighbour difference|) of the anonymized photo over that of the original: ~1 when
  the tiles do not show; NaN for a single tile. See the module docstring."""
  a, o = np.asarray(anonymized, np.float64), np.asarray(original, np.float64)
  if a.shape != o.shape or a.shape[:2] != (layout.height, layout.width):
    raise ValueError(f"expected two images of the layout's size {layout.height}×{layout.width}, got {a.shape} "
                     f"and {o.shape}")
  rows, cols = border_masks(layout)
  if not rows.any() and not cols.any():
    return float("nan")
  return _border_ratio(a, rows, cols) / _border_ratio(o, rows, cols)
