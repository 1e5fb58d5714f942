"""The evaluation's inputs: the dataset (cropped photos and device fingerprints) and the (method, config) points
to run, all validated before any work (see `jobs.evaluate`)."""

from __future__ import annotations

import dataclasses
import itertools
import pathlib
import sys
from typing import Sequence

import ml_collections
import numpy as np

from dippas_jax import imaging
from dippas_jax import io
from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.configs import arguments
from dippas_jax.dippas import anonymize
from dippas_jax.dippas import dip
from dippas_jax.evaluation import baselines
from dippas_jax.jobs import anonymize_report
from dippas_jax.jobs import attribute as attribute_job
from dippas_jax.jobs import common

ORIGINAL = "original"
DIPPAS = "dippas"
_ORIGINAL_LABEL = "photo"
# The baselines whose output depends on the fingerprint they are given (`baselines` module table).
PRNU_AWARE_BASELINES = ("adaptive_prnu_removal", "fingerprint_subtraction")


@dataclasses.dataclass(frozen=True)
class Dataset:
  """The cropped query photos and the device fingerprints of an evaluation.

  Attributes:
    names: unique image names (`common.unique_names`: file stems, or relative paths when stems collide), N.
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


def load_dataset(*, images: str, fingerprints: str | None, crop: tuple[int, int] | None,
                 given: dict[str, np.ndarray] | None = None) -> Dataset:
  """Reads, crops and checks the query photos and the fingerprints (see `list_dataset`); `given` ({device: K} at
  the crop, e.g. the anonymizer half of the flat-field split) replaces the fingerprint files.

  Raises:
    io.InputError: no usable photo, no fingerprint, or fingerprints of the wrong size.
  """
  records, folder_fps = list_dataset(images)
  loaded, kept, skipped = io.read_usable_images(records, crop=crop, convert=imaging.to_uint8, spec=images)
  shape = loaded[0].shape[:2]
  known = sorted({r.device for r in kept if r.device})
  if given is not None:
    ks = dict(given)
  elif fingerprints:
    ks = attribute_job.load_fingerprints(fingerprints, known_devices=known, crop=crop)
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
  usable = []
  for r, im in zip(kept, loaded):
    if r.device not in ks:
      msg = (f"{r.path}: no fingerprint for its device {r.device!r} (fingerprints: {', '.join(sorted(ks))}); "
             "the PRNU-aware methods and the protocol need one")
      print(f"skipped: {msg}", file=sys.stderr)
      skipped.append(msg)
      continue
    usable.append((r, im))
  names = common.unique_names([r.path for r, _ in usable])
  files, devices, images_kept = [str(r.path) for r, _ in usable], [r.device for r, _ in usable], [im for _, im in usable]
  if not images_kept:
    raise io.InputError(f"{images}: no image belongs to a device with a fingerprint "
                        f"(fingerprints: {', '.join(sorted(ks))}; image devices: {', '.join(known)})")
  device_names = tuple(ks)
  return Dataset(names=tuple(names), files=tuple(files), image_devices=tuple(devices),
                 images=np.stack(images_kept), devices=device_names,
                 fingerprints=np.stack([np.asarray(ks[d], np.float32) for d in device_names]),
                 skipped=tuple(skipped))


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


def _label(key: str, v) -> str:
  """Folder-name part of a swept option: 'passes3', 'sigma2.5'; booleans as 'edge_restoration' / 'no_…'."""
  if isinstance(v, bool):
    return key if v else f"no_{key}"
  return f"{key}{v:g}" if isinstance(v, float) else f"{key}{v}"


def is_dippas(method: str) -> bool:
  return method == DIPPAS or method.startswith(DIPPAS + "_")


def dippas_config(config, method: str) -> ml_collections.ConfigDict:
  """The anonymize config of a DIPPAS method: `config.dippas` (copied), the variant's field overrides applied
  (configs/arguments.py syntax, e.g. 'mode=blind,dip.injection=none'), its crop set to the evaluation's crop."""
  out = ml_collections.ConfigDict(config.dippas.to_dict())
  if method != DIPPAS:
    if method not in config.dippas_variants:
      raise ValueError(f"Unknown DIPPAS variant {method!r}; defined: {sorted(config.dippas_variants.keys())}")
    _, overrides = arguments.parse(str(config.dippas_variants[method]), ("",))
    try:
      arguments.apply(out, overrides)
      anonymize_config.check(out)
      dip.DipSettings.from_config(out.dip).check()
    except ValueError as e:
      raise ValueError(f"DIPPAS variant {method}: {e}") from None
  crop = common.crop_of(config)
  if crop is None:
    raise ValueError("DIPPAS methods need a centre crop (config field crop), multiples of 16 at the paper's net")
  out.crop = crop
  out.lock()
  return out


def _dippas_options(dcfg, seed: int) -> dict:
  """What determines a DIPPAS photo's outputs (batching, sweep and primary setting left out: they do not)."""
  d = dcfg.to_dict()
  for key in ("sweep", "block_size", "num_blocks", "tau", "batch_size", "recipe", "refill", "trace_every"):
    d.pop(key, None)
  d["seed"] = int(seed)
  return d


def method_configs(config, methods: Sequence[str] | None = None, *, seed: int = 0) -> list[MethodConfig]:
  """Every (method, config) point to evaluate, validated before anything runs.

  Baselines: the product of the tuple-valued fields of `config.baselines.<name>` (label = the swept values,
  e.g. 'passes3', or 'default' when nothing is swept). DIPPAS methods: every (B, L, τ) of
  `anonymize.settings_of(dippas_config(...))`; each B must divide the crop.
  """
  methods = _check_methods(config, config.methods if methods is None else methods)
  crop = common.crop_of(config)
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
        label = "_".join(_label(k, v) for k, v in zip(swept, values)) or "default"
        out.append(MethodConfig(method, label, {"crop": crop, **point}))
    else:
      dcfg = dippas_config(config, method)
      h, w = crop
      for setting in anonymize.settings_of(dcfg):
        b = setting[0]
        if h % b or w % b:
          raise ValueError(f"{method}: block size B = {b} does not divide the crop {h}×{w}; "
                           "change config.dippas.sweep.block_sizes / block_size or the crop")
        out.append(MethodConfig(method, anonymize_report.setting_name(*setting),
                                {"crop": crop, "setting": list(setting), "dippas": _dippas_options(dcfg, seed)},
                                setting=setting))
  return out
