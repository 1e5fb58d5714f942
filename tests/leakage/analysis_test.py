"""Tests of the leakage model, the half-split statistics (P̂, γ²), membership inference and the analysis tables
(dippas_jax.leakage), on the exact model, the synthetic camera and real Dresden tiles."""

import functools

import jax
import numpy as np
import pytest
from scipy.ndimage import uniform_filter

from dippas_jax import leakage as lk
from dippas_jax import synthetic
from dippas_jax.leakage import experiments

SIZE = 64


# -------------------------------------------------------------------------------------- local statistics, model
@pytest.mark.parametrize("window", [1, 3, 5, 9])
def test_local_variance_matches_clipped_box_mean(window):
  x = np.random.default_rng(0).standard_normal((2, 11, 13)).astype(np.float32)
  got = np.asarray(lk.local_variance(x, window=window))
  counts = uniform_filter(np.ones((11, 13)), window, mode="constant")
  for i in range(2):
    want = uniform_filter(x[i].astype(np.float64) ** 2, window, mode="constant") / counts
    np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(lk.box_mean(x * x, window=window), got, rtol=1e-6)
  with pytest.raises(ValueError, match="odd"):
    lk.local_variance(x, window=4)


def test_leakage_model_and_power_estimate_on_the_multiplicative_model():
  # W_i = X̂_i K + N_i exactly (no denoiser): K̂ is unbiased and <K̂_A, K̂_B> estimates ‖K‖² without K.
  rng = np.random.default_rng(0)
  k = 0.02 * rng.standard_normal((48, 48))
  x = rng.uniform(30, 220, size=(20, 48, 48))
  w = x * k + 4.0 * rng.standard_normal(x.shape)
  model = lk.leakage_model(w, x)
  np.testing.assert_allclose(model.r, np.sum(x * x, 0), rtol=1e-5)
  np.testing.assert_allclose(model.k_hat, np.sum(w * x, 0) / np.sum(x * x, 0), rtol=1e-4, atol=1e-7)
  power, spread = lk.power_estimate(w, x, n_splits=20, seed=0)
  truth = float(np.sum(k * k))
  assert abs(power - truth) < 0.05 * truth, (power, truth)
  assert spread < 0.05 * truth
  assert float(np.sum(np.asarray(model.k_hat) ** 2)) > 1.1 * truth  # ‖K̂‖² is biased up by the noise.
  assert np.all(np.asarray(lk.leakage_model(np.ones((2, 3, 3)), np.zeros((2, 3, 3))).k_hat) == 0)
  with pytest.raises(ValueError, match="L ≥ 2"):
    lk.power_estimate(w[:1], x[:1])


def test_split_gamma2_matches_the_known_noise_variance_on_the_synthetic_camera():
  # The synthetic camera's flat-fields with the true scene Y as X̂ (no denoiser): W = I − Y = Y K + noise, whose
  # variance is known per pixel (shot_gain·Y(1+K) + read noise² + 1/12 of rounding), so Var(N_k) = Σ Y² σ² / R².
  # D²/Var(N_k) is χ²₁ per pixel (mean 1, variance 2) and independent across pixels, so the pixel mean of the
  # split estimate has relative standard deviation ≤ sqrt(2/(H·W)) (averaging splits only lowers it): tolerance
  # 4 of those (H·W = 4096: 8.8 %).
  l, size = 8, 64
  rng = lambda *s: np.random.default_rng(np.random.SeedSequence(11, spawn_key=s))  # noqa: E731
  k = synthetic.device_prnu(11, 0, height=size, width=size)
  scenes = np.stack([synthetic.flat_scene(rng(1, i), height=size, width=size, brightness=120.0)
                     for i in range(l)])[..., 0]
  photos = np.stack([synthetic.capture(rng(2, i), np.repeat(s[..., None], 3, -1), k) for i, s in enumerate(scenes)])
  w, x = photos[..., 0].astype(np.float64) - scenes, scenes.astype(np.float64)
  sigma2 = 0.3 * x * (1 + k) + 1.0 + 1.0 / 12.0
  truth = np.sum(x * x * sigma2, 0) / np.sum(x * x, 0) ** 2
  gamma2 = lk.noise_variance(w, x, n_splits=10, window=3, seed=0)
  tolerance = 4 * np.sqrt(2 / size**2)
  assert abs(gamma2.mean() / truth.mean() - 1) < tolerance, (gamma2.mean(), truth.mean(), tolerance)
  # The local moment of K̂ holds the PRNU's power as well: it exceeds the noise by about mean(K²).
  moment = np.asarray(lk.local_variance(lk.leakage_model(w, x).k_hat, window=3)).mean()
  excess = (moment - truth.mean()) / np.mean(k.astype(np.float64) ** 2)
  assert abs(excess - 1) < tolerance * (1 + truth.mean() / np.mean(k**2)), excess


