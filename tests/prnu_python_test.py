"""The prnu-python drop-in: the reference's signatures, its stored outputs, its own unit tests, clear errors."""

import inspect
import json
import multiprocessing
import os
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image

from dippas_jax import prnu_python as prnu

# The public functions of prnu-python's `prnu` package (polimi-ispl/prnu-python, prnu/functions.py at 91e1585):
# (parameter name, kind, default) in order; kind 'kw' = **kwargs. `batch_size` defaults to cpu_count() there.
_NO = inspect.Parameter.empty
REFERENCE_SIGNATURES = {
    "extract_single": [("im", "pos", _NO), ("levels", "pos", 4), ("sigma", "pos", 5), ("wdft_sigma", "pos", 0)],
    "noise_extract": [("im", "pos", _NO), ("levels", "pos", 4), ("sigma", "pos", 5)],
    "noise_extract_compact": [("args", "pos", _NO)],
    "extract_multiple_aligned": [("imgs", "pos", _NO), ("levels", "pos", 4), ("sigma", "pos", 5),
                                 ("processes", "pos", None), ("batch_size", "pos", multiprocessing.cpu_count()),
                                 ("tqdm_str", "pos", "")],
    "cut_ctr": [("array", "pos", _NO), ("sizes", "pos", _NO)],
    "wiener_dft": [("im", "pos", _NO), ("sigma", "pos", _NO)],
    "zero_mean": [("im", "pos", _NO)],
    "zero_mean_total": [("im", "pos", _NO)],
    "rgb2gray": [("im", "pos", _NO)],
    "threshold": [("wlet_coeff_energy_avg", "pos", _NO), ("noise_var", "pos", _NO)],
    "wiener_adaptive": [("x", "pos", _NO), ("noise_var", "pos", _NO), ("kwargs", "kw", _NO)],
    "inten_scale": [("im", "pos", _NO)],
    "saturation": [("im", "pos", _NO)],
    "inten_sat_compact": [("args", "pos", _NO)],
    "crosscorr_2d": [("k1", "pos", _NO), ("k2", "pos", _NO)],
    "aligned_cc": [("k1", "pos", _NO), ("k2", "pos", _NO)],
    "pce": [("cc", "pos", _NO), ("neigh_radius", "pos", 2)],
    "stats": [("cc", "pos", _NO), ("gt", "pos", _NO)],
    "gt": [("l1", "pos", _NO), ("l2", "pos", _NO)],
}


def test_every_reference_function_with_its_signature():
  assert set(prnu.__all__) == set(REFERENCE_SIGNATURES) | {"ArgumentError"}
  for name, want in REFERENCE_SIGNATURES.items():
    params = inspect.signature(getattr(prnu, name)).parameters.values()
    got = [(p.name, "kw" if p.kind == p.VAR_KEYWORD else "pos", p.default) for p in params]
    assert all(p.kind in (p.POSITIONAL_OR_KEYWORD, p.VAR_KEYWORD) for p in params), name
    assert got == want, name
  assert issubclass(prnu.ArgumentError, Exception)


def _crop(dresden_dir, image: str, h: int, w: int) -> np.ndarray:
  return prnu.cut_ctr(np.asarray(Image.open(dresden_dir / image)), (h, w, 3))


def test_residuals_equal_the_reference_outputs(dresden_dir, reference_dir):
  """extract_single against the stored prnu-python residuals (512² and an odd 333×517 crop, σ 3 and 5): the
  core's parity bound (float32 wavelet and FFT rounding: max error 1e-4 on residuals of std ~2)."""
  index = json.loads((reference_dir / "index.json").read_text())["residuals"]
  for file in ("Nikon_D70_0_19445_sigma5.npy", "Nikon_D70_0_19445_odd333x517_sigma3.npy"):
    meta = index[file]
    w = prnu.extract_single(_crop(dresden_dir, meta["image"], *meta["crop"]), sigma=meta["sigma"])
    ref = np.load(reference_dir / "residuals" / file)
    assert w.dtype == np.float32 and w.shape == ref.shape
    assert np.abs(w - ref).max() <= 1e-4, file


