"""Stronger adversaries of an anonymizer (issue 21): PCE attribution, an attacker's own fingerprint, re-compression
and resizing. Arrays in, arrays out; the evaluation job writes and reads the files.

- **PCE** (`attribution_scores`): the Binghamton camera-identification statistic, as the example of their
  Camera Fingerprint toolbox computes it ("the optimal detector" of the large-scale test below): the circular
  cross-correlation of the residual W(J) with gray(J) ⊙ K (`crosscorr(Noisex, Ix .* Fingerprint)`; its NCC is
  DIPPAS Eq. 2), then `prnu.metrics.pce` in the 'standard' mode: the peak searched over the shifts within
  `shift_range` of zero lag (0, the default = the toolbox's `PCE(C, shift_range=[0 0], squaresize=11)`: the
  aligned peak of an uncropped photo; −1 = every circular shift, as prnu-python's `pce`), the (2r+1)²
  neighbourhood of the peak left out of the energy (r = 5: the toolbox's 11 × 11 `squaresize`).
  `PCE_THRESHOLD` = 60 is the decision threshold of Goljan, Fridrich & Filler, "Large scale test of sensor
  fingerprint camera identification", Proc. SPIE 7254 (2009), used by the Binghamton tools ever since.
- **Attacker's fingerprint** (`split_alternate`): each device's flat-fields, sorted by file name, are split into
  two disjoint halves by alternation: positions 0, 2, 4, … estimate the fingerprint the anonymizer is given,
  positions 1, 3, 5, … the attacker's, so the two estimates share no image (and, flat-fields being shot in a
  series, both halves span the series).
- **Re-compression** (`jpeg_bytes`): Pillow JPEG at a quality (its default 4:2:0 chroma sub-sampling, no
  metadata), as a photo is shared.
- **Resizing** (`resize_images`, `resize_fingerprints`): Pillow bicubic (antialiased when shrinking) of the
  photo to `scale` × its size, and the same filter on the fingerprint (float mode), so the attacker scores the
  resized photo with a fingerprint resized alike (Goljan & Fridrich, "Camera identification from cropped and
  scaled images", 2008, resample the fingerprint to the query's scale).
"""

from __future__ import annotations

import functools
import io as _io
from typing import Sequence, TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from dippas_jax import batching
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics

PCE_THRESHOLD = 60.0
PCE_RADIUS = 5
T = TypeVar("T")


def split_alternate(files: Sequence[T]) -> tuple[list[T], list[T]]:
  """(anonymizer's, attacker's) halves of one device's flat-fields: sorted, then positions 0, 2, … and 1, 3, ….

  Raises:
    ValueError: fewer than 2 files, or a file listed twice (the halves would share it).
  """
  ordered = sorted(files, key=str)
  if len(ordered) < 2:
    raise ValueError(f"the split needs at least 2 flat-fields per device, got {len(ordered)}")
  if len(set(map(str, ordered))) != len(ordered):
    raise ValueError("a flat-field is listed twice; the two halves must not share an image")
  return ordered[0::2], ordered[1::2]


@functools.partial(jax.jit, static_argnames=("radius", "shift_range", "with_pce"))
def _scores_batch(w, images, fingerprints, *, radius, shift_range, with_pce):
  """Eq. 2 NCC and PCE float32[M, B] of residuals w [B, H, W] / images [B, H, W, 3] against fingerprints
  [M, H, W]."""
  ncc = metrics.ncc_eq2(w[None], images[None], fingerprints[:, None])         # [M, B]
  if not with_pce:
    return ncc, jnp.zeros_like(ncc)
  expected = denoise.rgb2gray(images)[None] * fingerprints[:, None]          # [M, B, H, W]
  xcorr = metrics.crosscorr_2d(expected, jnp.broadcast_to(w[None], expected.shape))
  return ncc, metrics.pce(xcorr, neigh_radius=radius, mode="standard", shift_range=shift_range).pce


