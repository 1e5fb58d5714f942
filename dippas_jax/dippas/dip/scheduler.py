"""Slot scheduling of DIP jobs: a fixed batch of S slots on the device, refilled as soon as a job is done.

`driver.optimize` runs one batch of images until its slowest image is done: a finished image's slot idles (on
tiles of a photo ~40 % of the work). `run_jobs` instead keeps S slots busy: after every chunk of steps, each slot
whose job is done hands its result to `on_done` and takes the next job of the stream. The chunk runner is the
same compiled program (`runner.build_runner`), so refilling costs one jitted init of a batch of S (no new
compile) and a masked select.

A job's result depends only on the job (image, fingerprint, image_id, initial params) and the seed: its state is
initialised from fold_in(key(seed), image_id) exactly as `driver.optimize` does, and no step mixes the images of
a batch. Which jobs share the batch, in which slot and when a job starts do not change its numbers (tested: the
same as a run of that job alone, up to the float rounding of batched products). Memory on the device is that of
S jobs, whatever the number of jobs in the stream.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Hashable

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.dippas.dip import driver
from dippas_jax.dippas.dip import parameters
from dippas_jax.dippas.dip import runner as runner_lib
from dippas_jax.dippas.dip.settings import DipSettings


@dataclasses.dataclass
class Job:
  """One image to optimise. image: uint8[H, W, 3]; fingerprint: float32[H, W] (the injected K); image_id: with the
  seed, the job's random streams; params0: float32[P] initial params (a warm start) or None (the random or
  configured initialisation); keep_params: hand back its final params (for warm starts); key: the caller's name
  for it (returned with the result); kept_inputs: what the kept-image transform prepared for it, computed by the
  caller on a larger context (e.g. the whole photo of a tile), or None (the runner prepares it from the image)."""
  key: Hashable
  image: np.ndarray
  fingerprint: np.ndarray
  image_id: int
  params0: np.ndarray | None = None
  keep_params: bool = False
  kept_inputs: Any = None


@dataclasses.dataclass
class JobResult:
  """What a finished job hands back (numpy). history: {field: [T]} of its iterations (step, loss, psnr, gamma);
  candidates: the hook's state of this image (device arrays, one image: no batch axis); params: the final flat
  params float32[P] (`Job.keep_params`) or None; slot: where it ran (diagnostics); seconds: its share of the queue's
  time (the wall time from one chunk's end to the next's — the refill, the chunk, the previous chunk's callbacks
  such as writing a finished photo — split over the slots by the steps they ran: the jobs' shares add up to the
  queue's time but for the last chunk's callbacks, so they are costs that can be summed per photo)."""
  key: Hashable
  num_steps: int
  stopped: bool
  best_psnr: float
  gamma: float
  history: dict[str, np.ndarray]
  candidates: Any
  params: np.ndarray | None
  slot: int
  seconds: float


@dataclasses.dataclass
class QueueStats:
  """chunks run, slot-steps run (S per step) and busy slot-steps (steps of a job): busy / run is the occupancy."""
  chunks: int = 0
  slot_steps: int = 0
  busy_steps: int = 0
  seconds: float = 0.0


_END = object()


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _refill(state, inputs, new_state, new_inputs, mask):
  """The slots of `mask` bool[S] take the new state and inputs, the others keep theirs."""
  def pick(new, old):
    return jnp.where(mask.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)
  return jax.tree.map(pick, new_state, state), jax.tree.map(pick, new_inputs, inputs)


class _Slots:
  """Host bookkeeping of the S slots: which job each holds and that job's history so far."""

  def __init__(self, size: int):
    self.jobs: list[Job | None] = [None] * size
    self.history: list[list[dict]] = [[] for _ in range(size)]
    self.seconds = [0.0] * size
    self.waiting = False  # the stream said no job can start yet

  def busy(self) -> list[int]:
    return [i for i, job in enumerate(self.jobs) if job is not None]

  def free(self) -> list[int]:
    return [i for i, job in enumerate(self.jobs) if job is None]


def _init_batch(runner, seed: int, jobs: list[Job | None], init=None):
  """The jitted init of a batch where some slots take no job (filled with a copy of a real one, inactive); a job
  without `params0` starts from `init` when given (a learned initialisation), else from the random draw.
  Inputs are checked by `driver.validate_inputs` (ValueError: what to change)."""
  real = next(job for job in jobs if job is not None)
  filled = [job or real for job in jobs]
  if init is not None:
    filled = [job if job.params0 is not None else dataclasses.replace(job, params0=init) for job in filled]
  shapes = {job.image.shape for job in filled}
  if len(shapes) > 1:
    raise ValueError(f"the jobs of one queue must have one image size, got {sorted(shapes)}")
  s = runner.settings
  images_f, images_u8, fps = driver.validate_inputs(np.stack([job.image for job in filled]),
                                                    np.stack([job.fingerprint for job in filled]),
                                                    downsampling=s.downsampling, injection=s.injection)
  given = {job.kept_inputs is not None for job in filled}
  if len(given) > 1:
    raise ValueError("the jobs of one batch must all carry kept_inputs or none")
  prepared = (jax.tree.map(lambda *xs: np.stack(xs), *[job.kept_inputs for job in filled]) if given == {True}
              else None)
  ids = np.asarray([job.image_id for job in filled], np.int32)
  active = np.asarray([job is not None for job in jobs])
  params0 = None
  if any(job.params0 is not None for job in filled):  # warm starts; the cold jobs' draws come from a first init
    cold = (np.asarray(runner.init(seed, ids, images_f, images_u8, fps, active, prepared=prepared)[0].params)
            if any(job.params0 is None for job in filled) else [None] * len(filled))
    params0 = np.stack([c if job.params0 is None else np.asarray(job.params0, np.float32)
                        for c, job in zip(cold, filled)])
  return runner.init(seed, ids, images_f, images_u8, fps, active, params0=params0, prepared=prepared)


