"""`dippas-fingerprint`: flat-field images → one fingerprint `<workdir>/<device>.npz` per device."""

from __future__ import annotations

import pathlib
import sys

import numpy as np

import dippas_jax
from dippas_jax import io
from dippas_jax.jobs import common
from dippas_jax.prnu import fingerprint


def _readable(records, crop, skipped: list[str], shape: list):
  """The records' images, centre-cropped; unreadable, too small or differently sized ones are reported on
  stderr, appended to `skipped` and left out (the first usable image fixes the size)."""
  for r in records:
    try:
      image = io.read_image(r.path)
      image = io.center_crop(image, *crop, name=str(r.path)) if crop else image
      if shape and image.shape != shape[0]:
        raise io.InputError(f"{r.path}: size {image.shape[:2]} differs from the device's first flat-field "
                            f"{shape[0][:2]}; set a crop (config field crop)")
    except io.InputError as e:
      print(f"skipped: {e}", file=sys.stderr)
      skipped.append(str(e))
      continue
    shape[:] = [image.shape]
    yield image


def fingerprint_job(*, images: str, workdir: str, config, device: str | None = None) -> dict:
  """Estimates one fingerprint per device from flat-field images and writes `<workdir>/<device>.npz`.

  Args:
    images: folder, glob, file list or manifest.csv (rows of kind 'flatfield' are used).
    workdir: output folder.
    config: the PRNU config (`configs/prnu.py`).
    device: if set, only this device (manifest) or the name of all given images (folder/glob).

  Returns:
    {'written': {device: path}, 'skipped': [messages]}.
  """
  records = io.list_images(images, kind="flatfield")
  if device and any(r.device == device for r in records):
    records = [r for r in records if r.device == device]
    device = None
  crop = common.crop_of(config)
  written, skipped = {}, []
  for name, group in common.group_by_device(records, device).items():
    bar = common.progress(len(group), f"fingerprint {name}")
    used_before = len(skipped)
    try:
      k, count = fingerprint.estimate_fingerprint(
          _readable(group, crop, skipped, []), batch_size=config.batch_size, sigma=config.sigma,
          levels=config.levels, wavelet=config.wavelet, saturation_mode=config.saturation,
          progress=lambda n: bar.update(n - bar.n))
    except ValueError:  # no readable flat-field at all
      bar.close()
      skipped.append(f"{name}: none of its {len(group)} flat-fields could be used; no fingerprint written")
      print(f"skipped: {skipped[-1]}", file=sys.stderr)
      continue
    bar.close()
    path = pathlib.Path(workdir) / f"{name}.npz"
    io.save_fingerprint(path, np.asarray(k), metadata={
        "device": name, "num_images": count, "files": [str(r.path) for r in group], "skipped": skipped[used_before:],
        "sigma": config.sigma, "levels": config.levels, "wavelet": config.wavelet, "crop": crop,
        "saturation": config.saturation, "dippas_jax_version": dippas_jax.__version__})
    written[name] = str(path)
    print(f"{name}: {count} images -> {path}")
  if not written:
    raise io.InputError(f"{images}: no fingerprint could be estimated; first problem: {skipped[0]}")
  common.print_skipped(skipped)
  return {"written": written, "skipped": skipped}
