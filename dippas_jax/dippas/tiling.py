"""Tiling for full-resolution anonymization: cut a photo into square tiles, put the processed tiles back.

DIPPAS works on fixed-size crops (512 x 512 in the paper). To anonymize a whole photo, `tile` cuts it into a
grid of `tile_size` x `tile_size` tiles (processed as one vmapped batch) and `untile` reassembles them.

Layout: tile (i, j) (row-major, index i * cols + j) starts at (i * stride, j * stride) with stride = tile_size -
overlap. The grid covers the padded image of (rows - 1) * stride + tile_size pixels per side, the image being
padded at the bottom and right by reflection (no edge repeat, so the padding looks like image content to the
network and the fingerprint); `untile` crops the padding off. Fingerprints (or any [H, W, ...] array of the same
size) are cut with the same layout by `tile_like`, so their tiles align with the image tiles.

Overlap and seams: with `overlap > 0` neighbouring tiles share `overlap` rows or columns, which `untile` blends
with a linear cross-fade (weights (u + 0.5) / overlap across the shared band), first along rows of tiles, then
along columns. The blend is written `a + t * (b - a)` and keeps `a` wherever the two tiles agree, so tiles cut
from one image round-trip bit for bit, for any H, W and overlap; integer dtypes are rounded back per stage.
`overlap` must be at most tile_size / 2 (then at most two tiles meet in any band along one axis).
"""

from __future__ import annotations

import dataclasses
import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["TileLayout", "make_layout", "tile", "tile_like", "untile"]

_TILE_MULTIPLE = 16  # the U-Net's 4 down-samplings


@dataclasses.dataclass(frozen=True)
class TileLayout:
  """Where the tiles of one H x W image are (hashable: usable as a static jit argument).

  Attributes:
    height, width: the original image size.
    tile_size: T, a multiple of 16.
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
    ValueError: if tile_size is not a positive multiple of 16, overlap is outside [0, tile_size / 2], or the
      image is empty.
  """
  h, w, t, o = _int(height, "height"), _int(width, "width"), _int(tile_size, "tile_size"), _int(overlap, "overlap")
  if h < 1 or w < 1:
    raise ValueError(f"image size must be positive, got {h}x{w}")
  if t < _TILE_MULTIPLE or t % _TILE_MULTIPLE:
    raise ValueError(f"tile_size must be a positive multiple of {_TILE_MULTIPLE} (the U-Net down-samples 4 times), "
                     f"got {t}; try {max(_TILE_MULTIPLE, t - t % _TILE_MULTIPLE)}")
  if not 0 <= o <= t // 2:
    raise ValueError(f"overlap must be in [0, tile_size / 2] = [0, {t // 2}], got {o}")
  s = t - o
  return TileLayout(height=h, width=w, tile_size=t, overlap=o, rows=_count(h, t, s), cols=_count(w, t, s))


@functools.partial(jax.jit, static_argnums=1)
def tile_like(x, layout: TileLayout) -> jax.Array:
  """Cuts an [H, W, ...] array (image, fingerprint, mask) into the tiles of `layout`.

  Returns:
    [num_tiles, T, T, ...], tile i * cols + j first along the tile axis.

  Raises:
    ValueError: if x is not [layout.height, layout.width, ...].
  """
  x = jnp.asarray(x)
  if x.ndim < 2 or x.shape[:2] != (layout.height, layout.width):
    raise ValueError(f"expected an array of shape [{layout.height}, {layout.width}, ...], got {list(x.shape)}")
  pad = [(0, layout.padded_height - layout.height), (0, layout.padded_width - layout.width)]
  pad += [(0, 0)] * (x.ndim - 2)
  padded = jnp.pad(x, pad, mode="reflect")  # repeated reflection when the pad exceeds the size
  t, s = layout.tile_size, layout.stride
  ys = np.arange(layout.rows)[:, None] * s + np.arange(t)[None, :]  # [rows, T]
  xs = np.arange(layout.cols)[:, None] * s + np.arange(t)[None, :]  # [cols, T]
  tiles = padded[ys[:, None, :, None], xs[None, :, None, :]]  # [rows, cols, T, T, ...]
  return tiles.reshape((layout.num_tiles, t, t) + x.shape[2:])


