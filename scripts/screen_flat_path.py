r"""Screen the flat path's reconstruction and mask on the shared photos, without the DIP (minutes, not hours).

  python scripts/screen_flat_path.py --workdir=runs/screen_flat

The flat path (`dippas/kept_image.py`) keeps, where the photo is flat, a fingerprint-free reconstruction R of the
photo instead of the DIP's output: kept = m·R + (1 − m)·DIP. Its two costs can be measured from the photo alone:

- what a viewer sees: `visual.spot_shift` of m·R + (1 − m)·I against I (the DIP's textured part left out: the
  metric looks at flat pixels only, where m ≈ 1);
- what an analyst finds: the flat part's share of the Eq. 2 NCC, with the textured part standing for a DIP output
  that carries no fingerprint but a residual of the photo's own strength:
  NCC ≈ <m·W(R), gray(I)·K> / (‖m·W(R) + (1 − m)·W(I)‖ · ‖gray(I)·K‖), beside each photo's unaltered NCC and its
  device's band (99th percentile of the other devices' photos' |NCC|).

Every photo of the shared manifest on its centre 1056², the fingerprints of all 10 flat-fields (σ 3, as
`benchmark_whole_photos.py`). Prints one markdown table (mean / worst over photos) and writes `screen.json`.
"""

from __future__ import annotations

import itertools
import pathlib
import sys

import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from dippas_jax import imaging
from dippas_jax import io
from dippas_jax.dippas import kept_image
from dippas_jax.dippas import lowpass
from dippas_jax.evaluation import protocol
from dippas_jax.evaluation import visual
from dippas_jax.prnu import denoise
from dippas_jax.prnu import fingerprint

REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED = flags.DEFINE_string("shared", str(REPO.parent / "shared"), "The shared folder (data).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
_RECONS = flags.DEFINE_list("recons", ["gauss:1.5", "gauss:2", "gauss:2.5", "gauss:3", "wavelet:2", "wavelet:3",
                                       "wavelet:4", "wavelet:3:2", "wavelet:4:2"],
                            "Reconstructions R: 'gauss:σ' (G_σ * I) or 'wavelet:σ' (the wavelet denoiser, noise σ "
                            "in grey levels, on the whole photo) or 'wavelet:σ:s' (its removal's part above G_s "
                            "put back: D(I) + G_s * (I − D(I))).")
_MASKS = flags.DEFINE_list("masks", ["2:4", "3:5"], "Mask ramps 'flat:textured' of the local std.")
SIDE = 1056


def _residual(image: np.ndarray) -> np.ndarray:
  return np.asarray(denoise.rgb2gray(denoise.noise_extract(jnp.asarray(image[None], jnp.float32), sigma=3.0)))[0]


def _reconstruction(image: np.ndarray, name: str) -> np.ndarray:
  kind, *values = name.split(":")
  if kind == "gauss":
    return np.asarray(lowpass.blur(jnp.asarray(image), sigma=float(values[0])))
  denoised = np.asarray(kept_image.flat_reconstruction(jnp.asarray(image[None]), noise=float(values[0])))[0]
  if len(values) > 1:
    denoised = denoised + np.asarray(lowpass.blur(jnp.asarray(image - denoised), sigma=float(values[1])))
  return denoised


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  workdir = pathlib.Path(_WORKDIR.value)
  manifest = str(pathlib.Path(_SHARED.value) / "data" / "dresden" / "manifest.csv")
  flats = io.list_images(manifest, kind="flatfield")
  devices = sorted({r.device for r in flats})
  ks = {}
  for d in devices:
    stack = np.stack([imaging.to_uint8(io.read_image(r.path)) for r in flats if r.device == d])
    ks[d] = io.center_crop(np.asarray(fingerprint.estimate_fingerprint(stack, sigma=3.0)[0]), SIDE, SIDE)
  naturals = io.list_images(manifest, kind="natural")
  originals = np.stack([io.center_crop(imaging.to_uint8(io.read_image(r.path)), SIDE, SIDE) for r in naturals])
  scores = protocol.score_matrix(originals, np.stack([ks[d] for d in devices]))["ncc"]
  band = protocol.non_matching_band(scores, [r.device for r in naturals], devices)
  results = []
  for i, r in enumerate(naturals):
    image = originals[i].astype(np.float32)
    w_orig = _residual(image)
    pattern = image.mean(-1) * ks[r.device]
    print(f"{r.path.name}: NCC {scores[devices.index(r.device), i]:+.4f}, band {band[r.device]:.4f}", flush=True)
    for recon_name, ramp in itertools.product(_RECONS.value, _MASKS.value):
      lo, hi = (float(v) for v in ramp.split(":"))
      m = np.asarray(kept_image.flatness_mask(jnp.asarray(image / 255.0), flat_std=lo / 255.0,
                                              textured_std=hi / 255.0))
      recon = _reconstruction(image, recon_name)
      blended = np.clip(np.rint(m * recon + (1 - m) * image), 0, 255).astype(np.uint8)
      w_flat = m[..., 0] * _residual(blended)
      proxy = w_flat + (1 - m[..., 0]) * w_orig
      ncc = float((w_flat * pattern).sum() / (np.linalg.norm(proxy) * np.linalg.norm(pattern)))
      results.append({"photo": r.path.name, "device": r.device, "recon": recon_name, "ramp": ramp,
                      "flat": float(m.mean()), "spot": visual.spot_shift(blended, originals[i])["worst"],
                      "ncc_flat": ncc, "ncc_before": float(scores[devices.index(r.device), i]),
                      "band": band[r.device]})
  lines = ["| R | ramp | mask mean | spot mean | spot worst | |NCC_flat|/band mean | worst | photos over band |",
           "|---:|---|---:|---:|---:|---:|---:|---:|"]
  for recon_name, ramp in itertools.product(_RECONS.value, _MASKS.value):
    rows = [x for x in results if x["recon"] == recon_name and x["ramp"] == ramp]
    rel = [abs(x["ncc_flat"]) / x["band"] for x in rows]
    lines.append(f"| {recon_name} | {ramp} | {np.mean([x['flat'] for x in rows]):.2f} | "
                 f"{np.mean([x['spot'] for x in rows]):.2f} | {max(x['spot'] for x in rows):.2f} | "
                 f"{np.mean(rel):.2f} | {max(rel):.2f} | {sum(v > 1 for v in rel)}/{len(rows)} |")
  text = "\n".join(lines)
  io.write_json(workdir / "screen.json", {"command": " ".join(sys.argv), "rows": results})
  (workdir / "screen.md").write_text(f"`{' '.join(sys.argv)}`\n\n{text}\n")
  print(text)


if __name__ == "__main__":
  app.run(main)
