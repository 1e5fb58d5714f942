"""Tests of the information-leakage analysis (dippas_jax.leakage, dippas_jax.leakage_report)."""

import functools
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize
from scipy.ndimage import uniform_filter

from dippas_jax import leakage as lk
from dippas_jax.jobs import leakage_report
from dippas_jax import synthetic

SIZE = 64


def _constraint(gamma2, mu):
  """½ Σ γ² (sqrt(1 + 4/(μγ²)) − 1), the paper's form, float64 numpy (γ² > 0 only)."""
  g = gamma2[gamma2 > 0]
  return 0.5 * np.sum(g * (np.sqrt(1.0 + 4.0 / (mu * g)) - 1.0))


def _paper_bound(gamma2, mu):
  """½ Σ log(1 + 2 / (sqrt(1 + 4/(μγ²)) − 1)) in nats, the paper's form (γ² > 0 only)."""
  g = gamma2[gamma2 > 0]
  return 0.5 * np.sum(np.log1p(2.0 / (np.sqrt(1.0 + 4.0 / (mu * g)) - 1.0)))


def _gamma2_cases():
  rng = np.random.default_rng(0)
  heavy = rng.gamma(0.3, 1e-4, size=(48, 40))
  heavy[:3, :5] = 0.0  # Pixels without variance take no allocation.
  return {
      "gamma_heavy_tailed": heavy,
      "lognormal_wide": np.exp(rng.normal(-8.0, 3.0, size=(32, 32))),
      "constant": np.full((16, 16), 2.5e-4),
  }


# ------------------------------------------------------------------------------------------ the bound's math
@pytest.mark.parametrize("case", list(_gamma2_cases()))
@pytest.mark.parametrize("power_ratio", [1e-6, 1e-2, 0.3, 1.0, 50.0, 1e4])
def test_mu_satisfies_constraint(case, power_ratio):
  gamma2 = _gamma2_cases()[case]
  power = power_ratio * gamma2.sum()
  mu, rel = lk.solve_mu(gamma2, power)
  assert mu > 0
  assert rel < 1e-9
  # Independent check in the paper's (non-rearranged) form.
  assert abs(_constraint(gamma2, mu) - power) / power < 1e-9


@pytest.mark.parametrize("case", list(_gamma2_cases()))
def test_bound_equals_log_at_optimal_allocation(case):
  gamma2 = _gamma2_cases()[case]
  power = 0.2 * gamma2.sum()
  bound = lk.information_leakage_bound(gamma2, power)
  n_opt = lk.optimal_allocation(gamma2, bound.mu)
  assert np.all(n_opt[gamma2 == 0] == 0) and np.all(n_opt[gamma2 > 0] > 0)
  np.testing.assert_allclose(n_opt.sum(), power, rtol=1e-9)
  positive = gamma2 > 0
  # Water-filling identity: at n* = ½γ²(sqrt(1 + 4/(μγ²)) − 1), γ²/n* = 2/(sqrt(1 + 4/(μγ²)) − 1).
  np.testing.assert_allclose(lk.bound_at_allocation(gamma2[positive], n_opt[positive]), bound.nats, rtol=1e-10)
  np.testing.assert_allclose(_paper_bound(gamma2, bound.mu), bound.nats, rtol=1e-10)
  np.testing.assert_allclose(bound.bits, bound.nats / np.log(2.0), rtol=1e-12)


@pytest.mark.parametrize("case", list(_gamma2_cases()))
def test_bound_is_minimum_over_allocations(case):
  gamma2 = _gamma2_cases()[case]
  gamma2 = np.where(gamma2 > 0, gamma2, 1e-12)  # Every pixel gets an allocation in the comparisons below.
  power = 0.2 * gamma2.sum()
  bound = lk.information_leakage_bound(gamma2, power).nats
  uniform = lk.bound_at_allocation(gamma2, np.full(gamma2.shape, power / gamma2.size))
  assert bound <= uniform * (1 + 1e-12)
  if case != "constant":  # With constant γ² the uniform allocation is the optimum.
    assert bound < uniform * (1 - 1e-3)
  else:
    np.testing.assert_allclose(bound, uniform, rtol=1e-10)
  rng = np.random.default_rng(1)
  n_opt = lk.optimal_allocation(gamma2, lk.solve_mu(gamma2, power)[0])
  for _ in range(50):
    random = rng.dirichlet(np.full(gamma2.size, 0.5)).reshape(gamma2.shape) * power
    assert lk.bound_at_allocation(gamma2, random) > bound
    # Small feasible perturbations of the optimum (mass moved between pixels) never do better.
    moved = n_opt * np.exp(1e-3 * rng.standard_normal(gamma2.shape))
    moved *= power / moved.sum()
    assert lk.bound_at_allocation(gamma2, moved) >= bound * (1 - 1e-12)


