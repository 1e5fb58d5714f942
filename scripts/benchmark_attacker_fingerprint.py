r"""DIPPAS against an attacker's own fingerprint: anonymize with a fingerprint estimated from half of each device's
flat-fields (the anonymizer's), score with one from the other half (the attacker's, statistically independent).

The paper's protocol (and `dippas-evaluate`) scores the anonymized photos with the very fingerprint that ranked
the candidates, so the block selection can fit that estimate's noise; this benchmark shows how much of the
drop in NCC and AUC holds against an independent estimate.

  python scripts/benchmark_attacker_fingerprint.py --workdir=runs/attacker128
  python scripts/benchmark_attacker_fingerprint.py --workdir=runs/attacker128 --config=paper_cpu --photos=6

Prints one markdown table (also `<workdir>/attacker.md`, `attacker.json`): per fingerprint (anonymizer's A,
attacker's B), the pooled AUC of the original and anonymized photos (negatives: the other devices' originals),
mean |NCC| before/after and the photos inside the non-matching band.
"""

from __future__ import annotations

import pathlib
import sys
import time

import numpy as np
from absl import app
from absl import flags

from dippas_jax import io
from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.dippas import anonymize
from dippas_jax.evaluation import protocol
from dippas_jax.prnu import fingerprint
from dippas_jax.prnu import metrics

REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED = flags.DEFINE_string("shared", str(REPO.parent / "shared"), "The shared folder (data, reference).")
_CONFIG = flags.DEFINE_string("config", "cpu", "Anonymize config argument (configs/anonymize.py).")
_PHOTOS = flags.DEFINE_integer("photos", 0, "Use only the first this many photos (0 = all 16).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
_FLAT_CROP = 512  # fingerprints are estimated on 512² centre crops of the flat-fields, then centre-cropped


def _split_fingerprints(records, crop) -> tuple[dict, dict]:
  """{device: K} from the even-indexed and from the odd-indexed flat-fields of each device."""
  halves = ({}, {})
  for device in sorted({r.device for r in records}):
    paths = sorted(r.path for r in records if r.device == device)
    for h in (0, 1):
      images = io.load_images(paths[h::2], crop=(_FLAT_CROP, _FLAT_CROP))
      k, _ = fingerprint.estimate_fingerprint(images, sigma=3.0)
      halves[h][device] = io.center_crop(np.asarray(k), *crop)
  return halves


def _row(name, devices, scores_anon, scores_orig, photo_devices) -> dict:
  band = protocol.non_matching_band(scores_orig, photo_devices, devices)
  own = np.array([devices.index(d) for d in photo_devices])
  before, after = scores_orig[own, np.arange(len(own))], scores_anon[own, np.arange(len(own))]
  auc = {}
  for which, anon in (("original", scores_orig), ("anonymized", scores_anon)):
    p = protocol.attribution_protocol(anon, scores_orig, photo_devices, devices, variant="original_negatives")
    auc[which] = protocol.protocol_stats(p)["pooled"]["auc"]
  inside = int(sum(abs(a) <= band[d] for a, d in zip(after, photo_devices)))
  return {"fingerprint": name, "auc_original": auc["original"], "auc_anonymized": auc["anonymized"],
          "mean_abs_ncc_before": float(np.mean(np.abs(before))), "mean_abs_ncc_after": float(np.mean(np.abs(after))),
          "mean_ncc_before": float(np.mean(before)), "mean_ncc_after": float(np.mean(after)),
          "in_band": inside, "photos": len(own)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  workdir = pathlib.Path(_WORKDIR.value)
  workdir.mkdir(parents=True, exist_ok=True)
  config = anonymize_config.get_config(_CONFIG.value)
  crop = tuple(config.crop)
  manifest = str(pathlib.Path(_SHARED.value) / "data" / "dresden" / "manifest.csv")
  k_a, k_b = _split_fingerprints(io.list_images(manifest, kind="flatfield"), crop)
  photos = io.list_images(manifest, kind="natural")[:_PHOTOS.value or None]
  images = io.load_images([r.path for r in photos], crop=crop)
  photo_devices = [r.device for r in photos]
  devices = sorted(k_a)
  t0 = time.perf_counter()
  outputs, steps = [], []
  for start in range(0, len(images), config.batch_size):  # per-photo fingerprints: any devices in one batch
    part = slice(start, start + config.batch_size)
    result = anonymize.anonymize(images[part], np.stack([k_a[d] for d in photo_devices[part]]), config=config)
    outputs.append(result.outputs[result.primary])
    steps.extend(int(s) for s in result.num_steps)
    print(f"photos {start + 1}-{start + len(outputs[-1])}: {time.perf_counter() - t0:.0f} s", flush=True)
  anonymized = np.concatenate(outputs)
  psnr = np.asarray(metrics.psnr(anonymized, images))
  rows = []
  for name, ks in (("A (anonymizer's)", k_a), ("B (attacker's)", k_b)):
    stack = np.stack([ks[d] for d in devices])
    s_anon = protocol.score_matrix(anonymized, stack, sigma=config.sigma)["ncc"]
    s_orig = protocol.score_matrix(images, stack, sigma=config.sigma)["ncc"]
    rows.append(_row(name, devices, s_anon, s_orig, photo_devices))
  head = (f"config `{_CONFIG.value}`, {len(images)} photos ({crop[0]}² crops), PSNR mean {psnr.mean():.2f} / min "
          f"{psnr.min():.2f} dB, iterations mean {np.mean(steps):.0f}, {time.perf_counter() - t0:.0f} s\n\n"
          "| scored with | AUC original | AUC anonymized | mean NCC before → after | mean \\|NCC\\| before → after | "
          "in band |\n|---|---:|---:|---|---|---:|")
  lines = [head] + [f"| {r['fingerprint']} | {r['auc_original']:.3f} | {r['auc_anonymized']:.3f} | "
                    f"{r['mean_ncc_before']:+.4f} → {r['mean_ncc_after']:+.4f} | {r['mean_abs_ncc_before']:.4f} → "
                    f"{r['mean_abs_ncc_after']:.4f} | {r['in_band']}/{r['photos']} |" for r in rows]
  text = "\n".join(lines)
  (workdir / "attacker.md").write_text(f"`{' '.join(sys.argv)}`\n\n{text}\n")
  io.write_json(workdir / "attacker.json", {"rows": rows, "psnr": psnr.tolist(), "iterations": steps,
                                            "config": _CONFIG.value, "command": " ".join(sys.argv)})
  print(text)


if __name__ == "__main__":
  app.run(main)
