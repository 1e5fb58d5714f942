"""The stronger adversaries of `dippas-evaluate` (issue 21), on files: the flat-field split into the anonymizer's
and the attacker's fingerprints, the JPEG copies written and read back, every method/config's adversary scores
and the anonymization detector (library: `evaluation.adversaries`, `evaluation.detector`).

Per method/config (`evaluate`), from its saved PNGs, each adversary scores the processed photos against the
device fingerprints and runs the attribution protocol with the other devices' ORIGINAL photos processed the
same way as negatives ('original_negatives') or their processed anonymized versions ('anonymized_negatives'):

- 'pce': the photos as saved, PCE with the anonymizer's fingerprint (pooled AUC; `attributed_pce` = fraction of
  the photos whose PCE with their own device exceeds `config.pce.threshold`, 60);
- 'attacker': the photos as saved, NCC (Eq. 2) and PCE with the attacker's fingerprint (other flat-fields),
  with the photos inside the attacker-fingerprint non-matching band counted;
- 'jpeg<q>': each PNG re-compressed by Pillow at quality q and WRITTEN to
  `<workdir>/adversaries/jpeg<q>/<method>/<config>/<image>.jpg`, then read back from that file and scored (NCC
  with the anonymizer's fingerprint);
- 'resize<s>': each photo and the fingerprints resized by s (`adversaries.resize_*`), NCC.

The detector (`detect`) runs on the configs of `config.detector.scope`: 'best' = per method the config of lowest
pooled NCC AUC (the plots' choice; 'original' is left out: it would be the photos against themselves), 'all',
or 'none'.
"""

from __future__ import annotations

import dataclasses
import pathlib
import sys
import time

import numpy as np
from tqdm import tqdm

from dippas_jax import io
from dippas_jax.evaluation import adversaries
from dippas_jax.evaluation import detector as detector_lib
from dippas_jax.evaluation import protocol as evaluation
from dippas_jax.jobs import evaluate_methods
from dippas_jax.prnu import fingerprint as fingerprint_lib

ANONYMIZER, ATTACKER = "anonymizer", "attacker"
SPLITS = ("alternate", "none")
SCOPES = ("best", "all", "none")
ORIGINAL = evaluate_methods.ORIGINAL


@dataclasses.dataclass(frozen=True)
class FingerprintSplit:
  """The two fingerprints of every device, at the evaluation crop.

  Attributes:
    anonymizer: {device: float32[h, w]}, from the even-position flat-fields (what every method is given).
    attacker: {device: float32[h, w]}, from the odd-position ones.
    source: JSON record of how they were made (split rule, σ, flat-field crop, the files of each half).
  """
  anonymizer: dict
  attacker: dict
  source: dict


def flatfield_records(images: str) -> list[io.ImageRecord]:
  """The rows of kind 'flatfield' of the manifest that `--images` names (a manifest.csv or a folder holding one);
  [] for any other image spec."""
  p = pathlib.Path(images)
  manifest = p / "manifest.csv" if p.is_dir() else p
  if manifest.suffix.lower() != ".csv" or not manifest.is_file():
    return []
  return [r for r in io.read_manifest(manifest) if r.kind == "flatfield"]


def split_fingerprints(images: str, *, crop: tuple[int, int], config, workdir: pathlib.Path) -> FingerprintSplit | None:
  """Estimates both fingerprints of every device with flat-fields in the `--images` manifest (module docstring
  of `evaluation.adversaries`); None when `config.fingerprint_split` is 'none' or there are no flat-fields.

  Each half's K (`prnu.fingerprint.estimate_fingerprint`, σ = `config.sigma`) is estimated on the flat-fields'
  centre crop of max(`config.flatfield_crop`, crop), centre-cropped to `crop`, and saved as
  `<workdir>/fingerprints/<device>_<anonymizer|attacker>.npz` with its file list.

  Raises:
    io.InputError: an unknown split, or a device with fewer than 2 flat-fields.
  """
  split = str(config.fingerprint_split)
  if split not in SPLITS:
    raise io.InputError(f"config field fingerprint_split {split!r}: expected one of {SPLITS}")
  records = flatfield_records(images) if split != "none" else []
  if not records:
    return None
  flat = tuple(max(int(a), int(b)) for a, b in zip(config.flatfield_crop, crop))
  by_device: dict[str, list] = {}
  for r in records:
    by_device.setdefault(r.device, []).append(r.path)
  ks = {ANONYMIZER: {}, ATTACKER: {}}
  files = {ANONYMIZER: {}, ATTACKER: {}}
  for device, paths in sorted(by_device.items()):
    if len(paths) < 2:
      raise io.InputError(f"{images}: device {device} has {len(paths)} flat-field; the attacker split needs ≥ 2 "
                          "(or set --config.fingerprint_split=none and pass --fingerprints)")
    for half, part in zip((ANONYMIZER, ATTACKER), adversaries.split_alternate(paths)):
      k, _ = fingerprint_lib.estimate_fingerprint(io.load_images(part, crop=flat), sigma=float(config.sigma))
      k = io.center_crop(np.asarray(k), *crop, name=f"{device} fingerprint")
      files[half][device] = [pathlib.Path(f).name for f in part]
      ks[half][device] = k
      io.save_fingerprint(workdir / "fingerprints" / f"{device}_{half}.npz", k, metadata={
          "device": device, "half": half, "files": files[half][device], "sigma": float(config.sigma),
          "flatfield_crop": list(flat), "crop": list(crop)})
  source = {"split": split, "sigma": float(config.sigma), "flatfield_crop": list(flat),
            "rule": "per device, flat-fields sorted by path: positions 0, 2, … → anonymizer; 1, 3, … → "
                    "attacker",
            "files": files}
  return FingerprintSplit(anonymizer=ks[ANONYMIZER], attacker=ks[ATTACKER], source=source)


