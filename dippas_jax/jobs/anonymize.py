"""`dippas-anonymize`: photos → per photo `anonymized.png` (or `.jpg`), `report.json`, `report.png`, `history.png`.

Photos are listed (`io.list_images`), named by `common.output_names` (their path relative to the inputs' common
folder: two photos never share an output folder) and sorted by that name; with several processes
(`process_count`), process p takes photos p, p + P, p + 2P, ... Each photo is anonymized whole (tiled, the
default) or as its centre crop (the research protocol, `full_resolution=False`); the pieces of all photos stream
through one queue of `batch_size` slots (`anonymize.anonymize_photos`), and each photo's files are written as soon
as its last piece is done.

Resume: a photo is done when its report.json records the output's checksum, the source photo's checksum and the
checksum of the settings that produced it (`settings_digest`); otherwise it is (re)computed, and a stale result
is said to be. The finished tiles of an unfinished whole photo are kept in `<photo>/.tiles/` (with the source and
settings checksums) and reused by the next run, so a kill loses at most the tiles in flight. A photo whose
primary setting never had a candidate above τ in some piece (that piece is the fallback, the best-PSNR iterations)
is reported below the quality target.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import pathlib
import shutil
import sys
import zipfile

import jax
import numpy as np

from dippas_jax import display as display_lib
from dippas_jax import imaging
from dippas_jax import io
from dippas_jax.dippas import anonymize
from dippas_jax.dippas import dip
from dippas_jax.jobs import anonymize_report
from dippas_jax.jobs import common

# Config fields that do not change a photo's outputs (left out of `settings_digest`).
_NOT_DETERMINING = ("batch_size", "recipe", "refill", "trace_every")


@dataclasses.dataclass
class Photo:
  """One input photo, prepared: the image handed to DIPPAS and what the report needs.

  image: uint8[H, W, 3] the piece of the photo that is anonymized (the whole photo, or its centre crop; 16-bit
  photos rounded); grey: the photo's channels are identical; k: float32[H, W] the device fingerprint (aware) or
  None (blind); region: where the image lies in the photo (for the report); source_sha: the file's checksum;
  display: how the file is shown (orientation, colour profile), applied to the written output.
  """
  record: io.ImageRecord
  name: str
  image: np.ndarray
  grey: bool
  k: np.ndarray | None
  region: dict
  source_sha: str
  display: display_lib.Display = display_lib.Display()


def settings_digest(config, *, seed: int, fingerprint_sha: str | None, eval_sha: str | None,
                    init_weights_sha: str | None = None) -> str:
  """sha256 of everything that determines a photo's outputs: the config (but `_NOT_DETERMINING`), the seed, the
  fingerprint files' checksums and the learned initialisation's (its contents, not its name)."""
  determining = {k: v for k, v in common.config_dict(config).items() if k not in _NOT_DETERMINING}
  text = io.to_json({"config": determining, "seed": seed, "fingerprint": fingerprint_sha,
                     "eval_fingerprint": eval_sha, "init_weights": init_weights_sha}, sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()


def photo_status(out_dir: pathlib.Path, *, source_sha: str, settings_sha: str) -> str:
  """'done' (report, PNG checksum, source and settings all match), 'stale' (a result made from another source
  or with other settings, or damaged) or 'new'."""
  try:
    report = json.loads((out_dir / "report.json").read_text())
  except (OSError, ValueError):
    return "new"
  try:
    complete = common.file_sha256(out_dir / report["output"]) == report["output_sha256"]
  except (OSError, KeyError, TypeError):
    complete = False
  same = report.get("source_sha256") == source_sha and report.get("settings_sha256") == settings_sha
  return "done" if complete and same else "stale"


def _prepare(record: io.ImageRecord, name: str, k: np.ndarray | None, config, source_sha: str) -> Photo:
  """Reads one photo and takes the whole photo (full resolution) or its centre crop, and the fingerprint alike.

  In full-resolution mode the fingerprint must have the photo's size; in crop mode any fingerprint at least as
  large as the crop is centre-cropped to it (fingerprints estimated from centre crops, e.g. prnu-python's 512²
  ones, share the photo's centre). Raises io.InputError for an unreadable photo or mismatched sizes.
  """
  image = imaging.to_uint8(io.read_image(record.path))
  display = display_lib.read_display(record.path)
  h, w = image.shape[:2]
  if config.full_resolution:
    if k is not None and k.shape != (h, w):
      raise io.InputError(f"{record.path}: the fingerprint is {k.shape[0]}×{k.shape[1]} but the photo is {h}×{w}; "
                          "whole photos need a fingerprint of the photo's size (estimate it with dippas-fingerprint "
                          "from whole flat-fields), or use the centre crop (config field full_resolution=False)")
    if min(h, w) < 16:
      raise io.InputError(f"{record.path}: the photo is {h}×{w}, smaller than 16 pixels on a side")
    region = {"mode": "whole_photo", "height": h, "width": w, "tile_size": int(config.tile_size),
              "tile_overlap": int(config.tile_overlap)}
    return Photo(record, name, image, imaging.is_grey(image), k, region, source_sha, display)
  crop = tuple(int(c) for c in config.crop)
  piece = io.center_crop(image, *crop, name=str(record.path))
  if k is not None and k.shape != crop:
    if k.shape[0] < crop[0] or k.shape[1] < crop[1]:
      raise io.InputError(f"{record.path}: the fingerprint is {k.shape[0]}×{k.shape[1]}, smaller than the crop "
                          f"{crop[0]}×{crop[1]}; use a smaller crop (config field crop)")
    k = io.center_crop(k, *crop, name="fingerprint")
  region = {"mode": "centre_crop", "height": crop[0], "width": crop[1], "top": (h - crop[0]) // 2,
            "left": (w - crop[1]) // 2, "photo_height": h, "photo_width": w}
  return Photo(record, name, piece, imaging.is_grey(piece), k, region, source_sha, display)


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


class TileCache:
  """The finished pieces of one unfinished photo, kept in `<photo>/.tiles/` so that a killed run loses only the
  pieces in flight: `piece_<t>.npz` (the piece's outputs and numbers) beside `meta.json` (the source and settings
  checksums and the trace interval its NCC traces were taken at; pieces of another source or other settings are
  never reused: the folder is emptied for the new run's pieces)."""

  def __init__(self, out_dir: pathlib.Path, *, source_sha: str, settings_sha: str, trace_every: int):
    self.folder = out_dir / ".tiles"
    self.meta = {"source_sha256": source_sha, "settings_sha256": settings_sha, "trace_every": int(trace_every)}

  def load(self) -> dict[int, anonymize.PieceResult]:
    """{piece index: PieceResult} of a run with the same source and settings ({} otherwise, and the pieces of
    another run are deleted so that they cannot be mistaken for this run's)."""
    try:
      same = json.loads((self.folder / "meta.json").read_text()) == self.meta
    except (OSError, ValueError):
      same = False
    if not same:
      self.clear()
      return {}
    pieces = {}
    for path in sorted(self.folder.glob("piece_*.npz")):
      try:
        pieces[int(path.stem.split("_")[1])] = _piece_from_npz(path)
      except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        path.unlink(missing_ok=True)  # a damaged file (truncated, empty): that piece is recomputed
        continue
    return pieces

  def save(self, index: int, piece: anonymize.PieceResult) -> None:
    if not (self.folder / "meta.json").is_file():
      io.write_json(self.folder / "meta.json", self.meta)
    with io.atomic_path(self.folder / f"piece_{index}.npz") as tmp:
      with open(tmp, "wb") as f:
        np.savez(f, **piece.to_arrays())

  def clear(self) -> None:
    shutil.rmtree(self.folder, ignore_errors=True)


def _piece_from_npz(path: pathlib.Path) -> anonymize.PieceResult:
  with np.load(path, allow_pickle=False) as z:
    return anonymize.PieceResult.from_arrays({k: z[k] for k in z.files})


def _pieces_of(record: io.ImageRecord, config) -> int:
  """How many pieces the photo will be (for the progress bar; 0 if it cannot be read: it is skipped later)."""
  if not config.full_resolution:
    return 1
  try:
    return anonymize.photo_layout(config, *display_lib.image_size(record.path)).num_tiles
  except (io.InputError, ValueError):
    return 0


def anonymize_job(*, inputs: str, workdir: str, config, fingerprint: str | None = None,
                  eval_fingerprint: str | None = None, seed: int = 0, process_index: int = 0,
                  process_count: int = 1) -> dict:
  """Anonymizes photos into `<workdir>/<output name>/` (module docstring); returns the summary (also written to
  `summary.json`, or `summary_<p>.json` for process p of several)."""
  with common.user_input("config"):
    piece = (config.tile_size, config.tile_size) if config.full_resolution else common.crop_of(config)
    if piece is None or min(piece) < 1:
      raise ValueError(f"the crop (or tile) size must be positive, got {piece}")
    anonymize.check_geometry(config, *piece)
  with common.user_input("config field dip.model.init_weights"):
    weights = anonymize.check_init_weights(config)
  init_sha = weights and common.file_sha256(weights)  # its contents, not its name, determine the outputs
  k, k_info, k_eval, eval_info = _load_fingerprints(fingerprint, eval_fingerprint, config)
  records = io.list_images(inputs)
  names = common.output_names([r.path for r in records])
  order = np.argsort(names, kind="stable")
  records, names = [records[i] for i in order], [names[i] for i in order]
  settings_sha = settings_digest(config, seed=seed, fingerprint_sha=k_info and k_info["sha256"],
                                 eval_sha=eval_info and eval_info["sha256"], init_weights_sha=init_sha)
  workdir = pathlib.Path(workdir)
  mine = list(range(process_index, len(records), process_count))
  print(f"{len(records)} photos ({len(mine)} for this process), mode {config.mode}, recipe {config.recipe} on "
        f"{jax.default_backend()}, " + (f"whole photos in {config.tile_size}² tiles" if config.full_resolution
                                          else f"centre crop {tuple(config.crop)}")
        + f", {config.batch_size} pieces at a time")
  tally = {"photos": len(mine), "done_before": 0, "anonymized": 0, "recomputed": 0, "below_target": [],
           "skipped": []}
  todo = _todo(records, names, mine, workdir, settings_sha, tally)
  context = dict(config=config, k_info=k_info, eval_info=eval_info, k_eval=k_eval, settings_sha=settings_sha)
  _run(todo, k, workdir, config=config, seed=seed, tally=tally, context=context)
  summary_name = "summary.json" if process_count == 1 else f"summary_{process_index}.json"
  io.write_json(workdir / summary_name, tally)
  _print_summary(tally)
  return tally


def _todo(records, names, mine, workdir: pathlib.Path, settings_sha: str, tally: dict) -> list[tuple]:
  """(record, name, source checksum) of the photos of this process that are not done."""
  todo = []
  for i in mine:
    record, name = records[i], names[i]
    try:
      source_sha = common.file_sha256(record.path)
    except OSError as e:
      print(f"skipped: {record.path}: {e}", file=sys.stderr)
      tally["skipped"].append(f"{record.path}: {e}")
      continue
    status = photo_status(workdir / name, source_sha=source_sha, settings_sha=settings_sha)
    if status == "done":
      tally["done_before"] += 1
      continue
    if status == "stale":
      print(f"{name}: an earlier result was made from another source or with other settings; recomputing")
      tally["recomputed"] += 1
    todo.append((record, name, source_sha))
  return todo


def _run(todo, k, workdir: pathlib.Path, *, config, seed: int, tally: dict, context: dict) -> None:
  """Streams the photos of `todo` through `anonymize_photos` and writes each one's files when it is done."""
  photos: dict[str, Photo] = {}
  caches: dict[str, TileCache] = {}
  bar = common.progress(sum(_pieces_of(r, config) for r, _, _ in todo), "pieces", unit="piece")

  def tasks():
    for record, name, source_sha in todo:
      try:
        photo = _prepare(record, name, k, config, source_sha)
      except io.InputError as e:
        print(f"skipped: {e}", file=sys.stderr)
        tally["skipped"].append(str(e))
        continue
      photos[name] = photo
      caches[name] = TileCache(workdir / name, source_sha=source_sha, settings_sha=context["settings_sha"],
                               trace_every=config.trace_every)
      done = caches[name].load() if config.full_resolution else {}
      bar.update(len(done))
      yield anonymize.PhotoTask(name=record.path.name, image=photo.image, fingerprint=photo.k, done=done, key=name)

  def on_piece(task, index, piece):
    if config.full_resolution:
      caches[task.key].save(index, piece)
    bar.update(1)

  def on_photo(result: anonymize.PhotoResult):
    photo = photos.pop(result.task.key)
    report = anonymize_report.write_photo(workdir / photo.name, photo, result, **context)
    caches.pop(photo.name).clear()
    tally["anonymized"] += 1
    if not report["quality_target_met"]:
      tally["below_target"].append(photo.name)
    bar.write(anonymize_report.summary_line(photo.name, report))

  def on_progress(stats, busy):
    bar.set_postfix(busy=busy, occupancy=f"{stats.busy_steps / max(stats.slot_steps, 1):.0%}")

  mesh = dip.make_mesh(jax.local_devices())  # this process's devices only (several processes: no collectives)
  anonymize.anonymize_photos(tasks(), config=config, seed=seed, on_photo=on_photo, on_piece=on_piece,
                             on_progress=on_progress, mesh=mesh)
  bar.close()


def _print_summary(tally: dict) -> None:
  print(f"anonymized {tally['anonymized']} (recomputed {tally['recomputed']}), already done {tally['done_before']}, "
        f"skipped {len(tally['skipped'])}, below the quality target {len(tally['below_target'])}")
  if tally["below_target"]:
    print("below the quality target (a piece had no candidate above τ; its result is the best-PSNR iterations): "
          + ", ".join(tally["below_target"]), file=sys.stderr)
  common.print_skipped(tally["skipped"])
