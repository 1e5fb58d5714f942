"""The evaluation's numbers and pictures, all computed from the saved PNGs: per-image metrics, the attribution
protocol per method/config, the tables of RESULTS.md, the plots, the console table (see `jobs.evaluate`)."""

from __future__ import annotations

import json
import math
import pathlib
import sys
from typing import Sequence

import numpy as np
from tqdm import tqdm

from dippas_jax import io
from dippas_jax import plotting
from dippas_jax.evaluation import edges as edges_lib
from dippas_jax.evaluation import protocol as evaluation
from dippas_jax.jobs import evaluate_methods
from dippas_jax.prnu import metrics

ORIGINAL = evaluate_methods.ORIGINAL


def dippas_runs(runs_dir: pathlib.Path, names: Sequence[str]) -> dict | None:
  """Mean DIP statistics over the photos whose run record exists (None if none)."""
  records = []
  for name in names:
    try:
      records.append(json.loads((runs_dir / f"{name}.json").read_text()))
    except (OSError, ValueError):
      pass
  if not records:
    return None
  iterations = [r["iterations"] for r in records]
  return {"images": len(records), "total_iterations": int(sum(iterations)), "max_iterations": int(max(iterations)),
          "mean_iterations": float(np.mean(iterations)),
          "seconds_per_photo": float(np.mean([_seconds(r) for r in records])),
          "stopped_at_tau_stop": int(sum(r["stopped_at_tau_stop"] for r in records)),
          "mean_best_psnr_dip": float(np.mean([r["best_psnr_dip"] for r in records])),
          "mean_gamma": float(np.mean([r["gamma"] for r in records]))}


def _seconds(record: dict) -> float:
  """A DIPPAS photo's seconds: its own ('seconds', the streamed queue) or its batch's share (older records)."""
  return float(record["seconds"]) if "seconds" in record else record["batch_seconds"] / record["batch_images"]


def _pooled(entry: dict, variant: str, kind: str = "ncc") -> dict:
  return entry["metrics"][variant][kind]["pooled"]


def table_rows(results: dict, fpr_target: float) -> list[dict]:
  """Flat rows per (method, config, variant): the pooled numbers of the tables in RESULTS.md."""
  rows = []
  tpr_key = f"tpr_at_fpr_{fpr_target:g}"
  for method, configs in results.items():
    for label, entry in configs.items():
      for variant in evaluation.VARIANTS:
        pooled = _pooled(entry, variant)
        edges = entry["metrics"][variant].get("ncc_edges", {}).get("pooled", {})
        table = entry["metrics"][variant].get("edges_table", {}).get("pooled", {})
        rows.append({"method": method, "config": label, "variant": variant,
                     "mean_psnr": entry["mean_psnr"], "median_psnr": entry["median_psnr"],
                     "mean_psnr_changed": entry["mean_psnr_changed"], "num_unchanged": entry["num_unchanged"],
                     "auc": pooled["auc"], "tpr_at_fpr": pooled[tpr_key], "auc_edges": edges.get("auc"),
                     "relative_change": table.get("relative_change"),
                     "mean_ncc": entry["mean_ncc"], "num_positives": pooled["num_positives"],
                     "num_negatives": pooled["num_negatives"], "min_psnr": entry["min_psnr"],
                     "in_band": entry["in_band"], "num_images": entry["num_images"],
                     **adversary_columns(entry.get("adversaries"), variant)})
  return rows


def adversary_columns(adv: dict | None, variant: str) -> dict:
  """The adversary columns of a table row (issue 21; None where not computed): AUC of the PCE with the
  anonymizer's fingerprint and the fraction attributed at PCE > threshold, the attacker-fingerprint AUC (NCC)
  and its in-band count, the AUC after each JPEG quality and resize, the detectors' AUC mean and std over folds."""
  if not adv:
    return {}
  out = {"auc_pce": adv["pce"][variant], "attributed_pce": adv["attributed_pce"],
         "auc_attacker": adv["attacker"][variant] if "attacker" in adv else None,
         "auc_attacker_pce": adv["attacker_pce"][variant] if "attacker_pce" in adv else None,
         "in_band_attacker": adv.get("in_band_attacker"),
         "attributed_pce_attacker": adv.get("attributed_pce_attacker")}
  for name, value in adv.items():
    if name.startswith(("jpeg", "resize")):
      out[f"auc_{name}"] = value[variant]
  det = adv.get("detector") or {}
  for name in ("resnet", "logistic"):
    out[f"detector_{name}_auc"] = det.get(name, {}).get("auc_mean")
    out[f"detector_{name}_std"] = det.get(name, {}).get("auc_std")
  return out


