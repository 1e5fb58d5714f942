"""The single-process DIP driver: validate the inputs on the host, pad to the mesh, run chunks until done.

`optimize(images, fingerprints, settings=...)` is the one call most users need; `DipResult` holds the history
and the final device state (the hook's candidates included).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from dippas_jax.dippas import unet
from dippas_jax.dippas.dip import parameters
from dippas_jax.dippas.dip import runner as runner_lib
from dippas_jax.dippas.dip.settings import DipSettings


def validate_inputs(images: Any, fingerprints: Any, *, downsampling: int = 16,
                    injection: str = "paper") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Check and normalise the driver's inputs on the host, before any compute.

  images: uint8[N, H, W, 3] (0..255) or float[N, H, W, 3] in [0, 1] (a single [H, W, 3] image is allowed);
  fingerprints: float[N, H, W] or one float[H, W] for all images.
  Returns (images float32[N, H, W, 3] in [0, 1], images_u8 uint8[N, H, W, 3] = q(images), fingerprints
  float32[N, H, W]). Raises ValueError with what to change.
  """
  images = np.asarray(images)
  fingerprints = np.asarray(fingerprints)
  if images.ndim == 3:
    images = images[None]
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [N, H, W, 3] RGB, got shape {images.shape}.")
  n, h, w, _ = images.shape
  if n == 0:
    raise ValueError("no images given.")
  unet.check_size(h, w, downsampling=downsampling, hint="e.g. a centre crop")
  if images.dtype == np.uint8:
    images_u8 = images
    images_f = images.astype(np.float32) / np.float32(255.0)
  elif np.issubdtype(images.dtype, np.floating):
    if not np.all(np.isfinite(images)):
      raise ValueError("images contain NaN or inf.")
    if images.min() < 0.0 or images.max() > 1.0:
      raise ValueError(f"float images must lie in [0, 1] (got [{images.min()}, {images.max()}]); divide uint8 "
                       "images by 255 or pass them as uint8.")
    images_u8 = np.floor(np.clip(255.0 * images.astype(np.float64), 0.0, 255.0)).astype(np.uint8)
    images_f = images.astype(np.float32)
  else:
    raise ValueError(f"images must be uint8 or float, got dtype {images.dtype}.")
  if fingerprints.ndim == 2:
    fingerprints = np.broadcast_to(fingerprints, (n,) + fingerprints.shape)
  if fingerprints.shape != (n, h, w):
    raise ValueError(f"fingerprints must be [N, H, W] = {(n, h, w)} (or one [H, W]) to match the images, got "
                     f"{fingerprints.shape}. Crop the fingerprint like the image.")
  if not np.issubdtype(fingerprints.dtype, np.floating) or not np.all(np.isfinite(fingerprints)):
    raise ValueError("fingerprints must be finite floats (found NaN/inf or a non-float dtype).")
  if injection == "legacy_transposed" and h != w:
    raise ValueError(f"injection='legacy_transposed' needs square images, got {h}x{w}.")
  return images_f, images_u8, fingerprints.astype(np.float32)


@dataclasses.dataclass
class ChunkInfo:
  """What `on_chunk` receives after every chunk: chunk index, steps run so far, this chunk's history (numpy
  [N, K] arrays by field), the number of images still active, and seconds since the start of the run."""
  chunk: int
  steps: int
  history: dict[str, np.ndarray]
  num_active: int
  elapsed_s: float


@dataclasses.dataclass
class DipResult:
  """What `optimize` returns (numpy, N = the images given).

  history: dict of [N, T] arrays (step, loss, psnr, gamma, active), T = the longest run; NaN / -1 / False after
  an image's end. num_steps: forwards done per image; stopped: PSNR crossed τ_stop; best_psnr / best_step;
  gamma: final γ. state / inputs: the final device pytrees (padded to a multiple of the mesh size).
  """
  history: dict[str, np.ndarray]
  num_steps: np.ndarray
  stopped: np.ndarray
  best_psnr: np.ndarray
  best_step: np.ndarray
  gamma: np.ndarray
  state: runner_lib.DipState
  inputs: runner_lib.DipInputs
  init_s: float
  run_s: float


def _pad_to_mesh(size: int, arrays: list, ids: np.ndarray) -> tuple[list, np.ndarray, np.ndarray]:
  """Pads the image axis to a multiple of `size` with copies of the last image, inactive from the start."""
  n = len(ids)
  pad = (-n) % size
  active = np.ones(n + pad, bool)
  if pad:
    take = np.concatenate([np.arange(n), np.full(pad, n - 1)])
    arrays = [None if a is None else a[take] for a in arrays]
    ids = ids[take]
    active[n:] = False
  return arrays, ids, active


