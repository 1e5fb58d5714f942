"""NumPy/pywt/SciPy re-implementation of prnu-python (SPEC §1.2–1.8): the test oracle and the benchmark's
baseline. Not part of the library."""

import warnings

import numpy as np
import pywt
from scipy import ndimage

# NumPy reference: prnu-python's functions (SPEC 1.2-1.7), with its dtypes (float32 analysis, float64 Wiener
# gains and synthesis, complex128 FFT as with numpy 1.x). Inputs are copied, so its in-place habits do not leak.

GRAY = np.asarray([0.29893602, 0.58704307, 0.11402090], dtype=np.float32)


def np_wiener_adaptive(x, noise_var, window_sizes=(3, 5, 7, 9)):
  energy = np.square(x)
  avg = np.zeros(x.shape + (len(window_sizes),), np.float64)
  for i, w in enumerate(window_sizes):
    avg[..., i] = ndimage.uniform_filter(energy, w, mode="constant")
  coef_var = np.min(np.maximum(avg - noise_var, 0), axis=-1)
  return x * noise_var / (coef_var + noise_var)


def np_noise_extract(im, levels=4, sigma=5.0):
  im = np.asarray(im).astype(np.float32)
  h, w, c = im.shape
  noise_var = sigma ** 2
  out = None
  for ch in range(c):
    with warnings.catch_warnings():  # pywt warns that small images have boundary effects at level 4
      warnings.simplefilter("ignore", UserWarning)
      wlet = pywt.wavedec2(im[:, :, ch], "db4", level=levels)
    wlet = [np.zeros_like(wlet[0])] + [tuple(np_wiener_adaptive(b, noise_var) for b in d) for d in wlet[1:]]
    rec = pywt.waverec2(wlet, "db4")
    if out is None:
      out = np.zeros(rec.shape + (c,), np.float32)
    out[:, :, ch] = rec
  return out[:h, :w]


def np_rgb2gray(im):
  return (np.asarray(im, np.float32) @ GRAY).astype(np.float32)


def np_zero_mean(x):
  x = np.array(x)
  xc = x - x.mean(axis=0).mean(axis=0)
  return xc - xc.mean(axis=1, keepdims=True) - xc.mean(axis=0, keepdims=True)


def np_zero_mean_total(x):
  x = np.array(x)
  for p in (0, 1):
    for q in (0, 1):
      x[p::2, q::2] = np_zero_mean(x[p::2, q::2])
  return x


def np_wiener_dft(im, sigma):
  noise_var = sigma ** 2
  h, w = im.shape
  f = np.fft.fft2(np.asarray(im, np.float64))
  mag = np.abs(f / (h * w) ** 0.5)
  mag_noise = np_wiener_adaptive(mag, noise_var)
  zeros = mag == 0
  mag[zeros] = 1
  mag_noise[zeros] = 0
  return np.real(np.fft.ifft2(f * mag_noise / mag)).astype(np.float32)


def np_extract_single(im, levels=4, sigma=5.0, wdft_sigma=0.0):
  w = np_zero_mean_total(np_rgb2gray(np_noise_extract(im, levels, sigma)))
  s = w.std(ddof=1) if wdft_sigma == 0 else wdft_sigma
  return np_wiener_dft(w, s)


def np_saturation(im):
  """prnu-python `saturation` (SPEC §1.8), numpy, one uint8 [H, W, C] image."""
  h, w, ch = im.shape
  if im.max() < 250:
    return np.ones((h, w, ch))
  im_h = im - np.roll(im, 1, axis=0)
  im_v = im - np.roll(im, 1, axis=1)
  satur_map = np.bitwise_not(np.bitwise_and(np.bitwise_and(np.bitwise_and(
      im_h != 0, im_v != 0), np.roll(im_h, -1, axis=0) != 0), np.roll(im_v, -1, axis=1) != 0))
  max_ch = im.max(axis=0).max(axis=0)
  for c in range(ch):
    if max_ch[c] > 250:
      satur_map[:, :, c] = np.bitwise_not(np.bitwise_and(im[:, :, c] == max_ch[c], satur_map[:, :, c]))
  return satur_map