def test_bound_matches_a_generic_optimizer():
  gamma2 = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 0.1])
  power = 3.0
  objective = lambda n: 0.5 * np.sum(np.log1p(gamma2 / n))
  result = optimize.minimize(objective, np.full(6, power / 6), method="SLSQP", bounds=[(1e-9, None)] * 6,
                             constraints=[{"type": "eq", "fun": lambda n: n.sum() - power}],
                             options={"ftol": 1e-14, "maxiter": 500})
  assert result.success
  bound = lk.information_leakage_bound(gamma2, power)
  np.testing.assert_allclose(bound.nats, result.fun, rtol=1e-6)
  np.testing.assert_allclose(lk.optimal_allocation(gamma2, bound.mu), result.x, rtol=1e-3)


def test_units_on_hand_examples():
  # γ² = 1 on a 2×2 image, P = 4: by symmetry n* = 1 per pixel, μ solves ½(sqrt(1 + 4/μ) − 1) = 1 → μ = 1/2,
  # and the bound is ½ · 4 · log2(1 + 1/1) = 2 bits = 0.5 bit per pixel.
  bound = lk.information_leakage_bound(np.ones((2, 2)), 4.0)
  np.testing.assert_allclose(bound.mu, 0.5, rtol=1e-12)
  np.testing.assert_allclose(bound.bits, 2.0, rtol=1e-12)
  np.testing.assert_allclose(bound.bits_per_pixel, 0.5, rtol=1e-12)
  np.testing.assert_allclose(bound.nats, 2.0 * np.log(2.0), rtol=1e-12)
  assert bound.n_pixels == 4
  # One pixel, γ² = 3, P = 1: n* = 1, bound ½ log2(1 + 3) = 1 bit; ½·3(sqrt(1 + 4/(3μ)) − 1) = 1 → μ = 3/4.
  bound = lk.information_leakage_bound(np.array([[3.0]]), 1.0)
  np.testing.assert_allclose([bound.mu, bound.bits, bound.bits_per_pixel], [0.75, 1.0, 1.0], rtol=1e-12)
  # Pixels with γ² = 0 count in the pixel total but add no information.
  bound = lk.information_leakage_bound(np.array([[1.0, 1.0], [0.0, 0.0]]), 2.0)
  np.testing.assert_allclose([bound.bits, bound.bits_per_pixel], [1.0, 0.25], rtol=1e-12)


def test_bound_is_scale_invariant():
  gamma2 = _gamma2_cases()["gamma_heavy_tailed"]
  a = lk.information_leakage_bound(gamma2, 0.1 * gamma2.sum())
  b = lk.information_leakage_bound(gamma2 * 1e6, 0.1 * gamma2.sum() * 1e6)
  np.testing.assert_allclose(a.nats, b.nats, rtol=1e-10)
  np.testing.assert_allclose(a.mu, b.mu * 1e6, rtol=1e-8)


def test_nonpositive_power():
  bound = lk.information_leakage_bound(np.ones((4, 4)), -0.5)
  assert np.isnan(bound.bits_per_pixel) and np.isnan(bound.mu)
  with pytest.raises(ValueError, match="power P"):
    lk.solve_mu(np.ones((4, 4)), 0.0)
  with pytest.raises(ValueError, match="gamma2"):
    lk.solve_mu(-np.ones((4, 4)), 1.0)


def test_solver_stays_float32_outside():
  lk.solve_mu(np.ones((4, 4)), 3.0)
  assert jnp.ones(2).dtype == jnp.float32  # x64 was scoped to the solver.


