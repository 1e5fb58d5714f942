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
                               config=_fast_config(), seed=0, image_ids=[0, 1])
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

  def counting(settings, hook):
    chunk = make_chunk(settings, hook)

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
    anonymize.anonymize(data.natural[i:i + 2], data.prnu[0], config=config, image_ids=[i, i + 1])
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
