"""The evaluation job (`jobs.evaluate`) and `dippas-evaluate` on a tiny synthetic camera on disk."""

import json
import math
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dippas_jax import io
from dippas_jax import synthetic
from dippas_jax.configs import evaluate as evaluate_config
from dippas_jax.jobs import evaluate as evaluate_job
from dippas_jax.evaluation import protocol
from dippas_jax.jobs import evaluate_methods
from dippas_jax.prnu import attribution
from dippas_jax.prnu import fingerprint
from dippas_jax.prnu import metrics
from dippas_jax.prnu import roc

# One xdist worker runs this module (`--dist loadgroup`): its module fixtures and compiled programs are made once.
pytestmark = pytest.mark.xdist_group("evaluate_job")

# Photos per device kept in the manifest: unequal, so that the protocol counts are not symmetric.
_PER_DEVICE = (3, 2, 1)
_BASELINES = ("original", "fingerprint_subtraction", "wavelet_denoising", "inpainting")


def _strict_json(path):
  def refuse(token):
    raise AssertionError(f"non-strict JSON constant {token} in {path}")
  return json.loads(pathlib.Path(path).read_text(), parse_constant=refuse)


def _read_csv(path):
  import csv
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def camera(tmp_path_factory):
  """3 synthetic devices, 64×64: natural photos (3/2/1 per device) and 6 flat-fields per device in a manifest
  (natural rows first), and fingerprints from all the flat-fields as .npz."""
  root = tmp_path_factory.mktemp("camera")
  data = synthetic.make_dataset(seed=11, num_devices=3, num_flatfield=6, num_natural=3, height=64, width=64)
  rows, count = [], {}
  for i, (im, d) in enumerate(zip(data.natural, data.natural_device)):
    name = data.devices[d]
    if count.get(name, 0) >= _PER_DEVICE[d]:
      continue
    count[name] = count.get(name, 0) + 1
    io.write_png(root / "natural" / f"{name}_{i}.png", im)
    rows.append({"file": f"natural/{name}_{i}.png", "device": name, "kind": "natural"})
  for d, name in enumerate(data.devices):
    for j, im in enumerate(data.flatfield[d]):
      io.write_png(root / "flatfield" / f"{name}_{j:02d}.png", im)
      rows.append({"file": f"flatfield/{name}_{j:02d}.png", "device": name, "kind": "flatfield"})
  io.write_csv(root / "manifest.csv", rows)
  for d, name in enumerate(data.devices):
    k, _ = fingerprint.estimate_fingerprint(data.flatfield[d], sigma=3.0, batch_size=6)
    io.save_fingerprint(root / "fp" / f"{name}.npz", np.asarray(k), metadata={"device": name})
  return root


def _config(scope="none", **dippas):
  """The tiny config; the detector only where a test looks at it (`scope`), and only its logistic half (the
  ResNet's compilation costs ~15 s; tests/evaluation/detector_test.py trains it)."""
  config = evaluate_config.get_config("tiny")
  config.detector.scope = scope
  config.detector.detectors = ("logistic",)
  for key, value in dippas.items():
    setattr(config.dippas.dip, key, value)
  return config


def _natural(camera):
  return [r for r in io.read_manifest(camera / "manifest.csv") if r.kind == "natural"]


@pytest.fixture(scope="module")
def evaluated(camera, tmp_path_factory):
  """One in-process evaluation of the photos and three baselines with the flat-field split (no --fingerprints)
  and the detector on each method's best config; returns (workdir, summary, seconds)."""
  import time
  workdir = tmp_path_factory.mktemp("eval")
  t0 = time.perf_counter()
  summary = evaluate_job.evaluate_job(images=str(camera / "manifest.csv"), fingerprints=None,
                                     workdir=str(workdir), config=_config("best"), methods=_BASELINES)
  return workdir, summary, time.perf_counter() - t0