# -------------------------------------------------------------------------------------- local statistics, model
@pytest.mark.parametrize("window", [1, 3, 5, 9])
def test_local_variance_matches_clipped_box_mean(window):
  x = np.random.default_rng(0).standard_normal((2, 11, 13)).astype(np.float32)
  got = np.asarray(lk.local_variance(x, window=window))
  counts = uniform_filter(np.ones((11, 13)), window, mode="constant")
  for i in range(2):
    want = uniform_filter(x[i].astype(np.float64) ** 2, window, mode="constant") / counts
    np.testing.assert_allclose(got[i], want, rtol=1e-5, atol=1e-7)
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
  assert model.residuals.shape == model.denoised.shape == (20, 48, 48)
  power, spread = lk.power_estimate(w, x, n_splits=20, seed=0)
  truth = float(np.sum(k * k))
  assert abs(power - truth) < 0.05 * truth, (power, truth)
  assert spread < 0.05 * truth
  naive = float(np.sum(np.asarray(model.k_hat) ** 2))  # ‖K̂‖² is biased up by the estimation noise.
  assert naive > 1.1 * truth
  zero = lk.leakage_model(np.ones((2, 3, 3)), np.zeros((2, 3, 3)))
  assert np.all(np.asarray(zero.k_hat) == 0)


def test_mitigations_and_matching():
  rng = np.random.default_rng(0)
  k = rng.standard_normal((16, 16)).astype(np.float32)
  w = rng.standard_normal((3, 16, 16)).astype(np.float32)
  b = np.asarray(lk.binarize(k))
  assert set(np.unique(b)) <= {-1.0, 1.0}
  hamming = np.mean(np.sign(k)[None] != np.sign(w), axis=(1, 2))
  np.testing.assert_allclose(lk.match_scores(k, w, binary=True), 1 - 2 * hamming, atol=1e-6)
  white = np.asarray(lk.whiten(k, window=3))
  np.testing.assert_allclose(white, k / np.sqrt(np.asarray(lk.local_variance(k, window=3))), rtol=1e-5)
  np.testing.assert_array_equal(lk.mitigate(k, "none"), k)
  with pytest.raises(ValueError, match="Unsupported mitigation"):
    lk.mitigate(k, "blur")
  x = rng.uniform(50, 100, size=(3, 16, 16))
  np.testing.assert_allclose(lk.match_scores(k, w, x),
                             [np.corrcoef(k.ravel(), (w[i] * x[i]).ravel())[0, 1] for i in range(3)], atol=1e-5)


def test_membership_auc_is_the_mann_whitney_statistic():
  rng = np.random.default_rng(0)
  a = rng.normal(0.5, 1, 30)
  b = np.r_[rng.normal(0, 1, 40), a[:3]]  # Ties included.
  pairs = (a[:, None] > b[None]).mean() + 0.5 * (a[:, None] == b[None]).mean()
  np.testing.assert_allclose(lk.membership_auc(a, b), pairs, rtol=1e-12)


