"""DIPPAS anonymization of a batch of images: DIP optimization with on-device streaming top-L assembly.

For N images (`uint8[N, H, W, 3]`) and their fingerprints:

1. the NCC reference K_ref: the device fingerprint (PRNU-aware) or K̃ = W(I), the image's own residual
   (`extract_residual`, σ = 3: PRNU-blind, SPEC §0); K_ref is also the fingerprint injected in the DIP model;
2. `dip.optimize` runs one network per image (vmapped, sharded over devices); at every iteration the candidate
   hook ranks the kept image x̂ by block NCC with gray(x̂) ⊙ K_ref and merges it into a streaming top-L
   accumulator per (B, τ) (`assembly.make_candidate_hook`): no candidate leaves the device;
3. the final image of every (B, L, τ) setting is the floor mean of the L best blocks per position.

`anonymize` returns arrays and numbers; `pipeline.anonymize_job` does the files.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Sequence

import numpy as np

from dippas_jax.dippas import assembly
from dippas_jax.dippas import candidates
from dippas_jax.prnu import denoise
from dippas_jax.dippas import dip
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
      rounding=str(config.rounding),
      trace_every=trace_every, trace_length=-(-max_steps // trace_every) if trace_every > 0 else 1)


def check_geometry(config, height: int, width: int) -> None:
  """ValueError (before any compute) unless the U-Net and every block size fit an H×W input."""
  ds = dip.DipSettings.from_config(config.dip).downsampling
  if height % ds or width % ds:
    fix = lambda n: max(ds, n // ds * ds)
    raise ValueError(f"input {height}×{width}: H and W must be multiples of {ds} (the U-Net's "
                     f"{len(config.dip.model.filters) - 1} down-samplings); crop or pad to e.g. "
                     f"{fix(height)}×{fix(width)} (config field crop, or tile_size in full-resolution mode)")
  for b, _, _ in settings_of(config):
    if height % b or width % b:
      raise ValueError(f"block size {b} must divide the {height}×{width} input; use a divisor such as "
                       f"{math.gcd(height, width)} (config fields block_size, sweep.block_sizes)")


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


@dataclasses.dataclass
class AnonymizeResult:
  """Outputs for N images (numpy).

  outputs: {(B, L, τ): uint8[N, H, W, 3]}; primary: the config's (B, L, τ) key; k_ref: float32[N, H, W];
  history: {name: [N, T]} of the DIP run (step, loss, psnr, gamma, active); ncc_trace: float32[N, T'] (NaN where
  not computed), trace_every; num_steps, stopped, gamma, best_psnr: [N]; pool_sizes: {(B, τ): int[N]}
  candidates that reached τ (0: that setting's image is the fallback, the best-PSNR iterations, below τ);
  init_s, run_s: seconds.
  """
  outputs: dict
  primary: tuple
  k_ref: np.ndarray
  history: dict
  ncc_trace: np.ndarray
  trace_every: int
  num_steps: np.ndarray
  stopped: np.ndarray
  gamma: np.ndarray
  best_psnr: np.ndarray
  pool_sizes: dict
  init_s: float
  run_s: float


def anonymize(images: np.ndarray, fingerprints: np.ndarray | None, *, config, seed: int = 0,
              image_ids: Sequence[int] | None = None,
              on_chunk: Callable[[dip.ChunkInfo], None] | None = None, mesh=None) -> AnonymizeResult:
  """Anonymizes `images` uint8[N, H, W, 3] (H, W multiples of 16 at the paper's 5 scales).

  Args:
    images: the photos (already cropped or tiled).
    fingerprints: float[H, W] or [N, H, W] device fingerprints (aware mode); ignored in blind mode.
    config: the anonymize config (`configs/anonymize.py`): mode, sigma, block_size, num_blocks, tau, sweep,
      trace_every and the DIP config `dip`.
    seed, image_ids: per-image keys are fold_in(key(seed), image_id), so results do not depend on batching.
    on_chunk: progress callback (`dip.ChunkInfo`).
    mesh: the devices to run on (`dip.make_mesh`; default all of `jax.devices()`).
  """
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be uint8[N, H, W, 3], got {images.dtype}{list(images.shape)}")
  n, h, w = images.shape[:3]
  check_geometry(config, h, w)
  k_ref = reference_fingerprints(images, fingerprints, mode=config.mode, sigma=config.sigma)
  hook = make_hook(config, height=h, width=w)
  result = dip.optimize(images, k_ref, settings=dip.DipSettings.from_config(config.dip), seed=seed,
                        image_ids=image_ids, hook=hook, on_chunk=on_chunk, mesh=mesh)
  cands: candidates.Candidates = result.state.candidates
  outputs = {key: restore_from_original(images, np.asarray(v)[:n], saturated_level=int(config.saturated_level),
                                        max_change=int(config.max_change))
             for key, v in candidates.finalize_candidates(cands, hook).items()}
  pools = {key: np.asarray(v)[:n] for key, v in candidates.pool_sizes(cands).items()}
  return AnonymizeResult(
      outputs=outputs, primary=(int(config.block_size), int(config.num_blocks), float(config.tau)), k_ref=k_ref,
      history=result.history, ncc_trace=np.asarray(cands.ncc_trace)[:n], trace_every=hook.trace_every,
      num_steps=result.num_steps, stopped=result.stopped, gamma=result.gamma, best_psnr=result.best_psnr,
      pool_sizes=pools, init_s=result.init_s, run_s=result.run_s)


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


def summary_row(result: AnonymizeResult, i: int, original: np.ndarray, *, sigma: float,
                eval_fingerprint: np.ndarray | None = None) -> dict[str, Any]:
  """The per-image numbers of a report: PSNR and NCC before/after for the primary setting and every other."""
  row: dict[str, Any] = {
      "iterations": int(result.num_steps[i]), "stopped_at_tau_stop": bool(result.stopped[i]),
      "gamma": float(result.gamma[i]), "best_psnr_dip": float(result.best_psnr[i]),
      "candidates_kept": {f"B{b}_tau{t:g}": int(v[i]) for (b, t), v in result.candidates.items()},
  }
  refs = {"reference": result.k_ref[i]}
  if eval_fingerprint is not None:
    refs["evaluation"] = eval_fingerprint
  before = {name: float(ncc_scores(original[None], k, sigma=sigma)[0]) for name, k in refs.items()}
  settings = []
  for (b, l, t), out in sorted(result.outputs.items()):
    entry = {"block_size": b, "num_blocks": l, "tau": t, "psnr": float(psnr(out[i][None], original[None])[0])}
    entry.update({f"ncc_{name}": float(ncc_scores(out[i][None], k, sigma=sigma)[0]) for name, k in refs.items()})
    settings.append(entry)
    if (b, l, t) == result.primary:
      row.update({"psnr": entry["psnr"], "ncc_after": {n: entry[f"ncc_{n}"] for n in refs}})
  row["ncc_before"] = before
  row["settings"] = settings
  return row