def test_original_reproduces_the_attribution_auc(camera, evaluated):
  """With the anonymizer half of the split, as saved in the workdir."""
  workdir, summary, _ = evaluated
  records = _natural(camera)
  images = io.load_images([r.path for r in records], crop=(64, 64))
  ks = {d: io.load_fingerprint(workdir / "fingerprints" / f"{d}_anonymizer.npz")[0]
        for d in sorted({r.device for r in records})}
  ref = attribution.attribute(ks, images, [r.path.stem for r in records], [r.device for r in records], sigma=3.0)
  expected = ref.stats["ncc_eq2"]["auc"]
  assert 0.5 < expected <= 1.0
  for variant in ("original_negatives", "anonymized_negatives"):
    pooled = summary["results"]["original"]["photo"]["metrics"][variant]["ncc"]["pooled"]
    assert abs(pooled["auc"] - expected) < 1e-12
    assert pooled["mean_psnr"] == "inf"


def test_attacker_split_never_shares_an_image(camera, evaluated):
  workdir, summary, _ = evaluated
  split = summary["protocol"]["fingerprint_split"]
  flats = {}
  for r in io.read_manifest(camera / "manifest.csv"):
    if r.kind == "flatfield":
      flats.setdefault(r.device, set()).add(r.path.name)
  for device, names in flats.items():
    anonymizer, attacker = set(split["files"]["anonymizer"][device]), set(split["files"]["attacker"][device])
    assert not anonymizer & attacker and anonymizer | attacker == names and len(anonymizer) == 3
    for half, files in (("anonymizer", anonymizer), ("attacker", attacker)):
      _, meta = io.load_fingerprint(workdir / "fingerprints" / f"{device}_{half}.npz")
      assert set(meta["files"]) == files
  # The PRNU-aware baseline records which half it was given.
  options = json.loads((workdir / "images" / "fingerprint_subtraction" / "default" / "options.json").read_text())
  assert options["fingerprints"]["files"] == split["files"]["anonymizer"]


def test_recompressed_scoring_reads_what_was_written(camera, evaluated):
  """The JPEG column of results.csv is the Eq. 2 NCC of the JPEG file on disk with the anonymizer's K."""
  workdir, summary, _ = evaluated
  rows = [r for r in _read_csv(workdir / "results.csv") if r["method"] == "wavelet_denoising"]
  names = [r["image"] for r in rows]
  devices = [r["device"] for r in rows]
  folder = workdir / "adversaries" / "jpeg75" / "wavelet_denoising" / "passes1"
  decoded = np.stack([io.read_image(folder / f"{n}.jpg") for n in names])
  png = np.stack([io.read_image(workdir / "images" / "wavelet_denoising" / "passes1" / f"{n}.png") for n in names])
  assert decoded.shape == png.shape and not np.array_equal(decoded, png)  # lossy copies of the saved PNGs
  ks = np.stack([io.load_fingerprint(workdir / "fingerprints" / f"{d}_anonymizer.npz")[0] for d in devices])
  expected = np.asarray(metrics.ncc_eq2(
      np.asarray(attribution.extract_residuals(decoded, sigma=3.0)), decoded.astype(np.float32), ks))
  np.testing.assert_allclose([float(r["ncc_jpeg75"]) for r in rows], expected, rtol=1e-4, atol=1e-6)
  # PCE > 60: the fraction in the summary is that of the per-photo PCE column.
  entry = summary["results"]["wavelet_denoising"]["passes1"]["adversaries"]
  assert entry["attributed_pce"] == pytest.approx(np.mean([float(r["pce"]) > 60 for r in rows]))
  assert entry["in_band_attacker"] == sum(r["in_band_attacker"] == "True" for r in rows)