def _best_configs(results: dict, variant: str) -> dict[str, str]:
  """Per method, the config with the lowest pooled AUC (ties: the higher mean PSNR)."""
  best = {}
  for method, configs in results.items():
    def key(label):
      auc = _pooled(configs[label], variant)["auc"]
      psnr = configs[label]["mean_psnr_changed"]
      return (math.inf if auc is None else auc, -(psnr if psnr is not None else 1e9))
    best[method] = min(configs, key=key)
  return best


def plots(workdir: pathlib.Path, results: dict, curves: dict, ncc: dict, title: str) -> list[str]:
  written = []
  for variant in evaluation.VARIANTS:
    points = []
    for m, cfgs in results.items():
      for label, e in cfgs.items():
        name, short = m, (label if len(cfgs) > 1 else "")
        setting = e["options"].get("setting")
        if setting is not None:  # DIPPAS: one line per block size B, points labelled by L and τ.
          name, short = f"{m} B{int(setting[0])}", f"L{int(setting[1])} τ{float(setting[2]):g}"
        points.append({"method": name, "config": short, "auc": _pooled(e, variant)["auc"],
                       "mean_psnr": e["mean_psnr_changed"]})
    path = workdir / f"auc_vs_psnr_{variant}.png"
    reference = _pooled(results[ORIGINAL]["photo"], variant)["auc"] if ORIGINAL in results else None
    plotting.plot_auc_vs_psnr(points, path, title=f"AUC vs PSNR ({variant.replace('_', ' ')}), {title}",
                              reference_auc=reference)
    written.append(path.name)
    best = _best_configs(results, variant)
    chosen = {f"{m}" if len(results[m]) == 1 else f"{m} {label}": curves[variant][(m, label)]
              for m, label in best.items() if curves[variant].get((m, label)) is not None}
    if chosen:
      path = workdir / f"roc_{variant}.png"
      plotting.plot_roc_curves(chosen, path, title=f"Pooled ROC ({variant.replace('_', ' ')}), {title}")
      written.append(path.name)
  best = _best_configs(results, evaluation.VARIANTS[0])
  hist = {}
  for m, label in best.items():
    hist["photos" if m == ORIGINAL else (m if len(results[m]) == 1 else f"{m} {label}")] = ncc[(m, label)]
  path = workdir / "ncc_hist.png"
  plotting.plot_ncc_histograms(hist, path, title=f"NCC with the device fingerprint, {title}")
  written.append(path.name)
  return written


def _run_record(folder: pathlib.Path) -> dict | None:
  """What a baseline reported about its run (`run.json`, e.g. the edge denoiser), None if nothing."""
  try:
    return json.loads((folder / "run.json").read_text())
  except (OSError, ValueError):
    return None


def _mean_or_none(values) -> float | None:
  v = np.asarray(values, np.float64)
  return float(np.mean(v)) if v.size else None


def evaluate(data: evaluate_methods.Dataset, mcs: list[evaluate_methods.MethodConfig], folders: dict,
             config) -> tuple[dict, list[dict], dict, dict]:
  """Metrics of every method/config from its saved PNGs (see the module docstring); per photo also the
  non-matching band of its device (`protocol.non_matching_band`) and whether its NCC lies inside."""
  sigma = float(config.sigma)
  bs = int(config.batch_size)
  dev_index = np.asarray([data.devices.index(d) for d in data.image_devices])
  k_per_image = data.fingerprints[dev_index]
  e = config.edges
  masks = edges_lib.edge_mask(data.images, radius=int(e.radius), canny_sigma=float(e.canny_sigma),
                              denoiser_sigma=float(e.denoiser_sigma), low_threshold=float(e.low_threshold),
                              high_threshold=float(e.high_threshold), batch_size=bs)
  s_orig = evaluation.score_matrix(data.images, data.fingerprints, sigma=sigma, masks=masks, batch_size=bs)
  bands = evaluation.non_matching_band(s_orig["ncc"], data.image_devices, data.devices)
  band = np.asarray([bands[d] for d in data.image_devices])
  results: dict = {}
  rows: list[dict] = []
  curves: dict = {v: {} for v in evaluation.VARIANTS}
  ncc: dict = {}
  for mc in tqdm(mcs, desc="metrics", unit="config", file=sys.stderr):
    anon = np.stack([io.read_image(folders[(mc.method, mc.label)] / f"{name}.png") for name in data.names])
    scores = s_orig if mc.method == ORIGINAL else evaluation.score_matrix(
        anon, data.fingerprints, sigma=sigma, masks=masks, batch_size=bs)
    per = evaluation.per_image_metrics(data.images, anon, k_per_image, sigma=sigma, edge_mask=masks,
                                       batch_size=bs)
    psnr = np.asarray(metrics.psnr(anon, data.images), np.float64)
    summary = evaluation.summarize_method(scores, s_orig, data.image_devices, data.devices, psnr=psnr,
                                          fpr_target=float(config.fpr_target))
    for variant in evaluation.VARIANTS:
      protocol = evaluation.attribution_protocol(scores["ncc"], s_orig["ncc"], data.image_devices, data.devices,
                                                 variant=variant)
      curves[variant][(mc.method, mc.label)] = evaluation.roc_curves(protocol).get("pooled")
    ncc[(mc.method, mc.label)] = per["ncc"]
    results.setdefault(mc.method, {})[mc.label] = {
        "options": mc.options, "num_images": len(data.names),
        "mean_psnr": float(np.mean(psnr)), "median_psnr": float(np.median(psnr)),
        "mean_psnr_changed": _mean_or_none(psnr[np.isfinite(psnr)]),
        "num_unchanged": int(np.sum(~np.isfinite(psnr))),
        "mean_ncc": _mean_or_none(per["ncc"]), "mean_ncc_original": _mean_or_none(per["ncc_original"]),
        "mean_ncc_edges": _mean_or_none(per["ncc_edges"]), "metrics": summary,
        "min_psnr": float(np.min(psnr)), "in_band": int(np.sum(np.abs(per["ncc"]) <= band)),
        "run": _run_record(folders[(mc.method, mc.label)])}
    for n, name in enumerate(data.names):
      rows.append({"method": mc.method, "config": mc.label, "image": name, "device": data.image_devices[n],
                   "psnr": float(psnr[n]), "ncc": float(per["ncc"][n]), "ncc_edges": float(per["ncc_edges"][n]),
                   "ncc_original": float(per["ncc_original"][n]),
                   "ncc_edges_original": float(per["ncc_edges_original"][n]),
                   "edge_fraction": float(per["edge_fraction"][n]), "band": float(band[n]),
                   "in_band": bool(abs(per["ncc"][n]) <= band[n])})
  return results, rows, curves, ncc


