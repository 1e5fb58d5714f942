"""File-level jobs behind the commands: each reads inputs through `io`, calls the library, writes results.

`fingerprint_job` (dippas-fingerprint), `attribute_job` (dippas-attribute), `demo_job` (dippas-demo). They
take plain arguments and a config dict, show progress with tqdm, write atomically and return a summary.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import pathlib
import zlib
import sys
import time

import numpy as np
from tqdm import tqdm

import dippas_jax
from dippas_jax.dippas import anonymize
from dippas_jax.prnu import attribution
from dippas_jax.prnu import fingerprint
from dippas_jax import io
from dippas_jax.leakage import analysis as leakage
from dippas_jax.prnu import metrics
from dippas_jax import synthetic
from dippas_jax.dippas import tiling


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
  loaded, kept, skipped = io.read_usable_images(
      records, crop=crop, convert=lambda im: im if im.dtype == np.uint8 else im.astype(np.float32), spec=images)
  names = [r.path.stem for r in kept]
  devices = [r.device for r in kept]
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
             num_natural: int = 4, seed: int = 0, anonymize_config=None) -> dict:
  """The embedded default: a synthetic camera set, fingerprints from its flat-fields, attribution of its
  natural photos (AUCs, fingerprint quality; summary.json, scores.csv, roc.png), then, with
  `anonymize_config`, DIPPAS on one photo (PSNR and NCC before/after; photo.png, anonymized.png)."""
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
  if anonymize_config is not None:
    summary["anonymization"] = _demo_anonymize(data, ks, workdir=pathlib.Path(workdir), config=anonymize_config)
    io.write_json(pathlib.Path(workdir) / "summary.json", summary)
  return summary


def _demo_anonymize(data: synthetic.SyntheticDataset, ks: dict, *, workdir: pathlib.Path, config) -> dict:
  """Anonymizes the first synthetic photo (PRNU-aware, with its estimated fingerprint) at the config's crop and
  prints PSNR and NCC before/after against the non-matching band of the other devices' photos."""
  crop = tuple(config.crop)
  name = data.devices[0]
  photo = io.center_crop(data.natural[0], *crop)[None]
  k_est = io.center_crop(ks[name], *crop)
  k_true = io.center_crop(data.prnu[0], *crop)
  print(f"anonymizing {name}_photo0 ({crop[0]}×{crop[1]} crop, PRNU-aware, ≤ {config.dip.max_steps} iterations)")
  bar = tqdm(total=config.dip.max_steps, desc="DIPPAS", unit="it", file=sys.stderr)
  result = anonymize.anonymize(photo, k_est, config=config,
                               on_chunk=lambda info: bar.update(min(info.steps, bar.total) - bar.n))
  bar.close()
  out = result.outputs[result.primary]
  io.write_png(workdir / "photo.png", photo[0])
  io.write_png(workdir / "anonymized.png", out[0])
  others = np.stack([io.center_crop(im, *crop) for im, d in zip(data.natural, data.natural_device) if d != 0])
  band = float(np.percentile(anonymize.ncc_scores(others, k_true, sigma=config.sigma), 99))
  before = float(anonymize.ncc_scores(photo, k_true, sigma=config.sigma)[0])
  after = float(anonymize.ncc_scores(out, k_true, sigma=config.sigma)[0])
  psnr = float(anonymize.psnr(out, photo)[0])
  print(f"PSNR {psnr:.2f} dB; NCC with the true fingerprint {before:+.4f} -> {after:+.4f} "
        f"(other devices' photos: 99th percentile {band:+.4f}); γ {result.gamma[0]:.3f}, "
        f"{result.num_steps[0]} iterations; wrote {workdir / 'anonymized.png'}")
  return {"psnr": psnr, "ncc_before": before, "ncc_after": after, "non_matching_p99": band,
          "gamma": float(result.gamma[0]), "iterations": int(result.num_steps[0])}


def _read_group(records, crop) -> np.ndarray:
  return io.load_images([r.path for r in records], crop=crop)


def leakage_job(*, images: str, device: str, workdir: str, config) -> dict:
  """Leakage analysis of one camera: members drawn from its `config.pool` images, its other images as extra
  non-members, every natural image of the dataset as attribution queries. Writes ilb.csv, membership.csv,
  mitigation.csv, roc.csv, leakage.json and plots."""
  from dippas_jax.leakage import report as leakage_report  # matplotlib only when a report is written.
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


# ------------------------------------------------------------------------------------------------ anonymization
def _sha256(path) -> str:
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def anonymized_is_complete(out_dir: pathlib.Path) -> bool:
  """True when `out_dir` holds a report whose PNG exists with the recorded checksum (a finished image)."""
  try:
    report = json.loads((out_dir / "report.json").read_text())
    return _sha256(out_dir / "anonymized.png") == report["png_sha256"]
  except (OSError, ValueError, KeyError):
    return False


def _setting_name(b, l, t) -> str:
  return f"B{b}_L{l}_tau{t:g}"


def _to_uint8(image: np.ndarray) -> np.ndarray:
  return image if image.dtype == np.uint8 else np.clip(np.round(image), 0, 255).astype(np.uint8)


