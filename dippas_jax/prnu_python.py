"""prnu-python (polimi-ispl/prnu-python, `import prnu`) with its names, signatures and return types, on the
project's jitted PRNU core: replace `import prnu` with `from dippas_jax import prnu_python as prnu`.

Every public function of the reference's `prnu` package is here with the same positional and keyword arguments
and defaults (tested against the reference's signatures, held as data), the same input conventions (single
`uint8[H, W, 3]` or `[H, W]` images, lists of images) and the same outputs (numpy arrays, the same dicts and
tuples). The numbers are the core's (`prnu.denoise`, `prnu.fingerprint`, `prnu.metrics`, `prnu.roc`), which
equal the reference's to float32 rounding (BUILD_NOTES "PRNU core"). Where the reference has a quirk that the
project's own functions fix, this module reproduces the reference:

- `saturation` and `extract_multiple_aligned` use the legacy saturation map (`prnu.fingerprint.saturation`
  mode 'legacy'; the project's default 'corrected' leaves channels whose maximum is ≤ 250 unmasked);
- `pce` excludes the reference's 2r × 2r slice around the peak, without wrap-around ('legacy'; the project's
  'standard' excludes the centred (2r+1)² circular neighbourhood);
- `crosscorr_2d` and `zero_mean_total` modify their arguments in place as the reference does (callers may rely
  on it; the reference's own test values do);
- `inten_scale` gives what the reference computes under numpy 1 (under numpy 2 the reference raises an
  OverflowError: `-1 * (uint8 array)`), so `extract_multiple_aligned` works on any numpy.

Not reproduced: `zero_mean` and `saturation` of a 2-D array add a trailing axis to the caller's array in the
reference (`im.shape += (1,)`); here the caller's array keeps its shape. `extract_multiple_aligned` accepts
`processes`, `batch_size` and `tqdm_str` and batches `batch_size` images per device call instead of a process pool.
Bad input raises ValueError with a message (the reference: bare asserts), before anything reaches JAX.
"""

from __future__ import annotations

from multiprocessing import cpu_count

import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from dippas_jax.prnu import denoise as _denoise
from dippas_jax.prnu import fingerprint as _fingerprint
from dippas_jax.prnu import metrics as _metrics
from dippas_jax.prnu import roc as _roc

__all__ = ["ArgumentError", "extract_single", "noise_extract", "noise_extract_compact", "extract_multiple_aligned",
           "cut_ctr", "wiener_dft", "zero_mean", "zero_mean_total", "rgb2gray", "threshold", "wiener_adaptive",
           "inten_scale", "saturation", "inten_sat_compact", "crosscorr_2d", "aligned_cc", "pce", "stats", "gt"]


class ArgumentError(Exception):
  """The reference's error for a `cut_ctr` size list of the wrong length."""


def _uint8_image(im, what: str) -> np.ndarray:
  im = np.asarray(im)
  if im.dtype != np.uint8 or im.ndim not in (2, 3):
    raise ValueError(f"{what} expects a uint8 image [H, W] or [H, W, C], got {im.dtype}{list(im.shape)}")
  return im


def _as_nhwc(im: np.ndarray) -> np.ndarray:
  return (im[..., None] if im.ndim == 2 else im)[None]


# ------------------------------------------------------------------------------------------------ extraction
def extract_single(im: np.ndarray, levels: int = 4, sigma: float = 5, wdft_sigma: float = 0) -> np.ndarray:
  """Noise residual float32[H, W] of one uint8 image (grey or colour): noise_extract, rgb2gray, zero_mean_total,
  wiener_dft with the residual's std (ddof 1) or `wdft_sigma`."""
  im = _uint8_image(im, "extract_single")
  if im.ndim == 3 and im.shape[-1] not in (1, 3):
    raise ValueError(f"extract_single: the image must have 1 or 3 channels, got {im.shape[-1]}")
  w = _denoise.extract_residual(_as_nhwc(im), levels=levels, sigma=float(sigma),
                                wdft_sigma=None if wdft_sigma == 0 else float(wdft_sigma))
  return np.array(w[0], np.float32)


def noise_extract(im: np.ndarray, levels: int = 4, sigma: float = 5) -> np.ndarray:
  """NoiseExtract of the Binghamton toolbox: float32 residual of the image's shape ([H, W] or [H, W, C])."""
  im = _uint8_image(im, "noise_extract")
  w = np.array(_denoise.noise_extract(_as_nhwc(im), levels=levels, sigma=float(sigma))[0], np.float32)
  return w[..., 0] if im.ndim == 2 else w


def noise_extract_compact(args):
  """(im, levels, sigma) -> noise_extract(...) * im / 255, float32 (the reference's multiprocessing helper)."""
  w = noise_extract(*args)
  return (w * args[0] / 255.).astype(np.float32)