def _run_chunks(runner, state, inputs, *, n: int, max_chunks: int, on_chunk) -> tuple[Any, list[dict], float]:
  """Runs chunks until every image is done (or `max_chunks`); returns the state, per-chunk histories, seconds."""
  t0 = time.perf_counter()
  chunks, steps = [], 0
  for c in range(max_chunks):
    state, hist = runner.run_chunk(state, inputs)
    hist_np = {k: np.asarray(v)[:n] for k, v in dataclasses.asdict(jax.device_get(hist)).items()}
    chunks.append(hist_np)
    steps += runner.settings.chunk_size
    num_active = int(np.sum(~np.asarray(state.done)[:n]))
    if on_chunk is not None:
      on_chunk(ChunkInfo(chunk=c, steps=steps, history=hist_np, num_active=num_active,
                         elapsed_s=time.perf_counter() - t0))
    if num_active == 0:
      break
  return state, chunks, time.perf_counter() - t0


def optimize(images: Any, fingerprints: Any, *, settings: DipSettings | None = None, seed: int = 0,
             image_ids: Sequence[int] | None = None, hook: Any = None, kept: Any = None,
             on_chunk: Callable[[ChunkInfo], None] | None = None, mesh: Mesh | None = None,
             max_chunks: int | None = None, params0: Any = None) -> DipResult:
  """Run DIP on N images until every one is done (PSNR > τ_stop or `max_steps` forwards).

  images uint8|float[N, H, W, 3] (see `validate_inputs`), fingerprints float[N, H, W] or [H, W] (the K injected,
  image orientation); settings default the paper's (`DipSettings.from_config` reads configs/dip.py); image_ids
  default 0..N-1 (with the seed they key each image); hook: see `runner.CandidateHook`; kept: the kept-image
  transform (`runner.PlainKept`, the default; DIPPAS: `dippas.kept_image.KeptImage`); on_chunk: called with a
  `ChunkInfo` after every chunk; mesh: default all devices; max_chunks: stop early (benchmarks); params0: initial
  flat params float[P] (one for all images) or float[N, P] (warm starts) instead of the random initialisation;
  default: the weights file `settings.init_weights` names (a learned initialisation), if any.
  """
  settings = DipSettings() if settings is None else settings
  settings.check()
  images_f, images_u8, fps = validate_inputs(images, fingerprints, downsampling=settings.downsampling,
                                             injection=settings.injection)
  n = images_f.shape[0]
  ids = np.arange(n, dtype=np.int32) if image_ids is None else np.asarray(image_ids, np.int32)
  if ids.shape != (n,):
    raise ValueError(f"image_ids must have one id per image ({n}), got shape {ids.shape}.")
  runner = runner_lib.build_runner(settings, hook=hook, kept=kept, mesh=mesh)
  if params0 is None and settings.init_weights:
    params0 = parameters.load_params(settings.init_weights, settings)
  if params0 is not None:
    params0 = np.broadcast_to(np.asarray(params0, np.float32), (n, runner.param_spec.size))
  (images_f, images_u8, fps, params0), ids, active = _pad_to_mesh(runner.mesh.devices.size,
                                                                  [images_f, images_u8, fps, params0], ids)
  t0 = time.perf_counter()
  state, inputs = runner.init(seed, ids, images_f, images_u8, fps, active, params0=params0)
  jax.block_until_ready(state)
  init_s = time.perf_counter() - t0
  max_chunks = max_chunks or -(-settings.max_steps // settings.chunk_size)
  state, chunks, run_s = _run_chunks(runner, state, inputs, n=n, max_chunks=max_chunks, on_chunk=on_chunk)
  num_steps = np.asarray(state.step)[:n]
  t_max = int(num_steps.max()) if n else 0
  history = {k: np.concatenate([h[k] for h in chunks], axis=1)[:, :t_max] for k in chunks[0]}
  return DipResult(history=history, num_steps=num_steps, stopped=np.asarray(state.stopped)[:n],
                   best_psnr=np.asarray(state.best_psnr)[:n], best_step=np.asarray(state.best_step)[:n],
                   gamma=np.asarray(runner.gamma(state))[:n], state=state, inputs=inputs,
                   init_s=init_s, run_s=run_s)
