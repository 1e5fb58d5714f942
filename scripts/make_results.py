r"""Turns a `dippas-evaluate` workdir into RESULTS.md (tables) and results/*.png (the plots, downscaled).

    python -m dippas_jax.apps.evaluate --images=../shared/data/dresden/manifest.csv --workdir=/tmp/eval_dresden \
        --config=configs/evaluate.py:cpu
    python scripts/make_results.py --workdir=/tmp/eval_dresden --wall="21 min" \
        --command="python -m dippas_jax.apps.evaluate ..."

Everything in the tables is read from `<workdir>/summary.json` (nothing is recomputed here); the plots are the
job's PNGs, rescaled to `--dpi` (the job writes 110 dpi) so that the committed files stay small.
"""

from __future__ import annotations

import json
import math
import pathlib

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parents[1]
FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "The evaluation workdir (summary.json, plots).", required=True)
flags.DEFINE_string("out", str(REPO / "RESULTS.md"), "Markdown file to write.")
flags.DEFINE_string("results_dir", str(REPO / "results"), "Folder for the plot PNGs (relative links from --out).")
flags.DEFINE_string("command", "", "The exact command that produced the workdir (recorded verbatim).")
flags.DEFINE_string("wall", "", "Wall time of that command (recorded verbatim).")
flags.DEFINE_string("machine", "2 shared CPU cores (other jobs running), no GPU", "Where it ran.")
flags.DEFINE_string("notes", "", "Optional markdown file appended as a 'Notes' section (cross-checks, caveats).")
flags.DEFINE_integer("dpi", 80, "Resolution of the copied plots (the job writes 110 dpi).")
flags.DEFINE_string("per_photo", "", "A 'method/config' whose per-photo figures (results.csv) are tabulated, e.g. "
                    "'dippas/B32_L10_tau38'.")
flags.DEFINE_string("title", "CPU protocol on the shared Dresden photos", "Title of the section.")
flags.DEFINE_boolean("section", False, "Write only the section (no document header, no GPU note), to be "
                     "assembled with others into RESULTS.md.")

_VARIANT_TEXT = {
    "original_negatives": "negatives = the other devices' ORIGINAL photos (what the DIPPAS authors' scripts did)",
    "anonymized_negatives": "negatives = the other devices' ANONYMIZED photos",
}


def _f(v, spec: str = ".3f") -> str:
  if v is None:
    return "n/a"
  if isinstance(v, str):
    return "∞" if v == "inf" else v
  if isinstance(v, float) and not math.isfinite(v):
    return "∞" if v > 0 else "n/a"
  return f"{v:{spec}}"


def _signed(v) -> str:
  return "n/a" if v is None else f"{v:+.3f}"


def _copy_plots(workdir: pathlib.Path, out_dir: pathlib.Path, names, dpi: int) -> list[str]:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out_dir.mkdir(parents=True, exist_ok=True)
  copied = []
  for name in names:
    src = workdir / name
    if not src.is_file():
      continue
    im = Image.open(src)
    scale = dpi / 110.0
    if scale < 1:
      im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    im.convert("RGB").save(out_dir / name, format="PNG", optimize=True)
    copied.append(name)
  return copied


