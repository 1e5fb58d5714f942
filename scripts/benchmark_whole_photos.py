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
   worst 16×16 colour shift, seam score and seconds per megapixel from each photo's report.json; the adversary
   who receives a recompressed copy: the NCC after JPEG q85 against the band of the other devices' photos after
   the same JPEG; PCE before → after (report.json).

4. The competitors (`--competitors`) on the same photos' centre 1056² (`<workdir>/competitors/<method>/`,
   resumable), with the same columns (no seams: they work on the whole photo).

Prints one markdown table (also `<workdir>/whole.md`, `whole.json`), and writes `<workdir>/crops_<photo>.png` for
every anonymized photo: at 100 % (no scaling), 256² crops around the worst 16×16 colour shift and around a
junction of four tiles, as original | anonymized | |difference| × 10; and `<workdir>/flat_<photo>.png`: the
photo's flattest 256² (lowest mean local std, clipped highlights left out) as original | DIPPAS | signed
difference × 10 around grey 128, then a row per competitor.
"""

from __future__ import annotations

import io as io_lib
import json
import pathlib
import sys
import time

import numpy as np
from absl import app
from absl import flags
from PIL import Image

from dippas_jax import imaging
from dippas_jax import io
from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.dippas import anonymize
from dippas_jax.dippas import kept_image
from dippas_jax.evaluation import adversaries
from dippas_jax.evaluation import baselines
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
_ANONYMIZE = flags.DEFINE_bool("anonymize", True, "Run DIPPAS on the photos (False: only the competitors and the "
                                "scores of what is already there, e.g. beside a running DIPPAS job).")
_COMPETITORS = flags.DEFINE_list("competitors", ["inpainting", "patch_desync"],
                                 "Published anonymizers run on the same photos' centre 1056² and scored alike "
                                 "(evaluation.baselines names; inpainting restores edges with BM3D when the "
                                 "'bm3d' extra is installed, else with the wavelet stand-in, as recorded).")
SIDE = 1056  # every shared photo is at least 1056×1056
JPEG_QUALITY = 85  # the recompression adversary's quality (issue 29: "JPEG q85 at least")


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


def _jpeg(images: np.ndarray, quality: int = JPEG_QUALITY) -> np.ndarray:
  """The images as an analyst receives them after a platform's recompression (Pillow JPEG, `quality`)."""
  return np.stack([np.asarray(Image.open(io_lib.BytesIO(adversaries.jpeg_bytes(x, quality))).convert("RGB"))
                   for x in images])