def test_adversary_columns_and_detector(evaluated):
  _, summary, _ = evaluated
  rows = {(r["method"], r["variant"]): r for r in summary["table"]}
  for method in ("original", "fingerprint_subtraction", "wavelet_denoising", "inpainting"):
    row = rows[(method, "original_negatives")]
    for key in ("auc_pce", "attributed_pce", "auc_attacker", "in_band_attacker", "auc_jpeg95", "auc_jpeg85",
                "auc_jpeg75", "auc_resize0.5"):
      assert row[key] is not None, (method, key)
    detected = row["detector_logistic_auc"] is not None
    assert detected == (method != "original")  # each method's best config; not the photos themselves
    assert row["detector_resnet_auc"] is None  # not asked for here
  assert rows[("original", "original_negatives")]["attributed_pce"] == 1.0  # the synthetic camera's PRNU is strong
  # The unaltered photos are attributed perfectly by both fingerprints (the anonymizer's and the attacker's).
  assert rows[("original", "original_negatives")]["auc_attacker"] == 1.0
  assert rows[("original", "original_negatives")]["auc"] == 1.0
  det = summary["results"]["inpainting"]["block3_edge_restoration"]["adversaries"]["detector"]
  folds = [set(f) for f in det["folds"]]
  assert len(folds) == 2 and not folds[0] & folds[1] and folds[0] | folds[1] == set(range(6))
  assert 0.0 <= det["logistic"]["auc_mean"] <= 1.0 and len(det["logistic"]["fold_auc"]) == 2
  assert summary["protocol"]["adversaries"]["detector"]["seed"] == 0


def test_attacker_scores_are_recomputed_from_the_attacker_fingerprint_files(camera, evaluated):
  """Every row's `ncc_attacker` is Eq. 2 NCC of the saved PNG with `<device>_attacker.npz` (not with the half the
  anonymizer was given), and the attacker AUC of each method is the pooled AUC of those scores against the other
  devices' unaltered photos."""
  workdir, summary, _ = evaluated
  records = _natural(camera)
  devices = sorted({r.device for r in records})
  k_att = np.stack([io.load_fingerprint(workdir / "fingerprints" / f"{d}_attacker.npz")[0] for d in devices])
  k_own = np.stack([io.load_fingerprint(workdir / "fingerprints" / f"{d}_anonymizer.npz")[0] for d in devices])
  assert abs(float(metrics.ncc(k_att[0], k_own[0]))) < 0.9  # two estimates, not one file twice
  rows = _read_csv(workdir / "results.csv")
  device_of = {r.path.stem: r.device for r in records}
  originals = np.stack([io.read_image(r.path) for r in records])
  orig_scores = protocol.score_matrix(originals, k_att)["ncc"]  # [device, photo]
  table = {(r["method"], r["variant"]): r for r in summary["table"]}
  for method in ("original", "fingerprint_subtraction", "wavelet_denoising", "inpainting"):
    sel = [r for r in rows if r["method"] == method]
    saved = np.stack([io.read_image(workdir / "images" / method / r["config"] / f"{r['image']}.png") for r in sel])
    scores = protocol.score_matrix(saved, k_att)["ncc"]
    own = [devices.index(device_of[r["image"]]) for r in sel]
    for j, r in enumerate(sel):
      assert float(r["ncc_attacker"]) == pytest.approx(float(scores[own[j], j]), abs=1e-6), (method, r["image"])
    pos = [float(scores[own[j], j]) for j in range(len(sel))]
    neg = [float(orig_scores[m, i]) for m in range(len(devices)) for i, r in enumerate(records)
           if r.device != devices[m]]
    fpr, tpr, _ = roc.roc_curve(np.concatenate([pos, neg]), np.r_[np.ones(len(pos)), np.zeros(len(neg))])
    assert table[(method, "original_negatives")]["auc_attacker"] == pytest.approx(roc.auc(fpr, tpr), abs=1e-9)


