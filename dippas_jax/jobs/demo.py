"""`dippas-demo`: the embedded default job on the built-in synthetic camera (no external data).

The camera photographs scikit-image's sample photos (astronaut, coffee, chelsea, rocket, motorcycle) through
sensors with a fingerprint of realistic strength (PRNU std 0.2 %: NCC of an unaltered 128² crop with its K about
0.01-0.05, real Dresden crops 0.00-0.03), JPEG q90. The job estimates each device's fingerprint from its flat-fields,
attributes every photo, then anonymizes one photo whole with DIPPAS as `dippas-anonymize` does and shows the result,
scored with the estimated fingerprint (the paper's protocol) and with the true one (a check only a simulation
allows).
"""

from __future__ import annotations

import pathlib
import time

import numpy as np

from dippas_jax import io
from dippas_jax import plotting
from dippas_jax import synthetic
from dippas_jax.dippas import anonymize
from dippas_jax.dippas import kept_image
from dippas_jax.evaluation import visual
from dippas_jax.jobs import anonymize_report
from dippas_jax.jobs import attribute as attribute_job
from dippas_jax.jobs import common
from dippas_jax.prnu import attribution
from dippas_jax.prnu import fingerprint
from dippas_jax.prnu import metrics


# Sensor of the demo camera: PRNU std 0.2 %, shot-noise variance 0.05·Y (std ≈ 2.7 grey levels at Y = 150, as a
# daylight photo at base ISO), read noise 1 grey level.
PRNU_STD = 0.002
SHOT_GAIN = 0.05


def demo_job(*, workdir: str, config, size: int = 248, num_devices: int = 3, num_flatfield: int = 10,
             num_natural: int = 4, seed: int = 0, anonymize_config=None, prnu_std: float = PRNU_STD) -> dict:
  """The embedded default (module docstring): fingerprints from flat-fields, attribution of the photos (AUCs,
  fingerprint quality; summary.json, scores.csv, roc.png), then, with `anonymize_config`, DIPPAS on one photo
  (PSNR and NCC before/after against the non-matching band; photo.png, anonymized.png, report.png)."""
  t0 = time.perf_counter()
  data = synthetic.make_dataset(seed=seed, num_devices=num_devices, num_flatfield=num_flatfield,
                                num_natural=num_natural, height=size, width=size, jpeg_quality=90,
                                prnu_std=prnu_std, shot_gain=SHOT_GAIN, scenes="photos")
  print(f"synthetic camera: {num_devices} devices (PRNU std {100 * prnu_std:.1f} %), {num_flatfield} flat-fields "
        f"and {num_natural} photos each (scikit-image's sample photos), {size}×{size}, JPEG q90")
  ks = {}
  for d, name in enumerate(data.devices):
    k, _ = fingerprint.estimate_fingerprint(data.flatfield[d], batch_size=config.batch_size, sigma=config.sigma,
                                            levels=config.levels, wavelet=config.wavelet,
                                            saturation_mode=config.saturation)
    ks[name] = np.asarray(k)
    quality = float(metrics.pearson(k, data.prnu[d]))
    print(f"{name}: correlation of the estimated fingerprint with the true K = {quality:.3f}")
  names = [f"{data.devices[d]}_photo{i}" for i, d in enumerate(data.natural_device)]
  devices = [data.devices[d] for d in data.natural_device]
  result = attribution.attribute(ks, data.natural, names, devices, sigma=config.sigma, levels=config.levels,
                                 wavelet=config.wavelet, batch_size=config.batch_size, pce_mode=config.pce_mode,
                                 pce_radius=config.pce_radius, pce_shift_range=config.pce_shift_range)
  summary = attribute_job.write_report(result, workdir, config=common.config_dict(config))
  attribute_job.print_stats(result.stats)
  print(f"wrote {pathlib.Path(workdir) / 'roc.png'} and summary.json, scores.csv ({time.perf_counter() - t0:.1f} s)")
  if anonymize_config is not None:
    summary["anonymization"] = _demo_anonymize(data, ks, workdir=pathlib.Path(workdir), config=anonymize_config)
    io.write_json(pathlib.Path(workdir) / "summary.json", summary)
  return summary


