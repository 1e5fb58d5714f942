"""`dippas-demo`: the embedded default job on the built-in synthetic camera (no external data)."""

from __future__ import annotations

import pathlib
import time

import numpy as np

from dippas_jax import io
from dippas_jax import synthetic
from dippas_jax.dippas import anonymize
from dippas_jax.jobs import attribute as attribute_job
from dippas_jax.jobs import common
from dippas_jax.prnu import attribution
from dippas_jax.prnu import fingerprint
from dippas_jax.prnu import metrics


def demo_job(*, workdir: str, config, size: int = 256, num_devices: int = 3, num_flatfield: int = 10,
             num_natural: int = 4, seed: int = 0, anonymize_config=None) -> dict:
  """The embedded default: a synthetic camera set, fingerprints from its flat-fields, attribution of its
  natural photos (AUCs, fingerprint quality; summary.json, scores.csv, roc.png), then, with
  `anonymize_config`, DIPPAS on one photo (PSNR and NCC before/after; photo.png, anonymized.png)."""
  t0 = time.perf_counter()
  data = synthetic.make_dataset(seed=seed, num_devices=num_devices, num_flatfield=num_flatfield,
                                num_natural=num_natural, height=size, width=size, jpeg_quality=90)
  print(f"synthetic camera: {num_devices} devices, {num_flatfield} flat-fields and {num_natural} natural photos "
        f"each, {size}×{size}, JPEG q90")
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
  """Anonymizes the first synthetic photo (PRNU-aware, with its estimated fingerprint) at the config's crop and
  prints PSNR and NCC before/after against the non-matching band of the other devices' photos."""
  crop = tuple(config.crop)
  name = data.devices[0]
  photo = io.center_crop(data.natural[0], *crop)[None]
  k_est = io.center_crop(ks[name], *crop)
  k_true = io.center_crop(data.prnu[0], *crop)
  print(f"anonymizing {name}_photo0 ({crop[0]}×{crop[1]} crop, PRNU-aware, ≤ {config.dip.max_steps} iterations)")
  bar = common.progress(config.dip.max_steps, "DIPPAS", unit="it")
  result = anonymize.anonymize(photo, k_est, config=config,
                               on_chunk=lambda info: bar.update(min(info.steps, bar.total) - bar.n))
  bar.close()
  out = result.outputs[result.primary]
  io.write_png(workdir / "photo.png", photo[0])
  io.write_png(workdir / "anonymized.png", out[0])
  others = np.stack([io.center_crop(im, *crop) for im, d in zip(data.natural, data.natural_device) if d != 0])
  band = float(np.percentile(anonymize.ncc_scores(others, k_true, sigma=config.sigma), 99))
  before = float(anonymize.ncc_scores(photo, k_true, sigma=config.sigma)[0])
  after = float(anonymize.ncc_scores(out, k_true, sigma=config.sigma)[0])
  psnr = float(metrics.psnr(out, photo)[0])
  print(f"PSNR {psnr:.2f} dB; NCC with the true fingerprint {before:+.4f} -> {after:+.4f} "
        f"(other devices' photos: 99th percentile {band:+.4f}); γ {result.gamma[0]:.3f}, "
        f"{result.num_steps[0]} iterations; wrote {workdir / 'anonymized.png'}")
  return {"psnr": psnr, "ncc_before": before, "ncc_after": after, "non_matching_p99": band,
          "gamma": float(result.gamma[0]), "iterations": int(result.num_steps[0])}
