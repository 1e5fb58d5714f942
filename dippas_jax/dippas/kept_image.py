"""The kept image of DIPPAS: what of the DIP's output x̂ a candidate keeps, and what the loss compares.

The DIP engine (`dip/runner.py`) calls one transform per image and iteration, with the photo I as reference:

  kept = m ⊙ R + (1 − m) ⊙ (x̂ + G_σ * (I − x̂)),   R = denoise(I)

1. **Low-pass correction** (`lowpass_sigma` σ > 0): the photo's own low frequencies under the DIP's detail
   (`dippas/lowpass.py`): no colour drift, the DIP fits only the detail.
2. **Flat path** (`textured_std` > 0): where the photo is flat (its local grey-level std, a Gaussian window of
   `window_sigma` px, below `flat_std`; m = 1) the kept image is R, the photo denoised, instead of the DIP's
   output; where it is textured (std above `textured_std`; m = 0), DIPPAS as the paper;
   in between a smoothstep of the std, which is itself a smooth function of the position, so the mask has no step.
   Why: a flat tile passes τ after a few iterations, so its DIP output is an early, blobby one whose rims the
   low-pass correction cannot remove (BUILD_NOTES "Clean flat areas"); in a flat area the fingerprint lives in
   the sensor noise (K·I), which a denoiser removes with it, and what a viewer sees there is the noise's loss (a
   fraction of a grey level after the eye's own smoothing), not a spot. R is the project's wavelet denoiser
   (`prnu.denoise`, noise σ `flat_noise`): screened on the 16 shared photos (`scripts/screen_flat_path.py`) it
   left a third of the fingerprint that a Gaussian blur of similar visual cost leaves. R and m depend on the photo
   only: they are computed once per piece (`prepare`) or, for the tiles of a whole photo, once on the whole photo
   and cut like the tiles (`prepare_photo`): a 128² tile is too small for a 4-level wavelet denoiser, whose border
   effects left spots of their own (BUILD_NOTES "Clean flat areas").
3. The loss: (1 − a)·MSE(y, I) + a·MSE(kept(y), I) with a = `detail_loss` (y the injected output), so the
   network is not pushed to fit what the transform replaces anyway.

The NCC ranking, the PSNR of the stop rule and the assembly all see the kept image, so they judge the final
pixels, not the DIP's output before the blend. `KeptImage()` (every field 0) is the paper's kept image x̂.

Images are float32[..., H, W, 3] on one scale (the DIP's [0, 1]); std thresholds are on that scale too
(`from_config` converts the config's grey levels).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.dippas import lowpass
from dippas_jax.prnu import denoise


def local_std(image, *, window_sigma: float = 4.0) -> jax.Array:
  """float32[..., H, W, 1]: the std of the grey level (channel mean) of float[..., H, W, C] in a Gaussian window
  of `window_sigma` px (symmetric borders), on the image's scale: the flatness measure of the flat path and of
  `evaluation.visual.spot_shift`."""
  grey = jnp.mean(jnp.asarray(image, jnp.float32), axis=-1, keepdims=True)
  mean = lowpass.blur(grey, sigma=window_sigma)
  var = lowpass.blur(grey * grey, sigma=window_sigma) - mean * mean
  return jnp.sqrt(jnp.maximum(var, 0.0))


def flatness_mask(image, *, flat_std: float, textured_std: float, window_sigma: float = 4.0) -> jax.Array:
  """m float32[..., H, W, 1] in [0, 1]: 1 where `local_std` ≤ flat_std, 0 where ≥ textured_std, a smoothstep in
  between (continuous, with a continuous first derivative). Requires 0 ≤ flat_std < textured_std."""
  if not 0 <= flat_std < textured_std:
    raise ValueError(f"need 0 <= flat_std < textured_std, got {flat_std} and {textured_std}")
  t = jnp.clip((textured_std - local_std(image, window_sigma=window_sigma)) / (textured_std - flat_std), 0.0, 1.0)
  return t * t * (3.0 - 2.0 * t)


def flat_reconstruction(image, *, noise: float) -> jax.Array:
  """R float32[N, H, W, C]: the fingerprint-free image the flat path keeps (module docstring), the wavelet
  denoiser's output (`prnu.denoise.denoise`, symmetric borders) of float[N, H, W, C] for a noise std `noise` on the
  image's scale."""
  return denoise.denoise(jnp.asarray(image, jnp.float32), sigma=noise)


class FlatInputs(NamedTuple):
  """What the flat path keeps of a piece: mask float32[H, W, 1] and reconstruction float32[H, W, 3]."""
  mask: jax.Array
  reconstruction: jax.Array

  def cut(self, top: int, left: int, size: int) -> "FlatInputs":
    """The [size, size] window at (top, left) of both arrays (numpy or jax)."""
    return FlatInputs(*(a[top:top + size, left:left + size] for a in self))


# Blocks of `prepare_photo`: cores of _BLOCK² px with _MARGIN px of context on every side (multiples of 16 = 2^4,
# the denoiser's levels, so every block sits on the whole photo's dyadic grid). The margin covers the Gaussian
# window of the local std (4σ) and most of the 4-level db4 denoiser's reach; what lies beyond changes R by
# hundredths of a grey level (kept_image_test).
_BLOCK, _MARGIN = 512, 128


