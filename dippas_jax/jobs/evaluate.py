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

import dataclasses
import itertools
import json
import math
import pathlib
import sys
import time
import zlib
from typing import Any, Sequence

import ml_collections
import numpy as np
from tqdm import tqdm

import dippas_jax
from dippas_jax.dippas import anonymize
from dippas_jax.prnu import attribution
from dippas_jax.evaluation import baselines
from dippas_jax.evaluation import protocol as evaluation
from dippas_jax import io

__all__ = [
    "Dataset",
    "MethodConfig",
    "dippas_config",
    "evaluate_job",
    "json_safe",
    "list_dataset",
    "load_dataset",
    "method_configs",
    "method_names",
    "psnr_u8",
    "setting_label",
]

ORIGINAL = "original"
DIPPAS = "dippas"
_ORIGINAL_LABEL = "photo"


# ------------------------------------------------------------------------------------------------------ dataset
@dataclasses.dataclass(frozen=True)
class Dataset:
  """The cropped query photos and the device fingerprints of an evaluation.

  Attributes:
    names: unique image names (file stems; prefixed with the device when stems collide), N.
    files: the source files, N.
    image_devices: each photo's device, N (every one has a fingerprint).
    images: uint8[N, h, w, 3], the centre crops.
    devices: fingerprint names, M (rows of every score matrix).
    fingerprints: float32[M, h, w], the centre-cropped fingerprints.
    skipped: messages of the photos left out.
  """
  names: tuple[str, ...]
  files: tuple[str, ...]
  image_devices: tuple[str, ...]
  images: np.ndarray
  devices: tuple[str, ...]
  fingerprints: np.ndarray
  skipped: tuple[str, ...]


def list_dataset(images: str) -> tuple[list[io.ImageRecord], dict[str, pathlib.Path]]:
  """Query image records and, for a folder of device folders, each device folder's fingerprint file.

  Args:
    images: a manifest.csv (rows of kind 'natural' or without kind), a folder holding a manifest.csv, a folder
      of device folders (`<device>/<images>` and optionally one `.npz/.npy/.mat` fingerprint per folder), or a
      folder, glob, file or comma list of images (`io.list_images`).

  Returns:
    (records, {device: fingerprint path}); the dict is empty unless device folders hold fingerprint files.
  """
  p = pathlib.Path(images)
  if p.is_dir() and (p / "manifest.csv").is_file():
    return io.list_images(str(p / "manifest.csv"), kind="natural"), {}
  if p.is_dir():
    folders = [d for d in sorted(p.iterdir()) if d.is_dir() and any(
        f.suffix.lower() in io.IMAGE_EXTENSIONS for f in d.iterdir())]
    if folders:
      records, fingerprint_files = [], {}
      for d in folders:
        files = sorted(d.iterdir())
        records += [io.ImageRecord(f, d.name, "natural") for f in files if f.suffix.lower() in io.IMAGE_EXTENSIONS]
        fps = [f for f in files if f.suffix.lower() in io.FINGERPRINT_EXTENSIONS]
        if len(fps) == 1:
          fingerprint_files[d.name] = fps[0]
      return records, fingerprint_files
  return io.list_images(images, kind="natural"), {}


def _to_uint8(image: np.ndarray) -> np.ndarray:
  """8-bit photos as they are; 16-bit photos (float32 in [0, 255]) rounded to uint8 (what DIPPAS needs)."""
  return image if image.dtype == np.uint8 else np.clip(np.round(image), 0, 255).astype(np.uint8)


def _crop_of(config) -> tuple[int, int] | None:
  crop = tuple(int(c) for c in config.crop)
  return None if crop == (0, 0) else crop


