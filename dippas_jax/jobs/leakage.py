"""`dippas-leakage`: the information leakage of one camera's fingerprint estimate → ilb.csv, membership.csv,
mitigation.csv, roc.csv, leakage.json and plots."""

from __future__ import annotations

import pathlib

import numpy as np

from dippas_jax import io
from dippas_jax.jobs import common
from dippas_jax import leakage
from dippas_jax.jobs import leakage_report


def _read_group(records, crop) -> np.ndarray:
  return io.load_images([r.path for r in records], crop=crop)


def leakage_job(*, images: str, device: str, workdir: str, config) -> dict:
  """Leakage analysis of one camera: members drawn from its `config.pool` images, its other images as extra
  non-members, every natural image of the dataset as attribution queries. Writes ilb.csv, membership.csv,
  mitigation.csv, roc.csv, leakage.json and plots."""
  records = io.list_images(images)
  mine = [r for r in records if r.device == device]
  if not mine:
    known = sorted({r.device for r in records})
    raise io.InputError(f"{images}: no images of device {device!r} (devices: {', '.join(known)})")
  in_pool = (lambda r: True) if config.pool == "all" else (lambda r: r.kind == config.pool)
  pool = [r for r in mine if in_pool(r)]
  extra = [r for r in mine if not in_pool(r)]
  queries = [r for r in records if r.kind in ("natural", "")]
  if not pool:
    raise io.InputError(f"{images}: device {device!r} has no images of kind {config.pool!r} (config field pool)")
  crop = common.crop_of(config)
  print(f"{device}: {len(pool)} pool images, {len(extra)} extra non-members, {len(queries)} queries")
  bar = common.progress(None, "leakage", unit="step")
  results = leakage.run_leakage_analysis(
      _read_group(pool, crop), l_values=config.l_values, n_splits=config.n_splits, n_trials=config.n_trials,
      window_sizes=config.window_sizes, window=config.window, seed=config.seed, sigma=config.sigma,
      levels=config.levels, extra_nonmembers=_read_group(extra, crop) if extra else None,
      query_images=_read_group(queries, crop) if queries else None,
      query_labels=np.asarray([r.device == device for r in queries]) if queries else None,
      mitigations=config.mitigations, batch_size=config.batch_size,
      progress=lambda msg: (bar.set_postfix_str(str(msg)), bar.update(1)))
  bar.close()
  workdir = pathlib.Path(workdir)
  for table in ("ilb", "membership", "mitigation", "roc"):
    io.write_csv(workdir / f"{table}.csv", results[table])
  results["config"] = {**results["config"], "device": device, "pool": config.pool, "crop": crop}
  io.write_json(workdir / "leakage.json", results)
  leakage_report.save_leakage_plots(results, workdir)
  for row in results["ilb"]:
    if row["window"] == config.window and row["mitigation"] == "none":
      print(f"L={row['L']:3d}  ILB {row['ilb_bpp']:.3f} bits/pixel")
  for row in results["membership"]:
    print(f"L={row['L']:3d}  membership AUC {row['detector']:>6s} {row['auc']:.3f}")
  return results
