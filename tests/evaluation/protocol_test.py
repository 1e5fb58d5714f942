"""Tests for dippas_jax.evaluation: the attribution protocol built by hand, ROC/AUC against scikit-learn, edge
masks, per-image metrics against independent recomputation, plots."""

import collections
import json

import numpy as np
import pytest
from sklearn import metrics as skm

from dippas_jax.evaluation import baselines
from dippas_jax.prnu import denoise
from dippas_jax import imaging
from dippas_jax import plotting
from dippas_jax.evaluation import edges
from dippas_jax.evaluation import protocol as evaluation
from dippas_jax.prnu import metrics
from dippas_jax.prnu import roc
from dippas_jax import synthetic

DEVICES = ("a", "b")
IMAGE_DEVICES = ("a", "b", "a", "c", "")  # 'c' has no fingerprint (still another device), '' is unknown.


def _toy_scores():
  m = np.arange(2)[:, None]
  n = np.arange(5)[None, :]
  anon = 10.0 * m + n  # Score of image n against device m: 10 m + n.
  orig = 100.0 + 10.0 * m + n
  return anon, orig


# --------------------------------------------------------------------------------------------------- protocol
def test_protocol_original_negatives_by_hand():
  anon, orig = _toy_scores()
  p = evaluation.attribution_protocol(anon, orig, IMAGE_DEVICES, DEVICES, variant="original_negatives")
  assert p.devices == DEVICES and p.variant == "original_negatives"
  scores, labels, index = p.per_device["a"]
  # Device a: positives = its anonymized images 0, 2; negatives = ORIGINAL images 1 (b) and 3 (c), vs K_a.
  np.testing.assert_array_equal(scores, [0, 2, 101, 103])
  np.testing.assert_array_equal(labels, [True, True, False, False])
  np.testing.assert_array_equal(index, [0, 2, 1, 3])
  scores, labels, index = p.per_device["b"]
  np.testing.assert_array_equal(scores, [11, 110, 112, 113])
  np.testing.assert_array_equal(labels, [True, False, False, False])
  np.testing.assert_array_equal(index, [1, 0, 2, 3])
  np.testing.assert_array_equal(p.pooled[0], [0, 2, 101, 103, 11, 110, 112, 113])
  np.testing.assert_array_equal(p.pooled[1], [1, 1, 0, 0, 1, 0, 0, 0])
  np.testing.assert_array_equal(p.pooled[2], [0, 2, 1, 3, 1, 0, 2, 3])


def test_protocol_anonymized_negatives_by_hand():
  anon, orig = _toy_scores()
  p = evaluation.attribution_protocol(anon, orig, IMAGE_DEVICES, DEVICES, variant="anonymized_negatives")
  np.testing.assert_array_equal(p.per_device["a"][0], [0, 2, 1, 3])
  np.testing.assert_array_equal(p.per_device["a"][1], [True, True, False, False])
  np.testing.assert_array_equal(p.per_device["b"][0], [11, 10, 12, 13])
  np.testing.assert_array_equal(p.per_device["b"][1], [True, False, False, False])
  # scores_orig is not needed for this variant.
  q = evaluation.attribution_protocol(anon, None, IMAGE_DEVICES, DEVICES, variant="anonymized_negatives")
  np.testing.assert_array_equal(q.pooled[0], p.pooled[0])


def test_protocol_rejects_bad_input():
  anon, orig = _toy_scores()
  with pytest.raises(ValueError, match="Unsupported protocol variant"):
    evaluation.attribution_protocol(anon, orig, IMAGE_DEVICES, DEVICES, variant="both")
  with pytest.raises(ValueError, match="needs scores_orig"):
    evaluation.attribution_protocol(anon, None, IMAGE_DEVICES, DEVICES, variant="original_negatives")
  with pytest.raises(ValueError, match="shape"):
    evaluation.attribution_protocol(anon[:, :4], orig, IMAGE_DEVICES, DEVICES, variant="anonymized_negatives")


