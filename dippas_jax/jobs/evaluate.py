"""The evaluation job behind `dippas-evaluate`: anonymizers × config sweeps × photos → images, tables, plots.

`evaluate_job` reads the query photos (manifest rows of kind 'natural', a folder per device, a folder, glob or
list) and the device fingerprints, centre-crops both to `config.crop`, and for every method and every config
of its sweep (`method_configs`):

0. fingerprints: without --fingerprints, a manifest's flat-fields are split per device into two disjoint halves
   (`evaluate_adversaries.split_fingerprints`, `config.fingerprint_split`): the anonymizer's K (every method is
   given it; saved as `<workdir>/fingerprints/<device>_anonymizer.npz` with its file list) and the attacker's K
   (`..._attacker.npz`); with --fingerprints (or fingerprint files in device folders) those files, no attacker;
1. produces the anonymized photos and saves them as PNG, `<workdir>/images/<method>/<config>/<image>.png`:
   'original' = the photos themselves; a baseline (`baselines.BASELINES`) = the function called on batches with
   each photo's device fingerprint (`to_uint8` rounding); 'dippas' (and its variants) = the DIPPAS anonymizer
   with each photo's device fingerprint (aware) or none (blind), ONE optimization per photo serving every
   (B, L, τ) of the sweep. Resumable per (method, config, image): a valid
   PNG on disk (readable, uint8 RGB of the crop size) is reused, never recomputed; a DIPPAS photo is recomputed
   only when one of its setting PNGs is missing (all of them are then rewritten together). Each config folder
   holds `options.json`, what produced it (for the methods that use the fingerprint, with the split half's
   files); a rerun with different options for the same folder is refused (`io.InputError`) instead of mixing
   results.
2. computes every metric from the saved PNG pixels (read back from disk), so each PSNR equals an independent
   recomputation from the files: `evaluation.edge_mask` of the photos (once), `evaluation.score_matrix` of the
   photos (once) and of every method/config, `per_image_metrics`, `summarize_method` (both protocol variants,
   whole-image and edge-only scores); then the stronger adversaries of every method/config
   (`evaluate_adversaries.evaluate`: PCE and the fraction attributed at PCE > 60, the attacker's fingerprint,
   JPEG copies written to `<workdir>/adversaries/jpeg<q>/...` and read back, resizing) and the anonymization
   detector on `config.detector.scope` (`evaluate_adversaries.detect`: photo-disjoint cross-validation, trained
   here with `config.detector.seed`);
3. writes `results.csv` (one row per method/config/image), `summary.json` (strict JSON: ±inf as the strings
   "inf"/"-inf", NaN as null; 'original' has PSNR "inf") and the plots `auc_vs_psnr_<variant>.png` (the
   paper's Fig. 10, pooled AUC against the mean PSNR of the photos the method changed, one line per method and
   per DIPPAS block size: a PRNU-aware baseline
   returns a photo unchanged when its NCC is already ≤ 0, PSNR ∞, which would make the plain mean ∞; the
   summary keeps both, `mean_psnr` and `mean_psnr_changed`, and `num_unchanged`), `roc_<variant>.png` (pooled ROC of 'original' and of each
   method's best config, i.e. lowest pooled AUC) and `ncc_hist.png` (NCC with the device fingerprint, photos
   against each method's best config).

Device of a photo: the manifest's `device` column, the folder name (a folder of device folders), or the Dresden
file-name rule (`io.device_of`). Fingerprint names: `attribution.fingerprint_name` (`Nikon_D70_0_sigma3.npy` →
`Nikon_D70_0`), or, for a folder of device folders without --fingerprints, the one fingerprint file inside each
device folder. Photos without a readable file, too small for the crop or of a device without a fingerprint are
reported on stderr, skipped and listed in the summary (`skipped`).
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Sequence

import numpy as np

import dippas_jax
from dippas_jax import batching
from dippas_jax import imaging
from dippas_jax import io
from dippas_jax.dippas import anonymize
from dippas_jax.evaluation import adversaries
from dippas_jax.evaluation import baselines
from dippas_jax.evaluation import protocol as evaluation
from dippas_jax.jobs import common
from dippas_jax.jobs import evaluate_adversaries as adversaries_job
from dippas_jax.jobs import evaluate_methods
from dippas_jax.jobs import evaluate_report as report

ORIGINAL = evaluate_methods.ORIGINAL


def _read_png(path: pathlib.Path, shape) -> np.ndarray | None:
  """The saved uint8[h, w, 3] image, or None when missing, unreadable or of the wrong size/type."""
  if not path.is_file():
    return None
  try:
    im = io.read_image(path)
  except io.InputError:
    return None
  return im if im.dtype == np.uint8 and im.shape == tuple(shape) else None


def _check_options(folder: pathlib.Path, options: dict) -> None:
  """Writes `options.json` in a config folder, or refuses a folder made with other options."""
  path = folder / "options.json"
  want = io.json_safe(options)
  if path.is_file():
    try:
      have = json.loads(path.read_text())
    except ValueError:
      have = None
    if have is not None and have != want:
      raise io.InputError(f"{folder}: its images were made with other options ({path}); use another --workdir "
                          "or delete that folder to recompute it")
  io.write_json(path, want)


class _Work:
  """Counts and progress of the (method, config, image) work items."""

  def __init__(self, total: int):
    self.bar = common.progress(total, "anonymize", unit="item")
    self.computed = 0
    self.reused = 0

  def reuse(self, n: int) -> None:
    self.reused += n
    self.bar.update(n)

  def done(self, n: int) -> None:
    self.computed += n
    self.bar.update(n)


def _produce_original(data: evaluate_methods.Dataset, mc: evaluate_methods.MethodConfig, folder: pathlib.Path, work: _Work) -> None:
  for name, im in zip(data.names, data.images):
    path = folder / f"{name}.png"
    if _read_png(path, im.shape) is not None:
      work.reuse(1)
      continue
    io.write_png(path, im)
    work.done(1)


def _produce_baseline(data: evaluate_methods.Dataset, mc: evaluate_methods.MethodConfig, folder: pathlib.Path,
                      work: _Work, *, k_per_image: np.ndarray, batch_size: int) -> None:
  """The baseline's PNGs of the photos not done yet; what the baseline reports as text (e.g. the inpainting
  method's edge denoiser) goes to `<folder>/run.json`."""
  shape = data.images.shape[1:]
  todo = []
  for n, name in enumerate(data.names):
    if _read_png(folder / f"{name}.png", shape) is not None:
      work.reuse(1)
    else:
      todo.append(n)
  if not todo:
    return
  fn = baselines.get_baseline(mc.method)
  options = {k: v for k, v in mc.options.items() if k not in ("crop", "fingerprints")}  # not keywords
  work.bar.set_postfix_str(f"{mc.method}/{mc.label}")
  for start in range(0, len(todo), batch_size):
    idx = np.asarray(todo[start:start + batch_size])
    result = fn(batching.pad_batch(data.images[idx], batch_size, fill="last"),
                fingerprint=batching.pad_batch(k_per_image[idx], batch_size, fill="last"), **options)
    out = np.asarray(imaging.to_uint8(result.image))[:len(idx)]
    for i, n in enumerate(idx):
      io.write_png(folder / f"{data.names[n]}.png", out[i])
    work.done(len(idx))
    text = {k: v for k, v in result._asdict().items() if isinstance(v, str)}
    if text:
      io.write_json(folder / "run.json", text)