def extract_multiple_aligned(imgs: list, levels: int = 4, sigma: float = 5, processes: int = None,
                             batch_size=cpu_count(), tqdm_str: str = '') -> np.ndarray:
  """Maximum-likelihood fingerprint float32[H, W] of a list of uint8[H, W, C] images of one size (legacy
  saturation, as the reference). `processes` is accepted and ignored: `batch_size` images go to the device per
  call; a progress bar is shown when `tqdm_str` is not ''."""
  del processes  # one process: the device batches instead of a pool
  if not len(imgs):
    raise ValueError("extract_multiple_aligned needs at least one image")
  first = _uint8_image(imgs[0], "extract_multiple_aligned")
  if first.ndim != 3:
    raise ValueError(f"extract_multiple_aligned expects colour images [H, W, C], got shape {first.shape}")
  bar = tqdm(total=len(imgs), disable=tqdm_str == '', desc=tqdm_str, dynamic_ncols=True)
  done = [0]

  def progress(count):
    bar.update(count - done[0])
    done[0] = count
  images = (_uint8_image(im, "extract_multiple_aligned") for im in imgs)
  k, _ = _fingerprint.estimate_fingerprint(images, batch_size=max(1, int(batch_size)), sigma=float(sigma),
                                          levels=levels, saturation_mode="legacy", progress=progress)
  bar.close()
  return np.array(k, np.float32)


def cut_ctr(array: np.ndarray, sizes: tuple) -> np.ndarray:
  """The centre `sizes` (one per axis) of a copy of `array`; ArgumentError on a wrong number of sizes, ValueError
  on a size larger than the array."""
  array = array.copy()
  if not array.ndim == len(sizes):
    raise ArgumentError('array.ndim must be equal to len(sizes)')
  for axis in range(array.ndim):
    target, original = sizes[axis], array.shape[axis]
    if target > original:
      raise ValueError(f"Can't have target size {target} for axis {axis} with original size {original}")
    if target < original:
      start = (original - target) // 2
      array = np.take(array, np.arange(start, start + target), axis)
  return array


def wiener_dft(im: np.ndarray, sigma: float) -> np.ndarray:
  """Adaptive Wiener filter in the DFT domain of a 2-D array, float32."""
  return np.array(_denoise.wiener_dft(jnp.asarray(np.asarray(im), jnp.float32), sigma=float(sigma)))


def _planes(im: np.ndarray, fn) -> np.ndarray:
  """fn over the [H, W] planes of a 2-D or [H, W, C] array (the reference's channel convention)."""
  x = jnp.asarray(np.asarray(im, np.float32))
  if x.ndim == 2:
    return np.array(fn(x))
  return np.array(np.moveaxis(np.asarray(fn(jnp.moveaxis(x, -1, 0))), 0, -1))


def zero_mean(im: np.ndarray) -> np.ndarray:
  """ZeroMean(., 'both') of the Binghamton toolbox, per channel of [H, W] or [H, W, C]."""
  return _planes(im, _denoise.zero_mean)


def zero_mean_total(im: np.ndarray) -> np.ndarray:
  """ZeroMeanTotal of the Binghamton toolbox (zero_mean of each of the 4 CFA sub-lattices); like the reference
  it writes the result into `im` when `im` is a writeable float array, and returns it."""
  out = _planes(im, _denoise.zero_mean_total)
  if isinstance(im, np.ndarray) and im.flags.writeable and np.issubdtype(im.dtype, np.floating):
    im[...] = out
    return im
  return out


def rgb2gray(im: np.ndarray) -> np.ndarray:
  """Grey float32[H, W] of [H, W], [H, W, 1] or [H, W, 3] (the Binghamton weights)."""
  im = np.asarray(im)
  if im.ndim == 2:
    return im.astype(np.float32)
  if im.ndim != 3 or im.shape[2] not in (1, 3):
    raise ValueError('Input image must have 1 or 3 channels')
  return np.array(_denoise.rgb2gray(im), np.float32)


def threshold(wlet_coeff_energy_avg: np.ndarray, noise_var: float) -> np.ndarray:
  """max(energy − noise_var, 0), as the toolbox writes it."""
  res = wlet_coeff_energy_avg - noise_var
  return (res + np.abs(res)) / 2


def wiener_adaptive(x: np.ndarray, noise_var: float, **kwargs) -> np.ndarray:
  """WaveNoise of the Binghamton toolbox on a 2-D array (`window_size_list`, default [3, 5, 7, 9]); float64 as
  the reference returns."""
  windows = tuple(int(w) for w in kwargs.pop('window_size_list', [3, 5, 7, 9]))
  if kwargs:
    raise TypeError(f"wiener_adaptive got unexpected keyword arguments {sorted(kwargs)}")
  out = _denoise.wiener_adaptive(jnp.asarray(np.asarray(x), jnp.float32), noise_var=float(noise_var),
                                 window_sizes=windows)
  return np.asarray(out, np.float64)