def _fmt(v, spec: str) -> str:
  return "n/a" if v is None else (f"{v:{spec}}" if isinstance(v, (int, float)) and math.isfinite(v) else str(v))


def print_table(summary: dict) -> None:
  print(f"{'method':24s} {'config':18s} {'PSNR*':>6s} {'AUC':>6s} {'TPR@1%':>6s} {'AUCedge':>7s}  (original negatives)")
  for row in summary["table"]:
    if row["variant"] != evaluation.VARIANTS[0]:
      continue
    print(f"{row['method']:24s} {row['config']:18s} {_fmt(row['mean_psnr_changed'], '6.2f'):>6s} "
          f"{_fmt(row['auc'], '6.3f'):>6s} {_fmt(row['tpr_at_fpr'], '6.3f'):>6s} {_fmt(row['auc_edges'], '7.3f'):>7s}"
          + (f"  ({row['num_unchanged']} unchanged)" if row["num_unchanged"] else ""))
  print("* mean PSNR (dB) of the photos the method changed")
  _print_adversaries(summary)


def _print_adversaries(summary: dict) -> None:
  rows = [r for r in summary["table"] if r["variant"] == evaluation.VARIANTS[0] and "auc_pce" in r]
  if not rows:
    return
  extra = [k for k in rows[0] if k.startswith(("auc_jpeg", "auc_resize"))]
  names = {k: k.removeprefix("auc_").replace("jpeg", "J").replace("resize", "R") for k in extra}
  print("\nAdversaries (pooled AUC, negatives = the other devices' originals processed alike):")
  print(f"{'method':24s} {'config':18s} {'NCC':>6s} {'PCE':>6s} "
        f"{'PCE>60':>6s} {'att':>6s} {'inband':>6s} " + " ".join(f"{names[k]:>6s}" for k in extra)
        + f" {'detRes':>11s} {'detLin':>11s}")
  for r in rows:
    def det(name):
      m, s = r[f"detector_{name}_auc"], r[f"detector_{name}_std"]
      return "n/a" if m is None else f"{m:.2f}±{_fmt(s, '.2f')}"
    band = "n/a" if r["in_band_attacker"] is None else f"{r['in_band_attacker']}/{r['num_images']}"
    print(f"{r['method']:24s} {r['config']:18s} {_fmt(r['auc'], '6.3f'):>6s} {_fmt(r['auc_pce'], '6.3f'):>6s} "
          f"{_fmt(r['attributed_pce'], '6.2f'):>6s} {_fmt(r['auc_attacker'], '6.3f'):>6s} {band:>6s} "
          + " ".join(f"{_fmt(r[k], '6.3f'):>6s}" for k in extra) + f" {det('resnet'):>11s} {det('logistic'):>11s}")
  print("att = attacker's fingerprint (other flat-fields); inband = photos inside its non-matching band; J<q> = "
        "after JPEG quality q; R<s> = after resizing by s; det = detector AUC mean±std over photo-disjoint folds")