def _produce_dippas(data: evaluate_methods.Dataset, method: str, mcs: list[evaluate_methods.MethodConfig],
                    folders: dict, work: _Work, *, dcfg, k_per_image: np.ndarray, seed: int,
                    runs_dir: pathlib.Path) -> None:
  """One optimization per photo for all settings of a DIPPAS method: the missing photos stream through one queue
  (`anonymize.anonymize_photos`; tiled when `dcfg.full_resolution`), each written as soon as it is done. A photo's
  result does not depend on which photos shared the queue, so a rerun computes a missing photo as the first run
  would have."""
  shape = data.images.shape[1:]
  missing = [n for n in range(len(data.names))
             if not all(_read_png(folders[mc.label] / f"{data.names[n]}.png", shape) is not None for mc in mcs)]
  work.reuse((len(data.names) - len(missing)) * len(mcs))
  if not missing:
    return
  work.bar.set_postfix_str(f"{method} [{len(missing)} photos]")

  def on_progress(stats, busy):
    work.bar.set_postfix_str(f"{method} [{len(missing)} photos] busy {busy} "
                             f"occupancy {stats.busy_steps / max(stats.slot_steps, 1):.0%}")

  def on_photo(result: anonymize.PhotoResult):
    n = result.task.key
    for mc in mcs:
      io.write_png(folders[mc.label] / f"{data.names[n]}.png", result.outputs[mc.setting])
    steps = [p.num_steps for p in result.pieces]
    io.write_json(runs_dir / f"{data.names[n]}.json", {
        "image": data.names[n], "iterations": int(sum(steps)), "pieces": len(steps),
        "stopped_at_tau_stop": all(p.stopped for p in result.pieces),
        "best_psnr_dip": float(min(p.best_psnr for p in result.pieces)),
        "gamma": float(np.mean([p.gamma for p in result.pieces])), "seconds": result.seconds,
        "candidates_above_tau": {f"B{b}_tau{t:g}": int(min(p.pools[(b, t)] for p in result.pieces))
                                 for (b, t) in result.pieces[0].pools}})
    work.done(len(mcs))

  tasks = (anonymize.PhotoTask(name=pathlib.Path(data.files[n]).name, image=data.images[n],
                               fingerprint=None if dcfg.mode == "blind" else k_per_image[n], key=n)
           for n in missing)
  anonymize.anonymize_photos(tasks, config=dcfg, seed=seed, on_photo=on_photo, on_progress=on_progress)


