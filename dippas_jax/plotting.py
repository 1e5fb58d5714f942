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
