r"""DIPPAS on real photos, every variant side by side in one run: PSNR, NCC against the non-matching band,
iterations, seconds, pooled AUC (the issue's quality benchmark; `dippas-evaluate` underneath).

  python scripts/benchmark_quality.py --crop=128 --workdir=runs/quality128            # the 16 photos, 128² (quick)
  python scripts/benchmark_quality.py --crop=256 --workdir=runs/quality256            # the full check
  python scripts/benchmark_quality.py --crop=128 --variants=dippas --photos=4 --workdir=runs/q  # a smoke run

Photos: the shared Dresden natural photos with the shared σ = 3 fingerprints (centre crops). Variants: 'dippas'
(the anonymize config 'cpu', this project's CPU default) and the keys of `configs/evaluate.py`'s
`dippas_variants` (e.g. 'dippas_paper_cold': today's paper DIP from a cold start, lr 1e-3, ≤ 2,000 iterations).
Reruns reuse finished photos. Prints one markdown table (also `<workdir>/quality.md`, and `quality.json`).
"""

from __future__ import annotations

import pathlib
import sys

from absl import app
from absl import flags

from dippas_jax import io
from dippas_jax.configs import arguments
from dippas_jax.configs import evaluate as evaluate_config
from dippas_jax.evaluation import protocol
from dippas_jax.jobs import evaluate as evaluate_job

REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED = flags.DEFINE_string("shared", str(REPO.parent / "shared"), "The shared folder (data, reference).")
_CROP = flags.DEFINE_enum("crop", "128", ["128", "256", "512"], "Centre crop of the photos.")
_VARIANTS = flags.DEFINE_list("variants", ["dippas", "dippas_paper_cold", "dippas_lr_only"], "DIPPAS variants.")
_PHOTOS = flags.DEFINE_integer("photos", 0, "Use only this many photos (round robin over the devices; 0 = all).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (reruns reuse it).", required=True)
_OVERRIDES = flags.DEFINE_list("set", [], "Extra config overrides field=value (configs/arguments.py syntax).")
BASE = {"128": "cpu", "256": "cpu256", "512": "cpu512"}


def _manifest(shared: pathlib.Path, workdir: pathlib.Path, count: int) -> str:
  records = io.list_images(str(shared / "data" / "dresden" / "manifest.csv"), kind="natural")
  if count:
    records = protocol.interleave_devices(records)[:count]
  path = workdir / "photos.csv"
  io.write_csv(path, [{"file": str(r.path), "device": r.device, "kind": "natural"} for r in records])
  return str(path)


def _row(name: str, summary: dict) -> dict:
  entry = summary["results"][name]
  label = next(iter(entry))  # one (B, L, τ): the config's primary setting
  e = entry[label]
  auc = {v: e["metrics"][v]["ncc"]["pooled"]["auc"] for v in ("original_negatives", "anonymized_negatives")}
  runs = summary["dippas_runs"].get(name) or {}
  return {"variant": name, "setting": label, "photos": e["num_images"], "iterations_total": runs.get("total_iterations"),
          "iterations_mean": runs.get("mean_iterations"), "iterations_max": runs.get("max_iterations"),
          "psnr_mean": e["mean_psnr"], "psnr_min": e["min_psnr"], "in_band": e["in_band"],
          "auc": auc["original_negatives"], "auc_dist": abs(auc["original_negatives"] - 0.5),
          "auc_anonymized_negatives": auc["anonymized_negatives"], "ncc_mean": e["mean_ncc"],
          "seconds_per_photo": runs.get("seconds_per_photo")}


def _markdown(rows: list[dict], original_auc: float) -> str:
  head = ("| variant | setting | photos | iterations total (mean, max) | PSNR mean / min (dB) | in band | AUC | "
          "\\|AUC − 0.5\\| | AUC (anon. neg.) | mean NCC | s/photo |\n|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|")
  lines = [head]
  for r in rows:
    lines.append(f"| {r['variant']} | {r['setting']} | {r['photos']} | {r['iterations_total']} "
                 f"({r['iterations_mean']:.0f}, {r['iterations_max']}) | {r['psnr_mean']:.2f} / {r['psnr_min']:.2f} | "
                 f"{r['in_band']}/{r['photos']} | {r['auc']:.3f} | {r['auc_dist']:.3f} | "
                 f"{r['auc_anonymized_negatives']:.3f} | {r['ncc_mean']:+.4f} | {r['seconds_per_photo']:.1f} |")
  lines.append(f"\nUnaltered photos: pooled AUC {original_auc:.3f}.")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  workdir = pathlib.Path(_WORKDIR.value)
  workdir.mkdir(parents=True, exist_ok=True)
  config = evaluate_config.get_config(BASE[_CROP.value])
  config.unlock()
  config.dippas.sweep.block_sizes, config.dippas.sweep.num_blocks, config.dippas.sweep.taus = (), (), ()
  arguments.apply(config, [tuple(o.split("=", 1)) for o in _OVERRIDES.value])
  shared = pathlib.Path(_SHARED.value)
  summary = evaluate_job.evaluate_job(
      images=_manifest(shared, workdir, _PHOTOS.value),
      fingerprints=str(shared / "reference" / "prnu_python" / "fingerprints" / "*_sigma3.npy"),
      workdir=str(workdir), config=config, methods=["original"] + list(_VARIANTS.value))
  rows = [_row(name, summary) for name in _VARIANTS.value]
  original = summary["results"]["original"]["photo"]["metrics"]["original_negatives"]["ncc"]["pooled"]["auc"]
  text = _markdown(rows, original)
  (workdir / "quality.md").write_text(f"`{' '.join(sys.argv)}`\n\n{text}\n")
  io.write_json(workdir / "quality.json", {"rows": rows, "original_auc": original, "command": " ".join(sys.argv)})
  print(text)


if __name__ == "__main__":
  app.run(main)