def _mixed_brightness(l, size=128, seed=5):
  """W = X K + N on the exact model with images of two brightnesses (40 and 200, alternating) and shot noise:
  per-pixel, per-image variance s_i = 0.3·X_i + 1 (Dresden-like gain), known exactly; returns (w, x, the true
  Var(N_k) = Σ X² s / R² per pixel)."""
  rng = np.random.default_rng(seed)
  k = 0.01 * rng.standard_normal((size, size))
  x = np.where(np.arange(l)[:, None, None] % 2 == 0, 40.0, 200.0) * rng.uniform(0.9, 1.1, (l, size, size))
  s = 0.3 * x + 1.0
  w = x * k + np.sqrt(s) * rng.standard_normal(x.shape)
  return w, x, np.sum(x * x * s, 0) / np.sum(x * x, 0) ** 2


@pytest.mark.parametrize("l", [4, 6, 10])
def test_leave_one_out_gamma2_is_unbiased_on_mixed_brightness(l):
  """Images of brightness 40 and 200 mixed (the natural pool and the '+natural' rows): the leave-one-out γ² is
  unbiased, the split's is not. Tolerance of the pixel mean: 4 standard errors of the χ²-like per-pixel estimate
  measured from the data itself (its std over H·W = 16384 pixels). The split's bias on this set (BUILD_NOTES): its
  halves differ in R whenever they hold unequal numbers of bright images."""
  w, x, truth = _mixed_brightness(l)
  wx, xx = w * x, x * x
  _, d2 = lk.split_statistics(wx, xx, lk.split_masks(jax.random.key(0), np.arange(l), l, 10))
  loo, defined = lk.loo_variance(wx, xx, d2)
  assert defined == 1.0  # no image outweighs the others together (200² < 40² + 200²)
  ratio = loo / truth
  tolerance = 4 * ratio.std() / np.sqrt(ratio.size)
  assert abs(ratio.mean() - 1) < tolerance, (ratio.mean(), tolerance)
  split_bias = np.mean(d2 / truth) - 1  # measured −37 % (L = 4), −16 % (6), −4 % (10)
  if l <= 6:
    assert split_bias < -0.1, split_bias


def test_leave_one_out_falls_back_where_it_is_not_defined():
  """L = 2, and pixels where one image outweighs the others together (X_i² ≥ R_−i): Q is not identifiable from the
  leave-one-out statistics; the fallback map is returned there."""
  w, x, _ = _mixed_brightness(2, size=16)
  fallback = np.full((16, 16), 7.0, np.float32)
  got, defined = lk.loo_variance(w * x, x * x, fallback)
  assert defined == 0.0 and np.all(got == 7.0)
  w, x, truth = _mixed_brightness(3, size=16)  # brightness 40, 200, 40: the bright one outweighs the other two
  got, defined = lk.loo_variance(w * x, x * x, fallback)
  assert defined == 0.0 and np.all(got == 7.0)


