"""Tests for dippas_jax.roc: scikit-learn as the oracle, prnu-python's toys and the shared reference AUCs."""

import json

import numpy as np
import pytest

from dippas_jax.prnu import roc

sk_metrics = pytest.importorskip("sklearn.metrics")


def _assert_same_curve(got, want):
  for g, w, name in zip(got, want, ("fpr", "tpr", "thresholds")):
    assert g.shape == w.shape, name
    np.testing.assert_array_equal(g, w, err_msg=name)


@pytest.mark.parametrize("seed", range(6))
def test_roc_curve_equals_sklearn_with_ties(seed):
  rng = np.random.default_rng(seed)
  n = int(rng.integers(5, 400))
  labels = rng.random(n) < rng.uniform(0.1, 0.9)
  labels[0], labels[1] = True, False
  if seed % 2:
    scores = rng.integers(0, 7, size=n).astype(np.float64) / 3  # heavy ties
  else:
    scores = rng.normal(size=n).astype(np.float32) + labels  # float32 scores, few ties
    scores[: n // 4] = scores[n // 4: 2 * (n // 4)]  # some exact ties
  got = roc.roc_curve(scores, labels)
  want = sk_metrics.roc_curve(labels, scores)
  _assert_same_curve(got, want)
  assert roc.auc(got[0], got[1]) == sk_metrics.auc(want[0], want[1])
  _assert_same_curve(roc.roc_curve(scores, labels.astype(int), drop_intermediate=False),
                     sk_metrics.roc_curve(labels, scores, drop_intermediate=False))
  assert got[2][0] == np.inf and got[0][0] == 0 and got[1][0] == 0 and got[0][-1] == 1 and got[1][-1] == 1


def test_stats_prnu_python_toy():
  """prnu-python test_stats (SPEC §1.14): a 3x3 identity ground truth."""
  gt = np.eye(3, dtype=bool)
  cc = np.array([[0.5, 0.2, 0.1], [0.1, 0.7, 0.1], [0.4, 0.3, 0.9]])
  out = roc.stats(cc, gt)
  assert out["auc"] == 1.0 and out["eer"] == 0.0
  np.testing.assert_allclose(out["tpr"], [0, 1 / 3, 1, 1, 1], rtol=1e-15)
  np.testing.assert_allclose(out["fpr"], [0, 0, 0, 0.5, 1], rtol=1e-15)
  np.testing.assert_array_equal(out["th"], [np.inf, 0.9, 0.5, 0.2, 0.1])
  # By hand: positives 0.9, 0.7, 0.5; negatives 0.4, 0.3, 0.2, 0.1 x3. (0.7, tpr 2/3) lies on the segment
  # from (0, 1/3) to (0, 1) and 0.4, 0.3 lie on the segment from (0, 1) to (0.5, 1): dropped as intermediate.
  fpr, tpr, th = roc.roc_curve(cc.ravel(), gt.ravel(), drop_intermediate=False)
  np.testing.assert_array_equal(th, [np.inf, 0.9, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1])
  np.testing.assert_allclose(fpr, np.array([0, 0, 0, 0, 1, 2, 3, 6]) / 6, rtol=1e-15)
  np.testing.assert_allclose(tpr, np.array([0, 1, 2, 3, 3, 3, 3, 3]) / 3, rtol=1e-15)


def test_gt_prnu_python_toy():
  g = roc.gt(["a", "b", "c", "d"], ["a", "a", "b", "b", "c", "c", "c"])
  assert g.dtype == np.bool_
  np.testing.assert_array_equal(g, [[1, 1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1],
                                    [0, 0, 0, 0, 0, 0, 0]])
  with pytest.raises(ValueError, match="1-D"):
    roc.gt([["a"]], ["a"])


def test_eer_and_tpr_at_fpr_by_hand():
  fpr = np.array([0.0, 0.0, 0.1, 0.3, 1.0])
  tpr = np.array([0.0, 0.5, 0.6, 0.9, 1.0])
  # (fpr - (1 - tpr))^2 = [1, .25, .09, .04, 1] -> index 3.
  assert roc.eer(fpr, tpr) == 0.3
  assert roc.tpr_at_fpr(fpr, tpr, 0.01) == 0.5  # step convention, no interpolation towards (0.1, 0.6)
  assert roc.tpr_at_fpr(fpr, tpr, target=0.1) == 0.6
  assert roc.tpr_at_fpr(fpr, tpr, target=0.29) == 0.6
  assert roc.tpr_at_fpr(fpr, tpr, target=1.0) == 1.0
  # First index on ties: both points are at squared distance 0.0625 (exact in binary).
  assert roc.eer(np.array([0.0, 0.25, 0.75]), np.array([0.0, 1.0, 0.5])) == 0.25
  with pytest.raises(ValueError):
    roc.tpr_at_fpr(fpr, tpr, target=-0.1)


def test_auc_direction_and_errors():
  assert roc.auc([1.0, 0.5, 0.0], [1.0, 1.0, 0.0]) == sk_metrics.auc([1.0, 0.5, 0.0], [1.0, 1.0, 0.0])
  with pytest.raises(ValueError, match="neither"):
    roc.auc([0.0, 1.0, 0.5], [0.0, 1.0, 1.0])
  with pytest.raises(ValueError, match="At least 2"):
    roc.auc([0.0], [1.0])


def test_roc_curve_errors():
  with pytest.raises(ValueError, match="NaN"):
    roc.roc_curve([0.1, np.nan, 0.3], [True, False, True])
  with pytest.raises(ValueError, match="one positive and one negative"):
    roc.roc_curve([0.1, 0.2], [True, True])
  with pytest.raises(ValueError, match="one positive and one negative"):
    roc.roc_curve([0.1, 0.2], [0, 0])
  with pytest.raises(ValueError, match="0 and 1"):
    roc.roc_curve([0.1, 0.2], [0, 2])
  with pytest.raises(ValueError, match="same shape"):
    roc.roc_curve([0.1, 0.2, 0.3], [0, 1])
  with pytest.raises(ValueError, match="same shape"):
    roc.stats(np.zeros((2, 3)), np.zeros((3, 2), bool))


def test_roc_curve_accepts_infinite_scores():
  """PCE can be +inf (zero floor energy); the curve ranks it above every finite score."""
  scores = np.array([np.inf, 3.0, 2.0, -np.inf, 1.0])
  labels = np.array([True, True, False, False, True])
  fpr, tpr, th = roc.roc_curve(scores, labels)
  finite = np.array([1e300, 3.0, 2.0, -1e300, 1.0])
  want = sk_metrics.roc_curve(labels, finite)
  np.testing.assert_array_equal(fpr, want[0])
  np.testing.assert_array_equal(tpr, want[1])


def test_reference_results_reproduced(reference_dir):
  """prnu-python example protocol: stats on the stored 6x16 cc / ncc / pce matrices reproduces results.json."""
  labels = json.loads((reference_dir / "labels.json").read_text())
  results = json.loads((reference_dir / "results.json").read_text())
  g = roc.gt(labels["rows_devices"], labels["cols_devices"])
  np.testing.assert_array_equal(g, np.array(labels["gt_same_device"], bool))
  for name in ("cc", "ncc", "pce"):
    out = roc.stats(np.load(reference_dir / f"{name}.npy"), g)
    assert out["auc"] == results["auc"][name], name
    assert out["eer"] == results["eer"][name], name
