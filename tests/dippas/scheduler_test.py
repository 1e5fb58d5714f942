"""Tests for the slot queue: every job once, results independent of the queue, device memory bounded by the slots."""

import dataclasses

import numpy as np
import pytest

from dippas_jax.configs import dip as dip_config
from dippas_jax.dippas import dip
from dippas_jax.dippas.dip import scheduler

pytestmark = pytest.mark.xdist_group("scheduler")

# The tiny network (runner.fast_compile) at 32², refilled every 10 steps; τ_stop 24 dB stops the smoother images
# early, the noisier ones run to the cap: the jobs take different numbers of steps.
SETTINGS = dataclasses.replace(
    dip.DipSettings.from_config(dip_config.get_config("tiny,tau_stop=24,max_steps=60,optimizer.learning_rate=0.01")),
    chunk_size=10)


def _jobs(count: int, seed: int = 0) -> list[scheduler.Job]:
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:32, 0:32]
  smooth = 128 + 50 * np.sin(yy / 5.0)[..., None] * np.cos(xx / 7.0)[..., None] * np.ones(3)
  return [scheduler.Job(key=i, image=np.clip(smooth + rng.normal(0, 3 + 6 * i, (32, 32, 3)), 0, 255).astype(np.uint8),
                        fingerprint=(0.01 * rng.standard_normal((32, 32))).astype(np.float32), image_id=100 + i,
                        keep_params=True)
          for i in range(count)]


def _run(jobs, slots: int, **kwargs) -> tuple[dict, scheduler.QueueStats]:
  results = {}

  def on_done(r):
    assert r.key not in results, "a job was handed back twice"
    results[r.key] = r

  stats = scheduler.run_jobs(jobs, settings=SETTINGS, slots=slots, on_done=on_done, seed=3,
                             **kwargs)
  return results, stats


@pytest.fixture(scope="module")
def five_in_two_slots():
  return _run(_jobs(5), 2)


def test_every_job_runs_once_and_the_slots_stay_busy(five_in_two_slots):
  results, stats = five_in_two_slots
  assert sorted(results) == [0, 1, 2, 3, 4]
  steps = [r.num_steps for r in results.values()]
  assert all(1 <= s <= SETTINGS.max_steps for s in steps)
  assert stats.busy_steps == sum(steps)  # every step of a job is counted once, idle slot-steps are not
  # The slots stay busy: refilled after every chunk, the queue needs fewer chunks than batches of 2 that wait for
  # their slowest job (the same jobs and steps; the batches idle while one of the two still runs).
  batched, batched_stats = _run(_jobs(5), 2, refill=False)
  assert [batched[k].num_steps for k in sorted(batched)] == [results[k].num_steps for k in sorted(results)]
  assert batched_stats.busy_steps == stats.busy_steps
  assert stats.chunks < batched_stats.chunks
  assert stats.busy_steps / stats.slot_steps > batched_stats.busy_steps / batched_stats.slot_steps
  for r in results.values():
    assert len(r.history["psnr"]) == r.num_steps
    np.testing.assert_array_equal(r.history["step"], np.arange(r.num_steps))
    assert r.best_psnr == pytest.approx(np.nanmax(r.history["psnr"]))
    assert r.stopped == (r.history["psnr"][-1] > SETTINGS.tau_stop)


def test_a_result_does_not_depend_on_the_queue(five_in_two_slots):
  """The same jobs in another order (other companions, other slots, other start times): bit for bit the same."""
  first, _ = five_in_two_slots
  jobs = _jobs(5)
  again, _ = _run([jobs[i] for i in (4, 2, 0, 3, 1)], 2)
  assert any(first[k].slot != again[k].slot for k in first)
  for k in first:
    np.testing.assert_array_equal(again[k].params, first[k].params)
    np.testing.assert_array_equal(again[k].history["psnr"], first[k].history["psnr"])


