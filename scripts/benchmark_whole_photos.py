r"""The shared Dresden photos anonymized whole, with the default command, and scored as an analyst would.

  python scripts/benchmark_whole_photos.py --workdir=runs/whole                 # all 16 photos (hours on a CPU)
  python scripts/benchmark_whole_photos.py --photos=6 --workdir=runs/whole      # one per device first

1. Per device, the fingerprint of the whole 1056² flat-fields (all 10, σ 3, `prnu.fingerprint`): what a user
   with the camera has (`<workdir>/fingerprints/<device>.npz`).
2. `dippas-anonymize` as a user runs it (`jobs.anonymize.anonymize_job`, the default config of this backend,
   PRNU-aware with that fingerprint), device by device into `<workdir>/anonymized/` (resumable).
3. Scores on the common centre 1056×1056 of every photo (the D70/D70s photos are 1056×1072): the Eq. 2 NCC of
   every photo, unaltered and anonymized, with every fingerprint; per photo its NCC before → after against its
   device's band (99th percentile of the other devices' unaltered photos' |NCC|); pooled AUC of the anonymized
   photos (positives) against the other devices' unaltered photos (negatives), beside the unaltered AUC; PSNR,
   worst 16×16 colour shift, seam score and seconds per megapixel from each photo's report.json.

Prints one markdown table (also `<workdir>/whole.md`, `whole.json`), and writes `<workdir>/crops_<photo>.png` for
every anonymized photo: at 100 % (no scaling), 256² crops around the worst 16×16 colour shift and around a
junction of four tiles, as original | anonymized | |difference| × 10.
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
from absl import app
from absl import flags

from dippas_jax import imaging
from dippas_jax import io
from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.dippas import anonymize
from dippas_jax.evaluation import protocol
from dippas_jax.evaluation import visual
from dippas_jax.jobs import anonymize as anonymize_job
from dippas_jax.jobs import common
from dippas_jax.prnu import fingerprint
from dippas_jax.prnu import roc

REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED = flags.DEFINE_string("shared", str(REPO.parent / "shared"), "The shared folder (data).")
_PHOTOS = flags.DEFINE_integer("photos", 0, "Anonymize this many photos, one per device first (0 = all 16).")
_CONFIG = flags.DEFINE_string("config", "", "Argument of configs/anonymize.py:get_config ('' = this backend's "
                              "default, as a plain dippas-anonymize).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (reruns resume).", required=True)
SIDE = 1056  # every shared photo is at least 1056×1056


def _fingerprints(records, workdir: pathlib.Path) -> dict[str, pathlib.Path]:
  out = {}
  for device in sorted({r.device for r in records}):
    path = workdir / "fingerprints" / f"{device}.npz"
    if not path.is_file():
      flats = [imaging.to_uint8(io.read_image(r.path)) for r in records if r.device == device]
      k, n = fingerprint.estimate_fingerprint(np.stack(flats), sigma=3.0)
      io.save_fingerprint(path, np.asarray(k), metadata={"device": device, "images": n, "sigma": 3.0})
      print(f"{device}: fingerprint of {n} whole flat-fields ({k.shape[0]}×{k.shape[1]})", flush=True)
    out[device] = path
  return out


def _centre(image: np.ndarray) -> np.ndarray:
  return io.center_crop(image, SIDE, SIDE)


def _auc(pos, neg) -> float:
  fpr, tpr, _ = roc.roc_curve(np.concatenate([pos, neg]), np.concatenate([np.ones(len(pos)), np.zeros(len(neg))]))
  return roc.auc(fpr, tpr)


def _score(naturals, chosen, anon_dir: pathlib.Path, fps: dict) -> dict:
  devices = sorted(fps)
  ks = np.stack([_centre(io.load_fingerprint(fps[d])[0]) for d in devices])
  originals = np.stack([_centre(imaging.to_uint8(io.read_image(r.path))) for r in naturals])
  names = common.output_names([r.path for r in naturals])
  s_orig = protocol.score_matrix(originals, ks)["ncc"]
  band = protocol.non_matching_band(s_orig, [r.device for r in naturals], devices)
  done = [(i, r) for i, r in enumerate(naturals) if r in chosen and (anon_dir / names[i] / "report.json").is_file()]
  anon = np.stack([_centre(io.read_image(anon_dir / names[i] / "anonymized.png")) for i, _ in done])
  s_anon = protocol.score_matrix(anon, ks)["ncc"]
  rows, pos, neg, pos_orig = [], [], [], []
  for j, (i, r) in enumerate(done):
    m = devices.index(r.device)
    report = json.loads((anon_dir / names[i] / "report.json").read_text())
    rows.append({"photo": r.path.name, "device": r.device, "psnr": report["psnr"], "ncc_before": float(s_orig[m, i]),
                 "ncc_after": float(s_anon[m, j]), "band": band[r.device],
                 "in_band": abs(float(s_anon[m, j])) <= band[r.device],
                 "colour_shift": report["colour_shift"]["worst"], "seam": report["seam_score"],
                 "spot_shift": visual.spot_shift(anon[j], originals[i])["worst"],
                 "tiles": report["pieces"]["count"], "iterations_per_tile": report["pieces"]["iterations_mean"],
                 "seconds": report["timings_s"]["photo"], "s_per_mp": report["timings_s"]["per_megapixel"]})
    pos.append(float(s_anon[m, j]))
    pos_orig.append(float(s_orig[m, i]))
  for m, d in enumerate(devices):
    if any(r.device == d for _, r in done):
      neg += [float(s_orig[m, i]) for i, r in enumerate(naturals) if r.device != d]
  negs = np.asarray(neg)
  return {"rows": rows, "auc": _auc(np.asarray(pos), negs), "auc_unaltered": _auc(np.asarray(pos_orig), negs)}


def _crops(original: np.ndarray, anonymized: np.ndarray, layout, side: int = 256) -> np.ndarray:
  """uint8[2·side, 3·side, 3]: rows = the worst colour-shift window, a four-tile junction (100 %); columns =
  original, anonymized, |anonymized − original| × 10."""
  diff = anonymized.astype(np.float64) - original
  means = np.abs(visual.window_means(diff, 16)).max(axis=-1)
  worst = np.unravel_index(np.argmax(means), means.shape)
  junction = tuple(count // 2 * layout.stride + layout.overlap // 2 for count in (layout.rows, layout.cols))
  rows = []
  for cy, cx in ((worst[0] + 8, worst[1] + 8), junction):
    y = int(np.clip(cy - side // 2, 0, original.shape[0] - side))
    x = int(np.clip(cx - side // 2, 0, original.shape[1] - side))
    window = (slice(y, y + side), slice(x, x + side))
    amplified = np.clip(np.abs(diff[window]) * 10, 0, 255).astype(np.uint8)
    rows.append(np.concatenate([original[window], anonymized[window], amplified], axis=1))
  return np.concatenate(rows, axis=0)


def _markdown(result: dict) -> str:
  lines = ["| photo | PSNR (dB) | NCC before → after | band | in band | colour shift | spot shift | seam | "
           "tiles × iterations | s | s/MP |", "|---|---:|---|---:|:---:|---:|---:|---:|---|---:|---:|"]
  for r in result["rows"]:
    lines.append(f"| {r['photo']} | {r['psnr']:.2f} | {r['ncc_before']:+.4f} → {r['ncc_after']:+.4f} | "
                 f"{r['band']:.4f} | {'yes' if r['in_band'] else 'NO'} | {r['colour_shift']:.2f} | "
                 f"{r['spot_shift']:.2f} | {r['seam']:.3f} | "
                 f"{r['tiles']} × {r['iterations_per_tile']:.0f} | {r['seconds']:.0f} | {r['s_per_mp']:.0f} |")
  rows = result["rows"]
  psnr = [r["psnr"] for r in rows]
  lines.append(f"\n{len(rows)} photos: PSNR mean {np.mean(psnr):.2f} / min {np.min(psnr):.2f} dB, "
               f"{sum(r['in_band'] for r in rows)}/{len(rows)} inside their band, worst colour shift "
               f"{max(r['colour_shift'] for r in rows):.2f}, worst spot shift "
               f"{max(r['spot_shift'] for r in rows):.2f}, worst seam {max(r['seam'] for r in rows):.3f}, "
               f"{np.mean([r['s_per_mp'] for r in rows]):.0f} s/MP; pooled AUC {result['auc']:.3f} "
               f"(the same photos unaltered: {result['auc_unaltered']:.3f}).")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  workdir = pathlib.Path(_WORKDIR.value)
  manifest = str(pathlib.Path(_SHARED.value) / "data" / "dresden" / "manifest.csv")
  fps = _fingerprints(io.list_images(manifest, kind="flatfield"), workdir)
  naturals = io.list_images(manifest, kind="natural")
  chosen = protocol.interleave_devices(naturals)[:_PHOTOS.value or None]
  config = anonymize_config.get_config(_CONFIG.value)
  for device in sorted({r.device for r in chosen}):
    inputs = ",".join(str(r.path) for r in chosen if r.device == device)
    anonymize_job.anonymize_job(inputs=inputs, workdir=str(workdir / "anonymized"), config=config,
                                fingerprint=str(fps[device]))
  result = _score(naturals, chosen, workdir / "anonymized", fps)
  layout = anonymize.photo_layout(config, SIDE, SIDE)
  for r in chosen:
    folder = workdir / "anonymized" / common.output_names([r.path])[0]
    if (folder / "anonymized.png").is_file():
      original, anonymized = (_centre(imaging.to_uint8(io.read_image(p))) for p in (r.path, folder / "anonymized.png"))
      io.write_png(workdir / f"crops_{r.path.stem}.png", _crops(original, anonymized, layout))
  text = _markdown(result)
  (workdir / "whole.md").write_text(f"`{' '.join(sys.argv)}`\n\n{text}\n")
  io.write_json(workdir / "whole.json", {**result, "command": " ".join(sys.argv), "recipe": config.recipe})
  print(text)


if __name__ == "__main__":
  app.run(main)