def test_mitigations_and_matching():
  rng = np.random.default_rng(0)
  k = rng.standard_normal((16, 16)).astype(np.float32)
  w = rng.standard_normal((3, 16, 16)).astype(np.float32)
  assert set(np.unique(np.asarray(lk.binarize(k)))) <= {-1.0, 1.0}
  hamming = np.mean(np.sign(k)[None] != np.sign(w), axis=(1, 2))
  np.testing.assert_allclose(lk.match_scores(k, w, binary=True), 1 - 2 * hamming, atol=1e-6)
  np.testing.assert_allclose(lk.whiten(k, window=3), k / np.sqrt(np.asarray(lk.local_variance(k, window=3))),
                             rtol=1e-5)
  np.testing.assert_array_equal(lk.mitigate(k, "none"), k)
  with pytest.raises(ValueError, match="Unsupported mitigation"):
    lk.mitigate(k, "blur")


# ------------------------------------------------------------------------------------------------ membership
def _pearson(a, b):
  return np.corrcoef(a.ravel(), b.ravel())[0, 1]


def test_detectors_are_named_after_the_paper_and_scored_per_tile():
  rng = np.random.default_rng(0)
  w = rng.standard_normal((3, 32, 48)).astype(np.float32)
  x = rng.uniform(50, 100, size=(3, 32, 48)).astype(np.float32)
  model = lk.leakage_model(w[:2], x[:2])
  k = np.asarray(model.k_hat)
  scores = lk.detector_scores(k, model.r, w, x, tile=16)
  assert list(scores) == list(lk.DETECTORS) and lk.DETECTORS[0] == "ncc_eq11"
  assert scores["ncc_eq11"].shape == (3, 6)
  tile = (slice(16, 32), slice(16, 32))  # Row-major tiles: tile 4 is row 1, column 1.
  for i in range(3):
    np.testing.assert_allclose(scores["ncc_eq11"][i, 4], _pearson(k[tile], w[i][tile]), atol=1e-5)  # Eq. 11.
    np.testing.assert_allclose(scores["ncc_wx"][i, 4], _pearson(k[tile], (w[i] * x[i])[tile]), atol=1e-5)
  whole = lk.detector_scores(k, model.r, w, x, tile=0)
  np.testing.assert_allclose(whole["ncc_eq11"][:, 0], [_pearson(k, w[i]) for i in range(3)], atol=1e-5)
  llr, valid = lk.np_llr(k, model.r, w, x)
  np.testing.assert_allclose(whole["np_eq10"][:, 0], np.asarray(llr).sum((1, 2)) / np.asarray(valid).sum((1, 2)),
                             rtol=1e-4)
  with pytest.raises(ValueError, match="Unsupported detector"):
    lk.detector_scores(k, model.r, w, x, detectors=("ncc",))
  with pytest.raises(ValueError, match="tile"):
    lk.to_tiles(w, 64)


def test_tile_aucs_are_the_mann_whitney_statistic():
  rng = np.random.default_rng(0)
  a, b = rng.normal(0.5, 1, (30, 3)), rng.normal(0, 1, (40, 3))
  b[:3] = a[:3]  # Ties count ½.
  want = [(a[:, t, None] > b[None, :, t]).mean() + 0.5 * (a[:, t, None] == b[None, :, t]).mean() for t in range(3)]
  np.testing.assert_allclose(lk.tile_aucs(a, b), want, rtol=1e-12)
  np.testing.assert_allclose(lk.membership_auc(a[:, 0], b[:, 0]), want[0], rtol=1e-12)


def test_np_detector_beats_ncc_where_its_model_holds():
  # Non-stationary Gaussian residuals (the NP detector's model): weighting by the local variances wins.
  rng = np.random.default_rng(0)
  var = np.ones((16, 16))
  var[:, 8:] = 1000.0
  w = (rng.standard_normal((64, 16, 16)) * np.sqrt(var)).astype(np.float32)
  rows, _ = lk.membership_sweep(w, np.full(w.shape, 100.0, np.float32), l_values=(32,), n_trials=10, tile=0,
                                detectors=("ncc_eq11", "np_eq10"))
  aucs = {r["detector"]: r["auc"] for r in rows}
  assert aucs["np_eq10"] > aucs["ncc_eq11"] + 0.01, aucs