def with_fingerprint_source(mcs, split: FingerprintSplit | None, dippas_cfgs: dict) -> list:
  """`mcs` with the anonymizer half's file list added to the options of every method that uses the fingerprint
  (so a workdir made with other fingerprints is refused, not mixed); unchanged without a split."""
  if split is None:
    return list(mcs)
  source = {"split": split.source["split"], "sigma": split.source["sigma"],
            "flatfield_crop": split.source["flatfield_crop"], "files": split.source["files"][ANONYMIZER]}
  out = []
  for mc in mcs:
    aware = (mc.method in evaluate_methods.PRNU_AWARE_BASELINES
             or (evaluate_methods.is_dippas(mc.method) and dippas_cfgs[mc.method].mode != "blind"))
    out.append(dataclasses.replace(mc, options={**mc.options, "fingerprints": source}) if aware else mc)
  return out


# ------------------------------------------------------------------------------------------------- scoring
def _jpeg_copies(images: np.ndarray, names, folder: pathlib.Path, quality: int) -> np.ndarray:
  """Writes each photo's JPEG under `folder` and returns the images decoded from those files."""
  out = []
  for name, im in zip(names, images):
    path = folder / f"{name}.jpg"
    with io.atomic_path(path) as tmp:
      tmp.write_bytes(adversaries.jpeg_bytes(np.asarray(im, np.uint8), quality))
    out.append(io.read_image(path))
  return np.stack(out)


def _score_all(images, *, data, k_own, k_attacker, config, jpeg_root: pathlib.Path, key) -> dict:
  """{adversary: score matrices} of one set of photos (module docstring); key = (method, config) folder."""
  sigma, bs, p = float(config.sigma), int(config.batch_size), config.pce
  ks = k_own if k_attacker is None else np.concatenate([k_own, k_attacker])
  both = adversaries.attribution_scores(images, ks, sigma=sigma, radius=int(p.radius),
                                        shift_range=int(p.shift_range), batch_size=bs)
  m = len(k_own)
  out = {"pce": {"ncc": both["ncc"][:m], "pce": both["pce"][:m]}}
  if k_attacker is not None:
    out["attacker"] = {"ncc": both["ncc"][m:], "pce": both["pce"][m:]}
  for q in config.jpeg_qualities:
    decoded = _jpeg_copies(images, data.names, jpeg_root / f"jpeg{int(q)}" / key[0] / key[1], int(q))
    out[f"jpeg{int(q)}"] = adversaries.attribution_scores(decoded, k_own, sigma=sigma, pce=False, batch_size=bs)
  for s in config.resize_scales:
    out[f"resize{float(s):g}"] = adversaries.attribution_scores(
        adversaries.resize_images(images, float(s)), adversaries.resize_fingerprints(k_own, float(s)),
        sigma=sigma, pce=False, batch_size=bs)
  return out


def _aucs(s_anon, s_orig, data) -> dict:
  out = {}
  for variant in evaluation.VARIANTS:
    p = evaluation.attribution_protocol(s_anon, s_orig, data.image_devices, data.devices, variant=variant)
    out[variant] = evaluation.protocol_stats(p)["pooled"]["auc"]
  return out


