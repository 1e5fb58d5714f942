"""DIPPAS anonymization: crops or whole photos, DIP optimization with on-device streaming top-L assembly.

Every piece (a centre crop, or a tile of a whole photo: `photo_stream`) goes through the same steps:

1. the NCC reference K_ref: the device fingerprint (PRNU-aware) or K̃ = W(piece), its own residual
   (`extract_residual`, σ = 3: PRNU-blind, SPEC §0); K_ref is also the fingerprint injected in the DIP model;
2. one network per piece is optimised in a queue of `batch_size` slots (`dip.scheduler`, refilled as pieces
   finish); at every iteration the candidate hook ranks the kept image (`kept_image.KeptImage`: x̂ with the
   photo's low frequencies and, where the photo is flat, its denoised self) by block NCC with gray(·) ⊙ K_ref and
   merges it into a streaming top-L accumulator per (B, τ) (`candidates.AssemblyHook`): no candidate leaves the
   device;
3. the piece of every (B, L, τ) setting is the mean of the L best blocks per position; a whole photo's tiles are
   put back by a cross-fading canvas, and `restore_from_original` applies the photo-level rules.

`anonymize_photos` streams photos (what `jobs.anonymize` uses); `anonymize` is the array API for a batch of
crops.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from typing import Callable, Iterable, Sequence

import jax
import numpy as np

from dippas_jax.dippas import assembly
from dippas_jax.dippas import candidates
from dippas_jax.dippas import dip
from dippas_jax.dippas import kept_image
from dippas_jax.dippas import photo_stream
from dippas_jax.dippas import unet
from dippas_jax.dippas.dip import scheduler
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics

MODES = ("aware", "blind")


def settings_of(config) -> tuple[tuple[int, int, float], ...]:
  """The (B, L, τ) settings served by one optimization: the primary one plus the sweep's product."""
  primary = (int(config.block_size), int(config.num_blocks), float(config.tau))
  sweep = {(int(b), int(l), float(t)) for b in config.sweep.block_sizes for l in config.sweep.num_blocks
           for t in config.sweep.taus}
  return assembly.normalize_settings(sweep | {primary})


