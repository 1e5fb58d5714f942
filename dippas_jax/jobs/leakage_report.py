"""Figures of a leakage analysis (`leakage.run_leakage_analysis` results), written atomically as PNG."""

from __future__ import annotations

import pathlib

import numpy as np

from dippas_jax import plotting

plt = plotting.plt


def _rows(results: dict, table: str, **where) -> list[dict]:
  return [r for r in results.get(table, []) if all(r.get(k) == v for k, v in where.items())]


def _series(rows: list[dict], x: str, y: str, err: str | None = None):
  rows = sorted(rows, key=lambda r: r[x])
  xs = np.asarray([r[x] for r in rows], np.float64)
  ys = np.asarray([r[y] for r in rows], np.float64)
  es = np.asarray([r[err] for r in rows], np.float64) if err else None
  return xs, ys, es


def save_leakage_plots(results: dict, out_dir) -> list[pathlib.Path]:
  """Writes the analysis' figures into `out_dir` and returns their paths.

  - `ilb_vs_L.png`: the information-leakage bound (bits per pixel) against L, one line per local-variance
    window, solid for the raw fingerprint and dashed for the whitened one;
  - `membership_auc_vs_L.png`: membership AUC (mean ± std over trials) against L, one line per detector;
  - `roc_L<L>.png`: the pooled membership ROC curves of every detector at each L;
  - `mitigation.png`: membership AUC and attribution AUC against L per mitigation (attribution only when the
    analysis had query images).
  """
  out_dir = pathlib.Path(out_dir)
  paths = []
  l_values = sorted({r["L"] for r in results.get("membership", [])})

  fig, ax = plt.subplots(figsize=(6, 4))
  styles = {"none": "-", "whiten": "--"}
  for mitigation, style in styles.items():
    for w in sorted({r["window"] for r in _rows(results, "ilb", mitigation=mitigation)}):
      xs, ys, es = _series(_rows(results, "ilb", mitigation=mitigation, window=w), "L", "ilb_bpp", "ilb_bpp_std")
      label = f"window {w}" + ("" if mitigation == "none" else f" ({mitigation})")
      ax.errorbar(xs, ys, yerr=es, ls=style, marker="o", ms=3, capsize=2, label=label)
  ax.set(xlabel="L (images in the estimate)", ylabel="leakage bound (bits / pixel)",
         title="Information-leakage bound")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  paths.append(out_dir / "ilb_vs_L.png")
  plotting.save_figure(fig, paths[-1])

  fig, ax = plt.subplots(figsize=(6, 4))
  for d in dict.fromkeys(r["detector"] for r in results.get("membership", [])):
    xs, ys, es = _series(_rows(results, "membership", detector=d), "L", "auc", "auc_std")
    ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, label=d)
  ax.axhline(0.5, color="0.7", lw=0.8, ls="--")
  ax.set(xlabel="L (images in the estimate)", ylabel="membership AUC", title="Membership inference",
         ylim=(0.4, 1.02))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7)
  paths.append(out_dir / "membership_auc_vs_L.png")
  plotting.save_figure(fig, paths[-1])

  aucs = {(r["L"], r["detector"]): r["auc_pooled"] for r in results.get("membership", [])}
  for l in l_values:
    curves = {}
    for d in dict.fromkeys(r["detector"] for r in _rows(results, "roc", L=l)):
      pts = sorted(_rows(results, "roc", L=l, detector=d), key=lambda r: r["point"])
      curves[d] = (np.asarray([p["fpr"] for p in pts]), np.asarray([p["tpr"] for p in pts]), aucs[(l, d)])
    paths.append(out_dir / f"roc_L{l}.png")
    plotting.plot_roc(curves, paths[-1], title=f"Membership inference, L = {l} (pooled over trials)")

  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for m in dict.fromkeys(r["mitigation"] for r in results.get("mitigation", [])):
    rows = _rows(results, "mitigation", mitigation=m)
    xs, ys, es = _series(rows, "L", "membership_auc", "membership_auc_std")
    axes[0].errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, label=m)
    xs, ys, es = _series(rows, "L", "attribution_auc", "attribution_auc_std")
    if np.isfinite(ys).any():
      axes[1].errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=2, label=m)
  axes[0].set(xlabel="L", ylabel="membership AUC (NCC detector)", title="Leak (lower is better)")
  axes[1].set(xlabel="L", ylabel="attribution AUC", title="Attribution (higher is better)")
  for ax in axes:
    ax.axhline(0.5, color="0.7", lw=0.8, ls="--")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  paths.append(out_dir / "mitigation.png")
  plotting.save_figure(fig, paths[-1])
  return paths
