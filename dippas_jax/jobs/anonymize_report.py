"""The files of one anonymized photo: anonymized.png (+ settings/*.png), history.jsonl, history.png and, last,
report.png (original, anonymized, amplified difference, block NCC maps before/after) and report.json.

report.json scores what an analyst would: the whole result (photo or crop) against the original — PSNR, the
Eq. 2 NCC and the PCE with the reference fingerprint (and the evaluation fingerprint, if given) before and after,
the NCC's null band (`null_band`), the worst 16×16 colour shift and, for tiled photos, the seam score
(`evaluation.visual`) — plus what produced it (pieces, iterations, γ, the quality target, settings, seconds).
"""

from __future__ import annotations

import math
import pathlib
import sys
import warnings

import jax
import numpy as np

import dippas_jax
from dippas_jax import display as display_lib
from dippas_jax import imaging
from dippas_jax import io
from dippas_jax import plotting
from dippas_jax.dippas import anonymize
from dippas_jax.evaluation import visual
from dippas_jax.jobs import common
from dippas_jax.prnu import attribution
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics

# Two-sided 99 % quantile of N(0, 1): the NCC of a residual with an unrelated pattern of n pixels is ≈ N(0, 1/n).
_Z99 = 2.5758


def setting_name(b, l, t) -> str:
  """File/folder name of a (B, L, τ) setting: `B32_L10_tau38`."""
  return f"B{int(b)}_L{int(l)}_tau{float(t):g}"


def null_band(height: int, width: int) -> float:
  """|NCC| below which a photo of H×W pixels is not attributed at the 1 % level: 2.576 / sqrt(H·W), the 99 %
  band of the NCC of a residual with an unrelated pattern (≈ N(0, 1/n)). On the shared Dresden photos the 99th
  percentile of the other cameras' |NCC| at 512² is 0.0047 against 0.0050 here (BUILD_NOTES)."""
  return _Z99 / math.sqrt(height * width)


def history_rows(pieces: list[anonymize.PieceResult], trace_every: int) -> list[dict]:
  """Per piece and iteration: piece, iteration, loss, psnr, gamma and the traced NCC (None where not traced)."""
  rows = []
  for index, piece in enumerate(pieces):
    hist = piece.history
    traced = {}
    if trace_every > 0:
      traced = {t * trace_every: float(v) for t, v in enumerate(piece.ncc_trace) if np.isfinite(v)}
    rows += [{"piece": index, "iteration": int(hist["step"][t]), "loss": float(hist["loss"][t]),
              "psnr": float(hist["psnr"][t]), "gamma": float(hist["gamma"][t]),
              "ncc": traced.get(int(hist["step"][t]))} for t in range(len(hist.get("step", [])))]
  return rows


def scores(image: np.ndarray, k: np.ndarray, *, sigma: float) -> dict:
  """{'ncc': Eq. 2 NCC, 'pce': PCE (standard, all shifts)} of uint8[H, W, 3] with the fingerprint float[H, W]."""
  w = denoise.extract_residual(image[None], sigma=sigma)
  s = attribution.score_matrices(np.asarray(k, np.float32)[None], np.asarray(w), image[None])
  return {"ncc": float(s["ncc_eq2"][0, 0]), "pce": float(s["pce"][0, 0])}


