"""Figures a person looks at (matplotlib, Agg backend, atomic writes)."""

from __future__ import annotations

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