def test_protocol_stats_by_hand():
  anon, orig = _toy_scores()
  psnr = np.array([40.0, 38.0, 42.0, 30.0, 20.0])
  p = evaluation.attribution_protocol(anon, orig, IMAGE_DEVICES, DEVICES, variant="original_negatives")
  st = evaluation.protocol_stats(p, psnr=psnr)
  a, b, pooled = st["per_device"]["a"], st["per_device"]["b"], st["pooled"]
  # Anonymized positives score below every original negative: AUC 0 for both devices.
  assert a["auc"] == 0.0 and b["auc"] == 0.0 and a["tpr_at_fpr_0.01"] == 0.0
  assert (a["num_positives"], a["num_negatives"], b["num_positives"], b["num_negatives"]) == (2, 2, 1, 3)
  assert a["mean_psnr"] == 41.0 and a["median_psnr"] == 41.0  # Images 0 and 2.
  assert b["mean_psnr"] == 38.0
  assert pooled["mean_psnr"] == pytest.approx((40 + 42 + 38) / 3) and pooled["median_psnr"] == 40.0
  # Pooled scores [0, 2, 101, 103, 11, 110, 112, 113], labels [1, 1, 0, 0, 1, 0, 0, 0]: every positive is
  # below every negative, AUC 0.
  assert pooled["auc"] == 0.0
  # With anonymized negatives, device a's positives 0, 2 vs negatives 1, 3: pairs (2 > 1) only: AUC 1/4.
  p = evaluation.attribution_protocol(anon, orig, IMAGE_DEVICES, DEVICES, variant="anonymized_negatives")
  st = evaluation.protocol_stats(p)
  assert st["per_device"]["a"]["auc"] == 0.25
  assert st["per_device"]["b"]["auc"] == pytest.approx(1 / 3)  # 11 beats 10 only.
  assert st["per_device"]["a"]["mean_psnr"] is None