def _prepare(image: np.ndarray, k: np.ndarray | None, config, name: str):
  """Crop (research default) or tile (full resolution) one photo and its fingerprint.

  A fingerprint of the photo's size is cropped/tiled like the photo; in crop mode a fingerprint of the crop's
  size is taken as already centre-cropped. 16-bit photos are rounded to 8 bits.

  Returns (pieces uint8[T, h, w, 3], fingerprint pieces float32[T, h, w] | None, layout | None, region dict).
  """
  image = _to_uint8(image)
  h, w = image.shape[:2]
  if config.full_resolution:
    if k is not None and k.shape != (h, w):
      raise io.InputError(f"{name}: fingerprint is {k.shape[0]}×{k.shape[1]} but the photo is {h}×{w}; "
                          "full-resolution mode needs a fingerprint of the photo's size")
    tiles, layout = tiling.tile(image, tile_size=config.tile_size, overlap=config.tile_overlap)
    tiles = np.asarray(tiles)
    k_tiles = None if k is None else np.asarray(tiling.tile_like(k, layout))
    return tiles, k_tiles, layout, {"mode": "full_resolution", "height": h, "width": w,
                                    "tile_size": config.tile_size, "tile_overlap": config.tile_overlap}
  crop = tuple(int(c) for c in config.crop)
  piece = io.center_crop(image, *crop, name=name)
  if k is not None and k.shape != crop:
    if k.shape[0] < crop[0] or k.shape[1] < crop[1]:
      io.check_fingerprint(k, crop, name="fingerprint")  # Raises, naming both sizes.
    k = io.center_crop(k, *crop, name="fingerprint")
  return piece[None], None if k is None else k[None], None, {
      "mode": "centre_crop", "height": crop[0], "width": crop[1], "top": (h - crop[0]) // 2,
      "left": (w - crop[1]) // 2, "photo_height": h, "photo_width": w}


def _history_rows(result: anonymize.AnonymizeResult, i: int) -> list[dict]:
  hist = {k: v[i] for k, v in result.history.items()}
  traced = {}
  if result.trace_every > 0:
    traced = {t * result.trace_every: float(v) for t, v in enumerate(result.ncc_trace[i]) if np.isfinite(v)}
  return [{"iteration": int(hist["step"][t]), "loss": float(hist["loss"][t]), "psnr": float(hist["psnr"][t]),
           "gamma": float(hist["gamma"][t]), "ncc": traced.get(int(hist["step"][t]))}
          for t in range(len(hist["step"])) if hist["step"][t] >= 0]


def _write_outputs(out_dir: pathlib.Path, name: str, original: np.ndarray, result: anonymize.AnonymizeResult,
                   pieces: slice, layout, region: dict, config, eval_k, timings: dict) -> dict:
  """Writes one photo's PNG(s), history.jsonl, history.png and (last) report.json."""
  from dippas_jax import plotting  # matplotlib only when writing.

  def image_of(key):
    out = result.outputs[key][pieces]
    return np.asarray(tiling.untile(out, layout)).astype(np.uint8) if layout is not None else out[0]

  if layout is None:
    crop = (region["height"], region["width"])
    original = io.center_crop(original, *crop, name=name)
  rows_dir = out_dir / "settings"
  for key in result.outputs:
    if key != result.primary:
      io.write_png(rows_dir / f"{_setting_name(*key)}.png", image_of(key))
  final = image_of(result.primary)
  io.write_png(out_dir / "anonymized.png", final)
  first = pieces.start
  history = _history_rows(result, first)
  with io.atomic_path(out_dir / "history.jsonl") as tmp:
    tmp.write_text("".join(json.dumps(r) + "\n" for r in history))
  steps = np.asarray([r["iteration"] for r in history])
  ncc = np.asarray([np.nan if r["ncc"] is None else r["ncc"] for r in history])
  plotting.plot_history({"step": steps, "psnr": [r["psnr"] for r in history],
                         "gamma": [r["gamma"] for r in history]}, out_dir / "history.png", ncc_steps=steps,
                        ncc=ncc, tau_stop=config.dip.tau_stop, taus=sorted({k[2] for k in result.outputs}),
                        title=f"{name} ({config.mode})")
  k_eval = None
  if eval_k is not None:
    k_eval = eval_k if layout is not None else io.center_crop(eval_k, *final.shape[:2], name="evaluation fingerprint")
  k_ref_full = (np.asarray(tiling.untile(result.k_ref[pieces][..., None], layout))[..., 0] if layout is not None
                else result.k_ref[first])
  sub = dataclasses.replace(result, outputs={k: image_of(k)[None] for k in result.outputs},
                            k_ref=k_ref_full[None], num_steps=result.num_steps[pieces][:1],
                            stopped=result.stopped[pieces][:1], gamma=result.gamma[pieces][:1],
                            best_psnr=result.best_psnr[pieces][:1],
                            candidates={k: v[pieces][:1] for k, v in result.candidates.items()})
  report = {"image": name, "mode": config.mode, "region": region,
            **anonymize.summary_row(sub, 0, original, sigma=config.sigma, eval_fingerprint=k_eval),
            "primary_setting": {"block_size": result.primary[0], "num_blocks": result.primary[1],
                                "tau": result.primary[2]},
            "tiles": None if layout is None else {"count": pieces.stop - pieces.start,
                                                  "iterations": result.num_steps[pieces].tolist(),
                                                  "gamma": result.gamma[pieces].tolist()},
            "timings_s": timings, "config": config.to_dict(), "dippas_jax_version": dippas_jax.__version__,
            "png_sha256": _sha256(out_dir / "anonymized.png")}
  io.write_json(out_dir / "report.json", report)
  return report


def anonymize_job(*, inputs: str, workdir: str, config, fingerprint: str | None = None,
                  eval_fingerprint: str | None = None, seed: int = 0) -> dict:
  """Anonymizes photos into `<workdir>/<photo stem>/` (anonymized.png, report.json, history.jsonl, history.png).

  Resumable: photos whose outputs are complete (report.json + PNG with its checksum) are skipped; every file is
  written atomically and report.json last. Unreadable photos are reported, skipped and counted in the summary.
  Photos are processed `config.batch_size` at a time (one vmapped optimization; in full-resolution mode, each
  photo's tiles form the batch).
  """
  if config.mode == "aware" and not fingerprint:
    raise io.InputError("PRNU-aware mode needs --fingerprint=FILE (or use --blind)")
  k = io.load_fingerprint(fingerprint)[0] if (fingerprint and config.mode == "aware") else None
  k_eval = io.load_fingerprint(eval_fingerprint)[0] if eval_fingerprint else None
  if config.full_resolution:
    anonymize.check_geometry(config, config.tile_size, config.tile_size)
  else:
    anonymize.check_geometry(config, *config.crop)
  workdir = pathlib.Path(workdir)
  records = io.list_images(inputs)
  todo = [r for r in records if not anonymized_is_complete(workdir / r.path.stem)]
  print(f"{len(records)} photos, {len(records) - len(todo)} already done, mode {config.mode}, "
        f"{'full resolution' if config.full_resolution else f'centre crop {tuple(config.crop)}'}")
  skipped, reports = [], []
  batch_size = 1 if config.full_resolution else int(config.batch_size)
  for start in range(0, len(todo), batch_size):
    batch = []
    for r in todo[start:start + batch_size]:
      try:
        image = io.read_image(r.path)
        pieces, k_pieces, layout, region = _prepare(image, k, config, str(r.path))
        if k_eval is not None and k_eval.shape[:2] != image.shape[:2] and k_eval.shape != pieces.shape[1:3]:
          raise io.InputError(f"{eval_fingerprint}: evaluation fingerprint size {k_eval.shape} fits neither the "
                              f"photo nor the crop")
      except io.InputError as e:
        print(f"skipped: {e}", file=sys.stderr)
        skipped.append(str(e))
        continue
      batch.append((r, image, pieces, k_pieces, layout, region))
    if not batch:
      continue
    all_pieces = np.concatenate([b[2] for b in batch])
    all_k = None if k is None else np.concatenate([b[3] for b in batch])
    ids = np.concatenate([[zlib.crc32(f"{b[0].path.name}#{t}".encode()) & 0x7FFFFFFF for t in range(len(b[2]))]
                          for b in batch])
    names = ", ".join(b[0].path.name for b in batch)
    bar = tqdm(total=config.dip.max_steps, desc=f"[{start + 1}-{start + len(batch)}/{len(todo)}] {names}"[:60],
               unit="it", file=sys.stderr)

    def on_chunk(info, bar=bar):
      bar.update(min(info.steps, bar.total) - bar.n)
      psnr = np.nanmax(info.history["psnr"]) if np.isfinite(info.history["psnr"]).any() else float("nan")
      bar.set_postfix(active=info.num_active, psnr=f"{psnr:.1f}")

    t0 = time.perf_counter()
    result = anonymize.anonymize(all_pieces, all_k, config=config, seed=seed, image_ids=ids, on_chunk=on_chunk)
    bar.close()
    timings = {"init": result.init_s, "optimize": result.run_s, "total_batch": time.perf_counter() - t0,
               "photos_in_batch": len(batch)}
    offset = 0
    for r, image, pieces, _, layout, region in batch:
      span = slice(offset, offset + len(pieces))
      offset += len(pieces)
      report = _write_outputs(workdir / r.path.stem, r.path.name, _to_uint8(image), result, span, layout, region,
                              config, k_eval, timings)
      reports.append(report)
      ncc = report["ncc_after"]["reference"]
      print(f"{r.path.name}: PSNR {report['psnr']:.2f} dB, NCC {report['ncc_before']['reference']:+.4f} -> "
            f"{ncc:+.4f}, γ {report['gamma']:.3g}, {report['iterations']} iterations")
  summary = {"photos": len(records), "done_before": len(records) - len(todo), "anonymized": len(reports),
             "skipped": skipped}
  io.write_json(workdir / "summary.json", summary)
  return summary