def tile(image, *, tile_size: int, overlap: int = 0) -> tuple[jax.Array, TileLayout]:
  """Cuts an [H, W, ...] image into square tiles (reflection padding at the bottom and right).

  Args:
    image: [H, W, ...] any dtype.
    tile_size: T, a multiple of 16.
    overlap: pixels shared by neighbouring tiles, 0 ≤ overlap ≤ T / 2.

  Returns:
    (tiles [num_tiles, T, T, ...], layout); cut the fingerprint with `tile_like(k, layout)`.
  """
  image = jnp.asarray(image)
  if image.ndim < 2:
    raise ValueError(f"tile expects [H, W, ...], got shape {list(image.shape)}")
  layout = make_layout(image.shape[0], image.shape[1], tile_size=tile_size, overlap=overlap)
  return tile_like(image, layout), layout


def _blend_axis(x: jax.Array, axis: int, count: int, layout: TileLayout) -> jax.Array:
  """Joins `count` tiles laid side by side along `axis` (x.shape[axis] == count * T) into the padded length."""
  t, s, o = layout.tile_size, layout.stride, layout.overlap
  length = (count - 1) * s + t
  pos = np.arange(length)
  second = np.minimum(pos // s, count - 1)  # the later tile covering pos
  local = pos - second * s
  in_band = (local < o) & (second > 0)
  first = np.where(in_band, second - 1, second)
  first_local = np.where(in_band, local + s, local)
  weight = np.where(in_band, (local + 0.5) / max(o, 1), 0.0)  # weight of the later tile
  a = jnp.take(x, first * t + first_local, axis=axis)
  if o == 0:
    return a
  b = jnp.take(x, second * t + local, axis=axis)
  shape = [1] * x.ndim
  shape[axis] = length
  if jnp.issubdtype(x.dtype, jnp.floating):
    t_w = jnp.asarray(weight.reshape(shape), x.dtype)
    mixed = a + t_w * (b - a)
  else:  # integers (and bool): blend in float32, round to nearest, back to the dtype
    t_w = jnp.asarray(weight.reshape(shape), jnp.float32)
    af, bf = a.astype(jnp.float32), b.astype(jnp.float32)
    mixed = jnp.round(af + t_w * (bf - af))
    if jnp.issubdtype(x.dtype, jnp.integer):
      info = jnp.iinfo(x.dtype)
      mixed = jnp.clip(mixed, info.min, info.max)
    mixed = mixed.astype(x.dtype)
  return jnp.where(a == b, a, mixed)


@functools.partial(jax.jit, static_argnums=1)
def untile(tiles, layout: TileLayout) -> jax.Array:
  """Reassembles tiles into the [H, W, ...] image (exact inverse of `tile` for unmodified tiles).

  Overlapping bands are cross-faded linearly (see the module docstring); the reflection padding is cropped.

  Args:
    tiles: [num_tiles, T, T, ...] (e.g. the anonymized tiles), tile i * cols + j first.
    layout: the layout `tile` returned.

  Returns:
    [H, W, ...] with the tiles' dtype.
  """
  tiles = jnp.asarray(tiles)
  t = layout.tile_size
  if tiles.ndim < 3 or tiles.shape[:3] != (layout.num_tiles, t, t):
    raise ValueError(f"expected tiles of shape [{layout.num_tiles}, {t}, {t}, ...] for this layout, got "
                     f"{list(tiles.shape)}")
  rest = tiles.shape[3:]
  grid = tiles.reshape((layout.rows, layout.cols, t, t) + rest)
  # Rows of tiles -> strips [rows, T, cols * T, ...] -> blended along x -> [rows, T, Wp, ...].
  strips = jnp.swapaxes(grid, 1, 2).reshape((layout.rows, t, layout.cols * t) + rest)
  strips = _blend_axis(strips, 2, layout.cols, layout)
  # Strips stacked -> [rows * T, Wp, ...] -> blended along y -> [Hp, Wp, ...].
  full = _blend_axis(strips.reshape((layout.rows * t, layout.padded_width) + rest), 0, layout.rows, layout)
  return full[:layout.height, :layout.width]
