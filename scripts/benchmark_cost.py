r"""The cost per megapixel of whole-photo DIPPAS, lever by lever, on the same photos in one run.

  python scripts/benchmark_cost.py --workdir=runs/cost                      # 4 photos × 240², every variant
  python scripts/benchmark_cost.py --variants=cold,combined --photos=2 --workdir=runs/cost_smoke

Photos: the centre `--region`² of `--photos` shared Dresden photos of different devices (round robin), anonymized
PRNU-aware with the shared σ = 3 fingerprints, tiled exactly as a whole photo is (128² tiles). Variants (`VARIANTS`):
'cold' is the whole-photo path before this benchmark existed — the CPU recipe on cold 128² tiles with a 16-pixel
overlap, one batch per photo of all its tiles that waits for its slowest tile; each lever alone is 'cold' plus that
lever's fields; 'combined' is this backend's whole-photo default (configs/anonymize.py: 'photo' on a CPU,
'photo_gpu' on a GPU). A region has far fewer tiles than a whole photo, so warm-start roots are kept at a whole
1056² photo's density (the recipe's 8 roots of 81 tiles → 1 root per photo at 240²; at least one). Every variant's
runner is compiled before it is timed (a warm-up piece), so seconds are optimization only.

Columns: seconds per megapixel (wall time of the variant / megapixels anonymized), iterations per tile (mean,
max), occupancy (busy slot-steps / slot-steps), PSNR mean / min over the photos, how many photos have their
NCC inside the band (99th percentile of the other devices' photos' |NCC| with the fingerprint, same region size),
the worst 16×16 colour shift and the seam score. Prints one markdown table (also <workdir>/cost.md, cost.json).
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np
from absl import app
from absl import flags

from dippas_jax import imaging
from dippas_jax import io
from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.configs import arguments
from dippas_jax.dippas import anonymize
from dippas_jax.evaluation import protocol
from dippas_jax.evaluation import visual
from dippas_jax.prnu import metrics

REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED = flags.DEFINE_string("shared", str(REPO.parent / "shared"), "The shared folder (data, reference).")
_REGION = flags.DEFINE_integer("region", 240, "Centre region of each photo (240 = 2 × 2 tiles of 128² with either "
                               "overlap; at most 512, the shared fingerprints' size).")
_PHOTOS = flags.DEFINE_integer("photos", 4, "Photos (round robin over the devices).")
_VARIANTS = flags.DEFINE_list("variants", None, "Variants to run (default: all, in `VARIANTS` order).")
_SET = flags.DEFINE_list("set", [], "Extra field=value overrides of every variant (e.g. dip.max_steps=3: a smoke run).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
WHOLE = 1056  # side of a shared photo (the density of warm-start roots)

# 'cold': today's whole-photo path before the levers (CPU recipe, cold 128² tiles, overlap 16, a batch per photo
# that waits for its slowest tile). Each lever: its fields on top of 'cold'. 'combined': the whole-photo default.
COLD = "cpu,full_resolution=true,tile_size=128,tile_overlap=16,refill=false"
VARIANTS = {
    "cold": COLD,
    "refill": COLD + ",refill=true",
    "lowpass": COLD + ",kept.lowpass_sigma=4,kept.detail_loss=0.5",
    "stop_at_pool": COLD + ",stop_at_pool=20,dip.tau_stop=42",
    "warm_start": COLD + ",warm_start_roots=1",
    "half_width": COLD + ",dip.model.filters=8/16/32/64/128,dip.model.skips=8/16/32/64",
    "combined": "",  # this backend's default: 'photo' on a CPU, 'photo_gpu' on a GPU
}


def _photos(shared: pathlib.Path, count: int) -> list[io.ImageRecord]:
  records = io.list_images(str(shared / "data" / "dresden" / "manifest.csv"), kind="natural")
  return protocol.interleave_devices(records)[:count]


def _fingerprint(shared: pathlib.Path, device: str, region: int) -> np.ndarray:
  k = np.load(shared / "reference" / "prnu_python" / "fingerprints" / f"{device}_sigma3.npy")
  return io.center_crop(k, region, region, name=device)


def _bands(shared: pathlib.Path, devices: list[str], region: int, sigma: float) -> dict[str, float]:
  """Per device: the 99th percentile of |NCC| of the other devices' photos (centre region) with its K."""
  everyone = io.list_images(str(shared / "data" / "dresden" / "manifest.csv"), kind="natural")
  images = np.stack([io.center_crop(imaging.to_uint8(io.read_image(r.path)), region, region) for r in everyone])
  out = {}
  for d in devices:
    others = np.asarray([r.device != d for r in everyone])
    out[d] = float(np.percentile(np.abs(anonymize.ncc_scores(images[others], _fingerprint(shared, d, region),
                                                                sigma=sigma)), 99))
  return out


def _config(arg: str, region: int):
  base, overrides = arguments.parse(arg, tuple(anonymize_config.BASES))
  config = anonymize_config.get_config(base)
  with config.unlocked():
    arguments.apply(config, overrides + [tuple(o.split("=", 1)) for o in _SET.value])
    tiles = anonymize.photo_layout(config, region, region).num_tiles
    if base == "cpu":  # 'cold': one batch per photo
      config.batch_size = tiles
    if config.warm_start_roots > 1:  # roots at a whole photo's density
      whole = anonymize.photo_layout(config, WHOLE, WHOLE).num_tiles
      config.warm_start_roots = max(1, round(config.warm_start_roots * tiles / whole))
  config.trace_every = 0
  return config