def test_a_result_equals_a_run_of_that_job_alone(five_in_two_slots):
  """Alone in a queue of the same size: bit for bit (the same program). Against `driver.optimize` of the job
  alone (a batch of 1, another program): the same up to the rounding of batched products, which the chaotic fit
  amplifies over the steps (the PSNR, of floor-quantised images, differs by ~0.1 dB after 40 steps): the loss
  (before quantisation) agrees within a relative 1e-6 at the first step (the same initialisation) and 1e-3 over
  the first 10 (Adam's normalised steps amplify rounding: measured 3e-4 at step 10)."""
  first, _ = five_in_two_slots
  job = _jobs(5)[3]
  solo, _ = _run([job], 2)
  np.testing.assert_array_equal(solo[3].params, first[3].params)
  alone = dip.optimize(job.image[None], job.fingerprint[None], settings=SETTINGS, seed=3, image_ids=[job.image_id])
  r = first[3]
  assert r.num_steps == int(alone.num_steps[0])
  np.testing.assert_allclose(r.history["loss"][0], alone.history["loss"][0, 0], rtol=1e-6)
  np.testing.assert_allclose(r.history["loss"][:10], alone.history["loss"][0, :10], rtol=1e-3)
  assert np.ptp(r.history["psnr"]) > 5


def test_device_memory_is_that_of_the_slots():
  """The arrays alive on the device (`jax.live_arrays`) while the queue runs do not grow with the number of jobs:
  S slots of state and inputs, whatever comes after them."""
  import jax  # pylint: disable=g-import-not-at-top

  def peak(jobs):
    seen = []
    scheduler.run_jobs(jobs, settings=SETTINGS, slots=2, seed=3,
                       on_done=lambda r: seen.append(sum(x.nbytes for x in jax.live_arrays())))
    return max(seen)
  few, many = peak(_jobs(3)), peak(_jobs(9, seed=1))
  assert many <= few * 1.05  # 3× the jobs, the same footprint (a few small arrays of the callbacks may differ)


def test_warm_start_params_are_used():
  """A job started from its own final weights begins where it ended: its first loss is within the perturbation's
  reach of its final one (the same weights, a fresh draw of the input perturbation: 1.0–1.5× the last loss
  measured on two jax versions), a small fraction of the loss of the random initialisation; its cold companion is
  untouched."""
  jobs = _jobs(2)
  cold, _ = _run(jobs, 2)
  warm, _ = _run([dataclasses.replace(jobs[1], params0=cold[1].params), jobs[0]], 2)
  first, last = cold[1].history["loss"][0], cold[1].history["loss"][-1]
  assert warm[1].history["loss"][0] < min(2 * last, 0.3 * first)
  np.testing.assert_array_equal(warm[0].params, cold[0].params)  # the cold companion is untouched


def test_errors():
  with pytest.raises(ValueError, match="slots"):
    scheduler.run_jobs(_jobs(1), settings=SETTINGS, slots=0, on_done=lambda r: None)
  mixed = _jobs(2)
  mixed[1] = dataclasses.replace(mixed[1], image=np.zeros((48, 48, 3), np.uint8),
                                 fingerprint=np.zeros((48, 48), np.float32))
  with pytest.raises(ValueError, match="one image size"):
    scheduler.run_jobs(mixed, settings=SETTINGS, slots=2, on_done=lambda r: None)


def test_cold_jobs_start_from_the_learned_initialisation(tmp_path):
  """`init_weights` is where every cold job of the queue starts: bit for bit the jobs given those weights as
  params0 (the same program), not the random draw; a warm job keeps its own start."""
  from dippas_jax.dippas.dip import parameters  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  flat = np.array(dip.init_flat(SETTINGS, jax.random.key(42))[0])
  parameters.save_params(tmp_path / "init.npz", SETTINGS, flat, metadata={})
  loaded = parameters.load_params(str(tmp_path / "init.npz"), SETTINGS)
  jobs = _jobs(3)
  cold, _ = _run(jobs, 2)
  given, _ = _run([dataclasses.replace(j, params0=loaded) for j in jobs[:2]] + [
      dataclasses.replace(jobs[2], params0=cold[0].params)], 2)
  results = {}
  scheduler.run_jobs(jobs[:2] + [dataclasses.replace(jobs[2], params0=cold[0].params)],
                     settings=dataclasses.replace(SETTINGS, init_weights=str(tmp_path / "init.npz")), slots=2,
                     on_done=lambda r: results.__setitem__(r.key, r), seed=3)
  for k in range(3):
    np.testing.assert_array_equal(results[k].history["loss"], given[k].history["loss"])
  assert results[0].history["loss"][0] != cold[0].history["loss"][0]