def load_dataset(*, images: str, fingerprints: str | None, crop: tuple[int, int] | None) -> Dataset:
  """Reads, crops and checks the query photos and the fingerprints (see `list_dataset`).

  Raises:
    io.InputError: no usable photo, no fingerprint, or fingerprints of the wrong size.
  """
  records, folder_fps = list_dataset(images)
  loaded, kept, skipped = io.read_usable_images(records, crop=crop, convert=_to_uint8, spec=images)
  shape = loaded[0].shape[:2]
  known = sorted({r.device for r in kept if r.device})
  if fingerprints:
    ks = attribution.load_fingerprints(fingerprints, known_devices=known, crop=crop)
  elif folder_fps:
    ks = {}
    for device, path in folder_fps.items():
      k = io.load_fingerprint(path)[0]
      ks[device] = io.center_crop(k, *crop, name=str(path)) if crop and k.shape != tuple(crop) else k
  else:
    raise io.InputError(f"{images}: no fingerprints; pass --fingerprints (folder, glob or list of .npz/.npy/.mat) "
                        "or put one fingerprint file in each device folder")
  for name, k in ks.items():
    io.check_fingerprint(k, shape, name=name)
  names, files, devices, images_kept = [], [], [], []
  stems = [r.path.stem for r in kept]
  for r, im, stem in zip(kept, loaded, stems):
    if r.device not in ks:
      msg = (f"{r.path}: no fingerprint for its device {r.device!r} (fingerprints: {', '.join(sorted(ks))}); "
             "the PRNU-aware methods and the protocol need one")
      print(f"skipped: {msg}", file=sys.stderr)
      skipped.append(msg)
      continue
    name = stem if stems.count(stem) == 1 else f"{r.device}__{stem}"
    names.append(name)
    files.append(str(r.path))
    devices.append(r.device)
    images_kept.append(im)
  if not images_kept:
    raise io.InputError(f"{images}: no image belongs to a device with a fingerprint "
                        f"(fingerprints: {', '.join(sorted(ks))}; image devices: {', '.join(known)})")
  device_names = tuple(ks)
  return Dataset(names=tuple(names), files=tuple(files), image_devices=tuple(devices),
                 images=np.stack(images_kept), devices=device_names,
                 fingerprints=np.stack([np.asarray(ks[d], np.float32) for d in device_names]),
                 skipped=tuple(skipped))


# ------------------------------------------------------------------------------------------------ method configs
@dataclasses.dataclass(frozen=True)
class MethodConfig:
  """One point of a method's sweep.

  Attributes:
    method: 'original', a baseline name, 'dippas' or a DIPPAS variant name.
    label: the config's folder name ('photo', 'passes3', 'block5_...', 'B32_L10_tau28', 'default').
    options: JSON-able description of what produces the images (baseline keywords, or the DIPPAS setting and
      config), stored as `options.json` beside them.
    setting: the (B, L, τ) key of `AnonymizeResult.outputs` for DIPPAS methods, else None.
  """
  method: str
  label: str
  options: dict
  setting: tuple | None = None


def method_names(config) -> tuple[str, ...]:
  """Every method name the config can run."""
  return (ORIGINAL,) + tuple(baselines.BASELINES) + (DIPPAS,) + tuple(config.dippas_variants.keys())


def _check_methods(config, methods: Sequence[str]) -> tuple[str, ...]:
  methods = tuple(m.strip() for m in methods if m.strip())
  if not methods:
    raise ValueError("no methods given; choose from " + ", ".join(method_names(config)))
  unknown = [m for m in methods if m not in method_names(config)]
  if unknown:
    raise ValueError(f"Unknown method(s) {unknown}; expected names from {list(method_names(config))}")
  if len(set(methods)) != len(methods):
    raise ValueError(f"methods listed twice: {list(methods)}")
  return methods


def _format_value(v) -> str:
  if isinstance(v, float):
    return f"{v:g}"
  return str(v)


def _is_dippas(method: str) -> bool:
  return method == DIPPAS or method.startswith(DIPPAS + "_")


def dippas_config(config, method: str) -> ml_collections.ConfigDict:
  """The anonymize config of a DIPPAS method: `config.dippas` (copied), the variant's overrides applied
  ('mode=…', 'injection=…', 'optimizer=…'), its crop set to the evaluation's crop."""
  out = ml_collections.ConfigDict(config.dippas.to_dict())
  if method != DIPPAS:
    if method not in config.dippas_variants:
      raise ValueError(f"Unknown DIPPAS variant {method!r}; defined: {sorted(config.dippas_variants.keys())}")
    for token in filter(None, (t.strip() for t in str(config.dippas_variants[method]).split(","))):
      key, _, value = (s.strip() for s in token.partition("="))
      if key == "mode":
        if value not in anonymize.MODES:
          raise ValueError(f"{method}: mode must be one of {anonymize.MODES}, got {value!r}")
        out.mode = value
      elif key == "injection":
        out.dip.injection = value
      elif key == "optimizer":
        out.dip.optimizer.name = value
      else:
        raise ValueError(f"{method}: unknown override {token!r}; expected mode=, injection= or optimizer=")
  crop = _crop_of(config)
  if crop is None:
    raise ValueError("DIPPAS methods need a centre crop (config field crop), multiples of 16 at the paper's net")
  out.crop = crop
  out.lock()
  return out