def make_hook(config, *, height: int, width: int) -> candidates.AssemblyHook:
  """The DIP runner hook of an anonymize config: streaming top-L assembly of every (B, L, τ) (+ the NCC trace).
  A hashable value: two calls with the same config and size give equal hooks, hence one compiled runner."""
  trace_every = int(config.trace_every)
  max_steps = int(config.dip.max_steps)
  return candidates.AssemblyHook.make(
      settings_of(config), height=height, width=width, sigma=float(config.sigma), key=str(config.rank_key),
      rounding=str(config.rounding), stop_at_pool=int(config.stop_at_pool),
      rank_own_residual=bool(config.rank_own_residual) and config.mode == "aware",
      trace_every=trace_every, trace_length=-(-max_steps // trace_every) if trace_every > 0 else 1)


def check_geometry(config, height: int, width: int) -> None:
  """ValueError (before any compute) unless the U-Net and every block size fit an H×W input."""
  unet.check_size(height, width, downsampling=dip.DipSettings.from_config(config.dip).downsampling,
                  hint="config field crop, or tile_size in full-resolution mode")
  for b, _, _ in settings_of(config):
    if height % b or width % b:
      raise ValueError(f"block size {b} must divide the {height}×{width} input; use a divisor such as "
                       f"{math.gcd(height, width)} (config fields block_size, sweep.block_sizes)")


def check_init_weights(config):
  """The learned initialisation's file (`dip.model.init_weights`, where every cold piece starts) or None;
  ValueError naming the file when it is missing or made for another network."""
  name = str(config.dip.model.init_weights)
  if not name:
    return None
  dip.load_params(name, dip.DipSettings.from_config(config.dip))
  return dip.weights_path(name)


def reference_fingerprints(images: np.ndarray, fingerprints: np.ndarray | None, *, mode: str,
                           sigma: float) -> np.ndarray:
  """K_ref float32[N, H, W]: the given fingerprints (aware, [H, W] or [N, H, W]) or K̃ = W(I) (blind)."""
  if mode not in MODES:
    raise ValueError(f"Unsupported mode {mode!r}; expected one of {MODES}")
  n, h, w = images.shape[:3]
  if mode == "blind":
    return np.asarray(denoise.extract_residual(images, sigma=sigma))
  if fingerprints is None:
    raise ValueError("PRNU-aware mode needs a fingerprint (or use blind mode)")
  k = np.asarray(fingerprints, np.float32)
  if k.shape[-2:] != (h, w):
    raise ValueError(f"fingerprint is {k.shape[-2]}×{k.shape[-1]} but the images are {h}×{w}")
  return np.broadcast_to(k, (n, h, w)).copy()


PhotoTask = photo_stream.PhotoTask
PhotoResult = photo_stream.PhotoResult
PieceResult = photo_stream.PieceResult
piece_id = photo_stream.piece_id
photo_layout = photo_stream.photo_layout


@functools.partial(jax.jit, static_argnames="hook")
def _finalize(cands: candidates.Candidates, *, hook: candidates.AssemblyHook):
  return candidates.finalize_candidates(cands, hook), candidates.pool_sizes(cands)


def piece_result(result: scheduler.JobResult, hook: candidates.AssemblyHook) -> PieceResult:
  """The `PieceResult` of a finished DIP job (its candidates finalised, then dropped from the device)."""
  outputs, pools = jax.device_get(_finalize(result.candidates, hook=hook))
  return PieceResult(outputs={k: np.asarray(v) for k, v in outputs.items()}, history=result.history,
                     ncc_trace=np.asarray(result.candidates.ncc_trace), num_steps=result.num_steps,
                     stopped=result.stopped, gamma=result.gamma, best_psnr=result.best_psnr,
                     pools={k: int(v) for k, v in pools.items()}, seconds=result.seconds, params=result.params)


def _with_reference(jobs: Iterable[scheduler.Job | None], config, size: tuple[int, int]):
  """The stream's jobs, each a copy with the mode's reference fingerprint (`reference_fingerprints`: K aware,
  K̃ = W(I) blind); ValueError on a piece of another size than `size` (one compiled runner per run)."""
  for job in jobs:
    if job is not None:
      if job.image.shape[:2] != size:
        raise ValueError(f"every piece of one run must have one size, got {size} and {job.image.shape[:2]}; crop "
                         "the photos alike (config field crop) or use full-resolution mode")
      k = reference_fingerprints(job.image[None], None if job.fingerprint is None else job.fingerprint[None],
                                 mode=config.mode, sigma=float(config.sigma))[0]
      job = dataclasses.replace(job, fingerprint=k)
    yield job


def anonymize_photos(tasks: Iterable[PhotoTask], *, config, on_photo: Callable[[PhotoResult], None], seed: int = 0,
                     on_piece: Callable[[PhotoTask, int, PieceResult], None] | None = None,
                     on_progress: Callable[[scheduler.QueueStats, int], None] | None = None,
                     mesh=None) -> scheduler.QueueStats:
  """Anonymizes a stream of photos (crops, or whole photos tiled in full-resolution mode); returns the queue's
  figures.

  The pieces of all photos go through one queue of `config.batch_size` slots (`dip.scheduler`) in the order of
  `photo_stream.PhotoStream` (warm-start roots first): a finished piece's slot takes the next piece, of this photo
  or the next, so no slot waits for the slowest piece. Every piece has the same size (the config's crop or tile
  size). A piece's result depends only on the piece, the seed, the photo's name (`piece_id`) and, warm-started,
  its root's result — never on what shared the queue with it (the same `batch_size` gives the same bits).

  Args:
    tasks: the photos, pulled lazily (only the photos in flight are held).
    config: the anonymize config (`configs/anonymize.py`).
    on_photo: called with each photo's `PhotoResult` (`restore_from_original` applied) as soon as its last piece
      is done.
    seed: DIP seed.
    on_piece: called with (task, piece index, PieceResult) as each piece is done (e.g. to keep it for a resume).
    on_progress: called after every chunk with the queue's figures and the number of busy slots.
    mesh: the devices to run on (`dip.make_mesh`; default all of `jax.devices()`).
  """
  def finish(result: PhotoResult) -> None:
    result.outputs = {key: restore_from_original(result.task.image[None], image[None],
                                                 saturated_level=int(config.saturated_level),
                                                 max_change=int(config.max_change))[0]
                      for key, image in result.outputs.items()}
    on_photo(result)

  kept = kept_image.KeptImage.from_config(config.kept)
  stream = photo_stream.PhotoStream(tasks, config, finish, kept=kept if config.kept.photo_context else None)
  jobs = stream.jobs()
  first = next(jobs, None)
  if first is None:
    return scheduler.QueueStats()
  size = first.image.shape[:2]
  check_geometry(config, *size)
  hook = make_hook(config, height=size[0], width=size[1])

  def on_done(result: scheduler.JobResult) -> None:
    number, index = result.key
    piece = piece_result(result, hook)
    if on_piece is not None:
      on_piece(stream.open[number].task, index, piece)
    stream.piece_done(number, index, piece)

  slots = max(1, int(config.batch_size))
  if mesh is not None:
    slots = -(-slots // mesh.devices.size) * mesh.devices.size
  return scheduler.run_jobs(_with_reference(itertools.chain([first], jobs), config, size),
                            settings=dip.DipSettings.from_config(config.dip), slots=slots, on_done=on_done,
                            seed=seed, hook=hook, kept=kept, mesh=mesh,
                            refill=bool(config.refill), on_chunk=on_progress)


@dataclasses.dataclass
class AnonymizeResult:
  """Outputs for N images of one size (numpy), from `anonymize`.

  outputs: {(B, L, τ): uint8[N, H, W, 3]}; primary: the config's (B, L, τ) key; k_ref: float32[N, H, W] the NCC
  reference; pieces: [PieceResult] per image (history, NCC trace, iterations, γ, pools); trace_every;
  num_steps, stopped, gamma, best_psnr: [N]; pool_sizes: {(B, τ): int[N]}; seconds; queue: the queue's figures.
  """
  outputs: dict
  primary: tuple
  k_ref: np.ndarray
  pieces: list
  trace_every: int
  num_steps: np.ndarray
  stopped: np.ndarray
  gamma: np.ndarray
  best_psnr: np.ndarray
  pool_sizes: dict
  seconds: float
  queue: scheduler.QueueStats


def anonymize(images: np.ndarray, fingerprints: np.ndarray | None, *, config, seed: int = 0,
              names: Sequence[str] | None = None,
              on_progress: Callable[[scheduler.QueueStats, int], None] | None = None, mesh=None) -> AnonymizeResult:
  """Anonymizes `images` uint8[N, H, W, 3] (each one piece: H, W multiples of 16 at the paper's 5 scales).

  Args:
    images: the photos (already cropped).
    fingerprints: float[H, W] or [N, H, W] device fingerprints (aware mode); ignored in blind mode.
    config: the anonymize config (`configs/anonymize.py`; `full_resolution` is ignored: each image is one piece).
    seed, names: image i is keyed by `piece_id(names[i])` (default: its index), so results do not depend on
      which images are given together.
    on_progress, mesh: as `anonymize_photos`.
  """
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be uint8[N, H, W, 3], got {images.dtype}{list(images.shape)}")
  n, h, w = images.shape[:3]
  check_geometry(config, h, w)
  k_ref = reference_fingerprints(images, fingerprints, mode=config.mode, sigma=config.sigma)
  names = [str(i) for i in range(n)] if names is None else list(names)
  piece_config = config.copy_and_resolve_references()
  with piece_config.unlocked():
    piece_config.full_resolution = False
  done: dict[str, PhotoResult] = {}
  t0 = time.perf_counter()
  tasks = (PhotoTask(name=names[i], image=images[i], fingerprint=None if config.mode == "blind" else k_ref[i])
           for i in range(n))
  queue = anonymize_photos(tasks, config=piece_config, seed=seed, on_progress=on_progress, mesh=mesh,
                           on_photo=lambda r: done.__setitem__(r.task.name, r))
  results = [done[name] for name in names]
  pieces = [r.pieces[0] for r in results]
  return AnonymizeResult(
      outputs={key: np.stack([r.outputs[key] for r in results]) for key in results[0].outputs},
      primary=(int(config.block_size), int(config.num_blocks), float(config.tau)), k_ref=k_ref, pieces=pieces,
      trace_every=int(config.trace_every), num_steps=np.asarray([p.num_steps for p in pieces]),
      stopped=np.asarray([p.stopped for p in pieces]), gamma=np.asarray([p.gamma for p in pieces]),
      best_psnr=np.asarray([p.best_psnr for p in pieces]),
      pool_sizes={key: np.asarray([p.pools[key] for p in pieces]) for key in pieces[0].pools},
      seconds=time.perf_counter() - t0, queue=queue)


def restore_from_original(originals: np.ndarray, outputs: np.ndarray, *, saturated_level: int = 0,
                          max_change: int = 0) -> np.ndarray:
  """`outputs` uint8[N, H, W, 3] with values copied back from `originals` (0 turns a rule off):

  - `saturated_level`: every channel value of the original at or above it. A clipped channel carries no PRNU (the
    fingerprint estimator masks saturated pixels for the same reason), and a DIP output reproduces it poorly (the
    sigmoid never reaches 1): copying it back costs no anonymity and saves PSNR on blown highlights.
  - `max_change`: every pixel with a channel that differs from the original by more than this many grey levels.
    An output unit stuck in the sigmoid's saturation leaves a black or white dot that the PSNR hardly sees but a
    person does; a few restored pixels carry a negligible share of the fingerprint.
  """
  out = outputs
  if saturated_level > 0:
    out = np.where(originals >= saturated_level, originals, out)
  if max_change > 0:
    change = np.abs(out.astype(np.int16) - originals.astype(np.int16)).max(axis=-1, keepdims=True)
    out = np.where(change > max_change, originals, out)
  return np.asarray(out, np.uint8)


def ncc_scores(images: np.ndarray, fingerprint: np.ndarray, *, sigma: float) -> np.ndarray:
  """DIPPAS Eq. 2 NCC float32[N] of uint8[N, H, W, 3] images with K float[H, W] or [N, H, W]."""
  w = denoise.extract_residual(images, sigma=sigma)
  return np.asarray(metrics.ncc_eq2(w, images, np.asarray(fingerprint, np.float32)))


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """PSNR float32[N] of uint8 images (no wrap-around)."""
  return np.asarray(metrics.psnr(a, b))