@dataclasses.dataclass(frozen=True)
class KeptImage:
  """The kept-image transform (module docstring); hashable: part of the compiled runner's cache key.

  The runner calls `prepare(target)` once per piece (any pytree, kept with the piece's inputs), then per
  iteration `apply(x̂, target, prepared)` and `loss(raw_mse, y, target, prepared)`.
  """
  lowpass_sigma: float = 0.0  # σ (px) of the low-pass correction; 0 = off
  detail_loss: float = 0.0  # a, the weight of MSE(kept(y), I) in the loss
  flat_std: float = 0.0  # local std at or below which the flat path takes over fully (image scale)
  textured_std: float = 0.0  # local std at or above which the DIP's output is kept; 0 = no flat path
  flat_noise: float = 3.0 / 255.0  # noise std (image scale) of the flat path's denoiser
  window_sigma: float = 4.0  # σ (px) of the local std's Gaussian window

  def __post_init__(self):
    if self.lowpass_sigma < 0 or not 0 <= self.detail_loss <= 1:
      raise ValueError(f"need lowpass_sigma >= 0 and detail_loss in [0, 1], got {self.lowpass_sigma}, "
                       f"{self.detail_loss}")
    if self.flat_path and (not 0 <= self.flat_std < self.textured_std or self.flat_noise <= 0
                           or self.window_sigma <= 0):
      raise ValueError(f"flat path: need 0 <= flat_std < textured_std, a positive noise and window, got {self}")

  @classmethod
  def from_config(cls, kept) -> "KeptImage":
    """From the `kept` group of configs/anonymize.py (stds in grey levels → the DIP's [0, 1] scale)."""
    on = bool(kept.flat_path)
    return cls(lowpass_sigma=float(kept.lowpass_sigma), detail_loss=float(kept.detail_loss),
               flat_std=float(kept.flat_std) / 255.0 if on else 0.0,
               textured_std=float(kept.textured_std) / 255.0 if on else 0.0,
               flat_noise=float(kept.flat_noise) / 255.0, window_sigma=float(kept.window_sigma))

  @property
  def flat_path(self) -> bool:
    return self.textured_std > 0

  def prepare(self, target) -> Any:
    """`FlatInputs` of one piece float32[H, W, 3] (flat path on), else ()."""
    if not self.flat_path:
      return ()
    return FlatInputs(mask=flatness_mask(target, flat_std=self.flat_std, textured_std=self.textured_std,
                                         window_sigma=self.window_sigma),
                      reconstruction=flat_reconstruction(target[None], noise=self.flat_noise)[0])

  def prepare_photo(self, photo) -> FlatInputs | tuple:
    """`prepare` of a whole photo float[H, W, 3] on the kept image's scale, as numpy `FlatInputs` (cut a tile's
    with `FlatInputs.cut`), computed in blocks of bounded size (module constants): the denoiser's working memory
    stays O(block) on photos of any size, the result is 16 bytes a pixel (~0.4 GB at 24 MP); () without the flat
    path."""
    if not self.flat_path:
      return ()
    photo = np.asarray(photo, np.float32)
    h, w = photo.shape[:2]
    rows, cols = -(-h // _BLOCK), -(-w // _BLOCK)
    pad = ((_MARGIN, rows * _BLOCK - h + _MARGIN), (_MARGIN, cols * _BLOCK - w + _MARGIN), (0, 0))
    padded = np.pad(photo, pad, mode="symmetric")
    mask = np.empty((rows * _BLOCK, cols * _BLOCK, 1), np.float32)
    recon = np.empty((rows * _BLOCK, cols * _BLOCK, 3), np.float32)
    prepare = _jitted_prepare(self)
    for i in range(rows):
      for j in range(cols):
        block = padded[i * _BLOCK:(i + 1) * _BLOCK + 2 * _MARGIN, j * _BLOCK:(j + 1) * _BLOCK + 2 * _MARGIN]
        core = FlatInputs(*(np.asarray(a) for a in prepare(block))).cut(_MARGIN, _MARGIN, _BLOCK)
        mask[i * _BLOCK:(i + 1) * _BLOCK, j * _BLOCK:(j + 1) * _BLOCK] = core.mask
        recon[i * _BLOCK:(i + 1) * _BLOCK, j * _BLOCK:(j + 1) * _BLOCK] = core.reconstruction
    return FlatInputs(mask=mask[:h, :w], reconstruction=recon[:h, :w])

  def apply(self, x, target, prepared) -> jax.Array:
    """The kept image of x float32[H, W, 3] (module docstring); x itself when every option is off."""
    x = lowpass.replace_lowpass(x, target, sigma=self.lowpass_sigma)
    if self.flat_path:
      x = x + prepared.mask * (prepared.reconstruction - x)
    return x

  def loss(self, raw_mse, y, target, prepared) -> jax.Array:
    """(1 − a)·raw_mse + a·MSE(apply(y), target); raw_mse unchanged when a = 0."""
    if self.detail_loss == 0:
      return raw_mse
    a = self.detail_loss
    return (1 - a) * raw_mse + a * jnp.mean(jnp.square(self.apply(y, target, prepared) - target))


@functools.lru_cache(maxsize=8)
def _jitted_prepare(kept: KeptImage):
  return jax.jit(kept.prepare)
