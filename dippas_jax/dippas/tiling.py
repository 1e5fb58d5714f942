"""Tiling for whole photos: cut a photo into square tiles, put the processed tiles back.

DIPPAS works on fixed-size crops (512 x 512 in the paper). To anonymize a whole photo it is cut into a grid of
`tile_size` x `tile_size` tiles, processed a few at a time (`dippas.dip.scheduler`), and put back by a
`TileCanvas`; the tiles are never all cut at once (`cut` takes one tile of the padded photo) and the canvas
holds one sum and one weight plane (`photo_stream` keeps a photo's finished tile outputs until its last tile is
done, then adds them: host memory is O(photo), ~200 kB per 128² tile and setting).

Layout: tile (i, j) (row-major, index i * cols + j) starts at (i * stride, j * stride) with stride = tile_size -
overlap. The grid covers the padded image of (rows - 1) * stride + tile_size pixels per side, the image being
padded at the bottom and right by reflection (no edge repeat, so the padding looks like image content to the
network and the fingerprint); the canvas crops the padding off. Fingerprints (or any [H, W, ...] array of the same
size) are cut with the same layout, so their tiles align with the image tiles.

Overlap and seams: with `overlap > 0` neighbouring tiles share `overlap` rows or columns, which the canvas blends
with a linear cross-fade (weights (u + 0.5) / overlap across the shared band, their complement for the other
tile, separable in y and x; the weighted sum is normalised by the summed weights). `overlap` is at most
tile_size / 2. Tiles cut from one image round-trip bit for bit for integer dtypes, for any H, W and overlap.
"""

from __future__ import annotations

import dataclasses
import operator

import numpy as np

__all__ = ["TileCanvas", "TileLayout", "cut", "make_layout", "pad_to_layout", "tile", "tile_like", "tile_origin",
           "untile"]


@dataclasses.dataclass(frozen=True)
class TileLayout:
  """Where the tiles of one H x W image are (hashable: usable as a static jit argument).

  Attributes:
    height, width: the original image size.
    tile_size: T (a multiple of the U-Net's down-sampling for the DIP: `unet.check_size`).
    overlap: pixels shared by neighbouring tiles (0 ≤ overlap ≤ T / 2).
    rows, cols: the tile grid; tile i * cols + j starts at (i * stride, j * stride).
  """

  height: int
  width: int
  tile_size: int
  overlap: int
  rows: int
  cols: int

  @property
  def stride(self) -> int:
    return self.tile_size - self.overlap

  @property
  def padded_height(self) -> int:
    return (self.rows - 1) * self.stride + self.tile_size

  @property
  def padded_width(self) -> int:
    return (self.cols - 1) * self.stride + self.tile_size

  @property
  def num_tiles(self) -> int:
    return self.rows * self.cols

  def to_dict(self) -> dict:
    """JSON-friendly description (for reports)."""
    return dataclasses.asdict(self)


def _int(value, name: str) -> int:
  try:
    return operator.index(value)
  except TypeError:
    raise ValueError(f"{name} must be a Python int, got {value!r}") from None


