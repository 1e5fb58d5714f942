"""DIPPAS anonymization of arrays: synthetic ground truth, one compilation per run (the job: tests/jobs)."""

import functools

import numpy as np
import pytest

from dippas_jax import synthetic
from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.dippas import anonymize
from dippas_jax.dippas.dip import runner as runner_lib
from dippas_jax.prnu import metrics

# One xdist worker runs this module (`--dist loadgroup`): its module fixtures and compiled programs are made once.
pytestmark = pytest.mark.xdist_group("dippas_anonymize")


def _fast_config():
  config = anonymize_config.get_config("tiny")
  config.dip.optimizer.learning_rate = 0.01  # The tiny net needs a larger step to reach τ in CI time.
  config.dip.max_steps = 300
  config.tau = 22.0
  config.trace_every = 0
  return config


def test_aware_and_blind_push_ncc_into_the_non_matching_band():
  data = synthetic.make_dataset(seed=0, num_devices=4, num_flatfield=0, num_natural=6, height=64, width=64)
  photo, k_true = data.natural[:1], data.prnu[0]
  k_blind = anonymize.reference_fingerprints(photo, None, mode="blind", sigma=3.0)
  # One optimization, two images: the same photo anonymized PRNU-aware (K) and PRNU-blind (K̃ = W(I)).
  result = anonymize.anonymize(np.concatenate([photo, photo]), np.stack([k_true, k_blind[0]]),
                               config=_fast_config(), seed=0, names=["aware", "blind"])
  out = result.outputs[result.primary]
  # Non-matching: 18 photos of 3 devices (with only 9 the 99th percentile is just their maximum, too unstable).
  others = anonymize.ncc_scores(data.natural[6:], k_true, sigma=3.0)
  band = np.percentile(others, 99)
  before = anonymize.ncc_scores(photo, k_true, sigma=3.0)[0]
  after = anonymize.ncc_scores(out, k_true, sigma=3.0)
  psnr = metrics.psnr(out, np.concatenate([photo, photo]))
  assert before > 10 * band  # The photo is clearly attributable before.
  np.testing.assert_array_less(after, band)  # ... and inside the non-matching band after, in both modes,
  np.testing.assert_array_less(22.0, psnr)   # at PSNR ≥ τ.
  assert np.all(result.pool_sizes[(16, 22.0)] > 10)
  # The injection learns the true PRNU strength (1: photo = Y·(1 + K)) in aware mode only.
  assert 0.7 < result.gamma[0] < 1.3 and result.gamma[1] < 0.3


def test_two_calls_compile_the_runner_once(monkeypatch):
  """The hook is a value (`AssemblyHook`), so a second batch with the same config reuses the compiled runner:
  its chunk function is traced once for the two calls."""
  traces = []
  make_chunk = runner_lib._make_chunk

  def counting(*args):
    chunk = make_chunk(*args)

    @functools.wraps(chunk)  # the same name, hence the same program (and persistent-cache entry) as unwrapped
    def traced(*args):
      traces.append(1)
      return chunk(*args)

    return traced

  monkeypatch.setattr(runner_lib, "_make_chunk", counting)
  runner_lib._build_runner_cached.cache_clear()
  data = synthetic.make_dataset(seed=2, num_devices=1, num_flatfield=0, num_natural=4, height=64, width=64)
  config = _fast_config()
  config.dip.max_steps = 4  # data, not part of the program: the runner (and its persistent-cache entry) of
  # the test above serves here too
  for i in (0, 2):
    anonymize.anonymize(data.natural[i:i + 2], data.prnu[0], config=config, names=[str(i), str(i + 1)])
  assert len(traces) == 1
  assert anonymize.make_hook(config, height=64, width=64) == anonymize.make_hook(config, height=64, width=64)


def test_restore_from_original_copies_only_clipped_channels():
  original = np.array([[[255, 10, 255], [254, 254, 254]]], np.uint8)[None]
  output = np.array([[[250, 12, 249], [251, 250, 252]]], np.uint8)[None]
  kept = anonymize.restore_from_original(original, output, saturated_level=255)
  np.testing.assert_array_equal(kept, [[[[255, 12, 255], [251, 250, 252]]]])
  np.testing.assert_array_equal(anonymize.restore_from_original(original, output), output)


def test_restore_from_original_copies_whole_pixels_changed_beyond_max_change():
  original = np.array([[[20, 20, 20], [200, 100, 50], [0, 255, 9]]], np.uint8)[None]
  output = np.array([[[0, 18, 21], [190, 110, 50], [10, 245, 0]]], np.uint8)[None]  # changes 20 / 10 / 10
  kept = anonymize.restore_from_original(original, output, max_change=10)
  np.testing.assert_array_equal(kept, [[[[20, 20, 20], [190, 110, 50], [10, 245, 0]]]])  # only > 10 restored
  np.testing.assert_array_equal(anonymize.restore_from_original(original, output, max_change=9)[0, 0, 1:],
                                original[0, 0, 1:])