def attribution_scores(images, fingerprints, *, sigma: float = 3.0, pce: bool = True, radius: int = PCE_RADIUS,
                       shift_range: int = 0, batch_size: int = 8) -> dict[str, np.ndarray]:
  """Eq. 2 NCC and (optionally) PCE of every image against every fingerprint, from one residual per image.

  Args:
    images: uint8 or float[N, H, W, 3] in [0, 255].
    fingerprints: float[M, H, W].
    sigma: residual denoiser σ (grey levels).
    pce: also compute the PCE (module docstring).
    radius: PCE exclusion radius r of the (2r+1)² neighbourhood.
    shift_range: PCE peak search range in pixels of shift (0: the aligned value; −1: every circular shift).
    batch_size: images per jitted call (the last batch padded by repeating the last image).

  Returns:
    {'ncc': float32[M, N]} and, with `pce`, 'pce': float32[M, N].
  """
  x = np.asarray(images)
  k = jnp.asarray(fingerprints, jnp.float32)
  if x.ndim != 4 or x.shape[-1] != 3 or k.ndim != 3 or k.shape[1:] != x.shape[1:3]:
    raise ValueError(f"images must be [N, H, W, 3] and fingerprints [M, H, W] of the same H, W; got {x.shape} "
                     f"and {k.shape}")
  shift = None if shift_range < 0 else int(shift_range)
  cols = {"ncc": [], "pce": []}
  for start in range(0, len(x), batch_size):
    chunk = batching.pad_batch(np.asarray(x[start:start + batch_size], np.float32), batch_size, fill="last")
    n = min(batch_size, len(x) - start)
    # The residual is its own (shared, per-shape) compilation, as in `protocol.score_matrix`.
    w = denoise.extract_residual(jnp.asarray(chunk), sigma=float(sigma))
    ncc, p = _scores_batch(w, jnp.asarray(chunk), k, radius=int(radius), shift_range=shift, with_pce=bool(pce))
    cols["ncc"].append(np.asarray(ncc)[:, :n])
    cols["pce"].append(np.asarray(p)[:, :n])
  out = {name: (np.concatenate(v, axis=1) if v else np.zeros((len(k), 0), np.float32)) for name, v in cols.items()}
  return out if pce else {"ncc": out["ncc"]}


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
  """The JPEG file (Pillow, `quality` 1..95+, default 4:2:0 sub-sampling, no metadata) of uint8[H, W, 3]."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f"jpeg_bytes expects uint8[H, W, 3], got {image.dtype} {image.shape}")
  if not 1 <= int(quality) <= 100:
    raise ValueError(f"JPEG quality must be in 1..100, got {quality}")
  buf = _io.BytesIO()
  Image.fromarray(image).save(buf, format="JPEG", quality=int(quality))
  return buf.getvalue()


def resized_shape(height: int, width: int, scale: float) -> tuple[int, int]:
  """(round(scale·H), round(scale·W)), at least 8 × 8."""
  if not 0 < scale <= 1:
    raise ValueError(f"resize scale must be in (0, 1], got {scale}")
  h, w = round(scale * height), round(scale * width)
  if min(h, w) < 8:
    raise ValueError(f"resize scale {scale} makes the {height}×{width} crop smaller than 8×8")
  return h, w


def resize_images(images: np.ndarray, scale: float) -> np.ndarray:
  """uint8[N, h, w, 3]: each uint8[N, H, W, 3] photo resized by Pillow bicubic to `resized_shape`."""
  images = np.asarray(images)
  h, w = resized_shape(images.shape[1], images.shape[2], scale)
  return np.stack([np.asarray(Image.fromarray(np.asarray(im, np.uint8)).resize((w, h), Image.BICUBIC))
                   for im in images]) if len(images) else np.zeros((0, h, w, 3), np.uint8)


def resize_fingerprints(fingerprints: np.ndarray, scale: float) -> np.ndarray:
  """float32[M, h, w]: each fingerprint float[M, H, W] resized alike (Pillow bicubic, float mode 'F')."""
  k = np.asarray(fingerprints, np.float32)
  h, w = resized_shape(k.shape[1], k.shape[2], scale)
  return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(plane)).resize((w, h), Image.BICUBIC),
                              np.float32) for plane in k])