def _dippas_options(dcfg, seed: int) -> dict:
  """What determines a DIPPAS photo's outputs (batching, sweep and primary setting left out: they do not)."""
  d = dcfg.to_dict()
  for key in ("sweep", "block_size", "num_blocks", "tau", "batch_size", "trace_every", "full_resolution",
              "tile_size", "tile_overlap"):
    d.pop(key, None)
  d["seed"] = int(seed)
  return d


def setting_label(setting) -> str:
  """Folder name of a DIPPAS (B, L, τ) setting: `B32_L10_tau28`."""
  b, l, t = setting
  return f"B{int(b)}_L{int(l)}_tau{float(t):g}"


def method_configs(config, methods: Sequence[str] | None = None, *, seed: int = 0) -> list[MethodConfig]:
  """Every (method, config) point to evaluate, validated before anything runs.

  Baselines: the product of the tuple-valued fields of `config.baselines.<name>` (label = the swept values,
  e.g. 'passes3', or 'default' when nothing is swept). DIPPAS methods: every (B, L, τ) of
  `anonymize.settings_of(dippas_config(...))`; each B must divide the crop.
  """
  methods = _check_methods(config, config.methods if methods is None else methods)
  crop = _crop_of(config)
  out = []
  for method in methods:
    if method == ORIGINAL:
      out.append(MethodConfig(method, _ORIGINAL_LABEL, {"crop": crop}))
    elif method in baselines.BASELINES:
      opts = config.baselines[method].to_dict() if method in config.baselines else {}
      swept = [k for k, v in opts.items() if isinstance(v, (tuple, list))]
      for k in swept:
        if not opts[k]:
          raise ValueError(f"config.baselines.{method}.{k} is an empty sweep; give at least one value")
      for values in itertools.product(*(opts[k] for k in swept)):
        point = {**opts, **dict(zip(swept, values))}
        label = "_".join(f"{k}{_format_value(v)}" for k, v in zip(swept, values)) or "default"
        out.append(MethodConfig(method, label, {"crop": crop, **point}))
    else:
      dcfg = dippas_config(config, method)
      h, w = crop
      for setting in anonymize.settings_of(dcfg):
        b = setting[0]
        if h % b or w % b:
          raise ValueError(f"{method}: block size B = {b} does not divide the crop {h}×{w}; "
                           "change config.dippas.sweep.block_sizes / block_size or the crop")
        out.append(MethodConfig(method, setting_label(setting),
                                {"crop": crop, "setting": list(setting), "dippas": _dippas_options(dcfg, seed)},
                                setting=setting))
  return out


