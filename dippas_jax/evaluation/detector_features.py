"""The anonymization detector's fixed input layers: tiles, the handcrafted residual features, residual statistics.

Bonettini et al., "Image Anonymization Detection With Deep Handcrafted Features" (ICIP 2019; the authors' code
polimi-ispl/prnu-anonymization-detector, `db_classes.py`, pre-processing 'wv_fft_wiener2', their best) feed a
CNN not the pixels but a PRNU-style noise feature computed by fixed, non-learned steps. Here those steps are
this project's own kernels (`prnu.denoise`), each a fixed layer:

1. wavelet denoiser: the noise residual per colour channel, `denoise.noise_extract` (σ in grey levels), computed
   on the whole crop and then cut into tiles (the authors denoise each 224² patch; a 4-level wavelet transform
   of a 64² tile is mostly border);
2. 'spectrum' (the authors' feature): |FFT2| of each tile's residual zero-padded to twice the tile, its
   top-left t × t quadrant, per channel, on the [0, 1] scale of their code;
   'residual' (an alternative that keeps the spatial domain): the residual itself per channel;
3. zero-mean: `denoise.zero_mean_total` per channel plane;
4. Wiener: 'spectrum' → the adaptive Wiener filter on the spectrum, `denoise.wiener_adaptive` with noise
   variance 0.77 · var (ddof 1) of the plane and a 3 × 3 window (their constants); 'residual' → the Wiener
   filter in the DFT domain, `denoise.wiener_dft` with σ = the plane's std (as `extract_residual`).

`residual_statistics` are the inputs of the cheap linear detector: a few numbers per tile that summarise the
noise residual (its energy per channel and per frequency band, its shape and its correlations), all on the
log scale where a multiplicative change of the noise is a shift.

Shapes: N images, T tiles, t tile side; tiles are NHWC `[T, t, t, 3]` on the 0..255 scale, features
`float32[T, t, t, 3]`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.prnu import denoise

FEATURES = ("spectrum", "residual")
NUM_STATISTICS = 14
_WIENER_VAR_FACTOR = 0.77  # the authors' 'wv_fft_wiener2': noise variance = 0.77 · var(plane)
_WIENER_WINDOW = (3,)


def tile_positions(height: int, width: int, *, tile: int, stride: int) -> np.ndarray:
  """Top-left corners int64[P, 2] of the tiles of a `height × width` crop on a regular grid, row-major.

  Raises:
    ValueError: the tile does not fit, or a non-positive tile/stride.
  """
  if tile < 8 or stride < 1:
    raise ValueError(f"tile must be ≥ 8 and stride ≥ 1, got tile {tile}, stride {stride}")
  if tile > min(height, width):
    raise ValueError(f"tile {tile} does not fit the {height}×{width} crop; lower detector.tile")
  ys = np.arange(0, height - tile + 1, stride)
  xs = np.arange(0, width - tile + 1, stride)
  return np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2).astype(np.int64)


def cut_tiles(images: np.ndarray, positions: np.ndarray, tile: int) -> np.ndarray:
  """Tiles `[N, P, t, t, C]` of `images [N, H, W, C]` at `positions [P, 2]` (host numpy, any dtype)."""
  images = np.asarray(images)
  return np.stack([images[:, y:y + tile, x:x + tile] for y, x in positions], axis=1)


def noise_residual(images, *, sigma: float = 3.0) -> jax.Array:
  """Layer 1: the wavelet denoiser's noise residual per channel, float32[N, H, W, 3] (grey levels)."""
  return denoise.noise_extract(jnp.asarray(images, jnp.float32), sigma=float(sigma))


@jax.jit
def _spectrum_features(noise):
  """'spectrum' layers 2-4 on noise tiles float32[T, t, t, 3] (grey levels) → float32[T, t, t, 3]."""
  t = noise.shape[1]
  planes = jnp.moveaxis(noise, -1, 1) / 255.0  # [T, 3, t, t] on the authors' [0, 1] scale
  padded = jnp.pad(planes, ((0, 0), (0, 0), (0, t), (0, t)))
  mag = jnp.abs(jnp.fft.fft2(padded))[..., :t, :t]
  mag = denoise.zero_mean_total(mag)
  var = jnp.var(mag, axis=(-2, -1), ddof=1, keepdims=True)
  out = denoise.wiener_adaptive(mag, noise_var=_WIENER_VAR_FACTOR * var, window_sizes=_WIENER_WINDOW)
  return jnp.moveaxis(out, 1, -1)