def _protocol_lines(s: dict) -> list[str]:
  p, c = s["protocol"], s["config"]
  d = c["dippas"]
  dip = d["dip"]
  e = c["edges"]
  per_dev = ", ".join(f"{k} {v}" for k, v in p["images_per_device"].items())
  split = p.get("fingerprint_split")
  fingerprints = (
      f"- **Fingerprints**: per device, the flat-fields of the manifest sorted by file name and split by "
      f"alternation into two disjoint halves ({len(p['fingerprints'])} devices): positions 0, 2, … → the "
      "fingerprint every method is given and the paper-protocol, PCE, JPEG and resize columns score with; "
      "1, 3, … → the attacker's fingerprint (ML estimate, σ = "
      f"{split['sigma']:g}, on {split['flatfield_crop'][0]}² centre crops, then centre-cropped)." if split else
      f"- **Fingerprints**: `{p['fingerprint_spec']}` ({len(p['fingerprints'])} devices), centre-cropped to the "
      "same size (no attacker's fingerprint).")
  lines = [
      f"- **Photos**: {p['num_images']} natural photos ({per_dev}), `{p['images']}`, centre crop "
      f"{p['crop'][0]}×{p['crop'][1]} (the same crop for every method and for the fingerprints).",
      fingerprints,
      f"- **Scores**: DIPPAS Eq. 2 NCC, `NCC(W(J), gray(J) ⊙ K)`, residual W by the wavelet denoiser with "
      f"σ = {p['sigma']:g}; edge-only NCC on the pixels of `evaluation.edge_mask` of the original photo "
      f"(our wavelet denoiser σ = {e['denoiser_sigma']:g}, then skimage Canny σ = {e['canny_sigma']:g}, "
      f"thresholds {e['low_threshold']:g}/{e['high_threshold']:g}, dilation by a disk of radius {e['radius']}).",
      "- **Protocol**: for each device d, positives = the anonymized photos of d scored against K_d, negatives = "
      "the photos of the other devices scored against K_d; pooled = the union over devices. AUC and TPR at "
      f"FPR = {p['fpr_target']:g} from the pooled ROC; PSNR (dB) of the saved uint8 PNG against the original crop, "
      "mean over the photos the method changed (¹ below).",
  ]
  methods = list(s["results"])
  baseline_bits = []
  for name, opts in c["baselines"].items():
    if name in methods:
      baseline_bits.append(f"`{name}` ({', '.join(f'{k}={v}' for k, v in opts.items())})")
  if baseline_bits:
    lines.append("- **Baselines** (`dippas_jax/evaluation/baselines/`; tuple values are swept): " + "; ".join(baseline_bits)
                 + ".")
  if any(m.startswith("dippas") for m in methods):
    model, opt = dip["model"], dip["optimizer"]
    lines.append(
        f"- **DIPPAS** ({d['mode']}, injection `{dip['injection']}`): MultiRes U-Net filters {tuple(model['filters'])}, "
        f"skips {tuple(model['skips'])}, input depth {model['input_depth']}, sigmoid gradient floor "
        f"{model['sigmoid_grad_floor']:g}, input perturbation σ {dip['noise']['reg_std']:g}, optimizer "
        f"`{opt['name']}` lr {opt['learning_rate']:g} (warm-up {opt['warmup_steps']} steps, γ at "
        f"{opt['gamma_lr_factor']:g}× the lr), ≤ {dip['max_steps']} iterations, τ_stop {dip['tau_stop']:g} dB, "
        f"rank key `{d['rank_key']}`, `{d['rounding']}` rounding, seed {p['seed']}; primary setting B "
        f"{d['block_size']}, L {d['num_blocks']}, τ {d['tau']:g}; one optimization per photo serves every "
        "(B, L, τ) with B ∈ "
        f"{tuple(d['sweep']['block_sizes'])}, L ∈ {tuple(d['sweep']['num_blocks'])}, "
        f"τ ∈ {tuple(d['sweep']['taus'])} (when no iteration reaches τ, the pool is the best-PSNR iterations).")
  return lines


def _table(s: dict, variant: str) -> list[str]:
  lines = ["| method | config | mean PSNR (dB)¹ | pooled AUC | TPR @ 1 % FPR | edge-only AUC | (AUC_edges − AUC)/AUC |",
           "|---|---|---:|---:|---:|---:|---:|"]
  for r in s["table"]:
    if r["variant"] != variant:
      continue
    psnr = "∞" if r["mean_psnr_changed"] is None else _f(r["mean_psnr_changed"], ".2f")
    if r["num_unchanged"] and r["mean_psnr_changed"] is not None:
      psnr += f" ({r['num_unchanged']} unchanged)"
    lines.append(f"| {r['method']} | {r['config']} | {psnr} | {_f(r['auc'])} | "
                 f"{_f(r['tpr_at_fpr'])} | {_f(r['auc_edges'])} | {_signed(r['relative_change'])} |")
  return lines