def test_psnr_equals_a_recomputation_from_the_saved_pngs(camera, evaluated):
  workdir, summary, _ = evaluated
  rows = _read_csv(workdir / "results.csv")
  originals = {r.path.stem: io.read_image(r.path).astype(np.float64) for r in _natural(camera)}
  assert {(r["method"], r["config"]) for r in rows} == {
      ("original", "photo"), ("fingerprint_subtraction", "default"), ("wavelet_denoising", "passes1"),
      ("inpainting", "block3_edge_restoration")}
  assert len(rows) == 4 * sum(_PER_DEVICE)
  for row in rows:
    saved = io.read_image(workdir / "images" / row["method"] / row["config"] / f"{row['image']}.png")
    assert saved.dtype == np.uint8 and saved.shape == (64, 64, 3)
    mse = np.mean((saved.astype(np.float64) - originals[row["image"]]) ** 2)
    psnr = math.inf if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)
    if row["method"] == "original":
      assert row["psnr"] == "inf" and psnr == math.inf
    else:
      assert abs(float(row["psnr"]) - psnr) < 1e-4, row  # float32 sum and log10: ~1e-6 relative
      assert 20.0 < psnr < 60.0
  # Mean PSNR of the summary = mean of the rows.
  for method, configs in summary["results"].items():
    for label, entry in configs.items():
      if method != "original":
        values = [float(r["psnr"]) for r in rows if r["method"] == method and r["config"] == label]
        assert abs(entry["mean_psnr"] - np.mean(values)) < 1e-9
  # The inpainting method records the edge denoiser that ran (the tiny config asks for the wavelet one).
  assert summary["results"]["inpainting"]["block3_edge_restoration"]["run"] == {"denoiser": "wavelet"}
  # The PRNU-aware baseline lowers the mean NCC with the true device fingerprint.
  fs = summary["results"]["fingerprint_subtraction"]["default"]
  assert abs(fs["mean_ncc"]) < 0.3 * fs["mean_ncc_original"]


def test_protocol_counts(evaluated):
  _, summary, _ = evaluated
  n = sum(_PER_DEVICE)
  for method, configs in summary["results"].items():
    for entry in configs.values():
      for variant in ("original_negatives", "anonymized_negatives"):
        stats = entry["metrics"][variant]["ncc"]
        # Positives: each photo against its own device's K; negatives: the other devices' photos against K_d.
        assert stats["pooled"]["num_positives"] == n
        assert stats["pooled"]["num_negatives"] == sum(n - c for c in _PER_DEVICE)  # (6-3)+(6-2)+(6-1) = 12
        for d, c in enumerate(_PER_DEVICE):
          dev = stats["per_device"][f"synthetic_{d}"]
          assert (dev["num_positives"], dev["num_negatives"]) == (c, n - c)
        assert entry["metrics"][variant]["ncc_edges"]["pooled"]["num_negatives"] == 12
  rows = [r for r in summary["table"] if r["variant"] == "original_negatives"]
  assert len(rows) == 4 and all(r["num_positives"] == 6 and r["num_negatives"] == 12 for r in rows)


def test_outputs_are_strict_json_and_plots(evaluated):
  workdir, summary, _ = evaluated
  loaded = _strict_json(workdir / "summary.json")
  assert loaded["work"] == {"items": 24, "computed": 24, "reused": 0}
  assert loaded["protocol"]["images_per_device"] == {"synthetic_0": 3, "synthetic_1": 2, "synthetic_2": 1}
  for name in ("auc_vs_psnr_original_negatives.png", "auc_vs_psnr_anonymized_negatives.png",
               "roc_original_negatives.png", "roc_anonymized_negatives.png", "ncc_hist.png"):
    assert (workdir / name).stat().st_size > 1000
  assert sorted(loaded["plots"]) == sorted(p.name for p in workdir.glob("*.png"))