@pytest.mark.slow  # 10 flat-fields at 512² (~10 s); the core's estimator has the same check in CI (dresden_test)
def test_fingerprint_equals_the_reference_output(dresden_dir, reference_dir):
  """extract_multiple_aligned of one device's 10 flat-fields (512²) against the stored fingerprint: NCC ≥ 0.9999
  and max error 2e-4 of the range, the core's parity bounds (tests/prnu/dresden_test.py)."""
  labels = json.loads((reference_dir / "labels.json").read_text())
  device = "Nikon_D70s_1"
  imgs = [_crop(dresden_dir, f"flatfield/{f}", 512, 512) for f in labels["flatfield_files"][device]]
  k = prnu.extract_multiple_aligned(imgs, processes=4, batch_size=5)
  ref = np.load(reference_dir / "fingerprints" / f"{device}_sigma5.npy")
  assert k.dtype == np.float32
  assert prnu.aligned_cc(k[None], ref[None])["ncc"][0, 0] >= 0.9999
  np.testing.assert_allclose(k, ref, atol=2e-4 * np.abs(ref).max())


def test_scores_and_statistics_equal_the_reference(reference_dir):
  """From the reference's own K and W files: aligned_cc, crosscorr_2d + pce (legacy exclusion) and stats/gt give
  the stored score matrices (rtol 1e-4, float32 sums of 512² products) and AUCs."""
  labels = json.loads((reference_dir / "labels.json").read_text())
  index = json.loads((reference_dir / "index.json").read_text())["residuals"]
  cols = [j for j, im in enumerate(labels["cols_images"]) if f"{im}_sigma5.npy" in index]
  k = np.stack([np.load(reference_dir / "fingerprints" / f"{d}_sigma5.npy") for d in labels["rows_devices"]])
  w = np.stack([np.load(reference_dir / "residuals" / f"{labels['cols_images'][j]}_sigma5.npy") for j in cols])
  scores = prnu.aligned_cc(k, w)
  np.testing.assert_allclose(scores["cc"], np.load(reference_dir / "cc.npy")[:, cols], rtol=1e-4)
  np.testing.assert_allclose(scores["ncc"], np.load(reference_dir / "ncc.npy")[:, cols], rtol=1e-4)
  pce = np.asarray([[prnu.pce(prnu.crosscorr_2d(ki.copy(), wj.copy()))["pce"] for wj in w] for ki in k])
  np.testing.assert_allclose(pce, np.load(reference_dir / "pce.npy")[:, cols], rtol=1e-4)
  gt = prnu.gt(labels["rows_devices"], labels["cols_devices"])
  np.testing.assert_array_equal(gt, np.asarray(labels["gt_same_device"], bool))
  results = json.loads((reference_dir / "results.json").read_text())
  for name in ("cc", "ncc", "pce"):
    assert prnu.stats(np.load(reference_dir / f"{name}.npy"), gt)["auc"] == pytest.approx(results["auc"][name])