def _adversaries(s: dict) -> list[str]:
  """The stronger-adversaries table (issue 21), variant original_negatives; [] for an older summary."""
  rows = [r for r in s["table"] if r["variant"] == "original_negatives" and "auc_pce" in r]
  if not rows:
    return []
  a = s["protocol"]["adversaries"]
  extra = [k for k in rows[0] if k.startswith(("auc_jpeg", "auc_resize"))]
  head = {k: (f"JPEG q{k.removeprefix('auc_jpeg')}" if "jpeg" in k else f"resize ×{k.removeprefix('auc_resize')}")
          for k in extra}
  d, pce = a["detector"], a["pce"]
  search = "every circular shift" if pce["shift_range"] < 0 else f"shifts ≤ {pce['shift_range']} pixels"
  lines = [
      f"Every AUC is pooled, with the other devices' original photos put through the same processing as negatives. "
      f"PCE: peak searched over {search}, {2 * pce['radius'] + 1}² exclusion; attributed = PCE > {pce['threshold']:g} with the photo's own "
      "device (Goljan, Fridrich & Filler 2009). Attacker = the other half of the flat-fields (NCC; in band = "
      "inside the non-matching band of that fingerprint). Detector = AUC over tiles, mean ± std over "
      f"{d['folds']} photo-disjoint folds ({d['tile']}² tiles, features `{d['features']}`, seed {d['seed']}; run "
      f"on the configs of scope `{d['scope']}`).", "",
      "| method | config | NCC AUC | PCE AUC | PCE > 60 | attacker AUC | in band (attacker) | "
      + " | ".join(head[k] for k in extra) + " | detector ResNet | detector logistic |",
      "|---|---|" + "---:|" * (5 + len(extra) + 2)]
  for r in rows:
    def det(name):
      m, sd = r[f"detector_{name}_auc"], r[f"detector_{name}_std"]
      return "—" if m is None else f"{m:.2f} ± {_f(sd, '.2f')}"
    band = "n/a" if r["in_band_attacker"] is None else f"{r['in_band_attacker']}/{r['num_images']}"
    lines.append(f"| {r['method']} | {r['config']} | {_f(r['auc'])} | {_f(r['auc_pce'])} | "
                 f"{_f(r['attributed_pce'], '.2f')} | {_f(r['auc_attacker'])} | {band} | "
                 + " | ".join(_f(r[k]) for k in extra) + f" | {det('resnet')} | {det('logistic')} |")
  return lines


def _per_device(s: dict, variant: str) -> list[str]:
  devices = list(s["protocol"]["images_per_device"])
  lines = ["| method | config | " + " | ".join(devices) + " |", "|---|---|" + "---:|" * len(devices)]
  for method, configs in s["results"].items():
    for label, entry in configs.items():
      per = entry["metrics"][variant]["ncc"]["per_device"]
      lines.append(f"| {method} | {label} | " + " | ".join(_f(per[d]["auc"], ".2f") for d in devices) + " |")
  return lines


def _per_photo_table(workdir: pathlib.Path, label: str) -> list[str]:
  import csv  # pylint: disable=g-import-not-at-top
  method, config = label.split("/", 1)
  with open(workdir / "results.csv", newline="") as f:
    rows = [r for r in csv.DictReader(f) if r["method"] == method and r["config"] == config]
  if not rows:
    raise ValueError(f"no rows of {label} in {workdir / 'results.csv'}")
  runs = workdir / "images" / method / "_runs"  # the DIP record of each photo (iterations, batch seconds)
  lines = [f"Per photo, `{label}` (NCC = Eq. 2 with the device fingerprint; band = 99th percentile of |NCC| of the "
           "other devices' original photos with it; s/photo = its batch's DIP seconds / photos in the batch):", "",
           "| photo | PSNR (dB) | NCC before → after | band | in band | iterations | s/photo |",
           "|---|---:|---|---:|:---:|---:|---:|"]
  for r in rows:
    path = runs / f"{r['image']}.json"
    run = json.loads(path.read_text()) if path.is_file() else {}
    its = run.get("iterations", "n/a")
    secs = ("n/a" if not run else _f(run["seconds"], ".1f") if "seconds" in run
            else _f(run["batch_seconds"] / run["batch_images"], ".1f"))
    lines.append(f"| {r['image']} | {float(r['psnr']):.2f} | {float(r['ncc_original']):+.4f} → "
                 f"{float(r['ncc']):+.4f} | {float(r['band']):.4f} | {'yes' if r['in_band'] == 'True' else 'NO'} | "
                 f"{its} | {secs} |")
  return lines + [""]


