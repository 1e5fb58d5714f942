"""The `dippas-leakage` job in process (dippas_jax.jobs.leakage, leakage_report, leakage_markdown) on synthetic
cameras written to disk: several devices in one run, every table, the plots, Fig. 1 and the markdown report."""

import json
import math

import numpy as np
import pytest

from configs import leakage as leakage_config
from dippas_jax import io
from dippas_jax import synthetic
from dippas_jax.jobs import leakage as job
from dippas_jax.jobs import leakage_markdown


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
  """Two synthetic cameras on disk, 64×64 PNG: 6 flat-fields and 3 natural photos each."""
  root = tmp_path_factory.mktemp("cameras")
  data = synthetic.make_dataset(seed=5, num_devices=2, num_flatfield=6, num_natural=3, height=64, width=64)
  rows = []
  for d, name in enumerate(data.devices):
    for i, im in enumerate(data.flatfield[d]):
      io.write_png(root / f"{name}_f{i}.png", im)
      rows.append({"file": f"{name}_f{i}.png", "device": name, "kind": "flatfield"})
  for i, (im, d) in enumerate(zip(data.natural, data.natural_device)):
    io.write_png(root / f"{data.devices[d]}_n{i}.png", im)
    rows.append({"file": f"{data.devices[d]}_n{i}.png", "device": data.devices[d], "kind": "natural"})
  io.write_csv(root / "manifest.csv", rows)
  return root / "manifest.csv"


def _config(extra=""):
  return leakage_config.get_config("tiny,crop=64/64,l_values=2/3/6,membership_l_values=2/6,window_sizes=3,"
                                   "n_trials=1,n_splits=3,synthetic_size=64,synthetic_l_values=4/8" + extra)


@pytest.fixture(scope="module")
def run(manifest, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("leakage")
  return job.leakage_job(images=str(manifest), device="all", workdir=str(workdir), config=_config()), workdir


def test_all_devices_in_one_run(run):
  results, workdir = run
  assert results["config"]["devices"] == ["synthetic_0", "synthetic_1"]
  for table in ("ilb", "ilb_natural", "membership", "mitigation", "table2"):
    assert {r["device"] for r in results[table]} == {"synthetic_0", "synthetic_1"}, table
    assert (workdir / f"{table}.csv").stat().st_size > 100
  assert sorted({r["L"] for r in results["ilb"]}) == [2, 3, 6]
  assert sorted({r["L"] for r in results["ilb_natural"]}) == [2, 3]  # L up to what each pool has.
  assert {r["detector"] for r in results["membership"]} == set(job.leakage.DETECTORS)
  assert all(r["tile"] == 16 and r["n_tiles"] == 16 for r in results["membership"])
  for row in results["ilb"]:
    assert {"ilb_bpp", "ilb_bpp_loo", "ilb_bpp_split", "ilb_bpp_moment", "power", "mu_split", "gamma2_split"} <= set(row)
  whiten = [r for r in results["mitigation"] if r["mitigation"] == "whiten"]
  assert whiten and all(math.isnan(r["ilb_bpp"]) and r["bound"].startswith("not reported") for r in whiten)
  assert {r["group"] for r in results["table2"]} == {"bright", "dark", "bright+natural", "dark+natural"}
  assert {r["table"] for r in results["synthetic"]} == {"1", "2"}
  saved = json.loads((workdir / "leakage.json").read_text())
  assert saved["config"]["gamma2_estimators"] == ["loo", "split", "moment"] and saved["config"]["wall_s"] > 0


def test_plots_fig1_and_report(run):
  results, workdir = run
  names = {p.name for p in workdir.glob("*.png")}
  assert {"ilb_vs_L.png", "membership_auc_vs_L.png", "roc_L2.png", "roc_L6.png", "roc_by_L.png", "mitigation.png",
          "fig1.png"} <= names
  assert all((workdir / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
  assert not [p for p in workdir.iterdir() if p.name.startswith(".")]  # No partial files left behind.
  text = (workdir / "leakage.md").read_text()
  for heading in ("Bound per camera, flatfield pool", "natural-photo pool", "Synthetic camera at the paper's L",
                  "Table 2 design", "Membership inference on 16² tiles", "Mitigations", "Deviations from the paper",
                  "![fig1.png](fig1.png)"):
    assert heading in text, heading
  assert "| dark | 0.794 | 0.4399 |" in text  # The paper's Table 2 beside ours.
  membership = [r for r in results["membership"] if r["detector"] == "ncc_eq11"][0]  # each AUC with its counts
  assert f"{membership['auc']:.3f} ({membership['n_members']}/{membership['n_nonmembers']})" in text
  again = leakage_markdown.from_workdir(workdir, figure_dir="results/leakage/", figures=["fig1.png"])
  assert "![fig1.png](results/leakage/fig1.png)" in again and "| synthetic_1 | split |" in again


def test_device_lists_fig1_only_and_bad_input(manifest, tmp_path):
  results = job.leakage_job(images=str(manifest), device="synthetic_1, synthetic_1", workdir=str(tmp_path),
                            config=leakage_config.get_config("fig1,crop=64/64,synthetic_size=64"))
  assert results["config"]["devices"] == ["synthetic_1"] and not results["ilb"]
  assert sorted(p.name for p in tmp_path.glob("*.png")) == ["fig1.png"]
  with pytest.raises(io.InputError, match="synthetic_7"):
    job.leakage_job(images=str(manifest), device="synthetic_0,synthetic_7", workdir=str(tmp_path), config=_config())
  with pytest.raises(io.InputError, match="experiments"):
    job.leakage_job(images=str(manifest), device="all", workdir=str(tmp_path), config=_config(",experiments=ilb"))
  with pytest.raises(io.InputError, match="gamma2_estimators"):
    job.leakage_job(images=str(manifest), device="all", workdir=str(tmp_path),
                    config=_config(",gamma2_estimators=local"))
  np.testing.assert_equal(leakage_config.get_config().gamma2_estimators[0], "loo")  # The documented default.


@pytest.mark.slow  # a second leakage run (~20 s); pytest -m slow
def test_each_device_of_all_equals_a_run_on_that_device_alone(manifest, run, tmp_path):
  """`--device=all` analyses every camera on its own images: synthetic_1's rows equal those of a run on
  synthetic_1 alone (draws are keyed by L, not by the device list); analysing one device's images for both would
  give the two devices one set of numbers."""
  results, _ = run
  alone = job.leakage_job(images=str(manifest), device="synthetic_1", workdir=str(tmp_path), config=_config())
  for table, keys in (("ilb", ("L", "mitigation")), ("membership", ("L", "detector"))):
    rows = {tuple(r[k] for k in keys): r for r in results[table] if r["device"] == "synthetic_1"}
    solo = {tuple(r[k] for k in keys): r for r in alone[table]}
    assert rows.keys() == solo.keys() and rows, table
    for key, row in rows.items():
      for name, value in row.items():
        if isinstance(value, float) and not math.isnan(value):
          assert value == pytest.approx(solo[key][name], rel=1e-5, abs=1e-7), (table, key, name)
    other = {tuple(r[k] for k in keys): r for r in results[table] if r["device"] == "synthetic_0"}
    assert any(other[key]["ilb_bpp" if table == "ilb" else "auc"] != row["ilb_bpp" if table == "ilb" else "auc"]
               for key, row in rows.items() if key in other), table
