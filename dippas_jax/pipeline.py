"""File-level jobs behind the commands: each reads inputs through `io`, calls the library, writes results.

`fingerprint_job` (dippas-fingerprint), `attribute_job` (dippas-attribute), `demo_job` (dippas-demo). They
take plain arguments and a config dict, show progress with tqdm, write atomically and return a summary.
"""

from __future__ import annotations

import collections
import pathlib
import sys
import time

import numpy as np
from tqdm import tqdm

import dippas_jax
from dippas_jax import attribution
from dippas_jax import fingerprint
from dippas_jax import io
from dippas_jax import leakage
from dippas_jax import metrics
from dippas_jax import synthetic


def _crop(config) -> tuple[int, int] | None:
  crop = tuple(int(c) for c in config.crop)
  return None if crop == (0, 0) else crop


def _config_dict(config) -> dict:
  return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def group_by_device(records: list[io.ImageRecord], device: str | None) -> dict[str, list[io.ImageRecord]]:
  """Images per device: the manifest's device column, else `device` for all, else the Dresden file-name rule."""
  groups = collections.defaultdict(list)
  for r in records:
    groups[device or r.device or "camera"].append(r)
  return dict(sorted(groups.items()))


def fingerprint_job(*, images: str, workdir: str, config, device: str | None = None) -> dict[str, str]:
  """Estimates one fingerprint per device from flat-field images and writes `<workdir>/<device>.npz`.

  Args:
    images: folder, glob, file list or manifest.csv (rows of kind 'flatfield' are used).
    workdir: output folder.
    config: the PRNU config (`configs/prnu.py`).
    device: if set, only this device (manifest) or the name of all given images (folder/glob).

  Returns:
    `{device: written path}`.
  """
  records = io.list_images(images, kind="flatfield")
  if device and any(r.device == device for r in records):
    records = [r for r in records if r.device == device]
    device = None
  crop = _crop(config)
  written = {}
  for name, group in group_by_device(records, device).items():
    bar = tqdm(total=len(group), desc=f"fingerprint {name}", unit="img", file=sys.stderr)
    stream = (io.center_crop(io.read_image(r.path), *crop, name=str(r.path)) if crop else io.read_image(r.path)
              for r in group)
    k, count = fingerprint.estimate_fingerprint(
        stream, batch_size=config.batch_size, sigma=config.sigma, levels=config.levels, wavelet=config.wavelet,
        saturation_mode=config.saturation, progress=lambda n: bar.update(n - bar.n))
    bar.close()
    path = pathlib.Path(workdir) / f"{name}.npz"
    io.save_fingerprint(path, np.asarray(k), metadata={
        "device": name, "num_images": count, "files": [str(r.path) for r in group],
        "sigma": config.sigma, "levels": config.levels, "wavelet": config.wavelet, "crop": crop,
        "saturation": config.saturation, "dippas_jax_version": dippas_jax.__version__})
    written[name] = str(path)
    print(f"{name}: {count} images -> {path}")
  return written


def attribute_job(*, fingerprints: str, images: str, workdir: str, config) -> dict:
  """Scores every query image against every fingerprint; writes scores.csv, summary.json, roc.png.

  Unreadable query images are reported on stderr, skipped and listed in the summary (`skipped`).
  """
  records = io.list_images(images, kind="natural")
  crop = _crop(config)
  loaded, names, devices, skipped = [], [], [], []
  for r in tqdm(records, desc="read images", unit="img", file=sys.stderr):
    try:
      im = io.read_image(r.path)
      im = io.center_crop(im, *crop, name=str(r.path)) if crop else im
      if loaded and im.shape != loaded[0].shape:
        raise io.InputError(f"{r.path}: size {im.shape[:2]} differs from the other images; set a crop")
    except io.InputError as e:
      print(f"skipped: {e}", file=sys.stderr)
      skipped.append(str(e))
      continue
    loaded.append(im.astype(np.float32) if im.dtype != np.uint8 else im)
    names.append(r.path.stem)
    devices.append(r.device)
  if not loaded:
    raise io.InputError(f"{images}: none of the {len(records)} images could be used")
  stack = np.stack(loaded)
  ks = attribution.load_fingerprints(fingerprints, known_devices=sorted(set(devices)), crop=crop)
  for name, k in ks.items():
    io.check_fingerprint(k, stack.shape[1:3], name=name)
  bar = tqdm(total=len(stack), desc="score", unit="img", file=sys.stderr)
  result = attribution.attribute(
      ks, stack, names, devices, sigma=config.sigma, levels=config.levels, wavelet=config.wavelet,
      batch_size=config.batch_size, pce_mode=config.pce_mode, pce_radius=config.pce_radius,
      pce_shift_range=config.pce_shift_range, progress=lambda n: bar.update(n - bar.n))
  bar.close()
  summary = attribution.write_report(result, workdir, config=_config_dict(config))
  summary["skipped"] = skipped
  io.write_json(pathlib.Path(workdir) / "summary.json", summary)
  _print_stats(result.stats)
  return summary


