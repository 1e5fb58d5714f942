"""The files of one anonymized photo: anonymized.png (+ settings/*.png), history.jsonl, history.png and, last,
report.png (original, anonymized, amplified difference, block NCC maps before/after) and report.json (PSNR and
NCC before/after per setting, whether the quality target was met, what produced it)."""

from __future__ import annotations

import math
import pathlib
import sys

import numpy as np

import dippas_jax
from dippas_jax import imaging
from dippas_jax import io
from dippas_jax import plotting
from dippas_jax.dippas import anonymize
from dippas_jax.dippas import tiling
from dippas_jax.jobs import common
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics


def setting_name(b, l, t) -> str:
  """File/folder name of a (B, L, τ) setting: `B32_L10_tau38`."""
  return f"B{int(b)}_L{int(l)}_tau{float(t):g}"


def history_rows(result: anonymize.AnonymizeResult, i: int) -> list[dict]:
  """Per iteration of piece i: iteration, loss, psnr, gamma and the traced NCC (None where not traced)."""
  hist = {k: v[i] for k, v in result.history.items()}
  traced = {}
  if result.trace_every > 0:
    traced = {t * result.trace_every: float(v) for t, v in enumerate(result.ncc_trace[i]) if np.isfinite(v)}
  return [{"iteration": int(hist["step"][t]), "loss": float(hist["loss"][t]), "psnr": float(hist["psnr"][t]),
           "gamma": float(hist["gamma"][t]), "ncc": traced.get(int(hist["step"][t]))}
          for t in range(len(hist["step"])) if hist["step"][t] >= 0]


def _assembled(pieces: np.ndarray, layout) -> np.ndarray:
  """The photo (or crop) from its pieces [T, h, w, ...]."""
  return np.asarray(tiling.untile(pieces, layout)) if layout is not None else pieces[0]


def _settings_numbers(images: dict, original: np.ndarray, refs: dict, *, sigma: float, primary) -> list[dict]:
  rows = []
  for (b, l, t), image in sorted(images.items()):
    row = {"block_size": b, "num_blocks": l, "tau": t, "primary": (b, l, t) == primary,
           "psnr": float(metrics.psnr(image, original))}
    row.update({f"ncc_{name}": float(anonymize.ncc_scores(image[None], k, sigma=sigma)[0]) for name, k in refs.items()})
    rows.append(row)
  return rows


