"""Tests for dippas_jax.metrics: toys of SPEC §1.17, numpy re-implementations of prnu-python, shared reference."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dippas_jax.prnu import metrics

GRAY_WEIGHTS = np.array([0.29893602, 0.58704307, 0.11402090])


# ---------------------------------------------------------------------------------------------------------------
# numpy re-implementations of prnu-python (commit 91e1585), float64, used as oracles
# ---------------------------------------------------------------------------------------------------------------


def np_crosscorr_2d(k1, k2):
  """prnu-python crosscorr_2d on copies (the original subtracts the means in place)."""
  k1 = np.array(k1, dtype=np.float64)
  k2 = np.array(k2, dtype=np.float64)
  h = max(k1.shape[0], k2.shape[0])
  w = max(k1.shape[1], k2.shape[1])
  k1 = k1 - k1.mean()
  k2 = k2 - k2.mean()
  k1 = np.pad(k1, [(0, h - k1.shape[0]), (0, w - k1.shape[1])])
  k2 = np.pad(k2, [(0, h - k2.shape[0]), (0, w - k2.shape[1])])
  return np.real(np.fft.ifft2(np.fft.fft2(k1) * np.fft.fft2(np.rot90(k2, 2))))


def np_pce_legacy(cc, neigh_radius=2):
  """prnu-python pce: Python-slice exclusion box, energy over all entries."""
  cc = np.asarray(cc, dtype=np.float64)
  y, x = np.unravel_index(np.argmax(cc.ravel()), cc.shape)
  p = cc[y, x]
  r = neigh_radius
  floor = cc.copy()
  floor[y - r:y + r, x - r:x + r] = 0  # real Python slicing semantics, negative starts included
  energy = np.mean(floor.ravel() ** 2)
  with np.errstate(divide="ignore", invalid="ignore"):
    value = p ** 2 / energy * np.sign(p)
  return value, (y, x), p


def np_pce_standard(cc, neigh_radius=2):
  """Standard PCE by explicit enumeration of the (2r+1)^2 wrapped neighbourhood."""
  cc = np.asarray(cc, dtype=np.float64)
  h, w = cc.shape
  y, x = np.unravel_index(np.argmax(cc.ravel()), cc.shape)
  r = neigh_radius
  cells = {((y + dy) % h, (x + dx) % w) for dy in range(-r, r + 1) for dx in range(-r, r + 1)}
  keep = np.ones(cc.shape, bool)
  for c in cells:
    keep[c] = False
  energy = np.sum(cc[keep] ** 2) / max(keep.sum(), 1)
  p = cc[y, x]
  with np.errstate(divide="ignore", invalid="ignore"):
    return p ** 2 / energy * np.sign(p), (y, x), len(cells)


def np_ncc(a, b):
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b))


# ---------------------------------------------------------------------------------------------------------------
# ncc, ncc_eq2, pearson
# ---------------------------------------------------------------------------------------------------------------


def test_ncc_matches_numpy_and_broadcasts():
  rng = np.random.default_rng(0)
  w = rng.normal(size=(4, 32, 24)).astype(np.float32)
  k = rng.normal(size=(32, 24)).astype(np.float32)
  got = jax.jit(metrics.ncc)(w, k)
  chex.assert_shape(got, (4,))
  assert got.dtype == jnp.float32
  want = [np_ncc(w[i], k) for i in range(4)]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Uncentred: adding a constant changes it; scale-free: multiplying does not.
  np.testing.assert_allclose(metrics.ncc(w * 7.5, k), got, rtol=1e-5, atol=1e-6)
  assert abs(float(metrics.ncc(w[0] + 3.0, k)) - float(got[0])) > 1e-3


def test_ncc_nan_on_zero_norm():
  z = np.zeros((8, 8), np.float32)
  x = np.ones((8, 8), np.float32)
  assert np.isnan(metrics.ncc(z, x))
  assert np.isnan(metrics.ncc(x, z))
  assert float(metrics.ncc(x, x)) == pytest.approx(1.0, abs=1e-6)


def test_ncc_shape_errors():
  with pytest.raises(ValueError, match="broadcast"):
    metrics.ncc(np.zeros((3, 8, 8)), np.zeros((8, 9)))
  with pytest.raises(ValueError, match="at least 2 axes"):
    metrics.ncc(np.zeros(8), np.zeros(8))


def test_ncc_eq2_matches_formula():
  rng = np.random.default_rng(1)
  images = rng.integers(0, 256, size=(3, 16, 20, 3), dtype=np.uint8)
  residual = rng.normal(size=(3, 16, 20)).astype(np.float32)
  k = rng.normal(size=(16, 20)).astype(np.float32) * 0.01
  got = jax.jit(metrics.ncc_eq2)(residual, images, k)
  gray = images.astype(np.float64) @ GRAY_WEIGHTS
  want = [np_ncc(residual[i], gray[i] * k) for i in range(3)]
  chex.assert_shape(got, (3,))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # Any image scale: [0, 1] floats give the same value; a per-image fingerprint stack gives the same value.
  np.testing.assert_allclose(metrics.ncc_eq2(residual, images / 255.0, k), got, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics.ncc_eq2(residual, images, np.stack([k] * 3)), got, rtol=1e-6)
  with pytest.raises(ValueError, match="spatial sizes"):
    metrics.ncc_eq2(residual, images, k[:8])


def test_pearson_matches_corrcoef():
  rng = np.random.default_rng(2)
  a = rng.normal(size=(2, 12, 9)) + 5.0
  b = 0.3 * a + rng.normal(size=(2, 12, 9)) - 2.0
  got = metrics.pearson(a, b)
  want = [np.corrcoef(a[i].ravel(), b[i].ravel())[0, 1] for i in range(2)]
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert np.isnan(metrics.pearson(np.full((4, 4), 3.0), a[0, :4, :4]))


# ---------------------------------------------------------------------------------------------------------------
# block_ncc
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape,block", [((32, 48), 8), ((2, 3, 16, 16), 4), ((24, 24), 24)])
def test_block_ncc_equals_loop(shape, block):
  rng = np.random.default_rng(3)
  a = rng.normal(size=shape).astype(np.float32)
  b = rng.normal(size=shape).astype(np.float32)
  got = jax.jit(lambda x, y: metrics.block_ncc(x, y, block_size=block))(a, b)  # composes with an outer jit
  h, w = shape[-2:]
  nh, nw = h // block, w // block
  lead = shape[:-2]
  chex.assert_shape(got, lead + (nh * nw,))
  want = np.empty(lead + (nh * nw,))
  for idx in np.ndindex(*lead):
    for r in range(nh):
      for c in range(nw):
        sl = idx + (slice(r * block, (r + 1) * block), slice(c * block, (c + 1) * block))
        want[idx + (r * nw + c,)] = np_ncc(a[sl], b[sl])
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_block_ncc_whole_image_and_broadcast():
  rng = np.random.default_rng(4)
  w = rng.normal(size=(5, 16, 16)).astype(np.float32)
  k = rng.normal(size=(16, 16)).astype(np.float32)
  whole = metrics.block_ncc(w, k, block_size=16)
  chex.assert_shape(whole, (5, 1))
  np.testing.assert_allclose(whole[:, 0], metrics.ncc(w, k), rtol=1e-6, atol=1e-7)


def test_block_ncc_row_major_order_and_nan():
  a = np.ones((8, 12), np.float32)
  b = np.ones((8, 12), np.float32)
  b[0:4, 4:8] = -1.0  # block (r=0, c=1) -> index 1
  a[4:8, 8:12] = 0.0  # block (r=1, c=2) -> index 1*3+2 = 5, zero norm
  got = np.asarray(metrics.block_ncc(a, b, block_size=4))
  np.testing.assert_allclose(got[[0, 1, 2, 3, 4]], [1, -1, 1, 1, 1], atol=1e-6)
  assert np.isnan(got[5])


def test_block_ncc_bad_block_size():
  with pytest.raises(ValueError, match=r"sizes that work: \[1, 2, 4, 8, 16\]"):
    metrics.block_ncc(np.zeros((32, 16)), np.zeros((32, 16)), block_size=12)
  with pytest.raises(ValueError):
    metrics.block_ncc(np.zeros((32, 16)), np.zeros((32, 16)), block_size=0)


# ---------------------------------------------------------------------------------------------------------------
# cosine_scores (aligned_cc)
# ---------------------------------------------------------------------------------------------------------------


def test_cosine_scores_toy():
  """SPEC §1.17: aligned_cc([[1,2,3],[0,1,0]], [[1,0,0],[1,1,1]])."""
  out = metrics.cosine_scores(np.array([[1, 2, 3], [0, 1, 0]]), np.array([[1, 0, 0], [1, 1, 1]]))
  np.testing.assert_array_equal(out.cc, [[1, 6], [0, 1]])
  np.testing.assert_allclose(out.ncc, [[0.26726124, 0.9258201], [0, 0.57735026]], rtol=1e-7, atol=1e-8)
  assert out.cc.dtype == jnp.float32 and out.ncc.dtype == jnp.float32


def test_cosine_scores_random_and_nan():
  rng = np.random.default_rng(5)
  k = rng.normal(size=(3, 20, 30)).astype(np.float32)
  w = rng.normal(size=(4, 20, 30)).astype(np.float32)
  w[2] = 0.0
  out = jax.jit(metrics.cosine_scores)(k, w)
  kf, wf = k.reshape(3, -1).astype(np.float64), w.reshape(4, -1).astype(np.float64)
  np.testing.assert_allclose(out.cc, kf @ wf.T, rtol=1e-5, atol=1e-3)
  with np.errstate(invalid="ignore"):
    want_ncc = (kf @ wf.T) / np.outer(np.linalg.norm(kf, axis=1), np.linalg.norm(wf, axis=1))
  np.testing.assert_allclose(out.ncc, want_ncc, rtol=1e-5, atol=1e-6)  # NaN column compares equal
  assert np.isnan(out.ncc[:, 2]).all()
  with pytest.raises(ValueError, match="same shape"):
    metrics.cosine_scores(k, w[:, :10])


# ---------------------------------------------------------------------------------------------------------------
# crosscorr_2d
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("s1,s2", [((24, 32), (24, 32)), ((17, 23), (20, 19)), ((9, 40), (30, 8))])
def test_crosscorr_2d_matches_reference(s1, s2):
  rng = np.random.default_rng(6)
  k1 = rng.normal(size=s1).astype(np.float32) + 0.5
  k2 = rng.normal(size=s2).astype(np.float32) - 0.2
  k1_copy, k2_copy = k1.copy(), k2.copy()
  got = jax.jit(metrics.crosscorr_2d)(k1, k2)
  want = np_crosscorr_2d(k1, k2)
  assert got.dtype == jnp.float32 and got.shape == want.shape
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-5 * np.abs(want).max())
  np.testing.assert_array_equal(k1, k1_copy)  # no in-place mutation
  np.testing.assert_array_equal(k2, k2_copy)


def test_crosscorr_2d_peak_positions():
  """SPEC §1.11: k1 = A[dy:, dx:], k2 = A -> peak (H-1-dy, W-1-dx); swapped -> (dy-1, dx-1); zero lag (H-1, W-1)."""
  rng = np.random.default_rng(7)
  a = rng.normal(size=(64, 48)).astype(np.float32)
  h, w = a.shape
  for dy, dx in [(5, 8), (0, 3), (20, 0), (1, 1)]:
    r1 = metrics.pce(metrics.crosscorr_2d(a[dy:, dx:], a), mode="legacy")
    assert (int(r1.peak_y), int(r1.peak_x)) == (h - 1 - dy, w - 1 - dx)
    r2 = metrics.pce(metrics.crosscorr_2d(a, a[dy:, dx:]), mode="legacy")
    assert (int(r2.peak_y), int(r2.peak_x)) == ((dy - 1) % h, (dx - 1) % w)
  r0 = metrics.pce(metrics.crosscorr_2d(a, a))
  assert (int(r0.peak_y), int(r0.peak_x)) == (h - 1, w - 1)


def test_crosscorr_2d_batched_equals_per_map():
  rng = np.random.default_rng(8)
  k = rng.normal(size=(3, 16, 20)).astype(np.float32)
  w = rng.normal(size=(4, 16, 20)).astype(np.float32)
  batched = metrics.crosscorr_2d(k[:, None], w[None])
  chex.assert_shape(batched, (3, 4, 16, 20))
  vmapped = jax.vmap(jax.vmap(metrics.crosscorr_2d, (None, 0)), (0, None))(k, w)
  for i in range(3):
    for j in range(4):
      single = metrics.crosscorr_2d(k[i], w[j])
      np.testing.assert_allclose(batched[i, j], single, rtol=1e-6, atol=1e-5)
      np.testing.assert_allclose(vmapped[i, j], single, rtol=1e-6, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------------
# pce
# ---------------------------------------------------------------------------------------------------------------


def _toy(peaks, shape=(10, 10)):
  m = np.zeros(shape, np.float32)
  for (y, x), v in peaks.items():
    m[y, x] = v
  return m


def test_pce_legacy_toys():
  """SPEC §1.17 toys, legacy mode."""
  r = metrics.pce(_toy({(5, 5): 10, (4, 4): 1, (6, 6): 1}), mode="legacy")
  assert np.isposinf(r.pce) and (int(r.peak_y), int(r.peak_x)) == (5, 5) and float(r.peak) == 10
  r = metrics.pce(_toy({(0, 0): 10, (9, 9): 1}), mode="legacy")
  np.testing.assert_allclose(r.pce, 99.00990, rtol=1e-6)  # 100 / (101 / 100): nothing excluded at the top-left
  # Radius 0: the slice [5:5] is empty, nothing excluded: 100 / (102 / 100).
  np.testing.assert_allclose(metrics.pce(_toy({(5, 5): 10, (4, 4): 1, (6, 6): 1}), neigh_radius=0,
                                         mode="legacy").pce, 100 / 1.02, rtol=1e-6)


def test_pce_standard_toys():
  """The same maps in standard mode, by hand."""
  # (4,4), (6,6) lie in the 5x5 neighbourhood of (5,5): E = 0 -> inf.
  assert np.isposinf(metrics.pce(_toy({(5, 5): 10, (4, 4): 1, (6, 6): 1})).pce)
  # Radius 2 around (0,0) wraps to rows/cols {8, 9, 0, 1, 2}: (9,9) is excluded, E = 0 -> inf (legacy: 99.0099).
  assert np.isposinf(metrics.pce(_toy({(0, 0): 10, (9, 9): 1})).pce)
  # Radius 0: only the peak is excluded: E = 2 / 99 -> 100 * 99 / 2 = 4950.
  np.testing.assert_allclose(metrics.pce(_toy({(5, 5): 10, (4, 4): 1, (6, 6): 1}), neigh_radius=0).pce,
                             4950.0, rtol=1e-6)
  # (5,5) is outside the wrapped neighbourhood of (0,0): E = 1 / (100 - 25) -> 100 * 75 = 7500.
  np.testing.assert_allclose(metrics.pce(_toy({(0, 0): 10, (5, 5): 1})).pce, 7500.0, rtol=1e-6)
  # Negative peak: sign(P) P^2 / E with P the maximum (not the maximum absolute value).
  m = np.full((10, 10), -2.0, np.float32)
  m[3, 3] = -1.0
  r = metrics.pce(m, neigh_radius=0)
  assert (int(r.peak_y), int(r.peak_x)) == (3, 3)
  np.testing.assert_allclose(r.pce, -1.0 / 4.0, rtol=1e-6)


def _planted_maps(shape, rng):
  """Noise maps with a dominant peak at every border, corner and near-corner position (and one inside)."""
  h, w = shape
  ys = sorted({0, 1, 2, 3, h // 2, h - 3, h - 2, h - 1} & set(range(h)))
  xs = sorted({0, 1, 2, 3, w // 2, w - 3, w - 2, w - 1} & set(range(w)))
  for y in ys:
    for x in xs:
      m = rng.normal(size=shape).astype(np.float32)
      m[y, x] = 50.0
      yield m


@pytest.mark.parametrize("shape", [(16, 16), (11, 23), (3, 5), (4, 4)])
@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_pce_legacy_matches_reference_everywhere(shape, radius):
  rng = np.random.default_rng(9)
  maps = np.stack(list(_planted_maps(shape, rng)))
  got = metrics.pce(maps, neigh_radius=radius, mode="legacy")
  for i, m in enumerate(maps):
    value, (y, x), p = np_pce_legacy(m, radius)
    assert (int(got.peak_y[i]), int(got.peak_x[i])) == (y, x)
    assert float(got.peak[i]) == p
    np.testing.assert_allclose(got.pce[i], value, rtol=2e-6)


@pytest.mark.parametrize("shape", [(16, 16), (11, 23), (3, 5)])
@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_pce_standard_matches_enumeration(shape, radius):
  rng = np.random.default_rng(10)
  maps = np.stack(list(_planted_maps(shape, rng)))
  got = metrics.pce(maps, neigh_radius=radius)
  for i, m in enumerate(maps):
    value, (y, x), _ = np_pce_standard(m, radius)
    assert (int(got.peak_y[i]), int(got.peak_x[i])) == (y, x)
    np.testing.assert_allclose(got.pce[i], value, rtol=2e-6)


@pytest.mark.parametrize("radius", [1, 2, 3])
@pytest.mark.parametrize("corner", [(0, 0), (0, 12), (9, 0), (9, 12), (4, 6)])
def test_pce_standard_excludes_exactly_the_wrapped_neighbourhood(radius, corner):
  """Cells of the wrapped (2r+1)^2 neighbourhood hold 50 (any leak dominates E); the rest are random, so both an
  over-exclusion (sum too small) and a wrong count (denominator) change the result."""
  h, w = 10, 13
  rng = np.random.default_rng(11)
  m = rng.uniform(0.1, 1.0, size=(h, w))
  y, x = corner
  cells = {((y + dy) % h, (x + dx) % w) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)}
  assert len(cells) == (2 * radius + 1) ** 2
  keep = np.ones((h, w), bool)
  for c in cells:
    m[c] = 50.0
    keep[c] = False
  m[y, x] = 100.0
  want = 100.0 ** 2 / (np.sum(m[keep] ** 2) / (h * w - (2 * radius + 1) ** 2))
  got = metrics.pce(m.astype(np.float32), neigh_radius=radius)
  assert (int(got.peak_y), int(got.peak_x)) == corner
  np.testing.assert_allclose(got.pce, want, rtol=2e-6)


def test_pce_shift_range_restricts_peak():
  h, w = 20, 24
  m = np.zeros((h, w), np.float32) + 0.01
  m[8, 10] = 100.0  # far from zero lag (H-1, W-1)
  m[h - 1, w - 1] = 10.0  # zero lag
  m[0, 1] = 30.0  # lag (-1, -2) from (H-1, W-1) with wrap: within 2
  m[h - 4, w - 1] = 60.0  # 3 rows from zero lag: outside shift_range=2
  assert (int(metrics.pce(m).peak_y), int(metrics.pce(m).peak_x)) == (8, 10)
  r0 = metrics.pce(m, shift_range=0)
  assert (int(r0.peak_y), int(r0.peak_x)) == (h - 1, w - 1) and float(r0.peak) == 10.0
  r2 = metrics.pce(m, shift_range=2, mode="legacy")
  assert (int(r2.peak_y), int(r2.peak_x)) == (0, 1) and float(r2.peak) == 30.0
  r3 = metrics.pce(m, shift_range=3)
  assert (int(r3.peak_y), int(r3.peak_x)) == (h - 4, w - 1)
  # E is computed around the peak that was found, over the whole map: for (0, 1) the legacy slice rows [-2:2] is
  # empty, so nothing is excluded and the larger off-range values stay in the floor.
  np.testing.assert_allclose(r2.pce, 30.0 ** 2 / np.mean(m.astype(np.float64) ** 2), rtol=1e-6)
  # Standard mode around (0, 1) excludes rows {18, 19, 0, 1, 2} x cols {23, 0, 1, 2, 3}: (19, 23) = 10 goes out.
  keep = np.ones((h, w), bool)
  keep[np.ix_([18, 19, 0, 1, 2], [23, 0, 1, 2, 3])] = False
  want = 30.0 ** 2 / (np.sum(m.astype(np.float64)[keep] ** 2) / keep.sum())
  np.testing.assert_allclose(metrics.pce(m, shift_range=2).pce, want, rtol=1e-6)


def test_pce_aligned_peak_on_shifted_images():
  """An aligned fingerprint scored with shift_range=0 uses the zero-lag value of crosscorr_2d."""
  rng = np.random.default_rng(12)
  k = rng.normal(size=(32, 32)).astype(np.float32)
  w = (0.3 * k + rng.normal(size=(32, 32))).astype(np.float32)
  cc = metrics.crosscorr_2d(k, w)
  r = metrics.pce(cc, shift_range=0)
  assert (int(r.peak_y), int(r.peak_x)) == (31, 31)
  kc, wc = k - k.mean(), w - w.mean()
  np.testing.assert_allclose(r.peak, np.sum(kc.astype(np.float64) * wc), rtol=1e-5)


def test_pce_batched_equals_per_map_and_no_retrace():
  rng = np.random.default_rng(13)
  maps = rng.normal(size=(2, 3, 12, 14)).astype(np.float32)
  for mode in ("standard", "legacy"):
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def traced(c, mode=mode):
      return metrics.pce(c, mode=mode)

    batched = traced(maps)
    for _ in range(3):  # same shapes and static arguments: no new trace
      traced(rng.normal(size=(2, 3, 12, 14)).astype(np.float32))
    chex.assert_shape(batched.pce, (2, 3))
    vm = jax.vmap(jax.vmap(lambda c, mode=mode: metrics.pce(c, mode=mode)))(maps)
    for i in range(2):
      for j in range(3):
        single = metrics.pce(maps[i, j], mode=mode)
        for field in ("pce", "peak_y", "peak_x", "peak"):
          np.testing.assert_allclose(getattr(batched, field)[i, j], getattr(single, field), rtol=1e-6)
          np.testing.assert_allclose(getattr(vm, field)[i, j], getattr(single, field), rtol=1e-6)


def test_pce_argument_errors():
  with pytest.raises(ValueError, match="Unsupported pce mode"):
    metrics.pce(np.zeros((4, 4)), mode="binghamton")
  with pytest.raises(ValueError, match="neigh_radius"):
    metrics.pce(np.zeros((4, 4)), neigh_radius=-1)
  with pytest.raises(ValueError, match="shift_range"):
    metrics.pce(np.zeros((4, 4)), shift_range=1.5)


# ---------------------------------------------------------------------------------------------------------------
# psnr
# ---------------------------------------------------------------------------------------------------------------


def test_psnr_uint8_no_wraparound():
  """SPEC §2.11: an error of 20 on one of 48 uint8 values is 38.92 dB, not the wrapped 43.36 dB."""
  a = np.full((4, 4, 3), 100, np.uint8)
  b = a.copy()
  b[1, 2, 0] = 80  # in uint8 arithmetic b - a would wrap to 236 (236**2 wraps to 144)
  for x, y in [(a, b), (b, a)]:
    got = float(jax.jit(metrics.psnr)(x, y))
    assert got == pytest.approx(10 * np.log10(255.0 ** 2 / (400 / 48)), abs=1e-4)
    assert got == pytest.approx(38.92, abs=5e-3)
    assert abs(got - 43.36) > 4
  assert np.isposinf(metrics.psnr(a, a))


def test_psnr_matches_float64_formula():
  rng = np.random.default_rng(14)
  a = rng.integers(0, 256, size=(3, 64, 48, 3), dtype=np.uint8)
  b = np.clip(a.astype(int) + rng.integers(-6, 7, size=a.shape), 0, 255).astype(np.uint8)
  got = metrics.psnr(a, b)
  chex.assert_shape(got, (3,))
  d = a.astype(np.float64) - b.astype(np.float64)
  want = 10 * np.log10(255.0 ** 2 / np.mean(d ** 2, axis=(1, 2, 3)))
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
  x, y = a / 255.0, b / 255.0
  np.testing.assert_allclose(metrics.psnr(x, y, peak=1.0), want, rtol=0, atol=1e-4)


# ---------------------------------------------------------------------------------------------------------------
# Parity with the shared prnu-python reference outputs
# ---------------------------------------------------------------------------------------------------------------


def _reference_pairs(reference_dir):
  labels = json.loads((reference_dir / "labels.json").read_text())
  index = json.loads((reference_dir / "index.json").read_text())
  devices = labels["rows_devices"]
  images = [im for im in labels["cols_images"] if f"{im}_sigma5.npy" in index["residuals"]
            and (reference_dir / "residuals" / f"{im}_sigma5.npy").is_file()]
  if not images:
    pytest.skip("no sigma-5 residuals in the reference set")
  k = np.stack([np.load(reference_dir / "fingerprints" / f"{d}_sigma5.npy") for d in devices])
  w = np.stack([np.load(reference_dir / "residuals" / f"{im}_sigma5.npy") for im in images])
  cols = [labels["cols_images"].index(im) for im in images]
  return k, w, cols


def test_reference_cosine_scores(reference_dir):
  k, w, cols = _reference_pairs(reference_dir)
  out = metrics.cosine_scores(k, w)
  np.testing.assert_allclose(out.cc, np.load(reference_dir / "cc.npy")[:, cols], rtol=1e-4)
  np.testing.assert_allclose(out.ncc, np.load(reference_dir / "ncc.npy")[:, cols], rtol=1e-4)


def test_reference_pce_legacy(reference_dir):
  k, w, cols = _reference_pairs(reference_dir)
  cc = jax.jit(metrics.crosscorr_2d)(k[:, None], w[None])
  got = metrics.pce(cc, mode="legacy")
  np.testing.assert_allclose(got.pce, np.load(reference_dir / "pce.npy")[:, cols], rtol=1e-4)
