"""Tests for full-resolution tiling: layout, exact round trips, fingerprint alignment, seam blending."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dippas_jax.dippas import tiling


@pytest.mark.parametrize("shape", [(37, 53, 3), (16, 16, 3), (5, 7, 3), (65, 31, 3), (100, 33)])
@pytest.mark.parametrize("tile_size, overlap", [(16, 0), (16, 5), (32, 8), (32, 16), (48, 0)])
def test_round_trip_exact(shape, tile_size, overlap):
  rng = np.random.default_rng(sum(shape) + tile_size + overlap)
  image = rng.integers(0, 256, shape, dtype=np.uint8)
  tiles, layout = tiling.tile(image, tile_size=tile_size, overlap=overlap)
  assert tiles.shape == (layout.num_tiles, tile_size, tile_size) + shape[2:]
  assert tiles.dtype == np.uint8
  assert layout.padded_height >= shape[0] and layout.padded_width >= shape[1]
  np.testing.assert_array_equal(tiling.untile(tiles, layout), image)
  # Floats round-trip bit for bit too (the blend keeps a where the two tiles agree).
  as_float = rng.normal(0, 1, shape).astype(np.float32)
  np.testing.assert_array_equal(tiling.untile(tiling.tile_like(as_float, layout), layout), as_float)


def test_layout_and_tile_positions():
  layout = tiling.make_layout(70, 40, tile_size=32, overlap=8)
  assert (layout.stride, layout.rows, layout.cols) == (24, 3, 2)
  assert (layout.padded_height, layout.padded_width) == (80, 56)
  image = np.arange(70 * 40, dtype=np.int32).reshape(70, 40)
  tiles = np.asarray(tiling.tile_like(image, layout))
  padded = np.pad(image, ((0, 10), (0, 16)), mode="reflect")  # reflection, no edge repeat: row 70 = row 68
  for i in range(3):
    for j in range(2):
      np.testing.assert_array_equal(tiles[i * 2 + j], padded[24 * i:24 * i + 32, 24 * j:24 * j + 32])
  np.testing.assert_array_equal(tiles[0], image[:32, :32])
  np.testing.assert_array_equal(tiles[4][70 - 48], image[68, :32])
  assert layout.to_dict()["overlap"] == 8


def test_fingerprint_tiles_align_with_image_tiles():
  rng = np.random.default_rng(0)
  k = rng.normal(0, 1, (45, 61)).astype(np.float32)
  image = rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)
  image[..., 1] = np.clip(np.round(k * 40 + 128), 0, 255).astype(np.uint8)
  tiles, layout = tiling.tile(image, tile_size=32, overlap=4)
  k_tiles = tiling.tile_like(k, layout)
  assert k_tiles.shape == (layout.num_tiles, 32, 32)
  np.testing.assert_array_equal(np.clip(np.round(np.asarray(k_tiles) * 40 + 128), 0, 255).astype(np.uint8),
                                tiles[..., 1])


def test_overlap_blends_without_steps():
  layout = tiling.make_layout(32, 56, tile_size=32, overlap=8)
  assert (layout.rows, layout.cols) == (1, 2)
  tiles = np.stack([np.zeros((32, 32)), np.full((32, 32), 80.0)]).astype(np.float32)
  out = np.asarray(tiling.untile(tiles, layout))
  row = out[5]
  np.testing.assert_array_equal(row[:24], 0.0)
  np.testing.assert_array_equal(row[32:], 80.0)
  band = row[24:32]  # linear cross-fade: (u + 0.5) / 8 * 80
  np.testing.assert_allclose(band, (np.arange(8) + 0.5) / 8 * 80, rtol=1e-6)
  assert np.all(np.diff(row) >= 0) and np.max(np.diff(row)) <= 10.0
  # uint8 tiles are rounded back to uint8.
  out8 = tiling.untile(tiles.astype(np.uint8), layout)
  assert out8.dtype == np.uint8
  np.testing.assert_array_equal(np.asarray(out8)[0, 24:32], np.round((np.arange(8) + 0.5) * 10))


def test_untile_jits_with_static_layout():
  image = np.random.default_rng(1).integers(0, 256, (40, 50, 3), dtype=np.uint8)
  tiles, layout = tiling.tile(image, tile_size=16, overlap=4)
  out = jax.jit(tiling.untile, static_argnums=1)(jnp.asarray(tiles), layout)
  np.testing.assert_array_equal(out, image)


def test_errors():
  with pytest.raises(ValueError, match="multiple of 16"):
    tiling.tile(np.zeros((40, 40, 3)), tile_size=20)
  with pytest.raises(ValueError, match="overlap"):
    tiling.tile(np.zeros((40, 40, 3)), tile_size=32, overlap=17)
  with pytest.raises(ValueError, match="overlap"):
    tiling.make_layout(40, 40, tile_size=32, overlap=-1)
  layout = tiling.make_layout(40, 40, tile_size=32)
  with pytest.raises(ValueError, match="expected an array"):
    tiling.tile_like(np.zeros((40, 41)), layout)
  with pytest.raises(ValueError, match="expected tiles"):
    tiling.untile(np.zeros((3, 32, 32)), layout)
