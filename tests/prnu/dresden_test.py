"""End-to-end parity with prnu-python on the shared Dresden sample (skips without ../shared).

The commands' jobs are run exactly as a user would run `dippas-fingerprint` and `dippas-attribute` with the
reference config (σ = 5, legacy saturation, legacy PCE), and compared with the reference outputs.
"""

import json

import numpy as np
import pytest

from dippas_jax.prnu import fingerprint
from dippas_jax import io
from dippas_jax.prnu import metrics
from dippas_jax.jobs import attribute as attribute_job
from dippas_jax.jobs import fingerprint as fingerprint_job
from dippas_jax.configs import prnu as prnu_config

# One xdist worker runs this module (`--dist loadgroup`): its module fixtures and compiled programs are made once.
pytestmark = pytest.mark.xdist_group("dresden")

DEVICES = ("Nikon_D200_0", "Nikon_D200_1", "Nikon_D70_0", "Nikon_D70_1", "Nikon_D70s_0", "Nikon_D70s_1")


@pytest.fixture(scope="module")
def fingerprint_dir(dresden_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("fp")
  summary = fingerprint_job.fingerprint_job(images=str(dresden_dir / "manifest.csv"), workdir=str(out),
                                            config=prnu_config.get_config("reference"))
  assert sorted(summary["written"]) == list(DEVICES) and not summary["skipped"]
  return out


def test_fingerprints_equal_reference(fingerprint_dir, reference_dir):
  for device in DEVICES:
    k, meta = io.load_fingerprint(fingerprint_dir / f"{device}.npz")
    ref = np.load(reference_dir / "fingerprints" / f"{device}_sigma5.npy")
    assert meta["num_images"] == 10 and meta["sigma"] == 5.0 and meta["saturation"] == "legacy"
    assert float(metrics.ncc(k, ref)) >= 0.9999, device
    np.testing.assert_allclose(k, ref, atol=2e-4 * np.abs(ref).max(), err_msg=device)


def test_sigma3_fingerprint_equals_reference(dresden_dir, reference_dir):
  device = "Nikon_D70_0"
  records = [r for r in io.read_manifest(dresden_dir / "manifest.csv")
             if r.device == device and r.kind == "flatfield"]
  images = io.load_images([r.path for r in records], crop=(512, 512))
  k, n = fingerprint.estimate_fingerprint(images, batch_size=10, sigma=3.0, saturation_mode="legacy")
  ref = np.load(reference_dir / "fingerprints" / f"{device}_sigma3.npy")
  assert n == 10 and float(metrics.ncc(k, ref)) >= 0.9999


def test_attribution_reproduces_reference_aucs(fingerprint_dir, dresden_dir, reference_dir, tmp_path):
  summary = attribute_job.attribute_job(fingerprints=str(fingerprint_dir), images=str(dresden_dir / "manifest.csv"),
                                        workdir=str(tmp_path), config=prnu_config.get_config("reference"))
  expected = json.loads((reference_dir / "results.json").read_text())["auc"]
  assert summary["num_images"] == 16 and summary["num_positive_pairs"] == 16 and not summary["skipped"]
  for name in ("cc", "ncc", "pce"):
    assert abs(summary["scores"][name]["auc"] - expected[name]) <= 0.005, (name, summary["scores"][name])
  # The score tables themselves match the reference matrices.
  labels = json.loads((reference_dir / "labels.json").read_text())
  images = labels["cols_images"]
  rows = {(r["fingerprint"], r["image"]): r for r in _read_csv(tmp_path / "scores.csv")}
  for name in ("cc", "ncc", "pce"):
    ref = np.load(reference_dir / f"{name}.npy")
    got = np.array([[float(rows[(d, im)][name]) for im in images] for d in labels["rows_devices"]])
    np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max(), err_msg=name)
  assert (tmp_path / "roc.png").stat().st_size > 1000


def _read_csv(path):
  import csv
  with open(path, newline="") as f:
    return list(csv.DictReader(f))