def _count(size: int, tile_size: int, stride: int) -> int:
  return 1 + max(0, -(-(size - tile_size) // stride))


def make_layout(height: int, width: int, *, tile_size: int, overlap: int = 0) -> TileLayout:
  """The tile grid of an H x W image.

  Raises:
    ValueError: if tile_size is not positive, overlap is outside [0, tile_size / 2], or the
      image is empty.
  """
  h, w, t, o = _int(height, "height"), _int(width, "width"), _int(tile_size, "tile_size"), _int(overlap, "overlap")
  if h < 1 or w < 1:
    raise ValueError(f"image size must be positive, got {h}x{w}")
  if t < 1:
    raise ValueError(f"tile_size must be positive, got {t}")
  if not 0 <= o <= t // 2:
    raise ValueError(f"overlap must be in [0, tile_size / 2] = [0, {t // 2}], got {o}")
  s = t - o
  return TileLayout(height=h, width=w, tile_size=t, overlap=o, rows=_count(h, t, s), cols=_count(w, t, s))


def tile_origin(layout: TileLayout, index: int) -> tuple[int, int]:
  """(top, left) of tile `index` (row-major) in the padded image."""
  i, j = divmod(int(index), layout.cols)
  return i * layout.stride, j * layout.stride


def pad_to_layout(x, layout: TileLayout) -> np.ndarray:
  """The [H, W, ...] array reflected at the bottom and right to the padded size of `layout` (numpy)."""
  x = np.asarray(x)
  if x.ndim < 2 or x.shape[:2] != (layout.height, layout.width):
    raise ValueError(f"expected an array of shape [{layout.height}, {layout.width}, ...], got {list(x.shape)}")
  pad = [(0, layout.padded_height - layout.height), (0, layout.padded_width - layout.width)]
  pad += [(0, 0)] * (x.ndim - 2)
  return np.pad(x, pad, mode="reflect")  # repeated reflection when the pad exceeds the size


def cut(padded: np.ndarray, layout: TileLayout, index: int) -> np.ndarray:
  """Tile `index` [T, T, ...] of an array padded by `pad_to_layout` (a view: cut tiles one at a time, so a
  photo's tiles never all exist at once)."""
  top, left = tile_origin(layout, index)
  return padded[top:top + layout.tile_size, left:left + layout.tile_size]


def tile_like(x, layout: TileLayout) -> np.ndarray:
  """Cuts an [H, W, ...] array (image, fingerprint, mask) into all the tiles of `layout`:
  [num_tiles, T, T, ...], tile i * cols + j first. ValueError if x is not [layout.height, layout.width, ...]."""
  padded = pad_to_layout(x, layout)
  return np.stack([cut(padded, layout, t) for t in range(layout.num_tiles)])


def tile(image, *, tile_size: int, overlap: int = 0) -> tuple[np.ndarray, TileLayout]:
  """Cuts an [H, W, ...] image into square tiles (reflection padding at the bottom and right).

  Args:
    image: [H, W, ...] any dtype.
    tile_size: T (a multiple of the U-Net's down-sampling for the DIP: `unet.check_size`).
    overlap: pixels shared by neighbouring tiles, 0 ≤ overlap ≤ T / 2.

  Returns:
    (tiles [num_tiles, T, T, ...], layout); cut the fingerprint with `tile_like(k, layout)`.
  """
  image = np.asarray(image)
  if image.ndim < 2:
    raise ValueError(f"tile expects [H, W, ...], got shape {list(image.shape)}")
  layout = make_layout(image.shape[0], image.shape[1], tile_size=tile_size, overlap=overlap)
  return tile_like(image, layout), layout


def _ramp(layout: TileLayout, index: int, count: int) -> np.ndarray:
  """float32[T] cross-fade weights of the `index`-th of `count` tiles along one axis: rising (u + 0.5) / overlap
  over the band shared with the previous tile, falling by the complement over the band shared with the next."""
  t, o = layout.tile_size, layout.overlap
  w = np.ones(t, np.float32)
  if o:
    up = ((np.arange(o) + 0.5) / o).astype(np.float32)
    if index > 0:
      w[:o] = up
    if index < count - 1:
      w[t - o:] = np.float32(1) - up
  return w


class TileCanvas:
  """Puts processed tiles back, one at a time, in any order: the streaming inverse of `tile`.

  Neighbouring tiles are cross-faded linearly across their shared bands (the weights of two tiles sum to 1
  there); the padding is cropped. Memory: one float32 sum and one weight plane of the padded image, whatever the
  number of tiles. Tiles cut from one image put back unchanged give that image bit for bit for integer dtypes
  (the normalised sum is within float rounding of the value, then rounded) and within float32 rounding for floats.

  Args:
    layout: the tiles' layout.
    trailing: the shape after [T, T] of every tile (e.g. (3,) for RGB, () for a fingerprint).
  """

  def __init__(self, layout: TileLayout, trailing: tuple[int, ...] = (3,)):
    self.layout = layout
    self.trailing = tuple(trailing)
    self._sum = np.zeros((layout.padded_height, layout.padded_width) + self.trailing, np.float32)
    self._weight = np.zeros((layout.padded_height, layout.padded_width), np.float32)
    self._added = np.zeros(layout.num_tiles, bool)

  def add(self, index: int, tile_values) -> None:
    """Adds tile `index` [T, T, *trailing] (any real dtype)."""
    t = self.layout.tile_size
    tile_values = np.asarray(tile_values)
    if tile_values.shape != (t, t) + self.trailing:
      raise ValueError(f"expected a tile of shape {[t, t, *self.trailing]}, got {list(tile_values.shape)}")
    i, j = divmod(int(index), self.layout.cols)
    w = np.outer(_ramp(self.layout, i, self.layout.rows), _ramp(self.layout, j, self.layout.cols))
    top, left = tile_origin(self.layout, index)
    self._sum[top:top + t, left:left + t] += w.reshape(w.shape + (1,) * len(self.trailing)) * tile_values
    self._weight[top:top + t, left:left + t] += w
    self._added[index] = True

  @property
  def complete(self) -> bool:
    return bool(self._added.all())

  def result(self, dtype=np.float32) -> np.ndarray:
    """The [H, W, *trailing] image (every tile must have been added): floats as computed, integer dtypes rounded
    to nearest and clipped to the dtype's range."""
    if not self.complete:
      raise ValueError(f"tiles {np.flatnonzero(~self._added).tolist()} were never added")
    h, w = self.layout.height, self.layout.width
    weight = self._weight[:h, :w].reshape((h, w) + (1,) * len(self.trailing))
    out = self._sum[:h, :w] / weight
    if np.issubdtype(np.dtype(dtype), np.integer):
      info = np.iinfo(dtype)
      return np.clip(np.round(out), info.min, info.max).astype(dtype)
    return out.astype(dtype)


def untile(tiles, layout: TileLayout) -> np.ndarray:
  """Reassembles all the tiles [num_tiles, T, T, ...] of `layout` into the [H, W, ...] image with the tiles' dtype
  (a `TileCanvas` fed in order)."""
  tiles = np.asarray(tiles)
  t = layout.tile_size
  if tiles.ndim < 3 or tiles.shape[:3] != (layout.num_tiles, t, t):
    raise ValueError(f"expected tiles of shape [{layout.num_tiles}, {t}, {t}, ...] for this layout, got "
                     f"{list(tiles.shape)}")
  canvas = TileCanvas(layout, tiles.shape[3:])
  for index, values in enumerate(tiles):
    canvas.add(index, values)
  return canvas.result(tiles.dtype)