def evaluate_job(*, images: str, fingerprints: str | None, workdir: str, config,
                 methods: Sequence[str] | None = None, seed: int = 0) -> dict:
  """Runs the evaluation (module docstring) and returns the summary written to `<workdir>/summary.json`.

  Args:
    images: query photos (see `list_dataset`); a manifest's flat-field rows give the fingerprints (split).
    fingerprints: folder, glob or comma list of .npz/.npy/.mat fingerprints (then no attacker's fingerprint);
      None for the flat-field split of a manifest, or a folder of device folders holding fingerprint files.
    workdir: output folder (created); reruns reuse its images.
    config: the evaluation config (`configs/evaluate.py`).
    methods: overrides `config.methods`.
    seed: DIP seed (per photo: fold_in(key(seed), crc32 of the file name), as `dippas-anonymize`).

  Returns:
    The summary dict (JSON-safe): 'protocol', 'results' {method: {config: {...}}}, 'table' (flat pooled rows),
    'work' (computed / reused items), 'skipped', 'dippas_runs', 'plots', 'timings_s', 'config'.
  """
  t_start = time.perf_counter()
  with common.user_input("config"):
    mcs = evaluate_methods.method_configs(config, methods, seed=seed)  # names, sweeps and sizes, before any work
    dippas_cfgs = {m: evaluate_methods.dippas_config(config, m) for m in dict.fromkeys(mc.method for mc in mcs)
                   if evaluate_methods.is_dippas(m)}
    for dippas_cfg in dippas_cfgs.values():
      anonymize.check_init_weights(dippas_cfg)
  workdir = pathlib.Path(workdir)
  crop = common.crop_of(config)
  t0 = time.perf_counter()
  split = None if fingerprints else adversaries_job.split_fingerprints(images, crop=crop, config=config,
                                                                       workdir=workdir)
  t_split = time.perf_counter() - t0
  data = evaluate_methods.load_dataset(images=images, fingerprints=fingerprints, crop=crop,
                                       given=split.anonymizer if split else None)
  _check_adversaries(config, data)
  mcs = adversaries_job.with_fingerprint_source(mcs, split, dippas_cfgs)
  print(f"{len(data.names)} photos of {len(set(data.image_devices))} devices ({len(data.devices)} fingerprints"
        f"{', flat-field split: anonymizer / attacker' if split else ', no attacker fingerprint'}), "
        f"crop {data.images.shape[1]}×{data.images.shape[2]}; {len(mcs)} method/configs")
  folders = {}
  for mc in mcs:
    folders[(mc.method, mc.label)] = workdir / "images" / mc.method / mc.label
    _check_options(folders[(mc.method, mc.label)], mc.options)
  work = _Work(len(mcs) * len(data.names))
  timings = {"fingerprint_split": t_split, **_produce_all(data, mcs, folders, work, config=config,
                                                         dippas_cfgs=dippas_cfgs, seed=seed, workdir=workdir)}
  results, plots = _measure(data, mcs, folders, config, workdir=workdir, split=split, timings=timings)
  timings["total"] = time.perf_counter() - t_start
  summary = {
      "protocol": _protocol(data, config, images=images, fingerprints=fingerprints, seed=seed, split=split),
      "results": results, "table": report.table_rows(results, float(config.fpr_target)),
      "work": {"items": len(mcs) * len(data.names), "computed": work.computed, "reused": work.reused},
      "skipped": list(data.skipped),
      "dippas_runs": {m: report.dippas_runs(workdir / "images" / m / "_runs", data.names) for m in dippas_cfgs},
      "plots": plots, "timings_s": timings, "config": config.to_dict(), "dippas_jax_version": dippas_jax.__version__}
  io.write_json(workdir / "summary.json", summary)
  report.print_table(summary)
  print(f"{work.computed} items computed, {work.reused} reused; wrote {workdir / 'results.csv'}, summary.json and "
        f"{len(plots)} plots ({timings['total']:.0f} s)")
  common.print_skipped(data.skipped)
  return io.json_safe(summary)