def inten_scale(im: np.ndarray) -> np.ndarray:
  """IntenScale of the toolbox on uint8: im / 252 below 252, exp(−(im − 252)² / 6) above (float64)."""
  im = np.asarray(im)
  if im.dtype != np.uint8:
    raise ValueError(f"inten_scale expects uint8, got {im.dtype}")
  return np.asarray(_fingerprint.inten_scale(im), np.float64)


def saturation(im: np.ndarray) -> np.ndarray:
  """Saturation map of the toolbox (legacy semantics), [H, W, C] (a 2-D image gives [H, W, 1]): float64 ones
  when the image's maximum is below 250, else bool (True = usable)."""
  im = _uint8_image(im, "saturation")
  x = im[..., None] if im.ndim == 2 else im
  if x.max() < 250:
    return np.ones(x.shape)
  return np.array(_fingerprint.saturation(x[None], mode="legacy")[0]) > 0


def inten_sat_compact(args):
  """((inten_scale(im) * saturation(im)) ** 2) as float32, for args = (im, ...)."""
  im = args[0]
  return ((inten_scale(im) * saturation(im)) ** 2).astype(np.float32)


# --------------------------------------------------------------------------------------- cross-correlation
def _subtract_mean_in_place(k):
  """k − mean(k), written into k when it is a writeable float numpy array (the reference's side effect)."""
  if isinstance(k, np.ndarray) and k.flags.writeable and np.issubdtype(k.dtype, np.floating):
    k -= k.flatten().mean()
    return k
  k = np.array(k, np.float32)
  return k - k.flatten().mean()


def crosscorr_2d(k1: np.ndarray, k2: np.ndarray) -> np.ndarray:
  """Circular 2-D cross-correlation float32[max H, max W] of two 2-D maps (zero lag at the last row and
  column); like the reference, both maps have their mean subtracted in place first (writeable float numpy
  arrays; others are copied, where the reference would fail)."""
  if np.ndim(k1) != 2 or np.ndim(k2) != 2:
    raise ValueError(f"crosscorr_2d expects two 2-D arrays, got shapes {np.shape(k1)} and {np.shape(k2)}")
  k1 = _subtract_mean_in_place(k1)
  k2 = _subtract_mean_in_place(k2)
  return np.array(_metrics.crosscorr_2d(k1, k2))


def aligned_cc(k1: np.ndarray, k2: np.ndarray) -> dict:
  """{'cc': float32[n1, n2], 'ncc': float32[n1, n2]}: aligned correlations of n1 fingerprints and n2 residuals
  (any trailing shape, flattened)."""
  k1 = np.asarray(k1, np.float32)
  k2 = np.asarray(k2, np.float32)
  if k1.ndim != k2.ndim or k1.reshape(len(k1), -1).shape[1] != k2.reshape(len(k2), -1).shape[1]:
    raise ValueError(f"aligned_cc: k1 {k1.shape} and k2 {k2.shape} must have the same shape after the first axis")
  out = _metrics.cosine_scores(k1.reshape(len(k1), -1), k2.reshape(len(k2), -1))
  return {'cc': np.array(out.cc), 'ncc': np.array(out.ncc)}


def pce(cc: np.ndarray, neigh_radius: int = 2) -> dict:
  """{'peak': (y, x), 'pce': signed peak² / floor energy, 'cc': the peak value} of a `crosscorr_2d` map, with
  the reference's exclusion slice around the peak."""
  if np.ndim(cc) != 2 or not isinstance(neigh_radius, int):
    raise ValueError(f"pce expects a 2-D map and an int radius, got shape {np.shape(cc)}, {neigh_radius!r}")
  out = _metrics.pce(np.asarray(cc, np.float32), neigh_radius=neigh_radius, mode="legacy")
  return {'peak': (int(out.peak_y), int(out.peak_x)), 'pce': float(out.pce), 'cc': np.float32(out.peak)}


# ---------------------------------------------------------------------------------------------- statistics
def stats(cc: np.ndarray, gt: np.ndarray, ) -> dict:
  """{'tpr', 'fpr', 'th', 'auc', 'eer'} of scores `cc` against the boolean ground truth `gt` (same shape)."""
  return _roc.stats(cc, gt)


def gt(l1: list or np.ndarray, l2: list or np.ndarray) -> np.ndarray:
  """bool[len(l1), len(l2)]: True where fingerprint label l1[i] equals residual label l2[j]."""
  return _roc.gt(l1, l2)
