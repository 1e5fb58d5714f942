"""Figures of a leakage analysis (the tables of `jobs.leakage`), written atomically as PNG."""

from __future__ import annotations

import math
import pathlib

import numpy as np

from dippas_jax import io
from dippas_jax import plotting

plt = plotting.plt
_STYLE = {"split": "-", "moment": "--"}


def _rows(results: dict, table: str, **where) -> list[dict]:
  return [r for r in results.get(table, []) if all(r.get(k) == v for k, v in where.items())]


def _series(rows: list[dict], x: str, y: str, err: str | None = None):
  rows = sorted(rows, key=lambda r: r[x])
  xs = np.asarray([r[x] for r in rows], np.float64)
  ys = np.asarray([r[y] for r in rows], np.float64)
  es = np.asarray([r[err] for r in rows], np.float64) if err else None
  return xs, ys, es


def _values(rows, key) -> list:
  return list(dict.fromkeys(r[key] for r in rows))


def _save(fig, path: pathlib.Path, dpi: int) -> pathlib.Path:
  with io.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
  plt.close(fig)
  return path


def _grid(n: int, size=(3.6, 3.2)):
  cols = min(n, 3)
  rows = max(1, math.ceil(n / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False,
                           layout="constrained")
  for ax in axes.ravel()[n:]:
    ax.axis("off")
  return fig, axes.ravel()


def _ilb_figure(results: dict, out: pathlib.Path, dpi: int) -> pathlib.Path:
  """The bound against L: one panel per pool, one colour per camera, one line style per γ² estimator."""
  tables = [t for t in ("ilb", "ilb_natural") if results.get(t)]
  fig, axes = _grid(len(tables), (5.0, 3.8))
  window = results.get("config", {}).get("window", 3)
  colour = {d: f"C{i}" for i, d in enumerate(_values(results["ilb"] + results.get("ilb_natural", []), "device"))}
  for ax, table in zip(axes, tables):
    rows = _rows(results, table, window=window) or results[table]
    estimators = [k[len("ilb_bpp_"):] for k in rows[0] if k.startswith("ilb_bpp_") and not k.endswith("_std")]
    for device in _values(rows, "device"):
      for e in estimators:
        xs, ys, es = _series(_rows(results, table, device=device, window=rows[0]["window"]), "L", f"ilb_bpp_{e}",
                             f"ilb_bpp_{e}_std")
        ax.errorbar(xs, ys, yerr=es, ls=_STYLE.get(e, ":"), color=colour[device], marker="o", ms=3, capsize=2,
                    label=device if e == estimators[0] else None)
    for e in estimators:
      ax.plot([], [], color="0.3", ls=_STYLE.get(e, ":"), label=f"γ² {e}")
    ax.set(xlabel="L (images in the estimate)", ylabel="leakage bound (bits / pixel)", ylim=(0, None),
           title=f"{rows[0]['pool']} pool, window {rows[0]['window']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)
  return _save(fig, out / "ilb_vs_L.png", dpi)


def _membership_figure(results: dict, out: pathlib.Path, dpi: int) -> pathlib.Path:
  devices = _values(results["membership"], "device")
  fig, axes = _grid(len(devices))
  for ax, device in zip(axes, devices):
    rows = _rows(results, "membership", device=device)
    for d in _values(rows, "detector"):
      xs, ys, es = _series(_rows(results, "membership", device=device, detector=d), "L", "auc", "auc_std")
      ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, label=d)
    low = min(0.95, float(np.nanmin([r["auc"] for r in results["membership"]])) - 0.03)
    ax.set(xlabel="L", ylabel="membership AUC", title=f"{device} ({rows[0]['tile']}² tiles)", ylim=(low, 1.005))
    ax.grid(alpha=0.3)
  axes[0].legend(fontsize=7)
  return _save(fig, out / "membership_auc_vs_L.png", dpi)


def _roc_figures(results: dict, out: pathlib.Path, dpi: int) -> list[pathlib.Path]:
  """roc_L<L>.png (a panel per camera, a curve per detector) and roc_by_L.png (a panel per detector, a curve per L,
  TPR averaged over the cameras at each FPR)."""
  paths, mem = [], {(r["device"], r["L"], r["detector"]): r for r in results["membership"]}
  devices, l_values = _values(results["roc"], "device"), sorted(_values(results["roc"], "L"))
  detectors = _values(results["roc"], "detector")
  for l in l_values:
    fig, axes = _grid(len(devices))
    for ax, device in zip(axes, devices):
      for d in detectors:
        xs, ys, _ = _series(_rows(results, "roc", device=device, L=l, detector=d), "fpr", "tpr")
        if xs.size:
          ax.plot(xs, ys, drawstyle="steps-post", label=f"{d} ({mem[(device, l, d)]['auc_pooled']:.3f})")
      ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
      ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{device}, L = {l}")
      ax.legend(fontsize=5.5, loc="lower right", title="pooled AUC", title_fontsize=6)
      ax.grid(alpha=0.3)
    paths.append(_save(fig, out / f"roc_L{l}.png", dpi))
  shown = [d for d in detectors if d in ("ncc_eq11", "np_eq10", "ncc_eq11_binarize")] or detectors[:3]
  fig, axes = _grid(len(shown), (4.0, 3.8))
  for ax, d in zip(axes, shown):
    for i, l in enumerate(l_values):
      curves = [_series(_rows(results, "roc", device=device, L=l, detector=d), "fpr", "tpr") for device in devices]
      curves = [c for c in curves if c[0].size]
      tpr = np.mean([c[1] for c in curves], axis=0)
      ax.plot(curves[0][0], tpr, color=plt.cm.viridis(i / max(1, len(l_values) - 1)), label=f"L = {l}")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{d} (mean over {len(devices)} cameras)")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
  paths.append(_save(fig, out / "roc_by_L.png", dpi))
  return paths


def _mitigation_figure(results: dict, out: pathlib.Path, dpi: int) -> pathlib.Path:
  """Membership AUC (Eq. 11 detector on the mitigated K̂) and attribution AUC against L, mean ± std over cameras."""
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  rows = results["mitigation"]
  for m in _values(rows, "mitigation"):
    for ax, key in zip(axes, ("membership_auc", "attribution_auc")):
      by_l = {}
      for r in _rows(results, "mitigation", mitigation=m):
        if np.isfinite(r[key]):
          by_l.setdefault(r["L"], []).append(r[key])
      if by_l:
        ls = sorted(by_l)
        ax.errorbar(ls, [np.mean(by_l[l]) for l in ls], yerr=[np.std(by_l[l]) for l in ls], marker="o", ms=3,
                    capsize=2, label=m)
  axes[0].set(xlabel="L", ylabel="membership AUC (Eq. 11 detector)", title="Leak (lower is better)")
  axes[1].set(xlabel="L", ylabel="attribution AUC", title="Attribution (higher is better)")
  for ax in axes:
    ax.axhline(0.5, color="0.7", lw=0.8, ls="--")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  return _save(fig, out / "mitigation.png", dpi)


def save_leakage_plots(results: dict, out_dir, *, dpi: int = 100) -> list[pathlib.Path]:
  """Writes the figures of the tables present in `results` into `out_dir`; returns their paths.

  - `ilb_vs_L.png`: the bound against L per pool, camera and γ² estimator;
  - `membership_auc_vs_L.png`: membership AUC (mean ± std over trials) against L, a panel per camera;
  - `roc_L<L>.png`: the membership ROC curves (pooled over tiles and trials) of every detector and camera;
  - `roc_by_L.png`: the ROC curves of the main detectors for every L, averaged over the cameras;
  - `mitigation.png`: membership and attribution AUC against L per mitigation.
  """
  out = pathlib.Path(out_dir)
  paths = []
  if results.get("ilb") or results.get("ilb_natural"):
    paths.append(_ilb_figure(results, out, dpi))
  if results.get("membership"):
    paths.append(_membership_figure(results, out, dpi))
  if results.get("roc"):
    paths += _roc_figures(results, out, dpi)
  if results.get("mitigation"):
    paths.append(_mitigation_figure(results, out, dpi))
  return paths


def _show_k(ax, k, reference, title):
  lim = 3.0 * float(np.std(reference))
  ax.imshow(k, cmap="gray", vmin=-lim, vmax=lim)
  ax.set_title(title, fontsize=8)
  ax.axis("off")


def save_fig1(panels: dict, path, *, dpi: int = 100, crop: int = 128) -> pathlib.Path:
  """The Fig. 1 picture: one row per case of `panels` ({title: `experiments.content_maps` + 'content'}): the
  content image, K̂ with it (a `crop`² corner, pixel for pixel), and the local energy of K̂ without and with it
  (each on its own 0–99.5th percentile scale)."""
  fig, axes = plt.subplots(len(panels), 4, figsize=(11, 2.9 * len(panels)), squeeze=False)
  for row, (title, p) in zip(axes, panels.items()):
    row[0].imshow(p["content"])
    row[0].set_title(f"{title}\n+ this image" + (f" ({p['name']})" if "name" in p else ""), fontsize=8)
    row[0].axis("off")
    size = "" if max(p["k_with"].shape) <= crop else f" (top-left {crop}²)"
    _show_k(row[1], p["k_with"][:crop, :crop], p["k_without"], f"K̂ with it{size}")
    for ax, key, label in ((row[2], "energy_without", "without"), (row[3], "energy_with", "with")):
      ax.imshow(p[key], cmap="gray", vmin=0, vmax=float(np.percentile(p[key], 99.5)))
      ax.set_title(f"local energy of K̂, {label} it", fontsize=8)
      ax.axis("off")
  return _save(fig, pathlib.Path(path), dpi)