def _check_adversaries(config, data: evaluate_methods.Dataset) -> None:
  """The adversaries' settings against the photos, before any work (io.InputError saying what to change)."""
  h, w = data.images.shape[1:3]
  with common.user_input("config"):
    for s in config.resize_scales:
      adversaries.resized_shape(h, w, float(s))
    for q in config.jpeg_qualities:
      if not 1 <= int(q) <= 100:
        raise ValueError(f"jpeg_qualities: {q} is not a JPEG quality in 1..100")
    adversaries_job.detector_configs({}, str(config.detector.scope))
    if str(config.detector.scope) != "none":
      adversaries_job.detector_settings(config).check(len(data.names), h, w)


def _measure(data, mcs, folders, config, *, workdir, split, timings) -> tuple[dict, list[str]]:
  """Every metric from the saved PNGs (the paper's protocol, then the adversaries and the detector), the
  results.csv and the plots."""
  t0 = time.perf_counter()
  results, rows, curves, ncc = report.evaluate(data, mcs, folders, config)
  timings["metrics"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  k_attacker = None if split is None else np.stack([split.attacker[d] for d in data.devices])
  adversaries_job.evaluate(data, mcs, folders, config, workdir=workdir, k_attacker=k_attacker, results=results,
                           rows=rows)
  timings["adversaries"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  adversaries_job.detect(data, folders, config, results=results)
  timings["detector"] = time.perf_counter() - t0
  t0 = time.perf_counter()
  io.write_csv(workdir / "results.csv", [io.json_safe(r) for r in rows])
  plots = report.plots(workdir, results, curves, ncc, f"{len(data.names)} photos, "
                       f"{data.images.shape[1]}×{data.images.shape[2]}")
  timings["plots"] = time.perf_counter() - t0
  return results, plots


def _protocol(data: evaluate_methods.Dataset, config, *, images: str, fingerprints: str | None, seed: int,
              split) -> dict:
  return {"crop": list(data.images.shape[1:3]), "sigma": float(config.sigma), "fpr_target": float(config.fpr_target),
          "num_images": len(data.names),
          "images_per_device": {d: data.image_devices.count(d) for d in sorted(set(data.image_devices))},
          "fingerprints": list(data.devices), "variants": list(evaluation.VARIANTS), "images": images,
          "fingerprint_spec": fingerprints, "fingerprint_split": None if split is None else split.source,
          "seed": seed,
          "adversaries": {"pce": config.pce.to_dict(), "jpeg_qualities": list(config.jpeg_qualities),
                          "resize_scales": list(config.resize_scales),
                          "detector": {**config.detector.to_dict(), "seed": int(config.detector.seed)}}}


def _produce_all(data, mcs, folders, work, *, config, dippas_cfgs, seed, workdir) -> dict[str, float]:
  """Produces (or reuses) every method/config's PNGs; returns seconds per method."""
  k_per_image = data.fingerprints[np.asarray([data.devices.index(d) for d in data.image_devices])]
  timings = {}
  for method in dict.fromkeys(mc.method for mc in mcs):
    t0 = time.perf_counter()
    group = [mc for mc in mcs if mc.method == method]
    if method == ORIGINAL:
      _produce_original(data, group[0], folders[(method, group[0].label)], work)
    elif method in baselines.BASELINES:
      for mc in group:
        _produce_baseline(data, mc, folders[(method, mc.label)], work, k_per_image=k_per_image,
                          batch_size=int(config.batch_size))
    else:
      _produce_dippas(data, method, group, {mc.label: folders[(method, mc.label)] for mc in group}, work,
                      dcfg=dippas_cfgs[method], k_per_image=k_per_image, seed=seed,
                      runs_dir=workdir / "images" / method / "_runs")
    timings[method] = time.perf_counter() - t0
  work.bar.close()
  return timings