# ---------------------------------------------------------------------------------------- synthetic camera
def _rng(*stream):
  return np.random.default_rng(np.random.SeedSequence(7, spawn_key=stream))


@functools.lru_cache(maxsize=None)
def _prnu():
  return synthetic.device_prnu(7, 0, height=SIZE, width=SIZE)


@functools.lru_cache(maxsize=None)
def _extracted(brightness, count):
  flats = np.stack([synthetic.capture(_rng(1, 0, int(brightness), i),
                                      synthetic.flat_scene(_rng(2, 0, int(brightness), i), height=SIZE, width=SIZE,
                                                           brightness=brightness), _prnu()) for i in range(count)])
  return lk.residuals_and_denoised(flats)


def _bounds(w, x, l):
  out = lk.set_bounds(w * x, x * x, np.arange(l), n_splits=10, estimators=("split", "moment"), windows=(3,),
                      key=jax.random.key(0))
  return {e: out[(e, 3)] for e in ("split", "moment")}


def test_synthetic_bound_goes_to_zero_with_l_for_the_split_gamma2():
  w, x = _extracted(170.0, 48)
  bounds = {l: _bounds(w[:l], x[:l], l) for l in (4, 16, 48)}
  split = [bounds[l]["split"][0].bits_per_pixel for l in (4, 16, 48)]
  assert split[0] > split[1] > split[2] and split[2] < 0.05, split
  # Var(N_k) ∝ 1/L: L·γ² stays put; the moment's γ² keeps K's power and floors the bound near ½ bit per pixel.
  scaled = [l * bounds[l]["split"][1] for l in (4, 16, 48)]
  assert max(scaled) < 1.15 * min(scaled), scaled
  assert bounds[48]["moment"][0].bits_per_pixel > 0.45, bounds[48]["moment"]


def test_synthetic_dark_flat_fields_leak_more():
  dark, bright = _extracted(40.0, 16), _extracted(200.0, 16)
  for l in (4, 16):
    d = _bounds(dark[0][:l], dark[1][:l], l)["split"][0].bits_per_pixel
    b = _bounds(bright[0][:l], bright[1][:l], l)["split"][0].bits_per_pixel
    assert d > b, (l, d, b)


def test_synthetic_membership_auc_falls_with_l_and_binarization_lowers_it():
  w, x = _extracted(170.0, 48)
  rows, roc_rows = lk.membership_sweep(w, x, l_values=(4, 12, 24), n_trials=4, tile=16,
                                       detectors=("ncc_eq11", "np_eq10", "ncc_eq11_binarize"))
  auc = {(r["L"], r["detector"]): r["auc"] for r in rows}
  for d in ("ncc_eq11", "np_eq10", "ncc_eq11_binarize"):
    assert auc[(4, d)] > auc[(12, d)] > auc[(24, d)], auc
  assert auc[(24, "ncc_eq11")] < 0.95 and auc[(12, "ncc_eq11_binarize")] < auc[(12, "ncc_eq11")] - 0.02, auc
  assert {(r["L"], r["detector"]) for r in roc_rows} == set(auc)


# ---------------------------------------------------------------------------------------- the full analysis
@functools.lru_cache(maxsize=None)
def _camera():
  return synthetic.make_dataset(seed=3, num_devices=2, num_flatfield=8, num_natural=3, height=SIZE, width=SIZE)


@functools.lru_cache(maxsize=None)
def _analysis():
  ds = _camera()
  return lk.run_leakage_analysis(ds.flatfield[0], l_values=(2, 4), n_splits=3, n_trials=2, window_sizes=(3, 5),
                                 query_images=ds.natural, query_labels=ds.natural_device == 0, seed=1)