@jax.jit
def _residual_features(noise):
  """'residual' layers 2-4 on noise tiles float32[T, t, t, 3] → float32[T, t, t, 3] (grey levels / 255)."""
  planes = denoise.zero_mean_total(jnp.moveaxis(noise, -1, 1) / 255.0)
  std = jnp.std(planes, axis=(-2, -1), ddof=1)
  return jnp.moveaxis(denoise.wiener_dft(planes, sigma=std), 1, -1)


def handcrafted(noise_tiles, *, features: str = "spectrum") -> jax.Array:
  """Layers 2-4 (see the module docstring) on noise residual tiles float32[T, t, t, 3]."""
  if features not in FEATURES:
    raise ValueError(f"Unsupported detector features {features!r}; expected one of {FEATURES}")
  x = jnp.asarray(noise_tiles, jnp.float32)
  if x.ndim != 4 or x.shape[-1] != 3:
    raise ValueError(f"noise tiles must be [T, t, t, 3], got {x.shape}")
  return _spectrum_features(x) if features == "spectrum" else _residual_features(x)


def _log_band_energies(grey, bands: int = 4):
  """Log energy of the grey residual tiles [T, t, t] in `bands` radial frequency rings, relative to the total."""
  t = grey.shape[-1]
  power = jnp.abs(jnp.fft.fft2(grey)) ** 2
  f = jnp.fft.fftfreq(t)
  radius = jnp.sqrt(f[:, None] ** 2 + f[None, :] ** 2) / (0.5 * np.sqrt(2.0))  # 0 … 1
  ring = jnp.minimum((radius * bands).astype(jnp.int32), bands - 1)
  total = jnp.sum(power, axis=(-2, -1)) + 1e-12
  return jnp.stack([jnp.log(jnp.sum(jnp.where(ring == b, power, 0.0), axis=(-2, -1)) / total + 1e-12)
                    for b in range(bands)], axis=-1)


def _corr(a, b):
  a = a - jnp.mean(a, axis=(-2, -1), keepdims=True)
  b = b - jnp.mean(b, axis=(-2, -1), keepdims=True)
  return jnp.sum(a * b, axis=(-2, -1)) / jnp.sqrt(jnp.sum(a * a, axis=(-2, -1)) * jnp.sum(b * b, axis=(-2, -1))
                                                   + 1e-12)


@jax.jit
def _statistics(noise, pixels):
  eps = 1e-6
  planes = jnp.moveaxis(noise, -1, 1)  # [T, 3, t, t]
  grey = denoise.zero_mean_total(denoise.rgb2gray(noise))
  g = grey - jnp.mean(grey, axis=(-2, -1), keepdims=True)
  var = jnp.mean(g * g, axis=(-2, -1))
  kurtosis = jnp.mean(g ** 4, axis=(-2, -1)) / (var ** 2 + eps)
  luma = denoise.rgb2gray(pixels)
  texture = jnp.mean(jnp.abs(luma[:, 1:, :] - luma[:, :-1, :]), axis=(-2, -1)) + jnp.mean(
      jnp.abs(luma[:, :, 1:] - luma[:, :, :-1]), axis=(-2, -1))
  columns = [jnp.log(jnp.var(planes, axis=(-2, -1)) + eps),                 # 3: noise energy per channel
             jnp.log(var + eps)[:, None],                                    # 1: zero-meaned grey energy
             _log_band_energies(grey),                                       # 4: spectral shape
             jnp.log(kurtosis + eps)[:, None],                               # 1: tails
             _corr(grey[:, 1:, :], grey[:, :-1, :])[:, None],                # 2: lag-1 correlations
             _corr(grey[:, :, 1:], grey[:, :, :-1])[:, None],
             _corr(planes[:, 0], planes[:, 1])[:, None],                     # 2: cross-channel correlations
             _corr(planes[:, 1], planes[:, 2])[:, None],
             jnp.log(texture + eps)[:, None]]                                # 1: content (texture) level
  return jnp.concatenate(columns, axis=-1)


def residual_statistics(noise_tiles, pixel_tiles) -> jax.Array:
  """The linear detector's inputs: float32[T, NUM_STATISTICS] per tile.

  Args:
    noise_tiles: float32[T, t, t, 3], the noise residual tiles (`noise_residual`, then `cut_tiles`).
    pixel_tiles: uint8 or float[T, t, t, 3] on 0..255, the same tiles of the image (for the texture level that
      conditions how much noise a denoiser would leave).
  """
  noise = jnp.asarray(noise_tiles, jnp.float32)
  pixels = jnp.asarray(pixel_tiles, jnp.float32)
  if noise.shape != pixels.shape or noise.ndim != 4 or noise.shape[-1] != 3:
    raise ValueError(f"noise {noise.shape} and pixel tiles {pixels.shape} must both be [T, t, t, 3]")
  return _statistics(noise, pixels)
