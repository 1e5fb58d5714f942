"""What PSNR does not see: colour blotches and tile seams of an anonymized photo, measured against the original.

- `colour_shift`: the mean change of each colour channel over every w×w window (w = 16 by default), its worst
  value and 99.9th percentile. A DIP output drifting at low frequencies leaves blotches in flat skies and walls
  (a 7-grey-level green square in a blue sky is plain to see at a PSNR of 40 dB); sensor noise averages out over a
  window, so this isolates the drift.
- `spot_shift`: the worst change of any colour channel after a small Gaussian blur (σ 1.5 px), in the flat parts
  of the photo (the original's local grey-level std, σ 4 px, below 3: `dippas.kept_image.local_std`, the flat
  path's measure): spots and rings a few pixels to a few tens
  wide — what a whole-photo DIP leaves in flat skies once the low-pass correction has removed the blotches' mean,
  and what a 16×16 window averages away (in texture a viewer does not see them). The sensor noise that
  anonymization removes (σ ≈ 2 grey levels per pixel) is smoothed to ~0.2 of its std, so it does not dominate.
- `seam_score`: the mean absolute difference of neighbouring pixels across the tile borders of a whole-photo run,
  over the same statistic everywhere else, for the anonymized photo, divided by that ratio for the original. A
  tile border that shows (a step, a line) raises it above 1; 1 means the borders look like any other place.

Images are uint8|float[H, W, 3] on the grey-level scale. Both are numpy reductions over a single photo.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dippas_jax.dippas import kept_image
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


def spot_shift(anonymized, original, *, sigma: float = 1.5, flat_std: float = 3.0) -> dict:
  """{'worst': max |G_σ * (anonymized − original)| over the flat pixels and the channels (grey levels), 'p999':
  its 99.9th percentile, 'flat': the fraction of flat pixels}; 0 without flat pixels. Raises ValueError on
  mismatched shapes."""
  a, o = np.asarray(anonymized, np.float32), np.asarray(original, np.float32)
  if a.shape != o.shape or a.ndim != 3:
    raise ValueError(f"expected two [H, W, C] images of one shape, got {a.shape} and {o.shape}")
  spots = np.abs(ndimage.gaussian_filter(a - o, sigma=(sigma, sigma, 0), mode="reflect")).max(axis=-1)
  flat = np.asarray(kept_image.local_std(o, window_sigma=4.0))[..., 0] < flat_std
  values = spots[flat] if flat.any() else np.zeros(1, np.float32)
  return {"worst": float(values.max()), "p999": float(np.percentile(values, 99.9)), "flat": float(flat.mean())}


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
  reference = _border_ratio(o, rows, cols)
  return _border_ratio(a, rows, cols) / reference if reference > 0 else float("nan")
