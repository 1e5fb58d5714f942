"""`dippas-anonymize`: photos → per photo `anonymized.png`, `report.json`, `history.jsonl`, `history.png`.

Photos are listed (`io.list_images`), named by `common.output_names` (their path relative to the inputs' common
folder: two photos never share an output folder) and sorted by that name. Batches of `config.batch_size` photos
are cut from that full sorted list (one photo per batch in full-resolution mode, its tiles forming the batch), so
a batch always holds the same photos and a resumed run computes exactly what an uninterrupted one does. With
several processes (`process_count`), process p takes batches p, p + P, p + 2P, ...

Resume: a photo is done when its report.json records the PNG's checksum, the source photo's checksum and the
checksum of the settings that produced it (`settings_digest`); otherwise it is (re)computed, and a stale result
is said to be. A photo whose primary setting never had a candidate above τ (its image comes from the fallback
pool, the best-PSNR iterations) is reported below the quality target.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import sys
import time

import jax
import numpy as np

from dippas_jax import imaging
from dippas_jax import io
from dippas_jax.dippas import anonymize
from dippas_jax.dippas import dip
from dippas_jax.dippas import tiling
from dippas_jax.jobs import anonymize_report
from dippas_jax.jobs import common

# Config fields that do not change a photo's outputs (left out of `settings_digest`).
_NOT_DETERMINING = ("batch_size", "trace_every")


@dataclasses.dataclass
class Photo:
  """One input photo, prepared: its pixels, the pieces handed to DIPPAS and how to put them back.

  image: uint8[H, W, 3] (16-bit photos rounded); grey: the photo's channels are identical; pieces: uint8[T, h, w, 3]
  (one centre crop, or T tiles); k_pieces: float32[T, h, w] of the device fingerprint or None (blind); layout:
  the tiling layout (None for a crop); region: where the pieces lie in the photo (for the report).
  """
  record: io.ImageRecord
  name: str
  image: np.ndarray
  grey: bool
  pieces: np.ndarray
  k_pieces: np.ndarray | None
  layout: object
  region: dict


def settings_digest(config, *, seed: int, fingerprint_sha: str | None, eval_sha: str | None) -> str:
  """sha256 of everything that determines a photo's outputs: the config (but `_NOT_DETERMINING`), the seed and
  the fingerprint files' checksums."""
  determining = {k: v for k, v in common.config_dict(config).items() if k not in _NOT_DETERMINING}
  text = io.to_json({"config": determining, "seed": seed, "fingerprint": fingerprint_sha,
                     "eval_fingerprint": eval_sha}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()


def photo_status(out_dir: pathlib.Path, *, source_sha: str, settings_sha: str) -> str:
  """'done' (report, PNG checksum, source and settings all match), 'stale' (a result made from another source
  or with other settings, or damaged) or 'new'."""
  try:
    report = json.loads((out_dir / "report.json").read_text())
  except (OSError, ValueError):
    return "new"
  try:
    complete = common.file_sha256(out_dir / "anonymized.png") == report["png_sha256"]
  except (OSError, KeyError):
    complete = False
  same = report.get("source_sha256") == source_sha and report.get("settings_sha256") == settings_sha
  return "done" if complete and same else "stale"


def _prepare(record: io.ImageRecord, name: str, k: np.ndarray | None, config) -> Photo:
  """Reads one photo and crops (research default) or tiles (full resolution) it and its fingerprint.

  A fingerprint of the photo's size is cropped/tiled like the photo; in crop mode any fingerprint at least as
  large as the crop is centre-cropped to it (fingerprints estimated from centre crops, e.g. prnu-python's 512²
  ones, share the photo's centre). Raises io.InputError for an unreadable photo or mismatched sizes.
  """
  image = imaging.to_uint8(io.read_image(record.path))
  h, w = image.shape[:2]
  if config.full_resolution:
    if k is not None and k.shape != (h, w):
      raise io.InputError(f"{record.path}: the fingerprint is {k.shape[0]}×{k.shape[1]} but the photo is {h}×{w}; "
                          "full-resolution mode needs a fingerprint of the photo's size")
    tiles, layout = tiling.tile(image, tile_size=config.tile_size, overlap=config.tile_overlap)
    k_tiles = None if k is None else np.asarray(tiling.tile_like(k, layout))
    region = {"mode": "full_resolution", "height": h, "width": w, "tile_size": config.tile_size,
              "tile_overlap": config.tile_overlap}
    return Photo(record, name, image, imaging.is_grey(image), np.asarray(tiles), k_tiles, layout, region)
  crop = tuple(int(c) for c in config.crop)
  piece = io.center_crop(image, *crop, name=str(record.path))
  if k is not None and k.shape != crop:
    if k.shape[0] < crop[0] or k.shape[1] < crop[1]:
      raise io.InputError(f"{record.path}: the fingerprint is {k.shape[0]}×{k.shape[1]}, smaller than the crop "
                          f"{crop[0]}×{crop[1]}; use a smaller crop (config field crop)")
    k = io.center_crop(k, *crop, name="fingerprint")
  region = {"mode": "centre_crop", "height": crop[0], "width": crop[1], "top": (h - crop[0]) // 2,
            "left": (w - crop[1]) // 2, "photo_height": h, "photo_width": w}
  return Photo(record, name, image, imaging.is_grey(piece), piece[None], None if k is None else k[None], None, region)


def _load_fingerprints(fingerprint: str | None, eval_fingerprint: str | None, config):
  """(K, K's file info, K_eval, K_eval's file info); InputError for a missing or contradictory choice."""
  if config.mode == "aware" and not fingerprint:
    raise io.InputError("PRNU-aware mode needs --fingerprint=FILE (or use --blind)")
  if config.mode == "blind" and fingerprint:
    raise io.InputError("--blind uses each photo's own residual, not --fingerprint; to report the NCC with a "
                        "device fingerprint in blind mode, pass it as --eval_fingerprint")

  def load(path):
    if not path:
      return None, None
    k, meta = io.load_fingerprint(path)
    return k, {"file": str(path), "sha256": common.file_sha256(path), "device": meta.get("device")}

  return (*load(fingerprint), *load(eval_fingerprint))


def _read_batch(batch, names, k, config, skipped: list[str]) -> list[Photo]:
  photos = []
  for record, name in zip(batch, names):
    try:
      photos.append(_prepare(record, name, k, config))
    except io.InputError as e:
      print(f"skipped: {e}", file=sys.stderr)
      skipped.append(str(e))
  return photos


def _run_batch(photos: list[Photo], config, *, seed: int, label: str) -> anonymize.AnonymizeResult:
  pieces = np.concatenate([p.pieces for p in photos])
  k = None if photos[0].k_pieces is None else np.concatenate([p.k_pieces for p in photos])
  ids = [common.image_id(p.record.path, t) for p in photos for t in range(len(p.pieces))]
  bar = common.progress(config.dip.max_steps, label[:60], unit="it")

  def on_chunk(info):
    bar.update(min(info.steps, bar.total) - bar.n)
    psnr = np.nanmax(info.history["psnr"]) if np.isfinite(info.history["psnr"]).any() else float("nan")
    bar.set_postfix(active=info.num_active, psnr=f"{psnr:.1f}")

  mesh = dip.make_mesh(jax.local_devices())  # this process's devices only (several processes: no collectives)
  result = anonymize.anonymize(pieces, k, config=config, seed=seed, image_ids=ids, on_chunk=on_chunk, mesh=mesh)
  bar.close()
  return result


def anonymize_job(*, inputs: str, workdir: str, config, fingerprint: str | None = None,
                  eval_fingerprint: str | None = None, seed: int = 0, process_index: int = 0,
                  process_count: int = 1) -> dict:
  """Anonymizes photos into `<workdir>/<output name>/` (module docstring); returns the summary (also written to
  `summary.json`, or `summary_<p>.json` for process p of several)."""
  with common.user_input("config"):
    tile = (config.tile_size, config.tile_size) if config.full_resolution else common.crop_of(config)
    if tile is None or min(tile) < 1:
      raise ValueError(f"the crop (or tile) size must be positive, got {tile}")
    anonymize.check_geometry(config, *tile)
  k, k_info, k_eval, eval_info = _load_fingerprints(fingerprint, eval_fingerprint, config)
  records = io.list_images(inputs)
  names = common.output_names([r.path for r in records])
  order = np.argsort(names, kind="stable")
  records, names = [records[i] for i in order], [names[i] for i in order]
  settings_sha = settings_digest(config, seed=seed, fingerprint_sha=k_info and k_info["sha256"],
                                 eval_sha=eval_info and eval_info["sha256"])
  workdir = pathlib.Path(workdir)
  size = 1 if config.full_resolution else max(1, int(config.batch_size))
  batches = [(i, min(i + size, len(records))) for i in range(0, len(records), size)]
  mine = batches[process_index::process_count]
  print(f"{len(records)} photos in {len(batches)} batches ({sum(b - a for a, b in mine)} for this process), mode "
        f"{config.mode}, {'full resolution' if config.full_resolution else f'centre crop {tuple(config.crop)}'}")
  tally = {"photos": sum(b - a for a, b in mine), "done_before": 0, "anonymized": 0, "recomputed": 0,
           "below_target": [], "skipped": []}
  context = dict(config=config, k_info=k_info, eval_info=eval_info, k_eval=k_eval, settings_sha=settings_sha)
  for number, (a, b) in enumerate(mine):
    _process_batch(records[a:b], names[a:b], k, workdir, seed=seed, tally=tally,
                   label=f"batch {number + 1}/{len(mine)}", **context)
  summary_name = "summary.json" if process_count == 1 else f"summary_{process_index}.json"
  io.write_json(workdir / summary_name, tally)
  _print_summary(tally)
  return tally


def _process_batch(batch, names, k, workdir, *, config, seed, tally, label, **context) -> None:
  """Runs one batch (all its readable photos, so its numbers never depend on what was done before) and writes
  the outputs of the photos that are not done."""
  sources = {}
  todo = []
  for record, name in zip(batch, names):
    try:
      sources[name] = common.file_sha256(record.path)
    except OSError as e:
      sources[name] = None
      print(f"skipped: {record.path}: {e}", file=sys.stderr)
      tally["skipped"].append(f"{record.path}: {e}")
      continue
    status = photo_status(workdir / name, source_sha=sources[name], settings_sha=context["settings_sha"])
    if status == "done":
      tally["done_before"] += 1
    else:
      todo.append(name)
      if status == "stale":
        print(f"{name}: an earlier result was made from another source or with other settings; recomputing")
        tally["recomputed"] += 1
  if not todo:
    return
  readable = [(r, n) for r, n in zip(batch, names) if sources[n] is not None]
  photos = _read_batch([r for r, _ in readable], [n for _, n in readable], k, config, tally["skipped"])
  if not any(p.name in todo for p in photos):
    return
  t0 = time.perf_counter()
  result = _run_batch(photos, config, seed=seed, label=f"{label}: {', '.join(p.name for p in photos)}")
  timings = {"init": result.init_s, "optimize": result.run_s, "total_batch": time.perf_counter() - t0,
             "photos_in_batch": len(photos)}
  offset = 0
  for photo in photos:
    span = slice(offset, offset + len(photo.pieces))
    offset += len(photo.pieces)
    if photo.name not in todo:
      continue
    report = anonymize_report.write_photo(
        workdir / photo.name, photo, result, span, config=config, timings=timings, source_sha=sources[photo.name],
        **context)
    tally["anonymized"] += 1
    if not report["quality_target_met"]:
      tally["below_target"].append(photo.name)
    anonymize_report.print_line(photo.name, report)


def _print_summary(tally: dict) -> None:
  print(f"anonymized {tally['anonymized']} (recomputed {tally['recomputed']}), already done {tally['done_before']}, "
        f"skipped {len(tally['skipped'])}, below the quality target {len(tally['below_target'])}")
  if tally["below_target"]:
    print("below the quality target (no candidate reached τ; the result is the best-PSNR iterations): "
          + ", ".join(tally["below_target"]), file=sys.stderr)
  common.print_skipped(tally["skipped"])
