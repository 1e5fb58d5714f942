"""Tests for the photo stream: the order of pieces, warm-start roots, every tile exactly once, deterministic."""

import numpy as np
import pytest

from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.dippas import anonymize
from dippas_jax.dippas import kept_image
from dippas_jax.dippas import photo_stream
from dippas_jax.dippas import tiling

pytestmark = pytest.mark.xdist_group("photo_stream")


def test_roots_are_spread_and_every_tile_has_the_nearest():
  layout = tiling.make_layout(1056, 1072, tile_size=128, overlap=8)  # a shared Dresden photo: 9 × 9 tiles
  root_of = photo_stream.warm_roots(layout, 8)
  roots = sorted(set(root_of.values()))
  assert len(roots) == 8 and len(root_of) == 81
  assert all(root_of[r] == r for r in roots)
  rows = {r // layout.cols for r in roots}
  cols = {r % layout.cols for r in roots}
  assert len(rows) == 2 and len(cols) == 4  # a 2 × 4 grid of roots over the 9 × 9 tiles
  for t, r in root_of.items():
    d = lambda a: (a // 9 - t // 9) ** 2 + (a % 9 - t % 9) ** 2  # noqa: E731
    assert d(r) == min(d(q) for q in roots)
  assert photo_stream.warm_roots(layout, 0) == {} and photo_stream.warm_roots(None, 8) == {}
  assert set(photo_stream.warm_roots(tiling.make_layout(40, 40, tile_size=32, overlap=8), 8).values()) <= {0, 1, 2, 3}


class _Config:
  full_resolution, tile_size, tile_overlap, warm_start_roots = True, 32, 8, 2


def test_the_stream_starts_roots_first_and_waits_for_them():
  """Two photos of 2 × 3 tiles with 2 roots each: the roots of photo 0, then (its other tiles waiting) the roots
  of photo 1, then a wait; after a root is done its tiles start from its weights."""
  images = [np.zeros((56, 80, 3), np.uint8), np.ones((56, 80, 3), np.uint8)]
  finished = []
  stream = photo_stream.PhotoStream([photo_stream.PhotoTask(name=f"p{i}", image=im) for i, im in enumerate(images)],
                                    _Config(), finished.append)
  jobs = stream.jobs()
  first = [next(jobs) for _ in range(4)]
  root_of = photo_stream.warm_roots(tiling.make_layout(56, 80, tile_size=32, overlap=8), 2)
  roots = sorted(set(root_of.values()))
  assert [j.key for j in first] == [(0, r) for r in roots] + [(1, r) for r in roots]
  assert all(j.keep_params and j.params0 is None for j in first)
  assert next(jobs) is None  # everything left waits for a root in flight
  params = np.arange(5, dtype=np.float32)
  stream.piece_done(0, roots[0], _piece(params))
  dependants = [t for t, r in root_of.items() if r == roots[0] and t != roots[0]]
  got = [next(jobs) for _ in dependants]
  assert [j.key for j in got] == [(0, t) for t in dependants]
  assert all(np.array_equal(j.params0, params) and not j.keep_params for j in got)
  assert next(jobs) is None


def test_tiles_carry_the_whole_photos_flat_inputs():
  """With a kept-image transform, every tile's job carries the flat path's inputs of the whole (padded) photo cut
  like the tile, not the tile's own (a 32² tile's denoising differs at its borders); without one, none."""
  rng = np.random.default_rng(0)
  image = np.clip(120 + 30 * rng.standard_normal((56, 80, 3)), 0, 255).astype(np.uint8)
  kept = kept_image.KeptImage(flat_std=3 / 255, textured_std=5 / 255, flat_noise=3 / 255)
  layout = tiling.make_layout(56, 80, tile_size=32, overlap=8)
  whole = kept.prepare_photo(tiling.pad_to_layout(image, layout).astype(np.float32) / 255)
  task = photo_stream.PhotoTask(name="a.png", image=image, fingerprint=None)
  config = _Config()
  config.warm_start_roots = 0  # every tile can start at once: the stream ends without a wait
  jobs = list(photo_stream.PhotoStream([task], config, lambda r: None, kept=kept).jobs())
  assert len(jobs) == layout.num_tiles == 6
  for job in jobs:
    top, left = tiling.tile_origin(layout, job.key[1])
    np.testing.assert_array_equal(job.kept_inputs.reconstruction, whole.reconstruction[top:top + 32, left:left + 32])
    np.testing.assert_array_equal(job.kept_inputs.mask, whole.mask[top:top + 32, left:left + 32])
  own = np.asarray(kept.prepare(jobs[4].image.astype(np.float32) / 255).reconstruction)
  assert np.abs(own - jobs[4].kept_inputs.reconstruction).max() > 1 / 255
  plain = list(photo_stream.PhotoStream([task], config, lambda r: None).jobs())
  assert all(job.kept_inputs is None for job in plain)


def _piece(params=None):
  return photo_stream.PieceResult(outputs={(16, 10, 14.0): np.zeros((32, 32, 3), np.uint8)}, history={},
                                  ncc_trace=np.zeros(1), num_steps=1, stopped=False, gamma=0.0, best_psnr=0.0,
                                  pools={(16, 14.0): 1}, seconds=0.0, params=params)


def _config():
  return anonymize_config.get_config(
      "tiny,mode=blind,full_resolution=true,tile_size=32,tile_overlap=8,batch_size=4,dip.max_steps=30,tau=14,"
      "block_size=16,trace_every=0,kept.lowpass_sigma=2,dip.optimizer.learning_rate=0.01,warm_start_roots=2")


def _smooth_photo(h, w, seed):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = 120 + 50 * np.sin(yy / 7.0)[..., None] * np.cos(xx / 11.0 + seed)[..., None] * np.array([1.0, 0.8, 0.6])
  return np.clip(base + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def test_warm_started_photos_run_every_tile_once_and_deterministically():
  images = [_smooth_photo(56, 80, 0), _smooth_photo(80, 56, 1)]
  runs = []
  for _ in range(2):
    done, started = {}, []
    anonymize.anonymize_photos([anonymize.PhotoTask(name=f"p{i}.png", image=im) for i, im in enumerate(images)],
                               config=_config(), on_photo=lambda r: done.__setitem__(r.task.name, r),
                               on_piece=lambda task, i, p: started.append((task.name, i)))
    assert sorted(started) == sorted({(f"p{i}.png", t) for i in range(2) for t in range(6)})  # each tile once
    runs.append(done)
  for name in ("p0.png", "p1.png"):
    np.testing.assert_array_equal(runs[0][name].outputs[(16, 10, 14.0)], runs[1][name].outputs[(16, 10, 14.0)])
    roots = set(photo_stream.warm_roots(runs[0][name].layout, 2).values())
    assert all((p.params is not None) == (t in roots) for t, p in enumerate(runs[0][name].pieces))
