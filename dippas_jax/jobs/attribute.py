"""`dippas-attribute`: fingerprints × query images → scores.csv, summary.json (AUC, EER, TPR@1 %), roc.png."""

from __future__ import annotations

import pathlib

import numpy as np

from dippas_jax import io
from dippas_jax import plotting
from dippas_jax.jobs import common
from dippas_jax.prnu import attribution


def load_fingerprints(spec: str, *, known_devices, crop) -> dict[str, np.ndarray]:
  """Loads fingerprint files (`io.resolve_spec`) into `{device: float32[h, w]}`, centre-cropped to `crop` when
  given; the device of a file is `attribution.fingerprint_name`."""
  out = {}
  for path in io.resolve_spec(spec, io.FINGERPRINT_EXTENSIONS, what="fingerprint files"):
    k, meta = io.load_fingerprint(path)
    if crop is not None and tuple(k.shape) != tuple(crop):
      if k.shape[0] < crop[0] or k.shape[1] < crop[1]:
        io.check_fingerprint(k, crop, name=str(path))  # Raises: names both sizes.
      k = io.center_crop(k, *crop, name=str(path))
    name = attribution.fingerprint_name(path, meta, known_devices)
    if name in out:
      raise io.InputError(f"{path}: a second fingerprint for device {name!r}")
    out[name] = k
  return out


def write_report(result: attribution.AttributionResult, workdir: str | pathlib.Path, *, config: dict) -> dict:
  """Writes `scores.csv` (one row per image × fingerprint), `summary.json` and `roc.png`; returns the summary."""
  workdir = pathlib.Path(workdir)
  rows = []
  for n, image in enumerate(result.images):
    for m, device in enumerate(result.devices):
      row = {"image": image, "image_device": result.image_devices[n], "fingerprint": device,
             "match": bool(result.ground_truth[m, n])}
      row.update({name: float(result.scores[name][m, n]) for name in attribution.SCORES})
      rows.append(row)
  io.write_csv(workdir / "scores.csv", rows)
  summary = {"devices": list(result.devices), "num_images": len(result.images),
             "num_positive_pairs": int(result.ground_truth.sum()),
             "num_negative_pairs": int((~result.ground_truth).sum()),
             "scores": {name: (None if st is None else {k: v for k, v in st.items() if k not in ("fpr", "tpr")})
                        for name, st in result.stats.items()},
             "config": config}
  io.write_json(workdir / "summary.json", summary)
  curves = {name: (st["fpr"], st["tpr"], st["auc"]) for name, st in result.stats.items() if st is not None}
  if curves:
    plotting.plot_roc(curves, workdir / "roc.png", title=f"Source attribution ({len(result.images)} images, "
                      f"{len(result.devices)} devices)")
  return summary


def print_stats(stats: dict) -> None:
  for name, st in stats.items():
    if st is None:
      print(f"{name:8s} AUC n/a (needs both matching and non-matching pairs)")
    else:
      print(f"{name:8s} AUC {st['auc']:.4f}  EER {st['eer']:.4f}  TPR@FPR=0.01 {st['tpr_at_fpr_0.01']:.4f}")


def attribute_job(*, fingerprints: str, images: str, workdir: str, config) -> dict:
  """Scores every query image against every fingerprint; writes scores.csv, summary.json, roc.png.

  Unreadable query images are reported on stderr, skipped and listed in the summary (`skipped`).
  """
  records = io.list_images(images, kind="natural")
  crop = common.crop_of(config)
  loaded, kept, skipped = io.read_usable_images(
      records, crop=crop, convert=lambda im: im if im.dtype == np.uint8 else im.astype(np.float32), spec=images)
  devices = [r.device for r in kept]
  stack = np.stack(loaded)
  ks = load_fingerprints(fingerprints, known_devices=sorted(set(devices)), crop=crop)
  for name, k in ks.items():
    io.check_fingerprint(k, stack.shape[1:3], name=name)
  bar = common.progress(len(stack), "score")
  result = attribution.attribute(
      ks, stack, common.unique_names([r.path for r in kept]), devices, sigma=config.sigma, levels=config.levels,
      wavelet=config.wavelet, batch_size=config.batch_size, pce_mode=config.pce_mode, pce_radius=config.pce_radius,
      pce_shift_range=config.pce_shift_range, progress=lambda n: bar.update(n - bar.n))
  bar.close()
  summary = write_report(result, workdir, config=common.config_dict(config))
  summary["skipped"] = skipped
  io.write_json(pathlib.Path(workdir) / "summary.json", summary)
  print_stats(result.stats)
  common.print_skipped(skipped)
  return summary
