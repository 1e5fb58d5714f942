"""`dippas-leakage`: the information leakage of camera fingerprint estimates for one camera, a list or all of them
→ ilb.csv, ilb_natural.csv, membership.csv, roc.csv, mitigation.csv, table2.csv, synthetic.csv, leakage.json,
leakage.md (the report) and plots (see `leakage_report`)."""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time

import numpy as np

from dippas_jax import io
from dippas_jax import leakage
from dippas_jax.jobs import common
from dippas_jax.jobs import leakage_markdown
from dippas_jax.jobs import leakage_report
from dippas_jax.leakage import experiments

TABLES = ("ilb", "ilb_natural", "membership", "roc", "attribution", "mitigation", "table2", "synthetic")
EXPERIMENTS = ("sweep", "table2", "synthetic", "fig1")


@dataclasses.dataclass
class _Camera:
  """One camera's images: records and their gray residuals W, denoised X̂ (float32[N, H, W]) and mean gray."""
  name: str
  records: list
  res: np.ndarray
  den: np.ndarray

  def select(self, keep) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.asarray([i for i, r in enumerate(self.records) if keep(r)], int)
    return self.res[idx], self.den[idx], self.den[idx].mean(axis=(1, 2)) if len(idx) else np.zeros(0)


def _kind(pool: str):
  return (lambda r: True) if pool == "all" else (lambda r: r.kind == pool)


def _devices(records, device: str) -> list[str]:
  known = sorted({r.device for r in records})
  if device.strip() == "all":
    return known
  names = [d.strip() for d in device.split(",") if d.strip()]
  missing = [d for d in names if d not in known]
  if missing or not names:
    raise io.InputError(f"no images of device(s) {', '.join(missing) or repr(device)} (devices: {', '.join(known)}; "
                        "or --device=all)")
  return list(dict.fromkeys(names))


def _check_config(config) -> None:
  with common.user_input("config"):
    bad = [e for e in config.experiments if e not in EXPERIMENTS]
    if bad:
      raise ValueError(f"field experiments: unknown {bad}; expected a subset of {EXPERIMENTS}")
    bad = [e for e in config.gamma2_estimators if e not in leakage.GAMMA2_ESTIMATORS]
    if bad or not config.gamma2_estimators:
      raise ValueError(f"field gamma2_estimators: expected a subset of {leakage.GAMMA2_ESTIMATORS}, got "
                       f"{tuple(config.gamma2_estimators)}")
    for field in ("pool", "membership_pool"):
      if config[field] not in ("flatfield", "natural", "all"):
        raise ValueError(f"field {field} must be 'flatfield', 'natural' or 'all', got {config[field]!r}")
    crop = common.crop_of(config)
    if config.tile < 0 or (crop and config.tile > min(crop)):
      raise ValueError(f"field tile must be in [0, {min(crop) if crop else 'the image size'}] (0 = whole crop), "
                       f"got {config.tile}")


def _load(records, config, say) -> tuple[np.ndarray, np.ndarray]:
  say(f"reading and denoising {len(records)} images")
  images = io.load_images([r.path for r in records], crop=common.crop_of(config))
  return leakage.residuals_and_denoised(images, sigma=config.sigma, levels=config.levels,
                                        batch_size=config.batch_size)


def _tag(rows, **columns) -> list[dict]:
  return [{**columns, **r} for r in rows]


