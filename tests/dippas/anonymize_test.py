"""DIPPAS anonymization end to end: synthetic ground truth, the command's outputs, resume after a kill."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from dippas_jax.dippas import anonymize
from dippas_jax import io
from dippas_jax import synthetic
from dippas_jax.configs import anonymize as anonymize_config


def _fast_config():
  config = anonymize_config.get_config("tiny")
  config.dip.optimizer.learning_rate = 0.01  # The tiny net needs a larger step to reach τ in CI time.
  config.dip.max_steps = 300
  config.tau = 22.0
  config.trace_every = 0
  return config


def test_aware_and_blind_push_ncc_into_the_non_matching_band():
  data = synthetic.make_dataset(seed=0, num_devices=4, num_flatfield=0, num_natural=6, height=64, width=64)
  photo, k_true = data.natural[:1], data.prnu[0]
  k_blind = anonymize.reference_fingerprints(photo, None, mode="blind", sigma=3.0)
  # One optimization, two images: the same photo anonymized PRNU-aware (K) and PRNU-blind (K̃ = W(I)).
  result = anonymize.anonymize(np.concatenate([photo, photo]), np.stack([k_true, k_blind[0]]),
                               config=_fast_config(), seed=0, image_ids=[0, 1])
  out = result.outputs[result.primary]
  # Non-matching: 18 photos of 3 devices (with only 9 the 99th percentile is just their maximum, too unstable).
  others = anonymize.ncc_scores(data.natural[6:], k_true, sigma=3.0)
  band = np.percentile(others, 99)
  before = anonymize.ncc_scores(photo, k_true, sigma=3.0)[0]
  after = anonymize.ncc_scores(out, k_true, sigma=3.0)
  psnr = anonymize.psnr(out, np.concatenate([photo, photo]))
  assert before > 10 * band  # The photo is clearly attributable before.
  np.testing.assert_array_less(after, band)  # ... and inside the non-matching band after, in both modes,
  np.testing.assert_array_less(22.0, psnr)   # at PSNR ≥ τ.
  assert np.all(result.candidates[(16, 22.0)] > 10)
  # The injection learns the true PRNU strength (1: photo = Y·(1 + K)) in aware mode only.
  assert 0.7 < result.gamma[0] < 1.3 and result.gamma[1] < 0.3


def _run(*args, **kwargs):
  return subprocess.Popen([sys.executable, "-m", "dippas_jax.apps.anonymize", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  root = tmp_path_factory.mktemp("photos")
  data = synthetic.make_dataset(seed=1, num_devices=1, num_flatfield=0, num_natural=2, height=80, width=96)
  exif = Image.Exif()
  exif[0x010F] = "SyntheticCam"  # Make: the output must not carry it.
  for i, im in enumerate(data.natural):
    Image.fromarray(im).save(root / f"photo{i}.jpg", quality=95, exif=exif)
  (root / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
  np.save(root.parent / "k.npy", data.prnu[0])
  return root


ARGS = [f"--config={anonymize_config.__file__}:tiny", "--config.dip.max_steps=40", "--config.batch_size=1",
        "--config.trace_every=5"]


def test_command_outputs_kill_and_resume(photos, tmp_path):
  work = tmp_path / "out"
  args = [f"--inputs={photos}", f"--fingerprint={photos.parent / 'k.npy'}", f"--workdir={work}", *ARGS]
  proc = _run(*args)
  deadline = time.time() + 240
  while not (work / "photo0" / "report.json").exists() and proc.poll() is None and time.time() < deadline:
    time.sleep(0.2)
  proc.send_signal(signal.SIGKILL)  # Killed mid-run: photo0 done, photo1 not.
  proc.wait()
  first = (work / "photo0" / "report.json").stat().st_mtime_ns
  proc = _run(*args)
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 1, err  # broken.jpg is reported and skipped; the others are done.
  assert "broken.jpg" in err and "Traceback" not in err
  assert "3 photos, 1 already done" in out
  assert (work / "photo0" / "report.json").stat().st_mtime_ns == first  # Not recomputed.
  for name in ("photo0", "photo1"):
    report = json.loads((work / name / "report.json").read_text())
    png = work / name / "anonymized.png"
    with Image.open(png) as im:
      assert im.size == (64, 64) and im.mode == "RGB" and im.info == {} and dict(im.getexif()) == {}
    assert b"SyntheticCam" not in png.read_bytes()
    original = io.center_crop(io.read_image(photos / f"{name}.jpg"), 64, 64)
    recomputed = 10 * np.log10(255.0**2 / np.mean((io.read_image(png).astype(float) - original) ** 2))
    assert abs(report["psnr"] - recomputed) < 1e-3
    assert report["iterations"] == 40 and report["region"]["mode"] == "centre_crop"
    assert set(report["ncc_before"]) == {"reference"} and report["primary_setting"]["block_size"] == 16
    history = [json.loads(line) for line in (work / name / "history.jsonl").read_text().splitlines()]
    assert [h["iteration"] for h in history] == list(range(40)) and history[5]["ncc"] is not None
    assert (work / name / "history.png").stat().st_size > 1000
  assert not list(work.rglob("*.tmp*")), "temporary files left behind"
  summary = json.loads((work / "summary.json").read_text())
  assert summary["anonymized"] == 1 and summary["done_before"] == 1 and len(summary["skipped"]) == 1


def test_full_resolution_tiles_whole_photo(photos, tmp_path):
  proc = _run(f"--inputs={photos / 'photo0.jpg'}", "--blind", f"--workdir={tmp_path}", *ARGS,
              "--config.full_resolution=true", "--config.dip.max_steps=10")
  out, err = proc.communicate(timeout=300)
  assert proc.returncode == 0, err
  report = json.loads((tmp_path / "photo0" / "report.json").read_text())
  assert report["region"]["mode"] == "full_resolution" and report["tiles"]["count"] == 4  # 80×96, tiles 64 − 16.
  assert io.read_image(tmp_path / "photo0" / "anonymized.png").shape == (80, 96, 3)


def test_bad_sizes_and_missing_fingerprint_are_clear_errors(photos, tmp_path):
  proc = _run(f"--inputs={photos}", f"--workdir={tmp_path}", *ARGS)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 2 and "needs --fingerprint" in err and "Traceback" not in err
  proc = _run(f"--inputs={photos / 'photo0.jpg'}", "--blind", f"--workdir={tmp_path}", *ARGS,
              "--config.crop=(42,42)")  # The tiny U-Net has 3 scales: multiples of 4.
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 2 and "must be multiples of 4" in err and "e.g. 40×40" in err, err
  assert "Traceback" not in err and "it/s" not in err  # Before any compute.