# Whole photos: the tiny network on 32² tiles with an 8-pixel overlap, 30 iterations per tile, the photo's own low
# frequencies under the DIP's detail (kept.lowpass_sigma 2, as the whole-photo recipe).
def _photo_config(**fields):
  config = anonymize_config.get_config("tiny,mode=blind,full_resolution=true,tile_size=32,tile_overlap=8,"
                                       "batch_size=4,dip.max_steps=60,tau=14,block_size=16,trace_every=0,"
                                       "kept.lowpass_sigma=2,dip.optimizer.learning_rate=0.01")
  for key, value in fields.items():
    anonymize_config.arguments.set_field(config, key, value)
  return config


def _smooth_photo(h, w, seed):
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w]
  base = 120 + 50 * np.sin(yy / 7.0)[..., None] * np.cos(xx / 11.0 + seed)[..., None] * np.array([1.0, 0.8, 0.6])
  return np.clip(base + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


def _run_photos(images, config, names=None):
  done = {}
  names = names or [f"p{i}.png" for i in range(len(images))]
  tasks = [anonymize.PhotoTask(name=n, image=im) for n, im in zip(names, images)]
  stats = anonymize.anonymize_photos(tasks, config=config, on_photo=lambda r: done.__setitem__(r.task.name, r))
  return done, stats


@pytest.fixture(scope="module")
def two_photos():
  """A landscape photo of odd size and a portrait one, in one queue."""
  images = [_smooth_photo(45, 70, 0), _smooth_photo(70, 45, 1)]
  done, stats = _run_photos(images, _photo_config())
  return images, done, stats


def test_whole_photo_has_the_input_size_in_both_orientations(two_photos):
  images, done, stats = two_photos
  for image, name in zip(images, ("p0.png", "p1.png")):
    result = done[name]
    out = result.outputs[(16, 10, 14.0)]
    assert out.shape == image.shape and out.dtype == np.uint8
    assert len(result.pieces) == result.layout.num_tiles == 6  # 2 × 3 tiles of 32² at stride 24
    assert float(metrics.psnr(out, image)) > 14.0
  assert stats.busy_steps == sum(p.num_steps for r in done.values() for p in r.pieces)


def test_a_photo_does_not_depend_on_what_shared_the_queue(two_photos):
  images, done, _ = two_photos
  alone, _ = _run_photos([images[1]], _photo_config(), names=["p1.png"])
  np.testing.assert_array_equal(alone["p1.png"].outputs[(16, 10, 14.0)], done["p1.png"].outputs[(16, 10, 14.0)])


def test_resumed_pieces_are_not_recomputed_and_give_the_same_photo(two_photos):
  images, done, _ = two_photos
  first = done["p0.png"]
  kept = {t: first.pieces[t] for t in (0, 2, 5)}
  started = []
  again = {}
  task = anonymize.PhotoTask(name="p0.png", image=images[0], done=kept)
  anonymize.anonymize_photos([task], config=_photo_config(), on_photo=lambda r: again.__setitem__(0, r),
                             on_piece=lambda t, i, p: started.append(i))
  assert sorted(started) == [1, 3, 4]
  np.testing.assert_array_equal(again[0].outputs[(16, 10, 14.0)], first.outputs[(16, 10, 14.0)])


def test_stop_at_pool_stops_when_the_pool_is_full_and_never_later_than_tau_stop():
  """The stop by need only adds a stop: the trajectory is the same up to it, it comes no later than the τ_stop /
  max_steps rules, and never before every pool holds `stop_at_pool` candidates (unless those rules come first)."""
  data = synthetic.make_dataset(seed=3, num_devices=1, num_flatfield=0, num_natural=2, height=64, width=64)
  config = _fast_config()
  config.dip.max_steps = 120
  config.tau = 16.0  # reached after ~20 steps by these photos (τ_stop 30 is not reached in 120)
  plain = anonymize.anonymize(data.natural, data.prnu[0], config=config)
  config.stop_at_pool = 6
  need = anonymize.anonymize(data.natural, data.prnu[0], config=config)
  for p, n in zip(plain.pieces, need.pieces):
    assert n.num_steps <= p.num_steps
    np.testing.assert_array_equal(n.history["psnr"], p.history["psnr"][:n.num_steps])
    pool = n.pools[(16, 16.0)]
    assert pool == 6 or (n.num_steps == p.num_steps and pool < 6)
  assert any(n.num_steps < p.num_steps for p, n in zip(plain.pieces, need.pieces))  # it did stop some earlier
