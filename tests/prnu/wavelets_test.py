"""dippas_jax.wavelets against pywt (mode 'symmetric'): every band, both dtypes, odd sizes, batches."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import pywt

from dippas_jax.prnu import wavelets

ON_CPU = jax.default_backend() == "cpu"


def _image(shape, seed=0, dtype=np.float32):
  """Image-like data on the 0..255 scale (integers plus a fractional part)."""
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, shape) + rng.random(shape)).astype(dtype)


def _pywt_wavedec2(x, wavelet, level):
  with warnings.catch_warnings():  # pywt warns when level > dwt_max_level; the result is still defined
    warnings.simplefilter("ignore", UserWarning)
    return pywt.wavedec2(x, wavelet, mode="symmetric", level=level, axes=(-2, -1))


def _bands(coeffs):
  """Flattens [cA, (cH, cV, cD), ...] into a list of arrays, pywt order."""
  out = [coeffs[0]]
  for d in coeffs[1:]:
    out.extend(d)
  return out


def _to_jax(coeffs):
  return [jnp.asarray(coeffs[0])] + [tuple(jnp.asarray(b) for b in d) for d in coeffs[1:]]


def _assert_bands_close(actual, expected, rel, exact=False):
  actual, expected = _bands(actual), _bands(expected)
  assert len(actual) == len(expected)
  for k, (a, e) in enumerate(zip(actual, expected)):
    a = np.asarray(a)
    assert a.shape == e.shape, f"band {k}: shape {a.shape} != pywt {e.shape}"
    assert a.dtype == e.dtype, f"band {k}: dtype {a.dtype} != pywt {e.dtype}"
    if exact:
      np.testing.assert_array_equal(a, e, err_msg=f"band {k}")
    else:
      np.testing.assert_allclose(a, e, rtol=0, atol=rel * max(1.0, np.abs(e).max()), err_msg=f"band {k}")


# Sizes along each axis cover 512 (whose pyramid runs through 259, 133, 70, 38), 500, odd 259/37/9/7, and a
# length below the filter length (2), where the symmetric extension reflects several times. Every shape costs a
# compilation, so the list is short.
F32_SHAPES = [(512, 512), (259, 500), (38, 70), (37, 9), (7, 2)]
F64_SHAPES = [(133, 37), (9, 7)]


@pytest.mark.parametrize("shape", F32_SHAPES)
def test_float32_matches_pywt(shape):
  x = _image(shape, seed=sum(shape))
  expected = _pywt_wavedec2(x, "db4", 4)
  coeffs = wavelets.wavedec2(jnp.asarray(x), wavelet="db4", level=4)
  # The analysis follows pywt's float32 accumulation order without FMA: bit-identical on CPU.
  _assert_bands_close(coeffs, expected, rel=1e-6, exact=ON_CPU)
  # Synthesis from pywt's own coefficients (pywt also synthesises float32 in float32).
  rec = np.asarray(wavelets.waverec2(_to_jax(expected), wavelet="db4"))
  rec_expected = pywt.waverec2(expected, "db4", mode="symmetric", axes=(-2, -1))
  assert rec.shape == rec_expected.shape and rec.dtype == np.float32
  np.testing.assert_allclose(rec, rec_expected, rtol=0, atol=2e-6 * 255)
  # Perfect reconstruction (the crop handles odd sizes).
  np.testing.assert_allclose(rec[:shape[0], :shape[1]], x, rtol=0, atol=2e-6 * 255)


@pytest.mark.parametrize("shape", F64_SHAPES)
def test_float64_matches_pywt(shape):
  x = _image(shape, seed=sum(shape), dtype=np.float64)
  expected = _pywt_wavedec2(x, "db4", 4)
  with jax.enable_x64(True):
    coeffs = wavelets.wavedec2(jnp.asarray(x), wavelet="db4", level=4)
    _assert_bands_close(coeffs, expected, rel=1e-14)
    rec = np.asarray(wavelets.waverec2(coeffs, wavelet="db4"))
  rec_expected = pywt.waverec2(expected, "db4", mode="symmetric", axes=(-2, -1))
  assert rec.dtype == np.float64
  np.testing.assert_allclose(rec, rec_expected, rtol=0, atol=1e-12 * 255)


@pytest.mark.parametrize("wavelet,shape,level", [("db1", (9, 7), 3), ("db2", (70, 38), 4), ("db8", (37, 133), 3)])
def test_other_wavelets(wavelet, shape, level):
  x = _image(shape, seed=3)
  if wavelet == "db2":
    _assert_bands_close(wavelets.wavedec2(jnp.asarray(x), wavelet=wavelet, level=level),
                        _pywt_wavedec2(x, wavelet, level), rel=1e-6, exact=ON_CPU)
  x64 = x.astype(np.float64)
  expected = _pywt_wavedec2(x64, wavelet, level)
  with jax.enable_x64(True):
    coeffs = wavelets.wavedec2(jnp.asarray(x64), wavelet=wavelet, level=level)
    _assert_bands_close(coeffs, expected, rel=1e-14)
    rec = np.asarray(wavelets.waverec2(coeffs, wavelet=wavelet))
  np.testing.assert_allclose(rec, pywt.waverec2(expected, wavelet, mode="symmetric"), rtol=0, atol=1e-12 * 255)


def test_batch_axes_equal_single_images():
  x = _image((2, 3, 38, 21), seed=5)
  batched = wavelets.wavedec2(jnp.asarray(x), level=4)
  for i in range(2):
    for c in range(3):
      single = wavelets.wavedec2(jnp.asarray(x[i, c]), level=4)
      for b, s in zip(_bands(batched), _bands(single)):
        np.testing.assert_allclose(np.asarray(b)[i, c], np.asarray(s), rtol=0, atol=1e-6 * 255 * 16)
  _assert_bands_close(batched, _pywt_wavedec2(x, "db4", 4), rel=1e-6, exact=ON_CPU)
  rec = wavelets.waverec2(batched)
  np.testing.assert_allclose(np.asarray(rec)[..., :38, :21], x, rtol=0, atol=2e-6 * 255)


def test_coefficient_lengths_follow_pywt():
  # 512 -> 259 -> 133 -> 70 -> 38 (SPEC 1.4), 333 -> 170 -> 88 -> 47 -> 27.
  coeffs = jax.eval_shape(lambda x: wavelets.wavedec2(x, level=4), jax.ShapeDtypeStruct((512, 333), jnp.float32))
  assert [c[0].shape for c in coeffs[1:]] == [(38, 27), (70, 47), (133, 88), (259, 170)]
  assert coeffs[0].shape == (38, 27)
  assert wavelets.dwt_coeff_len(512, 8) == 259


def test_waverec2_drops_last_approximation_sample():
  # 333 -> ... -> 47 -> 27; 27 reconstructs to 48 = 47 + 1, which waverec2 trims before the next level.
  x = _image((333, 9), seed=7)
  expected = _pywt_wavedec2(x, "db4", 4)
  rec = np.asarray(wavelets.waverec2(_to_jax(expected)))
  assert rec.shape == (334, 10)
  np.testing.assert_allclose(rec, pywt.waverec2(expected, "db4"), rtol=0, atol=2e-6 * 255)


def test_errors():
  with pytest.raises(ValueError, match="rank"):
    wavelets.wavedec2(jnp.zeros(8), level=1)
  with pytest.raises(ValueError, match="level"):
    wavelets.wavedec2(jnp.zeros((8, 8)), level=0)
  with pytest.raises(ValueError, match="wavelet"):
    wavelets.wavedec2(jnp.zeros((8, 8)), wavelet="nope", level=1)
  coeffs = wavelets.wavedec2(jnp.zeros((16, 16)), level=2)
  bad = [jnp.zeros((5, 5))] + list(coeffs[1:])
  with pytest.raises(ValueError, match="do not match"):
    wavelets.waverec2(bad)