def _sweep(cam: _Camera, queries, config, say) -> dict[str, list[dict]]:
  """The per-camera sweep: bound on the pool (and on the natural photos), membership, attribution, mitigations."""
  res, den, _ = cam.select(_kind(config.pool))
  est, windows = tuple(config.gamma2_estimators), set(config.window_sizes) | {config.window}
  l_values = [l for l in config.l_values if 2 <= l <= len(res)]
  ilb, attribution = leakage.ilb_sweep(
      res, den, l_values=l_values, n_trials=config.n_trials, n_splits=config.n_splits, estimators=est,
      window_sizes=windows, seed=config.seed, queries=queries(cam.name), mitigations=config.mitigations,
      window=config.window, progress=say)
  out = {"ilb": _tag(ilb, device=cam.name, pool=config.pool), "ilb_natural": []}
  nat_res, nat_den, _ = cam.select(_kind("natural"))
  if config.natural_pool and config.pool != "natural" and len(nat_res) >= 2:
    rows, _ = leakage.ilb_sweep(nat_res, nat_den, l_values=[l for l in config.l_values if 2 <= l <= len(nat_res)],
                                n_trials=config.n_trials, n_splits=config.n_splits, estimators=est,
                                window_sizes=(config.window,), seed=config.seed, progress=say)
    out["ilb_natural"] = _tag(rows, device=cam.name, pool="natural")
  m_res, m_den, _ = cam.select(_kind(config.membership_pool))
  m_values = [l for l in config.membership_l_values if 1 <= l < len(m_res)]
  membership, roc_rows = leakage.membership_sweep(m_res, m_den, l_values=m_values, n_trials=config.n_trials,
                                                  tile=config.tile, window=config.window, seed=config.seed,
                                                  progress=say)
  out["membership"] = _tag(membership, device=cam.name, pool=config.membership_pool)
  out["roc"] = _tag(roc_rows, device=cam.name)
  out["attribution"] = _tag(attribution, device=cam.name)
  out["mitigation"] = _tag(leakage.mitigation_rows(ilb, membership, attribution, mitigations=config.mitigations,
                                                   window=config.window), device=cam.name)
  return out


def _table2(cam: _Camera, config) -> list[dict]:
  flat = cam.select(_kind("flatfield"))
  if len(flat[0]) < 4:
    print(f"{cam.name}: Table 2 skipped ({len(flat[0])} flat-fields, needs ≥ 4)")
    return []
  rows = experiments.table2_rows(*flat, *cam.select(_kind("natural")), n_splits=config.n_splits,
                                 estimators=tuple(config.gamma2_estimators), window=config.window, seed=config.seed)
  return _tag(rows, device=cam.name)


def _fig1(cameras: dict[str, _Camera], config, say) -> dict:
  """The Fig. 1 panels: the synthetic text image among dark flat-fields, then a real camera's most structured
  natural photo added to its flat-fields and to its dark natural photos."""
  say("Fig. 1")
  panels = {f"synthetic camera: {experiments.FIG1_FRAMES} dark flat-fields": experiments.synthetic_fig1(
      size=config.synthetic_size, seed=config.seed)}

  def dark(cam):
    return [i for i, r in enumerate(cam.records) if r.kind == "natural"
            and cam.den[i].mean() < config.fig1_dark_level]

  name = config.fig1_device or max(cameras, key=lambda c: (len(dark(cameras[c])), len(cameras[c].select(
      _kind("natural"))[0])), default="")
  cam = cameras.get(name)
  if cam is None:
    if config.fig1_device:
      raise io.InputError(f"config field fig1_device: {config.fig1_device!r} is not among the analysed devices")
    return panels
  flats = [i for i, r in enumerate(cam.records) if r.kind == "flatfield"]
  candidates = [i for i, r in enumerate(cam.records) if r.kind == "natural" and i not in dark(cam)]
  if not candidates:
    return panels
  contrast = experiments.content_contrast(cam.res[candidates], cam.den[candidates])
  content = candidates[int(np.argmax(contrast))]
  image = io.load_images([cam.records[content].path], crop=common.crop_of(config))[0]
  for label, base in (("flat-fields", flats), ("dark photos", dark(cam))):
    if base:
      panels[f"{name}: {len(base)} {label}"] = {
          "content": image, "name": cam.records[content].path.name,
          **experiments.content_maps(cam.res, cam.den, base, content)}
  return panels


def _cameras(records, names, config, say) -> dict[str, _Camera]:
  mine = [r for r in records if r.device in names]
  res, den = _load(mine, config, say)
  return {n: _Camera(n, [r for r in mine if r.device == n], res[[i for i, r in enumerate(mine) if r.device == n]],
                     den[[i for i, r in enumerate(mine) if r.device == n]]) for n in names}