def test_rerun_reuses_outputs(camera, evaluated):
  workdir, first, first_s = evaluated
  pngs = sorted((workdir / "images").rglob("*.png"))
  assert len(pngs) == 24
  mtimes = {p: p.stat().st_mtime_ns for p in pngs}
  os.remove(pngs[0])  # One missing item is recomputed, the rest reused.
  summary = evaluate_job.evaluate_job(images=str(camera / "manifest.csv"), fingerprints=None,
                                     workdir=str(workdir), config=_config("best"), methods=_BASELINES)
  assert summary["work"] == {"items": 24, "computed": 1, "reused": 23}
  assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items() if p != pngs[0])
  assert pngs[0].is_file()
  assert summary["table"] == first["table"]
  again = _strict_json(workdir / "summary.json")
  assert again["timings_s"]["fingerprint_subtraction"] < 1.0  # Nothing left to compute.


def test_rerun_with_other_options_is_refused(camera, evaluated):
  workdir, _, _ = evaluated
  config = _config()
  config.baselines.wavelet_denoising.sigma = 5.0  # Same folder name 'passes1', different images.
  with pytest.raises(io.InputError, match="other options"):
    evaluate_job.evaluate_job(images=str(camera / "manifest.csv"), fingerprints=None,
                             workdir=str(workdir), config=config, methods=["wavelet_denoising"])
  # The PRNU-aware baseline made with the split's fingerprint is not mixed with one given other fingerprints.
  with pytest.raises(io.InputError, match="other options"):
    evaluate_job.evaluate_job(images=str(camera / "manifest.csv"), fingerprints=str(camera / "fp"),
                             workdir=str(workdir), config=_config(), methods=["fingerprint_subtraction"])


def test_dippas_one_optimization_serves_every_setting(camera, tmp_path):
  records = _natural(camera)
  pick = [records[0], records[3]]  # Two devices, one photo each.
  io.write_csv(camera / "two.csv", [{"file": str(r.path.relative_to(camera)), "device": r.device,
                                     "kind": "natural"} for r in pick])
  config = _config(max_steps=20)
  config.dippas.dip.runner.chunk_size = 10
  summary = evaluate_job.evaluate_job(images=str(camera / "two.csv"), fingerprints=str(camera / "fp"),
                                     workdir=str(tmp_path), config=config, methods=["original", "dippas"])
  labels = sorted(summary["results"]["dippas"])
  assert labels == ["B16_L1_tau20", "B16_L5_tau20", "B64_L1_tau20", "B64_L5_tau20"]
  assert summary["work"] == {"items": 10, "computed": 10, "reused": 0}
  runs = summary["dippas_runs"]["dippas"]
  assert runs["images"] == 2 and runs["mean_iterations"] <= 20
  rows = [r for r in _read_csv(tmp_path / "results.csv") if r["method"] == "dippas"]
  assert len(rows) == 8
  for row in rows:
    saved = io.read_image(tmp_path / "images" / "dippas" / row["config"] / f"{row['image']}.png").astype(np.float64)
    original = io.read_image(next(r.path for r in pick if r.path.stem == row["image"])).astype(np.float64)
    psnr = 10.0 * math.log10(255.0 ** 2 / np.mean((saved - original) ** 2))
    assert abs(float(row["psnr"]) - psnr) < 1e-4
  options = json.loads((tmp_path / "images" / "dippas" / "B16_L1_tau20" / "options.json").read_text())
  assert options["setting"] == [16, 1, 20.0] and options["dippas"]["dip"]["max_steps"] == 20
  again = evaluate_job.evaluate_job(images=str(camera / "two.csv"), fingerprints=str(camera / "fp"),
                                   workdir=str(tmp_path), config=config, methods=["original", "dippas"])
  assert again["work"] == {"items": 10, "computed": 0, "reused": 10}
  assert again["timings_s"]["dippas"] < 1.0