def block_ncc_map(image: np.ndarray, k: np.ndarray, *, sigma: float) -> np.ndarray:
  """float32[R, C]: the Eq. 2 NCC of each B×B block of uint8[H, W, 3] with K float[H, W]; B the power of two
  nearest min(H, W) / 16 (at least 8); the last partial row and column of blocks are left out."""
  h, w = image.shape[:2]
  size = max(8, 2 ** round(math.log2(max(min(h, w) / 16, 1))))
  size = min(size, h, w)
  hh, ww = h // size * size, w // size * size
  residual = denoise.extract_residual(image[None], sigma=sigma)[:, :hh, :ww]
  gray_k = (denoise.rgb2gray(image[None].astype(np.float32)) * k)[:, :hh, :ww]
  return np.asarray(metrics.block_ncc(residual, gray_k, block_size=size))[0].reshape(hh // size, ww // size)


def _write_report_png(out_dir, original, final, k_ref, report, *, sigma: float, grey: bool, display) -> None:
  """report.png: both images and their block NCC maps as the photo is shown (upright)."""
  ref = report["reference"]
  lines = [f"PSNR            {report['psnr']:.2f} dB", f"NCC before      {ref['ncc_before']:+.4f}",
           f"NCC after       {ref['ncc_after']:+.4f}", f"null band       ±{report['ncc_null_band']:.4f}",
           f"PCE             {ref['pce_before']:.1f} -> {ref['pce_after']:.1f}",
           f"colour shift    {report['colour_shift']['worst']:.2f} grey levels (worst 16×16)",
           f"spot shift      {report['spot_shift']['worst']:.2f} grey levels (worst σ 1.5 blur, flat areas)"]
  if report["seam_score"] is not None:
    lines.append(f"seam score      {report['seam_score']:.3f}")
  lines += [f"pieces          {report['pieces']['count']} ({report['pieces']['iterations_mean']:.0f} it. each)",
            f"seconds         {report['timings_s']['photo']:.0f}",
            f"quality target  {'met' if report['quality_target_met'] else 'MISSED'}"]
  if report["evaluation"] is not None:
    ev = report["evaluation"]
    lines.append(f"eval NCC        {ev['ncc_before']:+.4f} -> {ev['ncc_after']:+.4f}")
  shown = lambda x: display_lib.to_display(x, display)
  plotting.plot_photo_report(out_dir / "report.png", shown(original[..., 0] if grey else original),
                             shown(final[..., 0] if grey else final),
                             shown(block_ncc_map(original, k_ref, sigma=sigma)),
                             shown(block_ncc_map(final, k_ref, sigma=sigma)),
                             title=f"{report['image']} ({report['mode']}, reference K)", lines=lines)


def _write_history(out_dir: pathlib.Path, rows: list[dict], *, title: str, tau_stop: float, taus) -> None:
  with io.atomic_path(out_dir / "history.jsonl") as tmp:
    tmp.write_text("".join(io.to_json(r) + "\n" for r in rows))
  first = [r for r in rows if r["piece"] == 0]  # the first piece's curves (all pieces: history.jsonl)
  steps = np.asarray([r["iteration"] for r in first])
  plotting.plot_history({"step": steps, "psnr": [r["psnr"] for r in first], "gamma": [r["gamma"] for r in first]},
                        out_dir / "history.png", ncc_steps=steps,
                        ncc=np.asarray([np.nan if r["ncc"] is None else r["ncc"] for r in first]),
                        tau_stop=tau_stop, taus=taus, title=title)


def _fingerprint_numbers(original, final, k, *, sigma: float) -> dict:
  before, after = scores(original, k, sigma=sigma), scores(final, k, sigma=sigma)
  return {"ncc_before": before["ncc"], "ncc_after": after["ncc"], "pce_before": before["pce"],
          "pce_after": after["pce"]}


def _settings_numbers(images: dict, original: np.ndarray, k_ref: np.ndarray, *, sigma: float, primary) -> list[dict]:
  return [{"block_size": b, "num_blocks": l, "tau": t, "primary": (b, l, t) == primary,
           "psnr": float(metrics.psnr(image, original)),
           "ncc_reference": float(anonymize.ncc_scores(image[None], k_ref, sigma=sigma)[0])}
          for (b, l, t), image in sorted(images.items())]


def _pieces_numbers(pieces: list[anonymize.PieceResult], primary) -> dict:
  its = np.asarray([p.num_steps for p in pieces])
  return {"count": len(pieces), "iterations": its.tolist(), "iterations_total": int(its.sum()),
          "iterations_mean": float(its.mean()), "stopped_at_tau_stop": int(sum(p.stopped for p in pieces)),
          "gamma_mean": float(np.mean([p.gamma for p in pieces])),
          "best_psnr_dip_min": float(min(p.best_psnr for p in pieces)),
          "candidates_above_tau_min": {f"B{b}_tau{t:g}": int(min(p.pools[(b, t)] for p in pieces))
                                       for (b, t) in pieces[0].pools},
          "below_target": [i for i, p in enumerate(pieces) if p.pools[(primary[0], primary[2])] == 0]}


def output_name(config) -> str:
  """The anonymized photo's file name: anonymized.png or anonymized.jpg (config field output_format)."""
  return "anonymized.jpg" if config.output_format == "jpeg" else "anonymized.png"


def _write_images(out_dir: pathlib.Path, images: dict, primary, *, config, grey: bool, display) -> dict:
  """Writes every setting's image (the primary one as `output_name`), turned and with the colour profile of the
  input (`display`), and returns them as read back from the files (what a user gets, JPEG losses included),
  turned back to the sensor's orientation."""
  suffix = pathlib.Path(output_name(config)).suffix
  written = {}
  for key, image in images.items():
    path = (out_dir / output_name(config) if key == primary
            else out_dir / "settings" / f"{setting_name(*key)}{suffix}")
    pixels = image[..., 0] if grey else image
    if config.output_format == "jpeg":
      io.write_jpeg(path, pixels, quality=int(config.jpeg_quality), display=display)
      written[key] = display_lib.from_display(imaging.to_uint8(io.read_image(path)), display)
    else:
      io.write_png(path, pixels, display=display)
      written[key] = image
  return written


def write_photo(out_dir: pathlib.Path, photo, result: anonymize.PhotoResult, *, config, settings_sha: str, k_info,
                eval_info, k_eval) -> dict:
  """Writes one photo's files (a `jobs.anonymize.Photo` and its `PhotoResult`); returns the report. Stale
  `.partial` files of a killed earlier run are removed first."""
  io.remove_partials(out_dir)
  original = photo.image
  primary = (int(config.block_size), int(config.num_blocks), float(config.tau))
  images = dict(result.outputs)
  if photo.grey:  # a grey photo stays grey: the channel mean, written as a one-channel image
    images = {key: np.repeat(imaging.grey_of(im)[..., None], 3, axis=-1) for key, im in images.items()}
  with warnings.catch_warnings():  # a grey file read back as RGB warns: expected here
    warnings.simplefilter("ignore", UserWarning)
    images = _write_images(out_dir, images, primary, config=config, grey=photo.grey, display=photo.display)
  _write_history(out_dir, history_rows(result.pieces, int(config.trace_every)), title=f"{photo.name} ({config.mode})",
                 tau_stop=config.dip.tau_stop, taus=sorted({k[2] for k in images}))
  k_ref = photo.k if photo.k is not None else np.asarray(denoise.extract_residual(original[None],
                                                                                 sigma=config.sigma))[0]
  final = images[primary]
  h, w = original.shape[:2]
  evaluation = None
  if k_eval is not None:
    k_e = k_eval if k_eval.shape == (h, w) else io.center_crop(k_eval, h, w, name=str(eval_info["file"]))
    evaluation = _fingerprint_numbers(original, final, k_e, sigma=config.sigma)
  pieces = _pieces_numbers(result.pieces, primary)
  report = {
      "image": photo.name, "source": str(photo.record.path), "source_sha256": photo.source_sha, "mode": config.mode,
      "recipe": config.recipe, "backend": jax.default_backend(), "region": photo.region, "grey": photo.grey,
      "display": photo.display.describe(),
      "psnr": float(metrics.psnr(final, original)),
      "reference": _fingerprint_numbers(original, final, k_ref, sigma=config.sigma), "evaluation": evaluation,
      "ncc_null_band": null_band(h, w),
      "colour_shift": visual.colour_shift(final, original) if min(h, w) >= 16 else None,
      "spot_shift": visual.spot_shift(final, original),
      "seam_score": None if result.layout is None else visual.seam_score(final, original, result.layout),
      "quality_target_met": not pieces["below_target"], "pieces": pieces,
      "primary_setting": {"block_size": primary[0], "num_blocks": primary[1], "tau": primary[2]},
      "settings": _settings_numbers(images, original, k_ref, sigma=config.sigma, primary=primary),
      "fingerprint": k_info, "eval_fingerprint": eval_info,
      "timings_s": {"photo": result.seconds, "per_megapixel": result.seconds / (h * w / 1e6)},
      "config": config.to_dict(), "settings_sha256": settings_sha, "dippas_jax_version": dippas_jax.__version__,
      "output": output_name(config), "output_sha256": common.file_sha256(out_dir / output_name(config))}
  for name in ("reference", "evaluation"):
    if report[name] is not None:
      report[name]["inside_null_band"] = abs(report[name]["ncc_after"]) <= report["ncc_null_band"]
  _write_report_png(out_dir, original, final, k_ref, report, sigma=config.sigma, grey=photo.grey,
                    display=photo.display)
  io.write_json(out_dir / "report.json", report)
  return report


def summary_line(name: str, report: dict) -> str:
  """One console line per photo (a warning line follows on stderr when the quality target was missed)."""
  ref = report["reference"]
  band = "inside" if ref["inside_null_band"] else "OUTSIDE"
  seam = "" if report["seam_score"] is None else f", seam {report['seam_score']:.2f}"
  line = (f"{name}: PSNR {report['psnr']:.2f} dB, NCC {ref['ncc_before']:+.4f} -> {ref['ncc_after']:+.4f} ({band} "
          f"±{report['ncc_null_band']:.4f}), colour shift {report['colour_shift']['worst']:.1f}{seam}, "
          f"{report['pieces']['count']} pieces, {report['timings_s']['photo']:.0f} s")
  if not report["quality_target_met"]:
    tau = report["primary_setting"]["tau"]
    print(f"warning: {name}: {len(report['pieces']['below_target'])} piece(s) had no candidate above τ = {tau:g} "
          f"dB (their result is the best-PSNR iterations): below the quality target", file=sys.stderr)
  return line