def _take(tree, i: int):
  return jax.tree.map(lambda x: x[i], tree)


def run_jobs(jobs: Iterable[Job | None], *, settings: DipSettings, slots: int,
             on_done: Callable[[JobResult], None], seed: int = 0, hook: Any = None, kept: Any = None, mesh=None,
             refill: bool = True,
             on_chunk: Callable[[QueueStats, int], None] | None = None) -> QueueStats:
  """Runs every job of the stream through S = `slots` slots (module docstring); returns the occupancy figures.

  Args:
    jobs: the jobs, pulled lazily (a generator may build a job from earlier results: it is asked for the next
      job only when a slot is free, after `on_done` of the jobs that freed it); a None means that no job can
      start yet (it waits for running ones): the stream is asked again after the next chunk.
    settings: the DIP settings (τ_stop, max_steps, chunk_size: the refill granularity).
    slots: S, the batch kept on the device (a multiple of the mesh size).
    on_done: called with each finished job's `JobResult`, in the order jobs finish.
    seed, hook, kept, mesh: as `driver.optimize`.
    refill: a free slot takes the next job at once; False: the next S jobs start only when every slot is free
      (batches that wait for their slowest job, as `driver.optimize`: for comparisons).
    on_chunk: progress callback (stats, number of busy slots) after every chunk.
  """
  settings.check()
  runner = runner_lib.build_runner(settings, hook=hook, kept=kept, mesh=mesh)
  # A learned initialisation (settings.init_weights) is where every cold job starts, as in `driver.optimize`.
  init = parameters.load_params(settings.init_weights, settings) if settings.init_weights else None
  if slots < 1 or slots % runner.mesh.devices.size:
    raise ValueError(f"slots must be a positive multiple of the {runner.mesh.devices.size} devices, got {slots}")
  stream: Iterator[Job | None] = iter(jobs)
  table = _Slots(slots)
  stats = QueueStats()
  t0 = t_last = time.perf_counter()
  state = inputs = None
  while True:
    if refill or not table.busy():
      state, inputs = _fill(runner, seed, table, stream, state, inputs, init)
    busy = table.busy()
    if not busy:
      if table.waiting:
        raise RuntimeError("the job stream waits for a job while none is running")
      break
    state, hist = runner.run_chunk(state, inputs)
    hist = {k: np.asarray(v) for k, v in dataclasses.asdict(jax.device_get(hist)).items()}
    stats.chunks += 1
    stats.slot_steps += slots * settings.chunk_size
    ran = {i: hist["step"][i] >= 0 for i in busy}
    chunk_steps = max(sum(int(r.sum()) for r in ran.values()), 1)
    now = time.perf_counter()
    chunk_seconds, t_last = now - t_last, now
    for i in busy:
      stats.busy_steps += int(ran[i].sum())
      table.seconds[i] += chunk_seconds * int(ran[i].sum()) / chunk_steps
      table.history[i].append({k: v[i][ran[i]] for k, v in hist.items() if k != "active"})
    done = np.asarray(state.done)
    for i in busy:
      if done[i]:
        on_done(_result(runner, state, table, i))
        table.jobs[i] = None
    stats.seconds = time.perf_counter() - t0
    if on_chunk is not None:
      on_chunk(stats, len(table.busy()))
  return stats


def _fill(runner, seed, table: _Slots, stream: Iterator[Job], state, inputs, init):
  """Free slots take the next jobs of the stream (the first call builds the batch); `init`: the cold jobs'
  initial params float32[P] (a learned initialisation) or None (the random draw)."""
  incoming = [None] * len(table.jobs)
  table.waiting = False
  for i in table.free():
    job = next(stream, _END)
    if job is _END:
      break
    if job is None:  # nothing can start before a running job is done
      table.waiting = True
      break
    incoming[i] = job
  if not any(job is not None for job in incoming):
    return state, inputs
  new_state, new_inputs = _init_batch(runner, seed, incoming, init)
  mask = np.asarray([job is not None for job in incoming])
  for i in np.flatnonzero(mask):
    table.jobs[i], table.history[i], table.seconds[i] = incoming[i], [], 0.0
  if state is None:
    return new_state, new_inputs
  return _refill(state, inputs, new_state, new_inputs, jnp.asarray(mask))


def _result(runner, state, table: _Slots, i: int) -> JobResult:
  job = table.jobs[i]
  parts = table.history[i]
  history = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
  gamma_index = runner.param_spec.index(("injection", "gamma"))
  params = np.asarray(state.params[i]) if job.keep_params else None
  return JobResult(key=job.key, num_steps=int(state.step[i]), stopped=bool(state.stopped[i]),
                   best_psnr=float(state.best_psnr[i]), gamma=float(state.params[i, gamma_index]),
                   history=history, candidates=_take(state.candidates, i), params=params, slot=i,
                   seconds=table.seconds[i])