def test_run_leakage_analysis_tables():
  out = _analysis()
  assert len(out["ilb"]) == 2 * 2  # L × windows, K̂ only: no bound for a mitigated fingerprint.
  for row in out["ilb"]:
    assert row["mitigation"] == "none" and row["estimator"] == "loo" and row["ilb_bpp"] == row["ilb_bpp_loo"]
    assert 0 < row["ilb_bpp_split"] < row["ilb_bpp_moment"] and row["constraint_rel_error"] < 1e-9
    if row["L"] == 2:  # leave one out is not defined at L = 2: the split's γ²
      assert row["ilb_bpp_loo"] == pytest.approx(row["ilb_bpp_split"], rel=1e-5)  # the same γ² map
    else:  # flat-fields of one brightness: both unbiased, the same bound to their sampling spread
      assert abs(row["ilb_bpp_loo"] / row["ilb_bpp_split"] - 1) < 0.1
    assert row["gamma2_split"] < row["gamma2_moment"] and row["n_pixels"] == SIZE * SIZE
  assert len(out["membership"]) == 2 * len(lk.DETECTORS)
  assert all(r["n_nonmembers"] == 8 - r["L"] and r["n_tiles"] == 16 for r in out["membership"])
  for row in out["mitigation"]:
    if row["mitigation"] == "none":
      assert np.isfinite(row["ilb_bpp"]) and row["bound"] == "Eqs. 6-7"
    else:  # The whitened (and binarized) estimate: no bound, and the table says why.
      assert np.isnan(row["ilb_bpp"]) and row["bound"].startswith("not reported")
    assert row["attribution_auc"] >= 0.95, row  # 64×64 synthetic sensors are easy to tell apart.
  ilb = {r["L"]: r["ilb_bpp"] for r in out["ilb"] if r["window"] == 3}
  assert ilb[2] > ilb[4]


def test_run_leakage_analysis_is_deterministic_per_l():
  ds = _camera()
  alone = lk.run_leakage_analysis(ds.flatfield[0], l_values=(4,), n_splits=3, n_trials=2, window_sizes=(3, 5),
                                  query_images=ds.natural, query_labels=ds.natural_device == 0, seed=1)
  both = _analysis()
  for table in ("ilb", "membership", "mitigation", "roc"):
    np.testing.assert_equal(alone[table], [r for r in both[table] if r["L"] == 4])  # NaN-aware equality.


def test_run_leakage_analysis_rejects_bad_arguments():
  images = _camera().flatfield[0]
  with pytest.raises(ValueError, match="two halves"):
    lk.run_leakage_analysis(images, l_values=(9,))
  with pytest.raises(ValueError, match="leave a non-member"):
    lk.run_leakage_analysis(images, l_values=(2,), membership_l_values=(8,))
  with pytest.raises(ValueError, match="Unsupported mitigation"):
    lk.run_leakage_analysis(images, l_values=(2,), mitigations=("none", "noise"))
  with pytest.raises(ValueError, match="go together"):
    lk.run_leakage_analysis(images, l_values=(2,), query_images=images)
  with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
    lk.run_leakage_analysis(images[..., 0], l_values=(2,))