def _run_variant(name: str, arg: str, images, ks, names) -> dict:
  config = _config(arg, images[0].shape[0])
  with config.unlocked():  # compile this variant's programs on one short photo first (max_steps is data)
    steps = config.dip.max_steps
    config.dip.max_steps = config.dip.runner.chunk_size
  anonymize.anonymize_photos([anonymize.PhotoTask(name="warm-up", image=images[0], fingerprint=ks[0])],
                             config=config, on_photo=lambda r: None)
  with config.unlocked():
    config.dip.max_steps = steps
  done = {}
  t0 = time.perf_counter()
  stats = anonymize.anonymize_photos(
      [anonymize.PhotoTask(name=n, image=im, fingerprint=k) for n, im, k in zip(names, images, ks)],
      config=config, on_photo=lambda r: done.__setitem__(r.task.name, r))
  wall = time.perf_counter() - t0
  return {"variant": name, "config": arg, "wall_s": wall, "stats": stats, "results": [done[n] for n in names],
          "primary": (int(config.block_size), int(config.num_blocks), float(config.tau))}


def _row(run: dict, images, ks, devices, bands, sigma: float) -> dict:
  results = run["results"]
  outs = [r.outputs[run["primary"]] for r in results]
  its = np.asarray([p.num_steps for r in results for p in r.pieces])
  psnr = np.asarray([float(metrics.psnr(o, im)) for o, im in zip(outs, images)])
  ncc = np.asarray([float(anonymize.ncc_scores(o[None], k, sigma=sigma)[0]) for o, k in zip(outs, ks)])
  in_band = [abs(n) <= bands[d] for n, d in zip(ncc, devices)]
  megapixels = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
  stats = run["stats"]
  return {"variant": run["variant"], "config": run["config"], "s_per_mp": run["wall_s"] / megapixels,
          "wall_s": run["wall_s"], "iterations_mean": float(its.mean()), "iterations_max": int(its.max()),
          "occupancy": stats.busy_steps / max(stats.slot_steps, 1), "psnr_mean": float(psnr.mean()),
          "psnr_min": float(psnr.min()), "ncc": ncc.tolist(), "in_band": int(sum(in_band)), "photos": len(outs),
          "colour_shift_worst": max(visual.colour_shift(o, im)["worst"] for o, im in zip(outs, images)),
          "seam_max": max(visual.seam_score(o, im, r.layout) for o, im, r in zip(outs, images, results))}


def _markdown(rows: list[dict], cold: dict | None) -> str:
  lines = ["| variant | s/MP | × cold | iterations/tile (max) | occupancy | PSNR mean / min | in band | "
           "colour shift | seam |", "|---|---:|---:|---|---:|---|---:|---:|---:|"]
  for r in rows:
    speedup = f"{cold['s_per_mp'] / r['s_per_mp']:.1f}" if cold else "n/a"
    lines.append(f"| {r['variant']} | {r['s_per_mp']:.0f} | {speedup} | {r['iterations_mean']:.0f} "
                 f"({r['iterations_max']}) | {r['occupancy']:.0%} | {r['psnr_mean']:.2f} / {r['psnr_min']:.2f} | "
                 f"{r['in_band']}/{r['photos']} | {r['colour_shift_worst']:.2f} | {r['seam_max']:.3f} |")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  workdir = pathlib.Path(_WORKDIR.value)
  workdir.mkdir(parents=True, exist_ok=True)
  shared, region = pathlib.Path(_SHARED.value), _REGION.value
  records = _photos(shared, _PHOTOS.value)
  images = [io.center_crop(imaging.to_uint8(io.read_image(r.path)), region, region) for r in records]
  devices = [r.device for r in records]
  ks = [_fingerprint(shared, d, region) for d in devices]
  bands = _bands(shared, sorted(set(devices)), region, 3.0)
  names = [r.path.name for r in records]
  rows = []
  for name in _VARIANTS.value or list(VARIANTS):
    run = _run_variant(name, VARIANTS[name], images, ks, names)
    rows.append(_row(run, images, ks, devices, bands, 3.0))
    print(f"{name}: {rows[-1]['s_per_mp']:.0f} s/MP, {rows[-1]['iterations_mean']:.0f} iterations/tile, PSNR "
          f"{rows[-1]['psnr_mean']:.2f} dB, {rows[-1]['in_band']}/{rows[-1]['photos']} in band", flush=True)
    io.write_json(workdir / "cost.json", {"rows": rows, "bands": bands, "photos": names, "region": region,
                                          "command": " ".join(sys.argv)})
  cold = next((r for r in rows if r["variant"] == "cold"), None)
  text = _markdown(rows, cold)
  (workdir / "cost.md").write_text(f"`{' '.join(sys.argv)}`\n\n{text}\n")
  print(text)


if __name__ == "__main__":
  app.run(main)