def _print_stats(stats: dict) -> None:
  for name, st in stats.items():
    if st is None:
      print(f"{name:8s} AUC n/a (needs both matching and non-matching pairs)")
    else:
      print(f"{name:8s} AUC {st['auc']:.4f}  EER {st['eer']:.4f}  TPR@FPR=0.01 {st['tpr_at_fpr_0.01']:.4f}")


def demo_job(*, workdir: str, config, size: int = 256, num_devices: int = 3, num_flatfield: int = 10,
             num_natural: int = 4, seed: int = 0) -> dict:
  """The embedded default: a synthetic camera set, fingerprints from its flat-fields, attribution of its
  natural photos; prints AUCs and the fingerprint quality, writes summary.json, scores.csv and roc.png."""
  t0 = time.perf_counter()
  data = synthetic.make_dataset(seed=seed, num_devices=num_devices, num_flatfield=num_flatfield,
                                num_natural=num_natural, height=size, width=size, jpeg_quality=90)
  print(f"synthetic camera: {num_devices} devices, {num_flatfield} flat-fields and {num_natural} natural photos "
        f"each, {size}×{size}, JPEG q90")
  ks = {}
  for d, name in enumerate(data.devices):
    k, _ = fingerprint.estimate_fingerprint(data.flatfield[d], batch_size=config.batch_size, sigma=config.sigma,
                                            levels=config.levels, wavelet=config.wavelet,
                                            saturation_mode=config.saturation)
    ks[name] = np.asarray(k)
    quality = float(metrics.pearson(k, data.prnu[d]))
    print(f"{name}: correlation of the estimated fingerprint with the true K = {quality:.3f}")
  names = [f"{data.devices[d]}_photo{i}" for i, d in enumerate(data.natural_device)]
  devices = [data.devices[d] for d in data.natural_device]
  result = attribution.attribute(ks, data.natural, names, devices, sigma=config.sigma, levels=config.levels,
                                 wavelet=config.wavelet, batch_size=config.batch_size, pce_mode=config.pce_mode,
                                 pce_radius=config.pce_radius, pce_shift_range=config.pce_shift_range)
  summary = attribution.write_report(result, workdir, config=_config_dict(config))
  _print_stats(result.stats)
  print(f"wrote {pathlib.Path(workdir) / 'roc.png'} and summary.json, scores.csv ({time.perf_counter() - t0:.1f} s)")
  return summary


def _read_group(records, crop) -> np.ndarray:
  return io.load_images([r.path for r in records], crop=crop)


def leakage_job(*, images: str, device: str, workdir: str, config) -> dict:
  """Leakage analysis of one camera: members drawn from its `config.pool` images, its other images as extra
  non-members, every natural image of the dataset as attribution queries. Writes ilb.csv, membership.csv,
  mitigation.csv, roc.csv, leakage.json and plots."""
  from dippas_jax import leakage_report  # matplotlib only when a report is written.
  records = io.list_images(images)
  mine = [r for r in records if r.device == device]
  if not mine:
    known = sorted({r.device for r in records})
    raise io.InputError(f"{images}: no images of device {device!r} (devices: {', '.join(known)})")
  in_pool = (lambda r: True) if config.pool == "all" else (lambda r: r.kind == config.pool)
  pool = [r for r in mine if in_pool(r)]
  extra = [r for r in mine if not in_pool(r)]
  queries = [r for r in records if r.kind in ("natural", "")]
  if not pool:
    raise io.InputError(f"{images}: device {device!r} has no images of kind {config.pool!r} (config field pool)")
  crop = _crop(config)
  print(f"{device}: {len(pool)} pool images, {len(extra)} extra non-members, {len(queries)} queries")
  bar = tqdm(desc="leakage", unit="step", file=sys.stderr)
  results = leakage.run_leakage_analysis(
      _read_group(pool, crop), l_values=config.l_values, n_splits=config.n_splits, n_trials=config.n_trials,
      window_sizes=config.window_sizes, window=config.window, seed=config.seed, sigma=config.sigma,
      levels=config.levels, extra_nonmembers=_read_group(extra, crop) if extra else None,
      query_images=_read_group(queries, crop) if queries else None,
      query_labels=np.asarray([r.device == device for r in queries]) if queries else None,
      mitigations=config.mitigations, batch_size=config.batch_size,
      progress=lambda msg: (bar.set_postfix_str(str(msg)), bar.update(1)))
  bar.close()
  workdir = pathlib.Path(workdir)
  for table in ("ilb", "membership", "mitigation", "roc"):
    io.write_csv(workdir / f"{table}.csv", results[table])
  results["config"] = {**results["config"], "device": device, "pool": config.pool, "crop": crop}
  io.write_json(workdir / "leakage.json", results)
  leakage_report.save_leakage_plots(results, workdir)
  for row in results["ilb"]:
    if row["window"] == config.window and row["mitigation"] == "none":
      print(f"L={row['L']:3d}  ILB {row['ilb_bpp']:.3f} bits/pixel")
  for row in results["membership"]:
    print(f"L={row['L']:3d}  membership AUC {row['detector']:>6s} {row['auc']:.3f}")
  return results
