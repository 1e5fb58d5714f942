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
    fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
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


def plot_auc_vs_psnr(points: Sequence[Mapping], path, *, title: str = "Attribution AUC vs image quality",
                     reference_auc: float | None = None) -> None:
  """The paper's Fig. 10: one marker per (method, config) at (mean PSNR, AUC), one colour/line per method.

  Args:
    points: dicts with 'method', 'auc', 'mean_psnr' and optionally 'config' (a short label for the marker).
      Points of one method are joined in increasing PSNR; points with a missing or non-finite value are
      skipped. Config labels go into the legend entry of their method (one line per method), so they never
      overlap on the plot; each marker carries its index in that list.
    path: output PNG.
    reference_auc: the unaltered photos' AUC, drawn as a reference line.
  """
  fig, ax = plt.subplots(figsize=(9, 6))
  methods = sorted({p["method"] for p in points})
  for i, method in enumerate(methods):
    pts = sorted((p for p in points if p["method"] == method and p.get("auc") is not None
                  and p.get("mean_psnr") is not None and np.isfinite(p["auc"]) and np.isfinite(p["mean_psnr"])),
                 key=lambda p: p["mean_psnr"])
    if not pts:
      continue
    labels = [str(p.get("config") or "") for p in pts]
    legend = method if not any(labels) else f"{method}: " + ", ".join(f"{j + 1}={l}" for j, l in enumerate(labels))
    ax.plot([p["mean_psnr"] for p in pts], [p["auc"] for p in pts], marker="o", ms=6, lw=1.2,
            color=f"C{i % 10}", label=legend)
    if len(pts) > 1 and any(labels):
      for j, p in enumerate(pts):
        ax.annotate(str(j + 1), (p["mean_psnr"], p["auc"]), fontsize=7, color=f"C{i % 10}", xytext=(4, 4),
                    textcoords="offset points")
  ax.axhline(0.5, color="0.5", lw=1.0, ls="--", label="chance (0.5)")
  if reference_auc is not None:
    ax.axhline(reference_auc, color="k", lw=1.0, ls=":", label=f"unaltered photos ({reference_auc:.3f})")
  ax.set(xlabel="mean PSNR of the changed photos [dB]", ylabel="pooled AUC", title=title, ylim=(0.0, 1.02))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
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
  fig, ax = plt.subplots(figsize=(9, 5))
  for i, (label, a) in enumerate(arrays.items()):
    ax.hist(a, bins=edges, alpha=0.5, color=f"C{i % 10}", label=f"{label} (n={a.size})")
  ax.axvline(0.0, color="0.3", lw=0.8, ls="--")
  ax.set(xlabel="NCC (Eq. 2)", ylabel="images", title=title)
  ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
  ax.grid(alpha=0.3)
  save_figure(fig, path)


def plot_photo_report(path, original: np.ndarray, anonymized: np.ndarray, ncc_before: np.ndarray,
                      ncc_after: np.ndarray, *, title: str, lines: Sequence[str] = ()) -> None:
  """What a person checks on one anonymized photo: original, anonymized, their difference amplified (the gain
  stated), and the block NCC maps with the fingerprint before and after on one colour scale.

  Args:
    original, anonymized: uint8[H, W, 3] (or [H, W]).
    ncc_before, ncc_after: float[R, C] block NCC maps (NaN: empty block).
    title: the figure title; lines: text lines printed under it (PSNR, NCC, band, ...).
  """
  diff = np.abs(anonymized.astype(np.float64) - original.astype(np.float64))
  diff = diff.mean(axis=-1) if diff.ndim == 3 else diff
  top = float(np.percentile(diff, 99.5)) or 1.0
  gain = max(1.0, round(255.0 / top))
  limit = float(np.nanmax(np.abs(np.concatenate([ncc_before.ravel(), ncc_after.ravel()]))) or 1e-3)
  fig, axes = plt.subplots(2, 3, figsize=(13, 8.5), gridspec_kw={"height_ratios": [1, 1]})
  grey = "gray" if original.ndim == 2 else None
  for ax, image, label in ((axes[0, 0], original, "original"), (axes[0, 1], anonymized, "anonymized")):
    ax.imshow(image, cmap=grey, vmin=0, vmax=255, interpolation="nearest")
    ax.set_title(label)
  im = axes[0, 2].imshow(np.clip(diff * gain, 0, 255), cmap="magma", vmin=0, vmax=255, interpolation="nearest")
  axes[0, 2].set_title(f"|anonymized − original| × {gain:g}  (white = {255 / gain:.1f} grey levels)", fontsize=9)
  fig.colorbar(im, ax=axes[0, 2], fraction=0.046, pad=0.02, label=f"grey levels × {gain:g}")
  for ax, values, label in ((axes[1, 0], ncc_before, "block NCC before"), (axes[1, 1], ncc_after, "block NCC after")):
    shown = ax.imshow(values, cmap="coolwarm", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(f"{label} (mean {np.nanmean(values):+.4f})")
  fig.colorbar(shown, ax=axes[1, 1], fraction=0.046, pad=0.02, label="NCC(W, gray·K) per block")
  axes[1, 2].axis("off")
  axes[1, 2].text(0.12, 1.0, "\n".join(lines), va="top", ha="left", fontsize=10, family="monospace",
                  transform=axes[1, 2].transAxes)
  for ax in axes.ravel()[:5]:
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(title)
  save_figure(fig, path)