# ---------------------------------------------------------------------------------------------------- helpers
def json_safe(obj: Any) -> Any:
  """A copy of `obj` that `json.dumps(..., allow_nan=False)` accepts: ±inf → 'inf'/'-inf', NaN → None; numpy
  scalars/arrays, tuples and paths converted."""
  if isinstance(obj, dict):
    return {str(k): json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_safe(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return json_safe(obj.tolist())
  if isinstance(obj, np.generic):
    obj = obj.item()
  if isinstance(obj, float):
    if math.isnan(obj):
      return None
    if math.isinf(obj):
      return "inf" if obj > 0 else "-inf"
  if isinstance(obj, pathlib.Path):
    return str(obj)
  return obj


def _write_json(path, obj) -> None:
  safe = json_safe(obj)
  json.dumps(safe, allow_nan=False)  # Raises if anything non-strict slipped through.
  io.write_json(path, safe)


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
  want = json_safe(options)
  if path.is_file():
    try:
      have = json.loads(path.read_text())
    except ValueError:
      have = None
    if have is not None and have != want:
      raise io.InputError(f"{folder}: its images were made with other options ({path}); use another --workdir "
                          "or delete that folder to recompute it")
  _write_json(path, want)


def _image_id(file: str) -> int:
  """The per-photo DIP seed id, as `dippas-anonymize` uses for a centre crop (same file → same result)."""
  return zlib.crc32(f"{pathlib.Path(file).name}#0".encode()) & 0x7FFFFFFF


def _pad(a: np.ndarray, size: int) -> np.ndarray:
  """Pads the leading axis to `size` with copies of the last entry (one compiled shape for every batch)."""
  if len(a) == size:
    return a
  return np.concatenate([a, np.repeat(a[-1:], size - len(a), axis=0)])


# ------------------------------------------------------------------------------------------------- production
class _Work:
  """Counts and progress of the (method, config, image) work items."""

  def __init__(self, total: int):
    self.bar = tqdm(total=total, desc="anonymize", unit="item", file=sys.stderr)
    self.computed = 0
    self.reused = 0

  def reuse(self, n: int) -> None:
    self.reused += n
    self.bar.update(n)

  def done(self, n: int) -> None:
    self.computed += n
    self.bar.update(n)


def _produce_original(data: Dataset, mc: MethodConfig, folder: pathlib.Path, work: _Work) -> None:
  for name, im in zip(data.names, data.images):
    path = folder / f"{name}.png"
    if _read_png(path, im.shape) is not None:
      work.reuse(1)
      continue
    io.write_png(path, im)
    work.done(1)


def _produce_baseline(data: Dataset, mc: MethodConfig, folder: pathlib.Path, work: _Work, *,
                      k_per_image: np.ndarray, batch_size: int) -> None:
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
    result = fn(_pad(data.images[idx], batch_size), fingerprint=_pad(k_per_image[idx], batch_size), **options)
    out = np.asarray(baselines.to_uint8(result.image))[:len(idx)]
    for i, n in enumerate(idx):
      io.write_png(folder / f"{data.names[n]}.png", out[i])
    work.done(len(idx))


def _produce_dippas(data: Dataset, method: str, mcs: list[MethodConfig], folders: dict, work: _Work, *,
                    dcfg, k_per_image: np.ndarray, seed: int, runs_dir: pathlib.Path) -> None:
  """One optimization per photo for all settings of a DIPPAS method; writes every setting's PNG together."""
  shape = data.images.shape[1:]
  todo = []
  for n, name in enumerate(data.names):
    have = [_read_png(folders[mc.label] / f"{name}.png", shape) is not None for mc in mcs]
    if all(have):
      work.reuse(len(mcs))
    else:
      todo.append(n)
  if not todo:
    return
  batch_size = max(1, int(dcfg.batch_size))
  for start in range(0, len(todo), batch_size):
    idx = np.asarray(todo[start:start + batch_size])
    postfix = f"{method} [{start + 1}-{start + len(idx)}/{len(todo)}]"
    work.bar.set_postfix_str(postfix)

    def on_chunk(info, postfix=postfix):
      psnr = info.history["psnr"]
      best = float(np.nanmax(psnr)) if np.isfinite(psnr).any() else float("nan")
      work.bar.set_postfix_str(f"{postfix} step {info.steps}/{dcfg.dip.max_steps} active {info.num_active} "
                               f"psnr {best:.1f}")

    k = None if dcfg.mode == "blind" else k_per_image[idx]
    result = anonymize.anonymize(data.images[idx], k, config=dcfg, seed=seed,
                                 image_ids=[_image_id(data.files[n]) for n in idx], on_chunk=on_chunk)
    for i, n in enumerate(idx):
      for mc in mcs:
        io.write_png(folders[mc.label] / f"{data.names[n]}.png", result.outputs[mc.setting][i])
      _write_json(runs_dir / f"{data.names[n]}.json", {
          "image": data.names[n], "iterations": int(result.num_steps[i]),
          "stopped_at_tau_stop": bool(result.stopped[i]), "best_psnr_dip": float(result.best_psnr[i]),
          "gamma": float(result.gamma[i]), "batch_seconds": result.init_s + result.run_s,
          "batch_images": len(idx)})
    work.done(len(idx) * len(mcs))


def _dippas_runs(runs_dir: pathlib.Path, names: Sequence[str]) -> dict | None:
  """Mean DIP statistics over the photos whose run record exists (None if none)."""
  records = []
  for name in names:
    try:
      records.append(json.loads((runs_dir / f"{name}.json").read_text()))
    except (OSError, ValueError):
      pass
  if not records:
    return None
  return {"images": len(records),
          "mean_iterations": float(np.mean([r["iterations"] for r in records])),
          "stopped_at_tau_stop": int(sum(r["stopped_at_tau_stop"] for r in records)),
          "mean_best_psnr_dip": float(np.mean([r["best_psnr_dip"] for r in records])),
          "mean_gamma": float(np.mean([r["gamma"] for r in records]))}


# ---------------------------------------------------------------------------------------------------- metrics
def _pooled(entry: dict, variant: str, kind: str = "ncc") -> dict:
  return entry["metrics"][variant][kind]["pooled"]


def _table_rows(results: dict, fpr_target: float) -> list[dict]:
  """Flat rows per (method, config, variant): the pooled numbers of the tables in RESULTS.md."""
  rows = []
  tpr_key = f"tpr_at_fpr_{fpr_target:g}"
  for method, configs in results.items():
    for label, entry in configs.items():
      for variant in evaluation.VARIANTS:
        pooled = _pooled(entry, variant)
        edges = entry["metrics"][variant].get("ncc_edges", {}).get("pooled", {})
        table = entry["metrics"][variant].get("edges_table", {}).get("pooled", {})
        rows.append({"method": method, "config": label, "variant": variant,
                     "mean_psnr": entry["mean_psnr"], "median_psnr": entry["median_psnr"],
                     "mean_psnr_changed": entry["mean_psnr_changed"], "num_unchanged": entry["num_unchanged"],
                     "auc": pooled["auc"], "tpr_at_fpr": pooled[tpr_key], "auc_edges": edges.get("auc"),
                     "relative_change": table.get("relative_change"),
                     "mean_ncc": entry["mean_ncc"], "num_positives": pooled["num_positives"],
                     "num_negatives": pooled["num_negatives"]})
  return rows


def _best_configs(results: dict, variant: str) -> dict[str, str]:
  """Per method, the config with the lowest pooled AUC (ties: the higher mean PSNR)."""
  best = {}
  for method, configs in results.items():
    def key(label):
      auc = _pooled(configs[label], variant)["auc"]
      psnr = configs[label]["mean_psnr_changed"]
      return (math.inf if auc is None else auc, -(psnr if psnr is not None else 1e9))
    best[method] = min(configs, key=key)
  return best


def _plots(workdir: pathlib.Path, results: dict, curves: dict, ncc: dict, title: str) -> list[str]:
  written = []
  for variant in evaluation.VARIANTS:
    points = []
    for m, cfgs in results.items():
      for label, e in cfgs.items():
        name, short = m, (label if len(cfgs) > 1 else "")
        setting = e["options"].get("setting")
        if setting is not None:  # DIPPAS: one line per block size B, points labelled by L and τ.
          name, short = f"{m} B{int(setting[0])}", f"L{int(setting[1])} τ{float(setting[2]):g}"
        points.append({"method": name, "config": short, "auc": _pooled(e, variant)["auc"],
                       "mean_psnr": e["mean_psnr_changed"]})
    path = workdir / f"auc_vs_psnr_{variant}.png"
    evaluation.plot_auc_vs_psnr(points, path, title=f"AUC vs PSNR ({variant.replace('_', ' ')}), {title}")
    written.append(path.name)
    best = _best_configs(results, variant)
    chosen = {f"{m}" if len(results[m]) == 1 else f"{m} {label}": curves[variant][(m, label)]
              for m, label in best.items() if curves[variant].get((m, label)) is not None}
    if chosen:
      path = workdir / f"roc_{variant}.png"
      evaluation.plot_roc_curves(chosen, path, title=f"Pooled ROC ({variant.replace('_', ' ')}), {title}")
      written.append(path.name)
  best = _best_configs(results, evaluation.VARIANTS[0])
  hist = {}
  for m, label in best.items():
    hist["photos" if m == ORIGINAL else (m if len(results[m]) == 1 else f"{m} {label}")] = ncc[(m, label)]
  path = workdir / "ncc_hist.png"
  evaluation.plot_ncc_histograms(hist, path, title=f"NCC with the device fingerprint, {title}")
  written.append(path.name)
  return written


def psnr_u8(original: np.ndarray, anonymized: np.ndarray) -> np.ndarray:
  """PSNR float64[N] (dB) of uint8[N, H, W, 3] images against the originals, in numpy float64 (inf when equal).

  The tables use this exact value; `evaluation.per_image_metrics` (float32 on the device) agrees to ~1e-4 dB.
  """
  diff = np.asarray(original, np.float64) - np.asarray(anonymized, np.float64)
  mse = np.mean(diff.reshape(len(diff), -1) ** 2, axis=1)
  with np.errstate(divide="ignore"):
    return 10.0 * np.log10(255.0 ** 2 / mse)


def _mean_or_none(values) -> float | None:
  v = np.asarray(values, np.float64)
  return float(np.mean(v)) if v.size else None


def _evaluate(data: Dataset, mcs: list[MethodConfig], folders: dict, config) -> tuple[dict, list[dict], dict, dict]:
  """Metrics of every method/config from its saved PNGs (see the module docstring)."""
  sigma = float(config.sigma)
  bs = int(config.batch_size)
  dev_index = np.asarray([data.devices.index(d) for d in data.image_devices])
  k_per_image = data.fingerprints[dev_index]
  edges = config.edges
  masks = evaluation.edge_mask(data.images, radius=int(edges.radius), canny_sigma=float(edges.canny_sigma),
                               denoiser_sigma=float(edges.denoiser_sigma), low_threshold=float(edges.low_threshold),
                               high_threshold=float(edges.high_threshold), batch_size=bs)
  s_orig = evaluation.score_matrix(data.images, data.fingerprints, sigma=sigma, masks=masks, batch_size=bs)
  results: dict = {}
  rows: list[dict] = []
  curves: dict = {v: {} for v in evaluation.VARIANTS}
  ncc: dict = {}
  for mc in tqdm(mcs, desc="metrics", unit="config", file=sys.stderr):
    anon = np.stack([io.read_image(folders[(mc.method, mc.label)] / f"{name}.png") for name in data.names])
    scores = s_orig if mc.method == ORIGINAL else evaluation.score_matrix(
        anon, data.fingerprints, sigma=sigma, masks=masks, batch_size=bs)
    per = evaluation.per_image_metrics(data.images, anon, k_per_image, sigma=sigma, edge_mask=masks,
                                       batch_size=bs)
    psnr = psnr_u8(data.images, anon)
    summary = evaluation.summarize_method(scores, s_orig, data.image_devices, data.devices, psnr=psnr,
                                          fpr_target=float(config.fpr_target))
    for variant in evaluation.VARIANTS:
      protocol = evaluation.attribution_protocol(scores["ncc"], s_orig["ncc"], data.image_devices, data.devices,
                                                 variant=variant)
      curves[variant][(mc.method, mc.label)] = evaluation.roc_curves(protocol).get("pooled")
    ncc[(mc.method, mc.label)] = per["ncc"]
    results.setdefault(mc.method, {})[mc.label] = {
        "options": mc.options, "num_images": len(data.names),
        "mean_psnr": float(np.mean(psnr)), "median_psnr": float(np.median(psnr)),
        "mean_psnr_changed": _mean_or_none(psnr[np.isfinite(psnr)]),
        "num_unchanged": int(np.sum(~np.isfinite(psnr))),
        "mean_ncc": _mean_or_none(per["ncc"]), "mean_ncc_original": _mean_or_none(per["ncc_original"]),
        "mean_ncc_edges": _mean_or_none(per["ncc_edges"]), "metrics": summary}
    for n, name in enumerate(data.names):
      rows.append({"method": mc.method, "config": mc.label, "image": name, "device": data.image_devices[n],
                   "psnr": float(psnr[n]), "ncc": float(per["ncc"][n]), "ncc_edges": float(per["ncc_edges"][n]),
                   "ncc_original": float(per["ncc_original"][n]),
                   "ncc_edges_original": float(per["ncc_edges_original"][n]),
                   "edge_fraction": float(per["edge_fraction"][n])})
  return results, rows, curves, ncc


# -------------------------------------------------------------------------------------------------------- job
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
  mcs = method_configs(config, methods, seed=seed)  # Validates names, sweeps and sizes before any work.
  dippas_cfgs = {m: dippas_config(config, m) for m in dict.fromkeys(mc.method for mc in mcs) if _is_dippas(m)}
  workdir = pathlib.Path(workdir)
  data = load_dataset(images=images, fingerprints=fingerprints, crop=_crop_of(config))
  devices_used = sorted(set(data.image_devices))
  print(f"{len(data.names)} photos of {len(devices_used)} devices ({len(data.devices)} fingerprints), "
        f"crop {data.images.shape[1]}×{data.images.shape[2]}; {len(mcs)} method/configs")
  folders = {}
  for mc in mcs:
    folder = workdir / "images" / mc.method / mc.label
    _check_options(folder, mc.options)
    folders[(mc.method, mc.label)] = folder
  dev_index = np.asarray([data.devices.index(d) for d in data.image_devices])
  k_per_image = data.fingerprints[dev_index]
  work = _Work(len(mcs) * len(data.names))
  timings: dict[str, float] = {}
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
  t0 = time.perf_counter()
  results, rows, curves, ncc = _evaluate(data, mcs, folders, config)
  timings["metrics"] = time.perf_counter() - t0
  io.write_csv(workdir / "results.csv", [json_safe(r) for r in rows])
  title = f"{len(data.names)} photos, {data.images.shape[1]}×{data.images.shape[2]}"
  t0 = time.perf_counter()
  plots = _plots(workdir, results, curves, ncc, title)
  timings["plots"] = time.perf_counter() - t0
  timings["total"] = time.perf_counter() - t_start
  counts = {d: data.image_devices.count(d) for d in devices_used}
  summary = {
      "protocol": {
          "crop": list(data.images.shape[1:3]), "sigma": float(config.sigma), "fpr_target": float(config.fpr_target),
          "num_images": len(data.names), "images_per_device": counts, "fingerprints": list(data.devices),
          "variants": list(evaluation.VARIANTS), "images": images, "fingerprint_spec": fingerprints, "seed": seed},
      "results": results,
      "table": _table_rows(results, float(config.fpr_target)),
      "work": {"items": len(mcs) * len(data.names), "computed": work.computed, "reused": work.reused},
      "skipped": list(data.skipped),
      "dippas_runs": {m: _dippas_runs(workdir / "images" / m / "_runs", data.names) for m in dippas_cfgs},
      "plots": plots,
      "timings_s": timings,
      "config": config.to_dict(),
      "dippas_jax_version": dippas_jax.__version__,
  }
  _write_json(workdir / "summary.json", summary)
  _print_table(summary)
  print(f"{work.computed} items computed, {work.reused} reused; wrote {workdir / 'results.csv'}, summary.json and "
        f"{len(plots)} plots ({timings['total']:.0f} s)")
  return json_safe(summary)


def _fmt(v, spec: str) -> str:
  return "n/a" if v is None else (f"{v:{spec}}" if isinstance(v, (int, float)) and math.isfinite(v) else str(v))


def _print_table(summary: dict) -> None:
  print(f"{'method':24s} {'config':18s} {'PSNR*':>6s} {'AUC':>6s} {'TPR@1%':>6s} {'AUCedge':>7s}  (original negatives)")
  for row in summary["table"]:
    if row["variant"] != evaluation.VARIANTS[0]:
      continue
    print(f"{row['method']:24s} {row['config']:18s} {_fmt(row['mean_psnr_changed'], '6.2f'):>6s} "
          f"{_fmt(row['auc'], '6.3f'):>6s} {_fmt(row['tpr_at_fpr'], '6.3f'):>6s} {_fmt(row['auc_edges'], '7.3f'):>7s}"
          + (f"  ({row['num_unchanged']} unchanged)" if row["num_unchanged"] else ""))
  print("* mean PSNR (dB) of the photos the method changed")
