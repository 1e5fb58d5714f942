"""Figures a person looks at (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from dippas_jax import io


def save_figure(fig, path) -> None:
  """Writes a matplotlib figure to `path` (PNG) atomically and closes it."""
  with io.atomic_path(path) as tmp:
    fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
  plt.close(fig)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path, *, title: str = "ROC") -> None:
  """ROC curves `{label: (fpr, tpr, auc)}` with the chance diagonal, saved to `path`."""
  fig, ax = plt.subplots(figsize=(5, 5))
  for label, (fpr, tpr, auc) in curves.items():
    ax.plot(fpr, tpr, drawstyle="steps-post", label=f"{label} (AUC {auc:.3f})")
  ax.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
  ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title, xlim=(0, 1), ylim=(0, 1.01))
  ax.legend(loc="lower right", fontsize=8)
  ax.grid(alpha=0.3)
  save_figure(fig, path)


def plot_history(history: dict[str, np.ndarray], path, *, ncc_steps: np.ndarray | None = None,
                 ncc: np.ndarray | None = None, tau_stop: float | None = None, taus=(), title: str = "") -> None:
  """DIP history of one image (the paper's Fig. 2–3): PSNR, NCC with the reference fingerprint and γ per
  iteration. `history` holds 1-D arrays step, psnr, gamma (NaN/inactive entries are dropped)."""
  ok = np.asarray(history["step"]) >= 0
  steps = np.asarray(history["step"])[ok]
  panels = [("PSNR of x̂ (dB)", np.asarray(history["psnr"])[ok], steps)]
  if ncc is not None and np.isfinite(ncc).any():
    keep = np.isfinite(ncc)
    panels.append(("NCC(W, gray(x̂)·K)", np.asarray(ncc)[keep], np.asarray(ncc_steps)[keep]))
  panels.append(("γ", np.asarray(history["gamma"])[ok], steps))
  fig, axes = plt.subplots(len(panels), 1, figsize=(6, 2.2 * len(panels)), sharex=True)
  for ax, (label, y, x) in zip(axes, panels):
    ax.plot(x, y, lw=1)
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
  if tau_stop is not None:
    axes[0].axhline(tau_stop, color="r", lw=0.8, ls="--", label=f"τ_stop {tau_stop:g}")
  for t in taus:
    axes[0].axhline(t, color="0.5", lw=0.6, ls=":", label=f"τ {t:g}")
  if tau_stop is not None or len(taus):
    axes[0].legend(fontsize=7, loc="lower right")
  if len(panels) > 2:
    axes[1].axhline(0.0, color="0.5", lw=0.6)
  axes[-1].set_xlabel("iteration")
  if title:
    axes[0].set_title(title, fontsize=9)
  save_figure(fig, path)


def plot_auc_vs_psnr(points: Sequence[Mapping], path, *, title: str = "Attribution AUC vs image quality") -> None:
  """The paper's Fig. 10: one marker per (method, config) at (mean PSNR, AUC), one colour/line per method.

  Args:
    points: dicts with 'method', 'auc', 'mean_psnr' and optionally 'config' (a short label written beside
      the marker). Points of one method are joined in increasing PSNR. Points with a missing or
      non-finite value are skipped.
    path: output PNG.
  """
  fig, ax = plt.subplots(figsize=(6, 4.5))
  methods = sorted({p["method"] for p in points})
  for i, method in enumerate(methods):
    pts = [p for p in points if p["method"] == method and p.get("auc") is not None
           and p.get("mean_psnr") is not None and np.isfinite(p["auc"]) and np.isfinite(p["mean_psnr"])]
    if not pts:
      continue
    pts.sort(key=lambda p: p["mean_psnr"])
    xs = [p["mean_psnr"] for p in pts]
    ys = [p["auc"] for p in pts]
    ax.plot(xs, ys, marker="o", ms=5, lw=1, color=f"C{i % 10}", label=method)
    for p in pts:
      if p.get("config"):
        ax.annotate(str(p["config"]), (p["mean_psnr"], p["auc"]), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")
  ax.axhline(0.5, color="0.7", lw=0.8, ls="--")
  ax.set(xlabel="mean PSNR [dB]", ylabel="AUC", title=title, ylim=(0.0, 1.02))
  ax.grid(alpha=0.3)
  if methods:
    ax.legend(fontsize=8, loc="best")
  save_figure(fig, path)


def plot_roc_curves(curves: Mapping[str, tuple], path, *, title: str = "ROC") -> None:
  """ROC curves `{label: (fpr, tpr, auc)}` (e.g. one per method, from `roc_curves(...)['pooled']`)."""
  plot_roc(dict(curves), path, title=title)


def plot_ncc_histograms(values: Mapping[str, np.ndarray], path, *, title: str = "NCC with the device fingerprint",
                        bins: int = 40) -> None:
  """Overlaid histograms of NCC values `{label: float[N]}` (e.g. 'original' and 'anonymized'), common bins."""
  arrays = {k: np.asarray(v, np.float64)[np.isfinite(np.asarray(v, np.float64))] for k, v in values.items()}
  allv = np.concatenate([a for a in arrays.values()] + [np.zeros(1)])
  lo, hi = float(allv.min()), float(allv.max())
  if hi <= lo:
    hi = lo + 1e-3
  edges = np.linspace(lo, hi, bins + 1)
  fig, ax = plt.subplots(figsize=(6, 4))
  for i, (label, a) in enumerate(arrays.items()):
    ax.hist(a, bins=edges, alpha=0.5, color=f"C{i % 10}", label=f"{label} (n={a.size})")
  ax.axvline(0.0, color="0.3", lw=0.8, ls="--")
  ax.set(xlabel="NCC (Eq. 2)", ylabel="images", title=title)
  ax.legend(fontsize=8)
  ax.grid(alpha=0.3)
  save_figure(fig, path)