def test_synthetic_paper_tables_and_fig1():
  rows = experiments.synthetic_tables(size=SIZE, l_values=(8, 24), n_splits=4)
  by = {(r["table"], r["pool"], r["L"]): r for r in rows}
  assert by[("1", "natural", 8)]["ilb_bpp_split"] > by[("1", "natural", 24)]["ilb_bpp_split"]
  assert by[("2", "dark", 24)]["ilb_bpp_split"] > by[("2", "bright", 24)]["ilb_bpp_split"]  # dark leaks more
  assert by[("2", "dark+natural", 24)]["ilb_bpp_split"] > by[("2", "dark", 24)]["ilb_bpp_split"]
  fig1 = experiments.synthetic_fig1(size=SIZE, l=8, lines=("AB",))
  assert fig1["content"].shape == (SIZE, SIZE, 3) and fig1["k_with"].shape == (SIZE, SIZE)
  # The text image's ink (dark, little weight in R) vs its paper (bright): K̂'s local energy follows the content.
  ink = experiments.text_scene(("AB",), height=SIZE, width=SIZE)[..., 0] < 100
  energy = fig1["energy_with"] / fig1["energy_without"]
  assert energy[ink].mean() > 1.2 * energy[~ink].mean()


# ------------------------------------------------------------------------------------------------ real images
def test_dresden_np_detector_beats_eq11_and_auc_falls_with_l(dresden_dir):
  # One camera's 10 flat-fields and 5 natural photos, 16 tiles of 64² denoised apart (the shape other tests
  # compile), their central 32² (away from the tile borders) put side by side and scored on 16² tiles. Real
  # residuals are spatially non-stationary, where the NP genie's local variances pay off; members and
  # non-members are drawn from all 15 images.
  from dippas_jax import io  # pylint: disable=g-import-not-at-top
  records = [r for r in io.read_manifest(dresden_dir / "manifest.csv") if r.device == "Nikon_D70s_1"]
  images = io.load_images([r.path for r in records], crop=(512, 512))
  n = len(images)
  tiles = images.reshape(n, 8, 64, 8, 64, 3).transpose(1, 3, 0, 2, 4, 5)[::2, ::2].reshape(-1, 64, 64, 3)
  w, x = lk.residuals_and_denoised(tiles)
  w, x = (a.reshape(4, 4, n, 64, 64)[..., 16:48, 16:48].transpose(2, 0, 3, 1, 4).reshape(n, 128, 128)
          for a in (w, x))
  rows, _ = lk.membership_sweep(w, x, l_values=(2, 8), n_trials=3, tile=16, detectors=("ncc_eq11", "np_eq10"))
  auc = {(r["L"], r["detector"]): r["auc"] for r in rows}
  assert auc[(2, "np_eq10")] >= auc[(2, "ncc_eq11")] and auc[(8, "np_eq10")] > auc[(8, "ncc_eq11")] + 0.01, auc
  assert auc[(8, "ncc_eq11")] < auc[(2, "ncc_eq11")] - 0.03 and auc[(8, "np_eq10")] < auc[(2, "np_eq10")], auc


def test_np_eq10_is_the_gaussian_log_likelihood_ratio():
  """Eq. 10 per pixel against scipy: log N(K̂ − Q; 0, θ²) − log N(K̂; 0, λ²), Q = W·X̂/R, λ² and θ² the 3×3
  (border-clipped) box means of K̂² and (K̂ − Q)² — computed here with scipy.stats and scipy.ndimage only."""
  from scipy import ndimage, stats  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(7)
  w = rng.standard_normal((4, 24, 20)).astype(np.float32)
  x = rng.uniform(50, 150, size=(4, 24, 20)).astype(np.float32)
  model = lk.leakage_model(w[:3], x[:3])
  k, r = np.asarray(model.k_hat, np.float64), np.asarray(model.r, np.float64)
  box = lambda v: ndimage.uniform_filter(v, 3, mode="constant") / ndimage.uniform_filter(np.ones_like(v), 3,
                                                                                         mode="constant")
  llr, valid = lk.np_llr(model.k_hat, model.r, w, x)
  assert np.asarray(valid).all()
  for i in range(4):
    p = k - w[i].astype(np.float64) * x[i] / r
    want = stats.norm.logpdf(p, scale=np.sqrt(box(p * p))) - stats.norm.logpdf(k, scale=np.sqrt(box(k * k)))
    np.testing.assert_allclose(np.asarray(llr[i]), want, rtol=1e-4, atol=1e-4)