def _demo_anonymize(data: synthetic.SyntheticDataset, ks: dict, *, workdir: pathlib.Path, config) -> dict:
  """Anonymizes the first synthetic photo whole (PRNU-aware, with its estimated fingerprint) as `dippas-anonymize`
  does, and prints PSNR, the colour shift, the seam score and the NCC before/after against the non-matching band of
  the other devices' photos, with the estimated and with the true fingerprint."""
  name = data.devices[0]
  photo, k_est, k_true = data.natural[0], ks[name], data.prnu[0]
  h, w = photo.shape[:2]
  layout = anonymize.photo_layout(config, h, w)
  pieces = 1 if layout is None else layout.num_tiles
  print(f"anonymizing {name}_photo0 whole ({h}×{w}, {pieces} tiles of {config.tile_size}², PRNU-aware, "
        f"recipe {config.recipe})")
  flat_share = _print_flat_path(photo, config.kept)
  bar = common.progress(pieces, "DIPPAS", unit="tile")
  done = []
  anonymize.anonymize_photos([anonymize.PhotoTask(name=f"{name}_photo0.png", image=photo, fingerprint=k_est)],
                             config=config, on_photo=done.append, on_piece=lambda *_: bar.update(1))
  bar.close()
  result = done[0]
  out = result.outputs[(int(config.block_size), int(config.num_blocks), float(config.tau))]
  io.write_png(workdir / "photo.png", photo)
  io.write_png(workdir / "anonymized.png", out)
  others = np.stack([im for im, d in zip(data.natural, data.natural_device) if d != 0])
  numbers = {"psnr": float(metrics.psnr(out, photo)), "colour_shift": visual.colour_shift(out, photo)["worst"],
             "seam_score": None if layout is None else visual.seam_score(out, photo, layout),
             "spot_shift": visual.spot_shift(out, photo)["worst"], "flat_path_share": flat_share,
             "iterations_per_tile": float(np.mean([p.num_steps for p in result.pieces])), "seconds": result.seconds}
  ncc = {}  # per fingerprint: NCC before, after, the 99th percentile of the other cameras' photos' |NCC|
  for label, k in (("estimated", k_est), ("true", k_true)):
    band = float(np.percentile(np.abs(anonymize.ncc_scores(others, k, sigma=config.sigma)), 99))
    ncc[label] = tuple(float(anonymize.ncc_scores(x[None], k, sigma=config.sigma)[0]) for x in (photo, out)) + (band,)
  lines = [f"PSNR            {numbers['psnr']:.2f} dB", f"colour shift    {numbers['colour_shift']:.2f} (worst 16×16)",
           f"spot shift      {numbers['spot_shift']:.2f} (flat areas)",
           f"tiles           {pieces} × {numbers['iterations_per_tile']:.0f} iterations",
           "NCC before → after (other cameras' |NCC| 99 %)"]
  if numbers["seam_score"] is not None:
    lines.insert(2, f"seam score      {numbers['seam_score']:.3f}")
  lines += [f"  {label:<9s} K   {b:+.4f} → {a:+.4f}  ({band:.4f})" for label, (b, a, band) in ncc.items()]
  plotting.plot_photo_report(workdir / "report.png", photo, out,
                             anonymize_report.block_ncc_map(photo, k_est, sigma=config.sigma),
                             anonymize_report.block_ncc_map(out, k_est, sigma=config.sigma),
                             title=f"{name}_photo0: DIPPAS (PRNU-aware), NCC with the estimated fingerprint",
                             lines=lines)
  print(f"PSNR {numbers['psnr']:.2f} dB, worst 16×16 colour shift {numbers['colour_shift']:.2f} grey levels, "
        f"spot shift {numbers['spot_shift']:.2f}, {numbers['iterations_per_tile']:.0f} iterations per tile, "
        f"{numbers['seconds']:.0f} s; wrote {workdir / 'anonymized.png'} and {workdir / 'report.png'}")
  for label, (before, after, band) in ncc.items():
    what = ("the fingerprint estimated from the flat-fields (what an analyst has; DIPPAS used it)"
            if label == "estimated" else "the true fingerprint (known only in this simulation)")
    verdict = "inside" if abs(after) <= band else "OUTSIDE"
    print(f"NCC with {what}: {before:+.4f} -> {after:+.4f}, {verdict} the band of the other cameras' photos "
          f"(|NCC| ≤ {band:.4f})")
  return {**numbers, **{f"{label}_fingerprint": {"ncc_before": b, "ncc_after": a, "non_matching_p99": band}
                        for label, (b, a, band) in ncc.items()}}


def _print_flat_path(photo: np.ndarray, kept_config) -> float | None:
  """Prints the flat path's settings and the share of the photo it keeps (the mean of its mask); None when off."""
  kept = kept_image.KeptImage.from_config(kept_config)
  if not kept.flat_path:
    print("flat path: off (the DIP's output everywhere, as the paper)")
    return None
  mask = kept_image.flatness_mask(photo.astype(np.float32) / 255.0, flat_std=kept.flat_std,
                                  textured_std=kept.textured_std, window_sigma=kept.window_sigma)
  share = float(np.mean(mask))
  print(f"flat path: where the local grey-level std (σ {kept.window_sigma:g} px) is ≤ {kept_config.flat_std:g} the "
        f"photo denoised (wavelet, noise σ {kept_config.flat_noise:g}), ≥ {kept_config.textured_std:g} the DIP's "
        f"output, a smooth blend between: {100 * share:.0f} % of this photo")
  return share