def _query_fn(records, cameras, config, say):
  """device → (W, X̂, same-camera labels) of every natural photo of the input, or None when there are none."""
  queries = [r for r in records if r.kind in ("natural", "")]
  if not queries or "sweep" not in config.experiments:
    return lambda _: None
  res, den = _load(queries, config, say)
  return lambda device: (res, den, np.asarray([r.device == device for r in queries])) if any(
      r.device == device for r in queries) and not all(r.device == device for r in queries) else None


def _print_summary(results: dict, config) -> None:
  default = config.gamma2_estimators[0]
  for row in results["ilb"]:
    if row["window"] == config.window:
      others = "  ".join(f"{e} {row[f'ilb_bpp_{e}']:.3f}" for e in config.gamma2_estimators[1:])
      print(f"{row['device']:>14s} L={row['L']:3d}  ILB {row['ilb_bpp']:.3f} bits/pixel (γ² {default})  {others}")
  for row in results["membership"]:
    print(f"{row['device']:>14s} L={row['L']:3d}  membership AUC {row['detector']:>17s} {row['auc']:.3f} "
          f"({row['tile']}² tiles)")


def leakage_job(*, images: str, device: str, workdir: str, config) -> dict:
  """The leakage analysis of the cameras `device` ('all', a name or a comma list) in `images`: per camera the
  bound per L on its `config.pool` images (and on its natural photos), membership inference on tiles, the
  mitigations' attribution cost (queries: every natural photo of the input) and Table 2; the synthetic camera
  at the paper's L; the Fig. 1 picture. Writes the tables (CSV and leakage.json), plots and leakage.md."""
  start = time.time()
  _check_config(config)
  records = io.list_images(images)
  names = _devices(records, device)
  bar = common.progress(None, "leakage", unit="step")

  def say(msg):
    bar.set_postfix_str(str(msg))
    bar.update(1)

  cameras = _cameras(records, names, config, say)
  queries = _query_fn(records, cameras, config, say)
  results = {t: [] for t in TABLES}
  for cam in cameras.values():
    pool = [r for r in cam.records if _kind(config.pool)(r)]
    if not pool:
      raise io.InputError(f"{images}: device {cam.name!r} has no images of kind {config.pool!r} (config field pool)")
    q = queries(cam.name)
    print(f"{cam.name}: {len(pool)} pool images, {len(cam.records) - len(pool)} extra non-members, "
          f"{0 if q is None else len(q[2])} queries ({config.pool} pool for the bound); membership: members and "
          f"non-members drawn from {len([r for r in cam.records if _kind(config.membership_pool)(r)])} images "
          f"({config.membership_pool}), {config.tile}² tiles")
    if "sweep" in config.experiments:
      for table, rows in _sweep(cam, queries, config, say).items():
        results[table] += rows
    if "table2" in config.experiments:
      results["table2"] += _table2(cam, config)
  if "synthetic" in config.experiments:
    say("synthetic camera")
    results["synthetic"] = experiments.synthetic_tables(
        size=config.synthetic_size, l_values=config.synthetic_l_values, seed=config.seed, n_splits=config.n_splits,
        estimators=tuple(config.gamma2_estimators), window=config.window, batch_size=config.batch_size)
  fig1 = _fig1(cameras, config, say) if "fig1" in config.experiments else None
  bar.close()
  workdir = pathlib.Path(workdir)
  for table in TABLES:
    if results[table]:
      io.write_csv(workdir / f"{table}.csv", results[table],
                   fieldnames=list(dict.fromkeys(k for r in results[table] for k in r)))
  figures = leakage_report.save_leakage_plots(results, workdir, dpi=config.plot_dpi)
  if fig1:
    figures.append(leakage_report.save_fig1(fig1, workdir / "fig1.png", dpi=config.plot_dpi))
  results["config"] = {**common.config_dict(config), "devices": names, "images": images,
                       "command": " ".join(["dippas-leakage"] + sys.argv[1:]),
                       "wall_s": round(time.time() - start, 1)}
  io.write_json(workdir / "leakage.json", results)
  with io.atomic_path(workdir / "leakage.md") as tmp:
    tmp.write_text(leakage_markdown.markdown(results, figures=[p.name for p in figures]))
  _print_summary(results, config)
  return results