def _dip_lines(s: dict) -> list[str]:
  out = []
  for method, runs in (s.get("dippas_runs") or {}).items():
    if runs:
      out.append(f"- `{method}`: {runs['images']} photos, mean {runs['mean_iterations']:.0f} iterations, "
                 f"{runs['stopped_at_tau_stop']} stopped at τ_stop, mean best DIP PSNR "
                 f"{runs['mean_best_psnr_dip']:.2f} dB, mean final γ {runs['mean_gamma']:.3g}.")
  return out


def make(workdir: pathlib.Path, out: pathlib.Path, results_dir: pathlib.Path, *, command: str, wall: str,
         machine: str, dpi: int, notes: str = "", title: str = "", section: bool = False,
         per_photo: str = "") -> str:
  s = json.loads((workdir / "summary.json").read_text())
  plots = _copy_plots(workdir, results_dir, s["plots"], dpi)
  rel = results_dir.relative_to(out.parent) if results_dir.is_relative_to(out.parent) else results_dir
  t = s["timings_s"]
  head = [] if section else [
      "# Results",
      "",
      "Generated by `scripts/make_results.py` from the `summary.json` of one `dippas-evaluate` run; every number "
      "below comes from that run (per-image values in its `results.csv`, not committed).",
      ""]
  lines = [
      *head,
      f"## {title}",
      "",
      "```",
      command or "(command not recorded)",
      "```",
      "",
      f"Wall time: {wall or 'n/a'}. Machine: {machine}.",
      "",
      (f"The summary used here is from a run that computed {s['work']['computed']} of the {s['work']['items']} "
       "(method, config, photo) items and reused the rest from the workdir (job timings: "
       + ", ".join(f"{k} {v:.0f} s" for k, v in t.items()) + ").") if s["work"]["computed"] else
      (f"The summary used here is from a rerun of the same command on the same workdir: all {s['work']['items']} "
       "(method, config, photo) items reused from the saved PNGs, every metric recomputed from them "
       f"({t['total']:.0f} s)."),
      "",
      *_protocol_lines(s),
      "",
  ]
  dip = _dip_lines(s)
  if dip:
    lines += ["DIP runs:", "", *dip, ""]
  for variant in ("original_negatives", "anonymized_negatives"):
    lines += [f"### Variant `{variant}`: {_VARIANT_TEXT[variant]}", "", *_table(s, variant), ""]
  lines += ["¹ Mean PSNR of the saved PNGs against the original crops over the photos the method changed; a "
            "PRNU-aware baseline leaves a photo unchanged (PSNR ∞) when its NCC with K is already ≤ 0, and their "
            "number is given in brackets (all photos still count in the AUC). The original photos: ∞.", ""]
  adversaries = _adversaries(s)
  if adversaries:
    lines += ["### Stronger adversaries", "", *adversaries, ""]
  if per_photo:
    lines += _per_photo_table(workdir, per_photo)
  lines += ["Per-device AUC (variant `original_negatives`; one or a few photos per device, so these are coarse):",
            "", *_per_device(s, "original_negatives"), ""]
  if plots:
    lines += ["### Plots", ""]
    for name in plots:
      lines.append(f"![{name}]({rel / name})")
      lines.append("")
  if notes:
    lines += ["### Notes", "", notes.strip(), ""]
  lines += [] if section else [
      "## GPU 512² paper protocol",
      "",
      "Not run (no GPU in this session). The command is the one above with `--config=configs/evaluate.py` (512² "
      "crops, the paper's DIP and the B × τ grid of Figs. 10–13).",
      "",
  ]
  text = "\n".join(lines)
  out.write_text(text)
  return text


def main(argv):
  del argv
  text = make(pathlib.Path(FLAGS.workdir), pathlib.Path(FLAGS.out), pathlib.Path(FLAGS.results_dir),
              command=FLAGS.command, wall=FLAGS.wall, machine=FLAGS.machine, dpi=FLAGS.dpi,
              notes=pathlib.Path(FLAGS.notes).read_text() if FLAGS.notes else "", title=FLAGS.title,
              section=FLAGS.section, per_photo=FLAGS.per_photo)
  print(text)


if __name__ == "__main__":
  app.run(main)