def _metrics(scores: dict, negatives: dict, data, threshold: float) -> tuple[dict, dict]:
  """(the config's adversary entry, per-image columns for results.csv)."""
  n = np.arange(len(data.names))
  own = np.asarray([data.devices.index(d) for d in data.image_devices])
  entry, per = {"threshold_pce": threshold}, {}
  for name, s in scores.items():
    kind = "pce" if name == "pce" else "ncc"
    entry[name] = _aucs(s[kind], negatives[name][kind], data)
    if name != "pce":
      per[f"ncc_{name}"] = s["ncc"][own, n]
  entry["attributed_pce"] = float(np.mean(scores["pce"]["pce"][own, n] > threshold))
  per["pce"] = scores["pce"]["pce"][own, n]
  if "attacker" in scores:
    att, neg = scores["attacker"], negatives["attacker"]
    entry["attacker_pce"] = _aucs(att["pce"], neg["pce"], data)
    entry["attributed_pce_attacker"] = float(np.mean(att["pce"][own, n] > threshold))
    bands = evaluation.non_matching_band(neg["ncc"], data.image_devices, data.devices)
    band = np.asarray([bands[d] for d in data.image_devices])
    per["band_attacker"], per["pce_attacker"] = band, att["pce"][own, n]
    per["in_band_attacker"] = np.abs(att["ncc"][own, n]) <= band
    entry["in_band_attacker"] = int(np.sum(per["in_band_attacker"]))
  return entry, per


def evaluate(data, mcs, folders: dict, config, *, workdir: pathlib.Path, k_attacker, results: dict,
             rows: list[dict]) -> None:
  """Adds every method/config's adversary entry to `results[method][config]['adversaries']` and its per-image
  columns to `rows` (module docstring)."""
  root = workdir / "adversaries"
  common = dict(data=data, k_own=data.fingerprints, k_attacker=k_attacker, config=config, jpeg_root=root)
  negatives = _score_all(data.images, key=(ORIGINAL, "photo"), **common)
  index = {(r["method"], r["config"], r["image"]): r for r in rows}
  threshold = float(config.pce.threshold)
  for mc in tqdm(mcs, desc="adversaries", unit="config", file=sys.stderr):
    if mc.method == ORIGINAL:
      scores = negatives
    else:
      anon = np.stack([io.read_image(folders[(mc.method, mc.label)] / f"{name}.png") for name in data.names])
      scores = _score_all(anon, key=(mc.method, mc.label), **common)
    entry, per = _metrics(scores, negatives, data, threshold)
    results[mc.method][mc.label]["adversaries"] = entry
    for i, name in enumerate(data.names):
      index[(mc.method, mc.label, name)].update({k: (bool(v[i]) if v.dtype == bool else float(v[i]))
                                                  for k, v in per.items()})


# ------------------------------------------------------------------------------------------------ detector
def detector_settings(config) -> detector_lib.DetectorSettings:
  """`DetectorSettings` from `config.detector` (its scope and seed are the job's; photos per call of the
  handcrafted layers = `config.batch_size`, the baselines' batch, so the wavelet denoiser's compilation is shared)."""
  d = config.detector
  names = [f.name for f in dataclasses.fields(detector_lib.DetectorSettings) if f.name != "batch_size_features"]
  values = {k: (tuple(d[k]) if isinstance(d[k], (tuple, list)) else d[k]) for k in names}
  return detector_lib.DetectorSettings(**values, batch_size_features=int(config.batch_size))


def detector_configs(results: dict, scope: str) -> list[tuple[str, str]]:
  """The (method, config) pairs the detector runs on (module docstring)."""
  if scope not in SCOPES:
    raise io.InputError(f"config field detector.scope {scope!r}: expected one of {SCOPES}")
  if scope == "none":
    return []
  variant = evaluation.VARIANTS[0]
  out = []
  for method, configs in results.items():
    if method == ORIGINAL:
      continue
    labels = list(configs)
    if scope == "best":
      def key(label):
        auc = configs[label]["metrics"][variant]["ncc"]["pooled"]["auc"]
        return (np.inf if auc is None else auc, -(configs[label]["mean_psnr_changed"] or 1e9))
      labels = [min(labels, key=key)]
    out.extend((method, label) for label in labels)
  return out


def detect(data, folders: dict, config, *, results: dict) -> list[tuple[str, str]]:
  """Runs the detector on the configs of its scope; adds `results[m][c]['adversaries']['detector']` (None for the
  others) and returns the pairs it ran on."""
  settings = detector_settings(config)
  chosen = detector_configs(results, str(config.detector.scope))
  for configs in results.values():
    for entry in configs.values():
      entry.setdefault("adversaries", {})["detector"] = None
  if chosen:
    try:
      settings.check(len(data.names), data.images.shape[1], data.images.shape[2])
    except ValueError as e:
      raise io.InputError(f"config field detector: {e}") from None
  for method, label in tqdm(chosen, desc="detector", unit="config", file=sys.stderr):
    t0 = time.perf_counter()
    anon = np.stack([io.read_image(folders[(method, label)] / f"{name}.png") for name in data.names])
    out = detector_lib.cross_validate(data.images, anon, settings=settings, seed=int(config.detector.seed))
    out["seconds"] = time.perf_counter() - t0
    results[method][label]["adversaries"]["detector"] = out
  return chosen