def test_the_building_blocks_equal_the_numpy_reference():
  """The intermediate functions against tests/prnu/prnu_reference.py (prnu-python's numpy code, its dtypes) on
  a small real-valued case: the core's parity bounds (float32 wavelet/FFT sums, ~1e-4 of values ~10)."""
  sys.path.insert(0, str(pathlib.Path(__file__).parent / "prnu"))
  import prnu_reference as ref  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1)
  im = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
  im[:4, :4] = 255  # a clipped corner: the saturation map has work to do
  np.testing.assert_allclose(prnu.noise_extract(im, sigma=3), ref.np_noise_extract(im, sigma=3.0), atol=2e-4)
  x = rng.normal(0, 3, (40, 56)).astype(np.float32)
  np.testing.assert_allclose(prnu.rgb2gray(im), ref.np_rgb2gray(im), rtol=1e-6, atol=1e-4)
  np.testing.assert_allclose(prnu.zero_mean(x), ref.np_zero_mean(x), atol=1e-5)
  np.testing.assert_allclose(prnu.zero_mean_total(x.copy()), ref.np_zero_mean_total(x), atol=1e-5)
  np.testing.assert_allclose(prnu.wiener_dft(x, 2.0), ref.np_wiener_dft(x, 2.0), atol=1e-4)
  np.testing.assert_allclose(prnu.wiener_adaptive(x, 4.0), ref.np_wiener_adaptive(x, 4.0), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(prnu.wiener_adaptive(x, 4.0, window_size_list=[3, 7]),
                             ref.np_wiener_adaptive(x, 4.0, (3, 7)), rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(prnu.saturation(im), ref.np_saturation(im))
  np.testing.assert_allclose(prnu.threshold(np.array([1.0, 5.0]), 2.0), [0.0, 3.0])
  np.testing.assert_allclose(prnu.inten_sat_compact((im,)),
                             ((prnu.inten_scale(im) * ref.np_saturation(im)) ** 2).astype(np.float32))
  np.testing.assert_allclose(prnu.noise_extract_compact((im, 4, 3)),
                             ref.np_noise_extract(im, sigma=3.0) * im / 255.0, atol=2e-4)
  np.testing.assert_allclose(prnu.extract_single(im, sigma=3), ref.np_extract_single(im, sigma=3.0), atol=2e-4)
  np.testing.assert_array_equal(prnu.cut_ctr(np.arange(20).reshape(4, 5), (2, 3)), [[6, 7, 8], [11, 12, 13]])


def test_reference_quirks_are_reproduced():
  rng = np.random.default_rng(0)
  # crosscorr_2d and zero_mean_total work in place, as the reference's do.
  a, b = rng.normal(3, 1, (20, 30)).astype(np.float32), rng.normal(-2, 1, (20, 30)).astype(np.float32)
  want_a = a - a.mean()
  prnu.crosscorr_2d(a, b)
  np.testing.assert_allclose(a, want_a, atol=1e-6)
  assert abs(b.mean()) < 1e-5
  x = rng.normal(0, 1, (16, 18)).astype(np.float32)
  out = prnu.zero_mean_total(x)
  assert out is x and np.abs(x[0::2, 0::2].mean(axis=0)).max() < 1e-5
  # inten_scale on every uint8 value: what the reference computes under numpy 1 (it overflows under numpy 2).
  v = np.arange(256, dtype=np.uint8)
  want = np.where(v < 252, v / 252.0, np.exp(-((v.astype(np.float64) - 252) ** 2) / 6))
  np.testing.assert_allclose(prnu.inten_scale(v.reshape(16, 16)).ravel(), want, rtol=1e-6)
  # A grey image: residual of its shape; saturation of an unsaturated one is float ones [H, W, 1].
  grey = rng.integers(0, 200, (32, 40), dtype=np.uint8)
  assert prnu.noise_extract(grey).shape == (32, 40) and prnu.extract_single(grey).shape == (32, 40)
  assert prnu.saturation(grey).shape == (32, 40, 1) and prnu.saturation(grey).dtype == np.float64
  assert prnu.pce(np.eye(8, dtype=np.float32))["peak"] == (0, 0)


def test_bad_input_is_a_clear_error_not_a_jax_traceback():
  with pytest.raises(ValueError, match="uint8"):
    prnu.extract_single(np.zeros((32, 32, 3), np.float32))
  with pytest.raises(ValueError, match="1 or 3 channels"):
    prnu.extract_single(np.zeros((32, 32, 2), np.uint8))
  with pytest.raises(ValueError, match="colour images"):
    prnu.extract_multiple_aligned([np.zeros((32, 32), np.uint8)])
  with pytest.raises(ValueError, match="at least one"):
    prnu.extract_multiple_aligned([])
  with pytest.raises(prnu.ArgumentError):
    prnu.cut_ctr(np.zeros((8, 8)), (4,))
  with pytest.raises(ValueError, match="target size 9"):
    prnu.cut_ctr(np.zeros((8, 8)), (9, 4))
  with pytest.raises(ValueError, match="2-D"):
    prnu.crosscorr_2d(np.zeros((4, 4, 1), np.float32), np.zeros((4, 4), np.float32))
  with pytest.raises(ValueError, match="same shape"):
    prnu.aligned_cc(np.zeros((2, 16)), np.zeros((3, 15)))


def _reference_checkout() -> pathlib.Path | None:
  """A prnu-python checkout with its test data ($PRNU_PYTHON_REPO), else None."""
  repo = pathlib.Path(os.environ.get("PRNU_PYTHON_REPO", "/nonexistent"))
  return repo if (repo / "test" / "test_prnu.py").is_file() else None


def test_the_reference_unit_tests_pass_with_the_drop_in(monkeypatch):
  """polimi-ispl/prnu-python's test/test_prnu.py, unchanged, with `prnu` bound to this module (its data is not
  redistributed here: set PRNU_PYTHON_REPO to a checkout; skipped without one)."""
  import unittest  # pylint: disable=g-import-not-at-top
  repo = _reference_checkout()
  if repo is None:
    pytest.skip("no prnu-python checkout with test data (set PRNU_PYTHON_REPO)")
  monkeypatch.setitem(sys.modules, "prnu", prnu)
  monkeypatch.chdir(repo / "test")  # the file chdirs itself; this restores the working folder afterwards
  path = repo / "test" / "test_prnu.py"
  namespace = {"__name__": "test_prnu", "__file__": str(path)}
  exec(compile(path.read_text(), str(path), "exec"), namespace)  # pylint: disable=exec-used
  result = unittest.TextTestRunner(verbosity=0).run(
      unittest.TestLoader().loadTestsFromTestCase(namespace["TestPrnu"]))
  assert result.testsRun == 7 and result.wasSuccessful(), result.failures + result.errors