def _score(naturals, chosen, anon_dir: pathlib.Path, fps: dict) -> dict:
  devices = sorted(fps)
  ks = np.stack([_centre(io.load_fingerprint(fps[d])[0]) for d in devices])
  originals = np.stack([_centre(imaging.to_uint8(io.read_image(r.path))) for r in naturals])
  names = common.output_names([r.path for r in naturals])
  s_orig = protocol.score_matrix(originals, ks)["ncc"]
  band = protocol.non_matching_band(s_orig, [r.device for r in naturals], devices)
  # The adversary who receives a recompressed copy: every photo (its band too) through JPEG q85.
  s_orig_jpeg = protocol.score_matrix(_jpeg(originals), ks)["ncc"]
  band_jpeg = protocol.non_matching_band(s_orig_jpeg, [r.device for r in naturals], devices)
  done = [(i, r) for i, r in enumerate(naturals) if r in chosen and (anon_dir / names[i] / "report.json").is_file()]
  if not done:
    return {"rows": [], "auc": float("nan"), "auc_unaltered": float("nan"), "band": band, "band_jpeg": band_jpeg}
  anon = np.stack([_centre(io.read_image(anon_dir / names[i] / "anonymized.png")) for i, _ in done])
  s_anon = protocol.score_matrix(anon, ks)["ncc"]
  s_anon_jpeg = protocol.score_matrix(_jpeg(anon), ks)["ncc"]
  rows, pos, neg, pos_orig = [], [], [], []
  for j, (i, r) in enumerate(done):
    m = devices.index(r.device)
    report = json.loads((anon_dir / names[i] / "report.json").read_text())
    rows.append({"photo": r.path.name, "device": r.device, "psnr": report["psnr"], "ncc_before": float(s_orig[m, i]),
                 "ncc_after": float(s_anon[m, j]), "band": band[r.device],
                 "in_band": abs(float(s_anon[m, j])) <= band[r.device],
                 "ncc_before_jpeg": float(s_orig_jpeg[m, i]), "ncc_after_jpeg": float(s_anon_jpeg[m, j]),
                 "band_jpeg": band_jpeg[r.device], "in_band_jpeg": abs(float(s_anon_jpeg[m, j])) <= band_jpeg[r.device],
                 "pce_before": report["reference"]["pce_before"], "pce_after": report["reference"]["pce_after"],
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
  return {"rows": rows, "auc": _auc(np.asarray(pos), negs), "auc_unaltered": _auc(np.asarray(pos_orig), negs),
          "band": band, "band_jpeg": band_jpeg}


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


def _competitors(naturals, chosen, workdir: pathlib.Path, fps: dict, band: dict, band_jpeg: dict) -> list[dict]:
  """Runs (or reloads) every competitor on the chosen photos' centres; rows with the DIPPAS table's columns."""
  rows = []
  for method in _COMPETITORS.value:
    fn = baselines.get_baseline(method)
    for r in chosen:
      path = workdir / "competitors" / method / f"{r.path.stem}.png"
      original = _centre(imaging.to_uint8(io.read_image(r.path)))
      k = _centre(io.load_fingerprint(fps[r.device])[0])
      seconds = None
      if not path.is_file():
        t0 = time.perf_counter()
        out = fn(original[None]).image
        io.write_png(path, imaging.to_uint8(np.asarray(out))[0])
        seconds = time.perf_counter() - t0
        print(f"{method} {r.path.name}: {seconds:.0f} s", flush=True)
      image = imaging.to_uint8(io.read_image(path))
      pair = np.stack([original, image])
      before, after = (float(v) for v in anonymize.ncc_scores(pair, k, sigma=3.0))
      after_jpeg = float(anonymize.ncc_scores(_jpeg(image[None]), k, sigma=3.0)[0])
      rows.append({"method": method, "photo": r.path.name, "device": r.device,
                   "psnr": float(anonymize.psnr(image[None], original[None])[0]), "ncc_before": before,
                   "ncc_after": after, "band": band[r.device], "in_band": abs(after) <= band[r.device],
                   "ncc_after_jpeg": after_jpeg, "in_band_jpeg": abs(after_jpeg) <= band_jpeg[r.device],
                   "colour_shift": visual.colour_shift(image, original)["worst"],
                   "spot_shift": visual.spot_shift(image, original)["worst"], "seconds": seconds})
  return rows


def _flattest(original: np.ndarray, side: int = 256) -> tuple[int, int]:
  """(top, left) of the side² window with the lowest mean local std, among windows without clipped pixels."""
  std = np.asarray(kept_image.local_std(original.astype(np.float32)))[..., 0]
  clipped = (original >= 250).any(axis=-1).astype(np.float64)
  means = visual.window_means(np.stack([std, clipped], -1), side)
  score = np.where(means[..., 1] > 0.001, np.inf, means[..., 0])[::16, ::16]
  y, x = np.unravel_index(np.argmin(score), score.shape)
  return int(y) * 16, int(x) * 16


def _flat_figure(original: np.ndarray, outputs: list[np.ndarray], side: int = 256) -> np.ndarray:
  """uint8: one row per output (DIPPAS first), original | output | 128 + 10·(output − original), at 100 %."""
  y, x = _flattest(original, side)
  window = (slice(y, y + side), slice(x, x + side))
  rows = []
  for out in outputs:
    diff = np.clip(128 + 10 * (out[window].astype(np.float64) - original[window]), 0, 255).astype(np.uint8)
    rows.append(np.concatenate([original[window], out[window], diff], axis=1))
  return np.concatenate(rows, axis=0)


def _markdown(result: dict) -> str:
  yes = lambda v: "yes" if v else "NO"  # noqa: E731
  lines = ["| photo | PSNR (dB) | NCC before → after | band | in band | after JPEG q85 (band) | PCE before → after | "
           "colour shift | spot shift | seam | tiles × iterations | s | s/MP |",
           "|---|---:|---|---:|:---:|---|---|---:|---:|---:|---|---:|---:|"]
  for r in result["rows"]:
    lines.append(f"| {r['photo']} | {r['psnr']:.2f} | {r['ncc_before']:+.4f} → {r['ncc_after']:+.4f} | "
                 f"{r['band']:.4f} | {yes(r['in_band'])} | {r['ncc_after_jpeg']:+.4f} ({r['band_jpeg']:.4f}) "
                 f"{yes(r['in_band_jpeg'])} | {r['pce_before']:.1f} → {r['pce_after']:.1f} | {r['colour_shift']:.2f} | "
                 f"{r['spot_shift']:.2f} | {r['seam']:.3f} | "
                 f"{r['tiles']} × {r['iterations_per_tile']:.0f} | {r['seconds']:.0f} | {r['s_per_mp']:.0f} |")
  for r in result.get("competitors", []):
    lines.append(f"| {r['photo']} ({r['method']}) | {r['psnr']:.2f} | "
                 f"{r['ncc_before']:+.4f} → {r['ncc_after']:+.4f} | {r['band']:.4f} | {yes(r['in_band'])} | "
                 f"{r['ncc_after_jpeg']:+.4f} {yes(r['in_band_jpeg'])} | – | {r['colour_shift']:.2f} | "
                 f"{r['spot_shift']:.2f} | – | – | – | – |")
  rows = result["rows"]
  psnr = [r["psnr"] for r in rows] or [float("nan")]
  if rows:
    lines.append(f"\n{len(rows)} photos: PSNR mean {np.mean(psnr):.2f} / min {np.min(psnr):.2f} dB, "
                 f"{sum(r['in_band'] for r in rows)}/{len(rows)} inside their band "
                 f"({sum(r['in_band_jpeg'] for r in rows)}/{len(rows)} after JPEG q85), worst colour shift "
                 f"{max(r['colour_shift'] for r in rows):.2f}, worst spot shift "
                 f"{max(r['spot_shift'] for r in rows):.2f}, worst seam {max(r['seam'] for r in rows):.3f}, "
                 f"{np.mean([r['s_per_mp'] for r in rows]):.0f} s/MP; pooled AUC {result['auc']:.3f} "
                 f"(the same photos unaltered: {result['auc_unaltered']:.3f}); spot shift mean "
                 f"{np.mean([r['spot_shift'] for r in rows]):.2f}.")
  for method in sorted({r["method"] for r in result.get("competitors", [])}):
    sel = [r for r in result["competitors"] if r["method"] == method]
    lines.append(f"{method}: PSNR mean {np.mean([r['psnr'] for r in sel]):.2f} dB, "
                 f"{sum(r['in_band'] for r in sel)}/{len(sel)} inside their band "
                 f"({sum(r['in_band_jpeg'] for r in sel)}/{len(sel)} after JPEG q85), worst colour shift "
                 f"{max(r['colour_shift'] for r in sel):.2f}, spot shift mean "
                 f"{np.mean([r['spot_shift'] for r in sel]):.2f} / worst {max(r['spot_shift'] for r in sel):.2f}.")
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
  for device in sorted({r.device for r in chosen}) if _ANONYMIZE.value else ():
    inputs = ",".join(str(r.path) for r in chosen if r.device == device)
    anonymize_job.anonymize_job(inputs=inputs, workdir=str(workdir / "anonymized"), config=config,
                                fingerprint=str(fps[device]))
  result = _score(naturals, chosen, workdir / "anonymized", fps)
  result["competitors"] = _competitors(naturals, chosen, workdir, fps, result["band"], result["band_jpeg"])
  result["edge_denoiser"] = baselines.inpaint.edge_denoiser("auto")
  layout = anonymize.photo_layout(config, SIDE, SIDE)
  for r in chosen:
    folder = workdir / "anonymized" / common.output_names([r.path])[0]
    if (folder / "anonymized.png").is_file():
      original, anonymized = (_centre(imaging.to_uint8(io.read_image(p))) for p in (r.path, folder / "anonymized.png"))
      io.write_png(workdir / f"crops_{r.path.stem}.png", _crops(original, anonymized, layout))
      others = [imaging.to_uint8(io.read_image(workdir / "competitors" / m / f"{r.path.stem}.png"))
                for m in _COMPETITORS.value]
      io.write_png(workdir / f"flat_{r.path.stem}.png", _flat_figure(original, [anonymized] + others))
  text = _markdown(result)
  (workdir / "whole.md").write_text(f"`{' '.join(sys.argv)}`\n\n{text}\n")
  io.write_json(workdir / "whole.json", {**result, "command": " ".join(sys.argv), "recipe": config.recipe})
  print(text)


if __name__ == "__main__":
  app.run(main)
