"""Maximum-likelihood camera fingerprint (Chen et al. 2008) as prnu-python `extract_multiple_aligned`, streaming.

Per colour channel, over flat-field images n (grey-level scale, uint8 values):

    K_c = Σ_n W_n ⊙ (I_n / 255)  /  ( Σ_n (inten_scale(I_n) ⊙ saturation(I_n))²  +  1 )

then `K = wiener_dft(zero_mean_total(rgb2gray(K)), std_ddof1(K))`. The numerator and denominator are running
sums (`FingerprintSums`), so any number of images is processed in fixed-size batches with flat memory. A batch
padded with all-zero images adds exactly nothing (their residual, intensity weight and product are 0), so the
last partial batch is zero-padded instead of recompiling.
"""

from __future__ import annotations

import functools
from typing import Iterable

import flax
import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax import batching
from dippas_jax.prnu import denoise

SATURATION_MODES = ("corrected", "legacy")


def inten_scale(images: jax.Array) -> jax.Array:
  """Intensity attenuation weight: `x / 252` below 252, `exp(−(x − 252)² / 6)` from 252 on.

  Args:
    images: uint8 or float[..., H, W, C] in [0, 255].

  Returns:
    float32[..., H, W, C].
  """
  x = jnp.asarray(images, jnp.float32)
  return jnp.where(x < 252.0, x / 252.0, jnp.exp(-((x - 252.0) ** 2) / 6.0))


def saturation(images: jax.Array, *, mode: str = "corrected") -> jax.Array:
  """Saturation mask (1 = usable pixel) of prnu-python `saturation`, per image.

  A pixel is masked (0) when it equals its channel's maximum, that maximum is > 250, and the pixel equals at
  least one of its 4 circular neighbours. Images whose global maximum is < 250 are all ones.

  Args:
    images: uint8 or float[N, H, W, C] in [0, 255].
    mode: 'corrected' (channels whose maximum is ≤ 250 are all ones) or 'legacy' (prnu-python's behaviour
      where such channels get the "equals a neighbour" map itself — a porting bug kept for parity, SPEC §1.8).

  Returns:
    float32[N, H, W, C] in {0, 1}.
  """
  if mode not in SATURATION_MODES:
    raise ValueError(f"Unsupported saturation mode {mode!r}; expected one of {SATURATION_MODES}")
  x = jnp.asarray(images, jnp.float32)
  if x.ndim != 4:
    raise ValueError(f"saturation expects [N, H, W, C], got shape {x.shape}")
  differs = [x != jnp.roll(x, s, axis=a) for s, a in ((1, 2), (1, 1), (-1, 2), (-1, 1))]
  has_equal_neighbour = ~(differs[0] & differs[1] & differs[2] & differs[3])
  channel_max = jnp.max(x, axis=(1, 2), keepdims=True)
  saturated = (x == channel_max) & has_equal_neighbour
  qualifies = channel_max > 250.0
  if mode == "legacy":
    per_channel = jnp.where(qualifies, ~saturated, has_equal_neighbour)
  else:
    per_channel = jnp.where(qualifies, ~saturated, True)
  global_max = jnp.max(x, axis=(1, 2, 3), keepdims=True)
  return jnp.where(global_max < 250.0, 1.0, per_channel.astype(jnp.float32))


@flax.struct.dataclass
class FingerprintSums:
  """Running sums of the ML estimator.

  Attributes:
    rp: float32[H, W, C], Σ W ⊙ I/255.
    nn: float32[H, W, C], Σ (inten_scale ⊙ saturation)².
  """
  rp: jax.Array
  nn: jax.Array


def init_sums(height: int, width: int, channels: int = 3) -> FingerprintSums:
  """Zero sums for `height × width × channels` images."""
  zeros = jnp.zeros((height, width, channels), jnp.float32)
  return FingerprintSums(rp=zeros, nn=zeros)


@functools.partial(jax.jit, static_argnames=("levels", "wavelet", "saturation_mode"))
def accumulate(sums: FingerprintSums, images: jax.Array, *, sigma: float = 5.0, levels: int = 4,
               wavelet: str = "db4", saturation_mode: str = "corrected") -> FingerprintSums:
  """Adds a batch of flat-field images to the running sums.

  Args:
    sums: the sums so far.
    images: uint8 or float[N, H, W, C] in [0, 255] (all-zero padding images contribute nothing).
    sigma: denoiser noise std in grey levels (prnu-python default 5; DIPPAS 3).
    levels, wavelet: wavelet denoiser settings.
    saturation_mode: see `saturation`.

  Returns:
    The updated sums.
  """
  x = jnp.asarray(images, jnp.float32)
  w = denoise.noise_extract(x, levels=levels, sigma=sigma, wavelet=wavelet)
  weight = inten_scale(x) * saturation(x, mode=saturation_mode)
  return FingerprintSums(rp=sums.rp + jnp.sum(w * (x / 255.0), axis=0),
                         nn=sums.nn + jnp.sum(weight * weight, axis=0))


@jax.jit
def finalize(sums: FingerprintSums) -> jax.Array:
  """The fingerprint `float32[H, W]` from the sums: ratio, gray, zero-mean-total, Wiener-DFT (std ddof=1)."""
  k = denoise.rgb2gray(sums.rp / (sums.nn + 1.0))
  k = denoise.zero_mean_total(k)
  return denoise.wiener_dft(k, sigma=jnp.std(k, ddof=1))


def estimate_fingerprint(images: Iterable[np.ndarray] | np.ndarray, *, batch_size: int = 8, sigma: float = 5.0,
                         levels: int = 4, wavelet: str = "db4", saturation_mode: str = "corrected",
                         progress=None) -> tuple[jax.Array, int]:
  """Streams images through `accumulate` in fixed batches and returns `(K float32[H, W], number of images)`.

  Args:
    images: an array [N, H, W, 3] or an iterable of [H, W, 3] arrays (uint8 or float in [0, 255]), all of one
      size; only `batch_size` images are held at a time.
    batch_size: images per jitted call (the last batch is zero-padded, so one compilation serves all).
    progress: optional callable called with the number of images done after each batch.
  """
  sums, count, batch = None, 0, []

  def flush(batch, sums):
    stack = batching.pad_batch(np.stack(batch), batch_size)  # a zero image adds exactly 0 to both sums
    if sums is None:
      sums = init_sums(*stack.shape[1:])
    return accumulate(sums, stack, sigma=sigma, levels=levels, wavelet=wavelet, saturation_mode=saturation_mode)

  for image in images:
    image = np.asarray(image)
    if batch and image.shape != batch[0].shape:
      raise ValueError(f"image {count + len(batch)} has shape {image.shape}, expected {batch[0].shape}")
    batch.append(image)
    if len(batch) == batch_size:
      sums, count, batch = flush(batch, sums), count + len(batch), []
      if progress is not None:
        progress(count)
  if batch:
    sums, count = flush(batch, sums), count + len(batch)
    if progress is not None:
      progress(count)
  if sums is None:
    raise ValueError("estimate_fingerprint needs at least one image")
  return finalize(sums), count
