"""Tests for the ML fingerprint: weights, saturation modes, streaming, synthetic ground truth."""

import chex
import jax.numpy as jnp
import numpy as np
import pytest

from dippas_jax.prnu import fingerprint
from dippas_jax.prnu import metrics
from dippas_jax import synthetic
from prnu_reference import np_saturation  # pylint: disable=g-bad-import-order


def test_inten_scale_values():
  x = jnp.asarray([0, 126, 251, 252, 253, 254, 255], jnp.uint8)
  np.testing.assert_allclose(fingerprint.inten_scale(x),
                             [0, 0.5, 251 / 252, 1.0, 0.84648, 0.51342, 0.22313], atol=1e-5)


def _saturating_images():
  rng = np.random.default_rng(0)
  ims = rng.integers(0, 240, (4, 24, 20, 3)).astype(np.uint8)
  ims[0, 5:9, 5:9, :] = 255          # Saturated blob in every channel.
  ims[1, 3:6, 3:6, 0] = 253          # Only channel 0 saturates; 1 and 2 stay ≤ 240 (the legacy bug case).
  ims[1, 10, 10, 0] = 253            # An isolated max pixel: not masked (no equal neighbour).
  ims[2, 0:3, 0, 1] = 251            # Saturation across the circular border.
  ims[2, -1, 0, 1] = 251
  ims[3, 7, 7, 2] = 250              # Global max exactly 250: the reference's else-branch.
  ims[3, 7, 8, 2] = 250
  return ims


def test_saturation_legacy_equals_prnu_python():
  ims = _saturating_images()
  got = np.asarray(fingerprint.saturation(ims, mode="legacy"))
  for i in range(len(ims)):
    np.testing.assert_array_equal(got[i], np_saturation(ims[i].copy()).astype(np.float32), err_msg=i)


def test_saturation_corrected_masks_only_saturated_pixels():
  ims = _saturating_images()
  got = np.asarray(fingerprint.saturation(ims, mode="corrected"))
  np.testing.assert_array_equal(got[0][5:9, 5:9], 0)
  assert got[0].sum() == got[0].size - 3 * 16
  np.testing.assert_array_equal(got[1][..., 1:], 1)  # Unsaturated channels: all ones (legacy: mostly 0).
  assert got[1][..., 0].sum() == 24 * 20 - 9 and got[1][10, 10, 0] == 1
  np.testing.assert_array_equal(got[3], 1)
  with pytest.raises(ValueError, match="Unsupported saturation mode"):
    fingerprint.saturation(ims, mode="nope")


def test_streaming_equals_one_batch_and_padding_adds_nothing():
  data = synthetic.make_dataset(seed=1, num_devices=1, num_flatfield=5, num_natural=0, height=32, width=48)
  flats = data.flatfield[0]
  chex.clear_trace_counter()
  k_all, n_all = fingerprint.estimate_fingerprint(flats, batch_size=5)
  k_stream, n_stream = fingerprint.estimate_fingerprint(iter(list(flats)), batch_size=2)
  assert n_all == n_stream == 5
  np.testing.assert_allclose(k_stream, k_all, atol=2e-6)
  sums = fingerprint.accumulate(fingerprint.init_sums(32, 48), flats[:2])
  padded = fingerprint.accumulate(fingerprint.init_sums(32, 48),
                                  np.concatenate([flats[:2], np.zeros_like(flats[:3])]))
  np.testing.assert_array_equal(sums.rp, padded.rp)
  np.testing.assert_array_equal(sums.nn, padded.nn)


def test_estimate_correlates_with_true_prnu_as_theory_predicts():
  # K̂ ≈ K + e/√N with e independent of K, so SNR(N) = ρ²/(1 − ρ²) grows linearly with the number of images.
  data = synthetic.make_dataset(seed=2, num_devices=1, num_flatfield=16, num_natural=0, height=64, width=64)
  rho = {}
  for n in (1, 4, 16):
    k, _ = fingerprint.estimate_fingerprint(data.flatfield[0][:n], batch_size=4)
    rho[n] = float(metrics.pearson(k, data.prnu[0]))
  snr = {n: r * r / (1 - r * r) for n, r in rho.items()}
  assert rho[1] < rho[4] < rho[16]
  assert 2.5 < snr[4] / snr[1] < 6.0, snr
  assert 2.5 < snr[16] / snr[4] < 6.0, snr
