"""The commands as a user runs them (subprocesses): outputs, exit codes and one-line errors on bad input."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dippas_jax import io
from dippas_jax import synthetic
from dippas_jax.apps import common


def _run(module, *args, timeout=300):
  proc = subprocess.run([sys.executable, "-m", f"dippas_jax.apps.{module}", *args], capture_output=True,
                        text=True, timeout=timeout)
  return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def camera_dir(tmp_path_factory):
  """Synthetic photos on disk: flat/ (2 devices × 6) and natural/ (2 devices × 3), 64×64 PNG."""
  root = tmp_path_factory.mktemp("camera")
  data = synthetic.make_dataset(seed=5, num_devices=2, num_flatfield=6, num_natural=3, height=64, width=64)
  for d, name in enumerate(data.devices):
    for i, im in enumerate(data.flatfield[d]):
      io.write_png(root / "flat" / f"{name}_{i}.png", im)
  rows = [{"file": f"flat/{name}_{i}.png", "device": name, "kind": "flatfield"}
          for d, name in enumerate(data.devices) for i in range(len(data.flatfield[d]))]
  for i, (im, d) in enumerate(zip(data.natural, data.natural_device)):
    io.write_png(root / "natural" / f"{data.devices[d]}_{i}.png", im)
    rows.append({"file": f"natural/{data.devices[d]}_{i}.png", "device": data.devices[d], "kind": "natural"})
  io.write_csv(root / "manifest.csv", rows)
  return root


def test_fingerprint_then_attribute(camera_dir, tmp_path):
  crop = "--config.crop=(64,64)"
  code, out, err = _run("fingerprint", f"--images={camera_dir / 'flat'}", f"--workdir={tmp_path / 'fp'}", crop)
  assert code == 0, err
  assert sorted(p.name for p in (tmp_path / "fp").iterdir()) == ["synthetic_0.npz", "synthetic_1.npz"]
  k, meta = io.load_fingerprint(tmp_path / "fp" / "synthetic_0.npz")
  assert k.shape == (64, 64) and meta["num_images"] == 6 and meta["crop"] == [64, 64]

  (camera_dir / "natural" / "broken_9.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
  code, out, err = _run("attribute", f"--fingerprints={tmp_path / 'fp'}", f"--images={camera_dir / 'natural'}",
                        f"--workdir={tmp_path / 'attr'}", crop)
  (camera_dir / "natural" / "broken_9.png").unlink()
  assert code == 1, err  # One image skipped: reported, the others done, exit code says so.
  assert "broken_9.png" in err and "Traceback" not in err
  summary = json.loads((tmp_path / "attr" / "summary.json").read_text())
  assert summary["num_images"] == 6 and len(summary["skipped"]) == 1
  assert summary["scores"]["ncc"]["auc"] == 1.0 and summary["scores"]["pce"]["auc"] == 1.0
  assert "ncc      AUC 1.0000" in out
  assert (tmp_path / "attr" / "roc.png").is_file() and (tmp_path / "attr" / "scores.csv").is_file()


@pytest.mark.parametrize("case", ["empty", "small", "wrong_size", "stray", "config_typo", "bad_variant",
                                  "no_config_file", "negative_crop", "missing_flag_value", "bad_flag_value"])
def test_bad_input_is_one_clear_line_and_nonzero_exit(case, camera_dir, tmp_path):
  (tmp_path / "empty").mkdir()
  if case == "empty":
    args, module, pattern = [f"--images={tmp_path / 'empty'}", f"--workdir={tmp_path}"], "fingerprint", "no images"
  elif case == "small":  # 64×64 images, default 512×512 crop.
    args, module, pattern = ([f"--images={camera_dir / 'flat'}", f"--workdir={tmp_path}"], "fingerprint",
                             "smaller than the 512×512 crop")
  elif case == "wrong_size":
    np.save(tmp_path / "synthetic_0.npy", np.zeros((32, 32), np.float32))
    args, module, pattern = ([f"--fingerprints={tmp_path / 'synthetic_0.npy'}",
                              f"--images={camera_dir / 'natural'}", f"--workdir={tmp_path}",
                              "--config.crop=(64,64)"], "attribute", "fingerprint is 32×32 but the images are 64×64")
  elif case == "stray":
    args, module, pattern = [f"--images={camera_dir}", f"--workdir={tmp_path}", "typo"], "fingerprint", "typo"
  elif case == "config_typo":
    args, module, pattern = [f"--images={camera_dir}", f"--workdir={tmp_path}", "--config.tua=3"], "fingerprint", "tua"
  elif case == "bad_variant":
    args, module, pattern = ([f"--inputs={camera_dir}", f"--workdir={tmp_path}", "--blind",
                              f"--config={common.config_path('anonymize')}:demoo"], "anonymize", "demoo")
  elif case == "no_config_file":
    args, module, pattern = ([f"--images={camera_dir}", f"--workdir={tmp_path}", "--config=nowhere.py"],
                             "fingerprint", "nowhere.py")
  elif case == "negative_crop":
    args, module, pattern = ([f"--images={camera_dir / 'flat'}", f"--workdir={tmp_path}",
                              "--config.crop=(-5,64)"], "fingerprint", "two positive sizes")
  elif case == "missing_flag_value":
    args, module, pattern = [f"--images={camera_dir}", "--workdir"], "fingerprint", "workdir"
  else:
    args, module, pattern = ([f"--images={camera_dir}", f"--workdir={tmp_path}", "--config.sigma=abc"],
                             "fingerprint", "sigma")
  code, _, err = _run(module, *args)
  assert code == 2, (code, err)  # bad input: one line, exit code 2
  last = err.strip().splitlines()[-1]
  assert last.startswith("error: ") and pattern in last and "Traceback" not in err, err


@pytest.mark.parametrize("module", ["fingerprint", "attribute", "anonymize", "evaluate", "leakage", "demo"])
def test_help_lists_the_command_flags_and_exits_0(module):
  code, out, err = _run(module, "--help")
  assert code == 0, err
  flags_of = {"fingerprint": "--images", "attribute": "--fingerprints", "anonymize": "--inputs",
              "evaluate": "--methods", "leakage": "--device", "demo": "--workdir"}
  assert flags_of[module] in out and f"dippas-{module}" in out, out
  assert "--config" in out and "--helpfull" in out


def test_a_bug_shows_its_traceback_and_exit_code_3(tmp_path):
  script = ("import sys; sys.argv = ['x']\n"
            "from dippas_jax.apps import common\n"
            "def job():\n  import numpy as np\n  np.zeros(2).reshape(3)\n"
            "common.run(job, module='__main__')\n")
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 3, proc.stderr
  assert "Traceback" in proc.stderr and "cannot reshape" in proc.stderr and "a bug" in proc.stderr


def test_demo_prints_auc_one_and_writes_plot(tmp_path):
  # A fingerprint 7× the demo's realistic strength: every photo is attributed (ground truth of the camera).
  code, out, err = _run("demo", f"--workdir={tmp_path}", "--size=128", "--prnu_std=0.02", "--skip_anonymize")
  assert code == 0, err
  assert "ncc_eq2  AUC 1.0000" in out and "pce      AUC 1.0000" in out, out
  assert json.loads((tmp_path / "summary.json").read_text())["scores"]["ncc"]["auc"] == 1.0
  assert (tmp_path / "roc.png").stat().st_size > 1000


def test_leakage_command_writes_tables_and_plots(camera_dir, tmp_path):
  code, out, err = _run("leakage", f"--images={camera_dir / 'manifest.csv'}", "--device=synthetic_1",
                        f"--workdir={tmp_path}", "--config.crop=(64,64)", "--config.l_values=(2,4)",
                        "--config.n_trials=1", "--config.n_splits=2", "--config.window_sizes=(3,)")
  assert code == 0, err
  assert "synthetic_1: 6 pool images, 3 extra non-members, 6 queries" in out
  ilb = [r for r in json.loads((tmp_path / "leakage.json").read_text())["ilb"] if r["mitigation"] == "none"]
  # The split γ² on this 64² camera: 0.30 bits per pixel at L = 4 (BUILD_NOTES "Leakage analysis"; the moment
  # estimator's floor would give > 0.5), falling with L; the default, leave one out, agrees with it on flat-fields of
  # one brightness (both unbiased there) to their sampling spread.
  assert [r["L"] for r in ilb] == [2, 4] and ilb[0]["ilb_bpp"] > ilb[1]["ilb_bpp"]
  assert ilb[1]["ilb_bpp_split"] == pytest.approx(0.30, abs=0.01) and ilb[1]["ilb_bpp_moment"] > 0.5
  assert ilb[1]["ilb_bpp"] == ilb[1]["ilb_bpp_loo"] == pytest.approx(ilb[1]["ilb_bpp_split"], rel=0.1)
  for name in ("ilb.csv", "membership.csv", "mitigation.csv", "ilb_vs_L.png"):
    assert (tmp_path / name).stat().st_size > 100, name