def block_ncc_map(image: np.ndarray, k: np.ndarray, *, sigma: float) -> np.ndarray:
  """float32[R, C]: the Eq. 2 NCC of each block of uint8[H, W, 3] with K float[H, W], blocks of the largest
  power of two ≤ min(H, W) / 8 that divides both sides (at least 8 blocks a side where the size allows)."""
  h, w = image.shape[:2]
  size = max((b for b in (8, 16, 32, 64, 128, 256) if h % b == 0 and w % b == 0 and b <= min(h, w) // 8),
             default=math.gcd(h, w))
  residual = denoise.extract_residual(image[None], sigma=sigma)
  gray_k = denoise.rgb2gray(image[None].astype(np.float32)) * k
  return np.asarray(metrics.block_ncc(residual, gray_k, block_size=size))[0].reshape(h // size, w // size)


def _write_report_png(out_dir, original, final, k_ref, report, *, sigma: float, grey: bool) -> None:
  before, after = report["ncc_before"]["reference"], report["ncc_after"]["reference"]
  lines = [f"PSNR            {report['psnr']:.2f} dB", f"NCC before      {before:+.4f}",
           f"NCC after       {after:+.4f}", f"iterations      {report['iterations']}",
           f"gamma           {report['gamma']:.3g}",
           f"quality target  {'met' if report['quality_target_met'] else 'MISSED'}"]
  if "evaluation" in report["ncc_before"]:
    lines += [f"eval NCC        {report['ncc_before']['evaluation']:+.4f} -> {report['ncc_after']['evaluation']:+.4f}"]
  plotting.plot_photo_report(out_dir / "report.png", original[..., 0] if grey else original,
                             final[..., 0] if grey else final, block_ncc_map(original, k_ref, sigma=sigma),
                             block_ncc_map(final, k_ref, sigma=sigma),
                             title=f"{report['image']} ({report['mode']}, reference K)", lines=lines)


def _write_history(out_dir: pathlib.Path, rows: list[dict], *, title: str, tau_stop: float, taus) -> None:
  with io.atomic_path(out_dir / "history.jsonl") as tmp:
    tmp.write_text("".join(io.to_json(r) + "\n" for r in rows))
  steps = np.asarray([r["iteration"] for r in rows])
  plotting.plot_history({"step": steps, "psnr": [r["psnr"] for r in rows], "gamma": [r["gamma"] for r in rows]},
                        out_dir / "history.png", ncc_steps=steps,
                        ncc=np.asarray([np.nan if r["ncc"] is None else r["ncc"] for r in rows]),
                        tau_stop=tau_stop, taus=taus, title=title)


def write_photo(out_dir: pathlib.Path, photo, result: anonymize.AnonymizeResult, span: slice, *, config,
                timings: dict, source_sha: str, settings_sha: str, k_info, eval_info, k_eval) -> dict:
  """Writes one photo's files (a `jobs.anonymize.Photo`, its pieces `span` of the batch's result); returns the
  report. Stale `.partial` files of a killed earlier run are removed first."""
  io.remove_partials(out_dir)
  original = _assembled(photo.pieces, photo.layout)
  images = {key: _assembled(out[span], photo.layout).astype(np.uint8) for key, out in result.outputs.items()}
  if photo.grey:  # a grey photo stays grey: the channel mean, written as a one-channel PNG
    images = {key: np.repeat(imaging.grey_of(im)[..., None], 3, axis=-1) for key, im in images.items()}
  for key, image in images.items():
    path = out_dir / "anonymized.png" if key == result.primary else out_dir / "settings" / f"{setting_name(*key)}.png"
    io.write_png(path, image[..., 0] if photo.grey else image)
  rows = history_rows(result, span.start)
  _write_history(out_dir, rows, title=f"{photo.name} ({config.mode})", tau_stop=config.dip.tau_stop,
                 taus=sorted({k[2] for k in result.outputs}))
  refs = {"reference": _assembled(result.k_ref[span][..., None], photo.layout)[..., 0]}
  if k_eval is not None:
    refs["evaluation"] = k_eval if k_eval.shape == original.shape[:2] else io.center_crop(
        k_eval, *original.shape[:2], name=str(eval_info["file"]))
  pools = {key: int(v[span].min()) for key, v in result.pool_sizes.items()}
  primary_pool = pools[(result.primary[0], result.primary[2])]
  settings = _settings_numbers(images, original, refs, sigma=config.sigma, primary=result.primary)
  main = next(s for s in settings if s["primary"])
  report = {
      "image": photo.name, "source": str(photo.record.path), "source_sha256": source_sha, "mode": config.mode,
      "region": photo.region, "grey": photo.grey, "psnr": main["psnr"],
      "ncc_before": {n: float(anonymize.ncc_scores(original[None], k, sigma=config.sigma)[0]) for n, k in refs.items()},
      "ncc_after": {n: main[f"ncc_{n}"] for n in refs},
      "quality_target_met": primary_pool > 0, "candidates_above_tau": primary_pool,
      "primary_setting": {"block_size": result.primary[0], "num_blocks": result.primary[1], "tau": result.primary[2]},
      "iterations": int(result.num_steps[span].max()), "stopped_at_tau_stop": bool(result.stopped[span].all()),
      "gamma": float(result.gamma[span].mean()), "best_psnr_dip": float(result.best_psnr[span].min()),
      "candidates_kept": {f"B{b}_tau{t:g}": n for (b, t), n in pools.items()}, "settings": settings,
      "tiles": None if photo.layout is None else {"count": span.stop - span.start,
                                                  "iterations": result.num_steps[span].tolist(),
                                                  "gamma": result.gamma[span].tolist()},
      "fingerprint": k_info, "eval_fingerprint": eval_info, "timings_s": timings, "config": config.to_dict(),
      "settings_sha256": settings_sha, "dippas_jax_version": dippas_jax.__version__,
      "png_sha256": common.file_sha256(out_dir / "anonymized.png")}
  _write_report_png(out_dir, original, images[result.primary], refs["reference"], report, sigma=config.sigma,
                    grey=photo.grey)
  io.write_json(out_dir / "report.json", report)
  return report


def print_line(name: str, report: dict) -> None:
  """One console line per photo; a warning line when the quality target was missed."""
  before, after = report["ncc_before"]["reference"], report["ncc_after"]["reference"]
  print(f"{name}: PSNR {report['psnr']:.2f} dB, NCC {before:+.4f} -> {after:+.4f}, γ {report['gamma']:.3g}, "
        f"{report['iterations']} iterations")
  if not report["quality_target_met"]:
    tau = report["primary_setting"]["tau"]
    print(f"warning: {name}: no candidate reached τ = {tau:g} dB; the result is the best-PSNR iterations "
          f"(PSNR {report['psnr']:.2f} dB): below the quality target", file=sys.stderr)