def test_protocol_stats_equal_scikit_learn():
  rng = np.random.default_rng(0)
  devices = [f"d{i}" for i in range(3)]
  image_devices = np.repeat(devices, 40)
  gt = image_devices[None, :] == np.asarray(devices)[:, None]
  orig = rng.normal(0, 1, (3, 120)) + 2.0 * gt
  anon = rng.normal(0, 1, (3, 120)) + 0.7 * gt
  anon[0, :5] = np.round(anon[0, :5], 1)  # Some ties.
  for variant in evaluation.VARIANTS:
    p = evaluation.attribution_protocol(anon, orig, image_devices, devices, variant=variant)
    st = evaluation.protocol_stats(p)
    for name, (scores, labels, _) in list(p.per_device.items()) + [("pooled", p.pooled)]:
      got = st["pooled"] if name == "pooled" else st["per_device"][name]
      assert got["auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-12)
      fpr, tpr, _ = skm.roc_curve(labels, scores, drop_intermediate=False)
      assert got["tpr_at_fpr_0.01"] == pytest.approx(np.max(tpr[fpr <= 0.01]))
    curves = evaluation.roc_curves(p)
    assert set(curves) == set(devices) | {"pooled"}
    fpr, tpr, _ = skm.roc_curve(p.pooled[1], p.pooled[0])
    np.testing.assert_allclose(curves["pooled"][0], fpr)
    np.testing.assert_allclose(curves["pooled"][1], tpr)


def test_tpr_at_fpr_hand_value():
  # 200 negatives at 0..199, positives at 198.5, 150.5 and −1: with FPR ≤ 1 % (≤ 2 negatives above the
  # threshold) only the first positive is detected: TPR 1/3.
  scores = np.r_[np.arange(200.0), 198.5, 150.5, -1.0]
  anon = scores[None, :]
  p = evaluation.attribution_protocol(anon, None, ["n"] * 200 + ["x"] * 3, ["x"], variant="anonymized_negatives")
  st = evaluation.protocol_stats(p)
  assert st["pooled"]["tpr_at_fpr_0.01"] == pytest.approx(1 / 3)
  assert st["pooled"]["auc"] == pytest.approx((199 + 151 + 0) / 600)  # Negatives below each positive.


def test_nan_scores_are_counted_and_left_out():
  anon, orig = _toy_scores()
  anon[0, 0] = np.nan
  p = evaluation.attribution_protocol(anon, orig, IMAGE_DEVICES, DEVICES, variant="anonymized_negatives")
  st = evaluation.protocol_stats(p)
  assert st["per_device"]["a"]["num_nan"] == 1 and st["per_device"]["a"]["num_positives"] == 1
  assert st["per_device"]["a"]["auc"] == 0.5  # Positive 2 vs negatives 1, 3.


def test_original_method_pooled_protocol_is_the_full_attribution_roc():
  # For unmodified photos (scores_anon == scores_orig) the pooled pairs are all (device, image) pairs of the
  # score matrix: the pooled AUC is prnu-python's `stats` AUC of the whole matrix, for both variants.
  rng = np.random.default_rng(1)
  devices = ["d0", "d1", "d2"]
  image_devices = ["d0", "d1", "d2", "d1", "d0", "d2", "d2"]
  gt = roc.gt(devices, image_devices)
  scores = rng.normal(0, 1, gt.shape) + 1.5 * gt
  for variant in evaluation.VARIANTS:
    p = evaluation.attribution_protocol(scores, scores, image_devices, devices, variant=variant)
    st = evaluation.protocol_stats(p)
    assert st["pooled"]["auc"] == pytest.approx(roc.stats(scores, gt)["auc"], abs=1e-12)
    assert st["pooled"]["num_positives"] == gt.sum() and st["pooled"]["num_negatives"] == (~gt).sum()


def test_summarize_method():
  anon, orig = _toy_scores()
  s_anon = {"ncc": anon, "ncc_edges": anon + 0.5 * (np.arange(5) % 2)}
  s_orig = {"ncc": orig, "ncc_edges": orig}
  out = evaluation.summarize_method(s_anon, s_orig, IMAGE_DEVICES, DEVICES, psnr=np.arange(5.0))
  assert set(out) == set(evaluation.VARIANTS)
  for variant in evaluation.VARIANTS:
    p = evaluation.attribution_protocol(anon, orig, IMAGE_DEVICES, DEVICES, variant=variant)
    assert out[variant]["ncc"] == evaluation.protocol_stats(p, psnr=np.arange(5.0))
    assert set(out[variant]["edges_table"]) == {"a", "b", "pooled"}
  table = out["anonymized_negatives"]["edges_table"]["a"]
  # Device a: positives 0, 2 vs negatives 1.5, 3.5 on edges (AUC 1/4 → 1/4): no change.
  assert table == {"auc": 0.25, "auc_edges": 0.25, "relative_change": 0.0}
  json.dumps(out)  # JSON-serialisable.


def test_edge_auc_table_and_relative_change():
  assert evaluation.relative_change(0.6, 0.8) == pytest.approx(-0.25)
  assert evaluation.relative_change(None, 0.8) is None and evaluation.relative_change(0.3, 0.0) is None
  np.testing.assert_allclose(evaluation.relative_change(np.array([0.6, 0.3]), np.array([0.8, 0.0])),
                             [-0.25, np.nan])
  stats = {"per_device": {"a": {"auc": 0.8}, "b": {"auc": None}}, "pooled": {"auc": 0.5}}
  edges = {"per_device": {"a": {"auc": 0.9}, "b": {"auc": 0.7}}, "pooled": {"auc": 0.6}}
  table = evaluation.edge_auc_table(stats, edges)
  assert table["a"] == {"auc": 0.8, "auc_edges": 0.9, "relative_change": pytest.approx(0.125)}
  assert table["b"]["relative_change"] is None
  assert table["pooled"]["relative_change"] == pytest.approx(0.2)


# -------------------------------------------------------------------------------------------------- edge mask
# Every jitted call uses batches of 4 64×64 images (as in baselines_test.py): one compilation per process.
def test_edge_mask_of_a_vertical_step_is_a_band_of_width_seven():
  x = np.full((4, 64, 64, 3), 60, np.uint8)
  x[:, :, 30:] = 190
  m = edges.edge_mask(x, radius=3, batch_size=4)
  assert m.shape == (4, 64, 64) and m.dtype == bool
  # Canny marks one column at the step (29 or 30); the radius-3 disk widens it to 2·3 + 1 = 7 columns.
  for r in range(4, 60):
    c = np.flatnonzero(m[0, r])
    assert len(c) == 7 and c[0] in (26, 27) and np.all(np.diff(c) == 1), (r, c)
  assert not m[:, :, :24].any() and not m[:, :, 35:].any()
  # Radius 0: the bare Canny edge, one pixel wide.
  m0 = edges.edge_mask(x, radius=0, batch_size=4)
  assert all(len(np.flatnonzero(m0[0, r])) == 1 for r in range(4, 60))


def test_edge_mask_ignores_flat_noise():
  rng = np.random.default_rng(0)
  x = np.clip(128 + rng.normal(0, 2, (4, 64, 64, 3)), 0, 255).astype(np.uint8)
  assert edges.edge_mask(x, batch_size=4).mean() < 0.02


# --------------------------------------------------------------------------------------- per-image metrics
@pytest.fixture(scope="module")
def photos():
  ds = synthetic.make_dataset(seed=2, num_devices=2, num_flatfield=0, num_natural=3, height=64, width=64)
  return ds  # 6 photos: batches of 4 exercise the zero-padded last batch.


def test_score_matrix_equals_ncc_eq2(photos):
  x = photos.natural
  k = photos.prnu
  masks = edges.edge_mask(x, batch_size=4)
  assert 0.05 < masks.mean() < 0.9
  got = evaluation.score_matrix(x, k, sigma=3.0, masks=masks, batch_size=4)  # 6 images: a padded batch.
  w = np.concatenate([denoise.extract_residual(x[:4].astype(np.float32), sigma=3.0),
                      denoise.extract_residual(x[2:].astype(np.float32), sigma=3.0)[2:]])
  for m in range(2):
    np.testing.assert_allclose(got["ncc"][m], np.asarray(metrics.ncc_eq2(w, x, k[m])), atol=1e-5)
    expected = [metrics.ncc(np.asarray(w[n])[masks[n]][None, :, None],
                            (np.asarray(denoise.rgb2gray(x[n].astype(np.float32))) * k[m])[masks[n]][None, :, None])
                for n in range(6)]
    np.testing.assert_allclose(got["ncc_edges"][m], np.concatenate(expected), atol=1e-5)
  # The true device scores clearly above the other one.
  gt = photos.natural_device[None, :] == np.arange(2)[:, None]
  assert got["ncc"][gt].min() > got["ncc"][~gt].max()
  assert set(evaluation.score_matrix(x, k, batch_size=4).keys()) == {"ncc"}


def test_per_image_metrics(photos):
  x = photos.natural
  k = photos.prnu[photos.natural_device]
  anon = np.concatenate([imaging.to_uint8(baselines.wavelet_denoising(x[s], passes=2, sigma=10.0).image)
                         for s in (slice(0, 4), slice(2, 6))])[[0, 1, 2, 3, 6, 7]]
  out = evaluation.per_image_metrics(x, anon, k, batch_size=4)
  assert set(out) == {"psnr", "ncc", "ncc_edges", "ncc_original", "ncc_edges_original", "edge_fraction"}
  diff = x.astype(np.float64) - anon.astype(np.float64)
  np.testing.assert_allclose(out["psnr"], 10 * np.log10(255.0 ** 2 / np.mean(diff ** 2, axis=(1, 2, 3))),
                             rtol=1e-5)
  w = np.concatenate([denoise.extract_residual(anon[:4].astype(np.float32), sigma=3.0),
                      denoise.extract_residual(anon[2:].astype(np.float32), sigma=3.0)[2:]])
  np.testing.assert_allclose(out["ncc"], np.asarray(metrics.ncc_eq2(w, anon, k)), atol=1e-5)
  masks = edges.edge_mask(x, batch_size=4)
  scores = evaluation.score_matrix(anon, photos.prnu, masks=masks, batch_size=4)
  cols = np.arange(6)
  np.testing.assert_allclose(out["ncc_edges"], scores["ncc_edges"][photos.natural_device, cols], atol=1e-5)
  assert np.all(out["ncc_original"] > out["ncc"])
  # The "original" method: identical images, infinite PSNR, same NCC before and after.
  same = evaluation.per_image_metrics(x, x, k, edge_mask=masks, batch_size=4)
  assert np.all(np.isinf(same["psnr"]))
  np.testing.assert_allclose(same["ncc"], same["ncc_original"])
  np.testing.assert_allclose(same["ncc_edges"], same["ncc_edges_original"])
  with pytest.raises(ValueError, match="fingerprint must have shape"):
    evaluation.per_image_metrics(x, x, k[:2])


# ------------------------------------------------------------------------------------------------------ plots
def test_plots_are_written(tmp_path):
  rng = np.random.default_rng(0)
  points = [dict(method="dippas", config="B64 L50 τ37", auc=0.55, mean_psnr=38.2),
            dict(method="dippas", config="B32 L10 τ40", auc=0.6, mean_psnr=40.1),
            dict(method="original", auc=0.99, mean_psnr=float("inf")),
            dict(method="inpainting", config="B3", auc=0.7, mean_psnr=31.0)]
  plotting.plot_auc_vs_psnr(points, tmp_path / "auc_psnr.png")
  anon, orig = _toy_scores()
  p = evaluation.attribution_protocol(anon, orig, IMAGE_DEVICES, DEVICES, variant="anonymized_negatives")
  plotting.plot_roc_curves({"toy": evaluation.roc_curves(p)["pooled"]}, tmp_path / "roc.png")
  plotting.plot_ncc_histograms({"original": rng.normal(0.05, 0.02, 50), "anonymized": rng.normal(0, 1e-3, 50)},
                                 tmp_path / "hist.png")
  for name in ("auc_psnr.png", "roc.png", "hist.png"):
    data = (tmp_path / name).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_interleave_devices_takes_one_photo_per_device_in_turn():
  Rec = collections.namedtuple("Rec", "name device")
  recs = [Rec("a0", "A"), Rec("a1", "A"), Rec("a2", "A"), Rec("b0", "B"), Rec("c0", "C"), Rec("c1", "C")]
  assert [r.name for r in evaluation.interleave_devices(recs)] == ["a0", "b0", "c0", "a1", "c1", "a2"]
  assert evaluation.interleave_devices([]) == []