def test_app_writes_the_outputs(camera, tmp_path):
  cmd = [sys.executable, "-m", "dippas_jax.apps.evaluate", f"--images={camera / 'manifest.csv'}",
         f"--fingerprints={camera / 'fp'}", f"--workdir={tmp_path}", "--methods=original,wavelet_denoising",
         f"--config={evaluate_config.__file__}:tiny", "--config.detector.scope=none"]
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert "items computed" in proc.stdout and "wavelet_denoising" in proc.stdout
  for name in ("results.csv", "summary.json", "auc_vs_psnr_original_negatives.png", "roc_original_negatives.png",
               "ncc_hist.png"):
    assert (tmp_path / name).is_file(), name
  assert len(_read_csv(tmp_path / "results.csv")) == 2 * sum(_PER_DEVICE)

  assert "Adversaries" in proc.stdout and not (tmp_path / "fingerprints").exists()  # given files: no split
  bad = subprocess.run(cmd[:-3] + ["--methods=original,unknown_method", f"--workdir={tmp_path / 'bad'}"],
                       capture_output=True, text=True, timeout=300)
  assert bad.returncode == 2
  assert "unknown_method" in bad.stderr and "Traceback" not in bad.stderr


def test_skipped_photos_are_reported(camera, tmp_path):
  rows = _read_csv(camera / "manifest.csv")
  (tmp_path / "broken_1.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
  rows = [{**r, "file": str(camera / r["file"])} for r in rows]
  rows.append({"file": str(tmp_path / "broken_1.png"), "device": "synthetic_0", "kind": "natural"})
  rows.append({"file": rows[0]["file"], "device": "other_camera", "kind": "natural"})  # No fingerprint.
  io.write_csv(tmp_path / "manifest.csv", rows)
  data = evaluate_methods.load_dataset(images=str(tmp_path / "manifest.csv"), fingerprints=str(camera / "fp"),
                                  crop=(64, 64))
  assert len(data.names) == 6 and len(data.skipped) == 2
  assert "broken_1.png" in data.skipped[0] and "other_camera" in data.skipped[1]
  assert data.fingerprints.shape == (3, 64, 64) and data.images.dtype == np.uint8


def test_folder_per_device_with_fingerprint_files(camera, tmp_path):
  for r in _natural(camera):
    (tmp_path / r.device).mkdir(exist_ok=True)
    (tmp_path / r.device / r.path.name).write_bytes(r.path.read_bytes())
    (tmp_path / r.device / "K.npz").write_bytes((camera / "fp" / f"{r.device}.npz").read_bytes())
  data = evaluate_methods.load_dataset(images=str(tmp_path), fingerprints=None, crop=(32, 32))
  assert data.devices == ("synthetic_0", "synthetic_1", "synthetic_2")
  assert data.image_devices == ("synthetic_0",) * 3 + ("synthetic_1",) * 2 + ("synthetic_2",)
  assert data.images.shape == (6, 32, 32, 3) and data.fingerprints.shape == (3, 32, 32)
  with pytest.raises(io.InputError, match="no fingerprints"):
    evaluate_methods.load_dataset(images=str(tmp_path / "synthetic_0" / "*.png"), fingerprints=None, crop=None)


# ------------------------------------------------------------------------------------------- configs, no compute
def test_method_configs_and_ablations():
  config = evaluate_config.get_config("cpu")
  mcs = evaluate_methods.method_configs(config)
  labels = [(m.method, m.label) for m in mcs]
  assert labels[:10] == [("original", "photo"), ("adaptive_prnu_removal", "default"),
                         ("fingerprint_subtraction", "default"), ("wavelet_denoising", "passes1"),
                         ("wavelet_denoising", "passes3"), ("inpainting", "block3_edge_restoration"),
                         ("inpainting", "block3_no_edge_restoration"), ("inpainting", "block5_edge_restoration"),
                         ("inpainting", "block5_no_edge_restoration"), ("patch_desync", "patch3")]
  dippas = [m for m in mcs if m.method == "dippas"]
  assert len(dippas) == 3 * 2 * 3 and dippas[0].setting == (32, 1, 37.0) and dippas[-1].label == "B128_L10_tau39"
  assert mcs[3].options == {"crop": (128, 128), "passes": 1, "sigma": 3.0}

  assert evaluate_config.get_config("paper").crop == (512, 512)
  ablation = evaluate_config.get_config("cpu,ablation=block_size")
  assert ablation.methods == ("original", "dippas") and ablation.dippas.sweep.block_sizes == (32, 64, 128)
  assert len(evaluate_methods.method_configs(ablation)) == 1 + 3
  assert evaluate_config.get_config("ablation=num_blocks").dippas.sweep.num_blocks == (1, 5, 10, 25, 50, 100)
  assert evaluate_config.get_config("ablation=tau").dippas.sweep.taus == (37.0, 38.0, 39.0, 40.0)
  inj = evaluate_config.get_config("tiny,ablation=injection")
  assert inj.methods == ("original", "dippas", "dippas_injection_none", "dippas_injection_legacy")
  assert evaluate_methods.dippas_config(inj, "dippas_injection_legacy").dip.injection == "legacy_transposed"
  assert evaluate_methods.dippas_config(inj, "dippas_blind").mode == "blind"
  assert evaluate_methods.dippas_config(inj, "dippas").mode == "aware"
  opt = evaluate_config.get_config("cpu,ablation=optimizer")
  assert evaluate_methods.dippas_config(opt, "dippas_sgd").dip.optimizer.name == "sgd"
  assert evaluate_methods.dippas_config(opt, "dippas").dip.optimizer.name == "amsgrad_torch"
  assert evaluate_methods.dippas_config(opt, "dippas").crop == (128, 128)
  for bad in ("gpu", "cpu,ablation=nothing", "cpu,foo=bar"):
    with pytest.raises(ValueError):
      evaluate_config.get_config(bad)


def test_invalid_methods_and_sizes_fail_before_work():
  config = evaluate_config.get_config("tiny")
  with pytest.raises(ValueError, match="Unknown method"):
    evaluate_methods.method_configs(config, ["original", "dipas"])
  config.dippas.sweep.block_sizes = (24,)
  with pytest.raises(ValueError, match="does not divide"):
    evaluate_methods.method_configs(config, ["dippas"])
  config = evaluate_config.get_config("tiny")
  config.baselines.inpainting.block = ()
  with pytest.raises(ValueError, match="empty sweep"):
    evaluate_methods.method_configs(config, ["inpainting"])


def test_json_safe_and_psnr():
  out = io.json_safe({"a": float("inf"), "b": [np.float32(np.nan), -np.inf], "c": np.arange(2), "d": (1, 2.5)})
  assert out == {"a": "inf", "b": [None, "-inf"], "c": [0, 1], "d": [1, 2.5]}
  a = np.zeros((2, 4, 4, 3), np.uint8)
  b = a.copy()
  b[1, 0, 0, 0] = 255  # MSE = 255² / 48 → PSNR = 10·log10(48).
  np.testing.assert_allclose(metrics.psnr(a, b), [np.inf, 10 * np.log10(48.0)], rtol=1e-6)


def test_variant_overrides_are_config_fields():
  config = evaluate_config.get_config("tiny,ablation=rank_key")
  assert evaluate_methods.dippas_config(config, "dippas_abs").rank_key == "abs"
  config = evaluate_config.get_config("tiny")
  config.dippas_variants.unlock()
  config.dippas_variants.dippas_typo = "dip.injektion=none"
  with pytest.raises(ValueError, match="dippas_typo.*injektion"):
    evaluate_methods.dippas_config(config, "dippas_typo")


def test_a_missing_learned_initialisation_is_bad_input_before_any_work(camera, tmp_path):
  config = _config()
  config.dippas.dip.model.init_weights = str(tmp_path / "missing.npz")
  with pytest.raises(io.InputError, match="missing.npz: no such weights file"):
    evaluate_job.evaluate_job(images=str(camera / "manifest.csv"), fingerprints=None, workdir=str(tmp_path / "w"),
                              config=config, methods=("dippas",))
  assert not (tmp_path / "w" / "summary.json").exists()