def _gaussian_world(contrast, n_images=64, size=16, seed=0):
  """Residuals of the paper's Gaussian model with spatially non-stationary noise (half the image `contrast`×)."""
  rng = np.random.default_rng(seed)
  var = np.ones((size, size))
  var[:, size // 2:] = contrast
  w = rng.standard_normal((n_images, size, size)) * np.sqrt(var)
  return w.astype(np.float32), np.full(w.shape, 100.0, np.float32)


def _membership_aucs(w, x, l, trials, detectors, seed=100):
  """Mean membership AUC over `trials` random member sets of size l drawn from the images w, x float[N, H, W]."""
  n = len(w)
  out = {d: [] for d in detectors}
  for t in range(trials):
    perm = np.random.default_rng(seed + t).permutation(n)
    members, non = perm[:l], perm[l:]
    model = lk.leakage_model(w[members], x[members])
    tw, tx = np.concatenate([w[members], w[non]]), np.concatenate([x[members], x[non]])
    scores = {"np_genie": lk.np_membership_scores(model.k_hat, model.r, tw, tx),
              "ncc": lk.ncc_membership_scores(model.k_hat, tw, tx),
              "ncc_binarize": lk.match_scores(lk.binarize(model.k_hat), tw, tx, binary=True)}
    for d in detectors:
      s = np.asarray(scores[d])
      out[d].append(lk.membership_auc(s[:l], s[l:]))
  return {d: float(np.mean(v)) for d, v in out.items()}


def test_np_detector_beats_ncc_where_its_model_holds():
  # Non-stationary Gaussian residuals (the NP detector's model): weighting by the local variances wins.
  w, x = _gaussian_world(contrast=1000.0)
  aucs = _membership_aucs(w, x, 32, 10, ("np_genie", "ncc"))
  assert aucs["np_genie"] > aucs["ncc"] + 0.01, aucs


# ---------------------------------------------------------------------------------------- synthetic camera
def _rng(*stream):
  return np.random.default_rng(np.random.SeedSequence(7, spawn_key=stream))


@functools.lru_cache(maxsize=None)
def _prnu():
  return synthetic.device_prnu(7, 0, height=SIZE, width=SIZE)


def _flats(brightness, count, stream=0):
  return np.stack([synthetic.capture(_rng(1, stream, int(brightness), i),
                                     synthetic.flat_scene(_rng(2, stream, int(brightness), i), height=SIZE,
                                                          width=SIZE, brightness=brightness), _prnu())
                   for i in range(count)])


def _textured(mean=100.0, texture=10.0, index=0):
  """A finely textured scene (fine texture of std `texture` grey levels that the denoiser leaves in W)."""
  rng = _rng(3, index)
  scene = mean + texture * rng.standard_normal((SIZE, SIZE, 1)) + np.zeros((1, 1, 3))
  return synthetic.capture(rng, np.clip(scene, 2, 250).astype(np.float32), _prnu())


@functools.lru_cache(maxsize=None)
def _extracted(kind):
  if kind == "textured":
    return lk.residuals_and_denoised(np.stack([_textured(index=i) for i in range(2)]))
  brightness = {"dark": 40.0, "bright": 200.0, "mid": 170.0}[kind]
  return lk.residuals_and_denoised(_flats(brightness, 48 if kind == "mid" else 16))


def _ilb(w, x, window=3, n_splits=10):
  model = lk.leakage_model(w, x)
  power, _ = lk.power_estimate(w, x, n_splits=n_splits, seed=0)
  return lk.information_leakage_bound(np.asarray(lk.local_variance(model.k_hat, window=window)), power)


def test_synthetic_ilb_decreases_with_l_and_dark_leaks_more():
  values = {}
  for kind in ("dark", "bright"):
    w, x = _extracted(kind)
    values[kind] = [_ilb(w[:l], x[:l]).bits_per_pixel for l in (4, 8, 16)]
    assert values[kind][0] > values[kind][1] > values[kind][2], values
  assert all(d > b for d, b in zip(values["dark"], values["bright"])), values


def test_synthetic_textured_image_raises_dark_leak_more():
  # The paper's Table 2: replace one of the L flat-fields by a textured picture. The textured picture here
  # (mean 100, fine texture std 10) sits between the dark (40) and bright (200) flat-fields.
  tw, tx = _extracted("textured")
  for l in (8, 12):
    rise = {}
    for kind in ("dark", "bright"):
      w, x = _extracted(kind)
      for t in range(2):
        mixed = _ilb(np.concatenate([w[:l - 1], tw[t:t + 1]]), np.concatenate([x[:l - 1], tx[t:t + 1]]))
        rise.setdefault(kind, []).append(mixed.bits_per_pixel - _ilb(w[:l], x[:l]).bits_per_pixel)
    assert min(rise["dark"]) > max(rise["bright"]) > 0, rise


def test_synthetic_membership_auc_falls_with_l_and_binarization_lowers_it():
  w, x = _extracted("mid")
  crop = slice(24, 40)  # A 16×16 crop: on 64×64 the AUC is 1 for every L ≤ 32 (4096 pixels leak a lot).
  w, x = w[:, crop, crop], x[:, crop, crop]
  aucs = {l: _membership_aucs(w, x, l, 6, ("ncc", "np_genie", "ncc_binarize")) for l in (4, 12, 24)}
  for d in ("ncc", "np_genie", "ncc_binarize"):
    assert aucs[4][d] > aucs[12][d] > aucs[24][d], aucs
  assert aucs[24]["ncc"] < 0.95, aucs
  assert aucs[12]["ncc_binarize"] < aucs[12]["ncc"] - 0.03, aucs


# ---------------------------------------------------------------------------------------- the full analysis
@functools.lru_cache(maxsize=None)
def _camera():
  return synthetic.make_dataset(seed=3, num_devices=2, num_flatfield=8, num_natural=3, height=SIZE, width=SIZE)


@functools.lru_cache(maxsize=None)
def _analysis(l_values=(2, 4)):
  ds = _camera()
  return lk.run_leakage_analysis(ds.flatfield[0], l_values=l_values, n_splits=3, n_trials=2, window_sizes=(3, 5),
                                 extra_nonmembers=ds.natural[ds.natural_device == 0], query_images=ds.natural,
                                 query_labels=ds.natural_device == 0, seed=1)


def test_run_leakage_analysis_tables():
  out = _analysis()
  assert set(out) == {"ilb", "membership", "mitigation", "roc", "config"}
  assert len(out["ilb"]) == 2 * 2 * 2  # L × {none, whiten} × windows.
  assert len(out["membership"]) == 2 * len(lk.DETECTORS)
  assert len(out["mitigation"]) == 2 * len(lk.MITIGATIONS)
  for row in out["ilb"]:
    assert np.isfinite(row["ilb_bpp"]) and row["ilb_bpp"] > 0 and row["constraint_rel_error"] < 1e-9
    assert row["n_pixels"] == SIZE * SIZE
  for row in out["membership"]:
    assert 0.0 <= row["auc"] <= 1.0 and row["n_nonmembers"] == 8 - row["L"] + 3
  for row in out["mitigation"]:
    assert np.isnan(row["ilb_bpp"]) == (row["mitigation"] == "binarize")
    assert row["attribution_auc"] >= 0.95, row  # 64×64 synthetic sensors are easy to tell apart.
  none = {r["L"]: r["ilb_bpp"] for r in out["ilb"] if r["mitigation"] == "none" and r["window"] == 3}
  assert none[2] > none[4]
  assert {(r["L"], r["detector"]) for r in out["roc"]} == {(l, d) for l in (2, 4) for d in lk.DETECTORS}


def test_run_leakage_analysis_is_deterministic_per_l():
  ds = _camera()
  alone = lk.run_leakage_analysis(ds.flatfield[0], l_values=(4,), n_splits=3, n_trials=2, window_sizes=(3, 5),
                                  extra_nonmembers=ds.natural[ds.natural_device == 0], query_images=ds.natural,
                                  query_labels=ds.natural_device == 0, seed=1)
  both = _analysis()
  for table in ("ilb", "membership", "mitigation", "roc"):
    np.testing.assert_equal(alone[table], [r for r in both[table] if r["L"] == 4])  # NaN-aware equality.


def test_run_leakage_analysis_rejects_bad_arguments():
  images = _camera().flatfield[0]
  with pytest.raises(ValueError, match="non-member"):
    lk.run_leakage_analysis(images, l_values=(8,))
  with pytest.raises(ValueError, match="Unsupported mitigation"):
    lk.run_leakage_analysis(images, l_values=(2,), mitigations=("none", "noise"))
  with pytest.raises(ValueError, match="go together"):
    lk.run_leakage_analysis(images, l_values=(2,), query_images=images)
  with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
    lk.run_leakage_analysis(images[..., 0], l_values=(2,))


def test_save_leakage_plots(tmp_path):
  paths = leakage_report.save_leakage_plots(_analysis(), tmp_path)
  names = sorted(p.name for p in paths)
  assert names == sorted(["ilb_vs_L.png", "membership_auc_vs_L.png", "roc_L2.png", "roc_L4.png",
                          "mitigation.png"])
  for p in paths:
    assert pathlib.Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert sorted(p.name for p in tmp_path.iterdir()) == names  # No temporary files left behind.


# ------------------------------------------------------------------------------------------------ real images
def test_dresden_np_detector_beats_ncc(dresden_dir):
  # One camera's 10 flat-fields and 5 natural photos, cut into 64×64 tiles (16 tile positions); members and
  # non-members are drawn from all 15, scored on each tile's central 32×32 (AUC is 1 for every detector on whole
  # 512×512 crops at these L). Real residuals are spatially non-stationary, where the NP genie's local variances
  # pay off (on the synthetic camera they do not: see BUILD_NOTES).
  from dippas_jax import io  # pylint: disable=g-import-not-at-top
  records = [r for r in io.read_manifest(dresden_dir / "manifest.csv") if r.device == "Nikon_D70s_1"]
  images = io.load_images([r.path for r in records], crop=(512, 512))
  n = len(images)
  tiles = images.reshape(n, 8, 64, 8, 64, 3).transpose(1, 3, 0, 2, 4, 5)[::2, ::2].reshape(-1, 64, 64, 3)
  w, x = lk.residuals_and_denoised(tiles)
  w, x = w.reshape(16, n, 64, 64)[..., 16:48, 16:48], x.reshape(16, n, 64, 64)[..., 16:48, 16:48]
  aucs = {}
  for l in (2, 8):
    per_tile = [_membership_aucs(w[t], x[t], l, 3, ("np_genie", "ncc"), seed=100 * t) for t in range(16)]
    aucs[l] = {d: float(np.mean([a[d] for a in per_tile])) for d in ("np_genie", "ncc")}
  assert aucs[8]["np_genie"] > aucs[8]["ncc"] + 0.01, aucs
  assert aucs[8]["ncc"] < aucs[2]["ncc"], aucs
