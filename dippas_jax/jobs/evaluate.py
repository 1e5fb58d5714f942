"""The evaluation job behind `dippas-evaluate`: anonymizers × config sweeps × photos → images, tables, plots.

`evaluate_job` reads the query photos (manifest rows of kind 'natural', a folder per device, a folder, glob or
list) and the device fingerprints, centre-crops both to `config.crop`, and for every method and every config
of its sweep (`method_configs`):

1. produces the anonymized photos and saves them as PNG, `<workdir>/images/<method>/<config>/<image>.png`:
   'original' = the photos themselves; a baseline (`baselines.BASELINES`) = the function called on batches with
   each photo's device fingerprint (`to_uint8` rounding); 'dippas' (and its variants) = `anonymize.anonymize`
   on batches of `dippas.batch_size` photos with each photo's device fingerprint (aware) or none (blind), ONE
   optimization per photo serving every (B, L, τ) of the sweep. Resumable per (method, config, image): a valid
   PNG on disk (readable, uint8 RGB of the crop size) is reused, never recomputed; a DIPPAS photo is recomputed
   only when one of its setting PNGs is missing (all of them are then rewritten together). Each config folder
   holds `options.json`, what produced it; a rerun with different options for the same folder is refused
   (`io.InputError`) instead of mixing results.
2. computes every metric from the saved PNG pixels (read back from disk), so each PSNR equals an independent
   recomputation from the files: `evaluation.edge_mask` of the photos (once), `evaluation.score_matrix` of the
   photos (once) and of every method/config, `per_image_metrics`, `summarize_method` (both protocol variants,
   whole-image and edge-only scores);
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
from dippas_jax.evaluation import baselines
from dippas_jax.evaluation import protocol as evaluation
from dippas_jax.jobs import common
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
  options = {k: v for k, v in mc.options.items() if k != "crop"}
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
  """One optimization per photo for all settings of a DIPPAS method. Batches are cut from the full photo list
  (as `dippas-anonymize` does), so a rerun computes a missing photo in the same batch as the first run would."""
  shape = data.images.shape[1:]
  size = max(1, int(dcfg.batch_size))
  for start in range(0, len(data.names), size):
    idx = np.arange(start, min(start + size, len(data.names)))
    missing = [n for n in idx if not all(_read_png(folders[mc.label] / f"{data.names[n]}.png", shape) is not None
                                         for mc in mcs)]
    work.reuse((len(idx) - len(missing)) * len(mcs))
    if not missing:
      continue
    postfix = f"{method} [{start + 1}-{start + len(idx)}/{len(data.names)}]"
    work.bar.set_postfix_str(postfix)

    def on_chunk(info, postfix=postfix):
      psnr = info.history["psnr"]
      best = float(np.nanmax(psnr)) if np.isfinite(psnr).any() else float("nan")
      work.bar.set_postfix_str(f"{postfix} step {info.steps}/{dcfg.dip.max_steps} active {info.num_active} "
                               f"psnr {best:.1f}")

    k = None if dcfg.mode == "blind" else k_per_image[idx]
    result = anonymize.anonymize(data.images[idx], k, config=dcfg, seed=seed,
                                 image_ids=[common.image_id(data.files[n]) for n in idx], on_chunk=on_chunk)
    for i, n in enumerate(idx):
      if n not in missing:
        continue
      for mc in mcs:
        io.write_png(folders[mc.label] / f"{data.names[n]}.png", result.outputs[mc.setting][i])
      io.write_json(runs_dir / f"{data.names[n]}.json", {
          "image": data.names[n], "iterations": int(result.num_steps[i]),
          "stopped_at_tau_stop": bool(result.stopped[i]), "best_psnr_dip": float(result.best_psnr[i]),
          "gamma": float(result.gamma[i]), "batch_seconds": result.init_s + result.run_s, "batch_images": len(idx),
          "candidates_above_tau": {f"B{b}_tau{t:g}": int(v[i]) for (b, t), v in result.pool_sizes.items()}})
    work.done(len(missing) * len(mcs))


def evaluate_job(*, images: str, fingerprints: str | None, workdir: str, config,
                 methods: Sequence[str] | None = None, seed: int = 0) -> dict:
  """Runs the evaluation (module docstring) and returns the summary written to `<workdir>/summary.json`.

  Args:
    images: query photos (see `list_dataset`).
    fingerprints: folder, glob or comma list of .npz/.npy/.mat fingerprints; None for a folder of device
      folders that hold their fingerprint files.
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
  workdir = pathlib.Path(workdir)
  data = evaluate_methods.load_dataset(images=images, fingerprints=fingerprints, crop=common.crop_of(config))
  print(f"{len(data.names)} photos of {len(set(data.image_devices))} devices ({len(data.devices)} fingerprints), "
        f"crop {data.images.shape[1]}×{data.images.shape[2]}; {len(mcs)} method/configs")
  folders = {}
  for mc in mcs:
    folders[(mc.method, mc.label)] = workdir / "images" / mc.method / mc.label
    _check_options(folders[(mc.method, mc.label)], mc.options)
  work = _Work(len(mcs) * len(data.names))
  timings = _produce_all(data, mcs, folders, work, config=config, dippas_cfgs=dippas_cfgs, seed=seed,
                         workdir=workdir)
  t0 = time.perf_counter()
  results, rows, curves, ncc = report.evaluate(data, mcs, folders, config)
  io.write_csv(workdir / "results.csv", [io.json_safe(r) for r in rows])
  plots = report.plots(workdir, results, curves, ncc, f"{len(data.names)} photos, "
                       f"{data.images.shape[1]}×{data.images.shape[2]}")
  timings["metrics_and_plots"] = time.perf_counter() - t0
  timings["total"] = time.perf_counter() - t_start
  summary = {
      "protocol": _protocol(data, config, images=images, fingerprints=fingerprints, seed=seed),
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


def _protocol(data: evaluate_methods.Dataset, config, *, images: str, fingerprints: str | None, seed: int) -> dict:
  return {"crop": list(data.images.shape[1:3]), "sigma": float(config.sigma), "fpr_target": float(config.fpr_target),
          "num_images": len(data.names),
          "images_per_device": {d: data.image_devices.count(d) for d in sorted(set(data.image_devices))},
          "fingerprints": list(data.devices), "variants": list(evaluation.VARIANTS), "images": images,
          "fingerprint_spec": fingerprints, "seed": seed}


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
