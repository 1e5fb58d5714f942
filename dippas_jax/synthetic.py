"""Synthetic camera: deterministic scenes and sensors with a known multiplicative PRNU.

The ground truth for tests and the demo when no real photos are at hand. A device d has a fingerprint
`K_d ~ prnu_std · N(0, 1)` (float32[H, W], the same for the 3 colour channels). A photo of a scene
`Y ∈ [0, 255]` is

    I = quantise( Y ⊙ (1 + K_d) + shot noise N(0, shot_gain · Y) + read noise N(0, read_noise²) )

optionally JPEG-compressed (Pillow) and optionally over-exposed so that some pixels saturate at 255. The scenes
Y are generated textures (`natural_scene`) or, with `scenes='photos'`, crops of the natural photos that ship with
scikit-image (`photo_scene`: astronaut, coffee, chelsea, rocket, motorcycle), which a person can judge.
Everything is a pure function of `seed` (numpy `SeedSequence` streams per device and per photo), so a dataset
is reproduced bit for bit by its arguments.
"""

from __future__ import annotations

import dataclasses
import io as _io

import numpy as np
from PIL import Image


@dataclasses.dataclass(frozen=True)
class SyntheticDataset:
  """A synthetic camera set.

  Attributes:
    prnu: float32[D, H, W], the true fingerprint K of each device.
    flatfield: uint8[D, F, H, W, 3], flat-field photos of each device.
    natural: uint8[D·Q, H, W, 3], natural-scene photos, device-major.
    natural_device: int32[D·Q], the device index of each natural photo.
    devices: device names, `synthetic_<d>`.
  """
  prnu: np.ndarray
  flatfield: np.ndarray
  natural: np.ndarray
  natural_device: np.ndarray
  devices: tuple[str, ...]


def _rng(seed: int, *stream: int) -> np.random.Generator:
  return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=tuple(stream)))


def device_prnu(seed: int, device: int, *, height: int, width: int, prnu_std: float = 0.02) -> np.ndarray:
  """The true fingerprint `float32[H, W]` (zero-mean Gaussian, std `prnu_std`) of device `device`."""
  return (prnu_std * _rng(seed, 0, device).standard_normal((height, width))).astype(np.float32)


def _smooth_field(rng, height, width, channels, cells) -> np.ndarray:
  """Random field in [0, 1] made by bicubic up-sampling of a `cells × cells` random grid."""
  out = np.empty((height, width, channels), np.float32)
  for c in range(channels):
    grid = rng.random((cells, cells)).astype(np.float32)
    out[..., c] = np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.BICUBIC))
  return np.clip(out, 0.0, 1.0)


def natural_scene(rng: np.random.Generator, *, height: int, width: int) -> np.ndarray:
  """A textured scene `float32[H, W, 3]` in [0, 255]: smooth shading, objects with edges, fine texture."""
  scene = 40.0 + 160.0 * _smooth_field(rng, height, width, 3, 4)
  scene += 40.0 * (_smooth_field(rng, height, width, 3, max(4, height // 8)) - 0.5)
  yy, xx = np.mgrid[:height, :width]
  for _ in range(6):  # Objects: ellipses and rectangles with a flat colour offset, i.e. sharp edges.
    cy, cx = rng.random(2) * (height, width)
    ry, rx = (0.05 + 0.2 * rng.random(2)) * (height, width)
    if rng.random() < 0.5:
      mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1.0
    else:
      mask = (np.abs(yy - cy) < ry) & (np.abs(xx - cx) < rx)
    scene[mask] += rng.uniform(-60, 60, size=3).astype(np.float32)
  scene += 6.0 * rng.standard_normal((height, width, 1)).astype(np.float32)  # Fine scene texture.
  return np.clip(scene, 5.0, 250.0).astype(np.float32)


SAMPLE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")


def _sample_photo(name: str) -> np.ndarray:
  from skimage import data  # pylint: disable=g-import-not-at-top  (a dependency of the evaluation's edges)
  return data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()


def photo_scene(rng: np.random.Generator, index: int, *, height: int, width: int) -> np.ndarray:
  """A scene `float32[H, W, 3]` in [0, 255] from scikit-image's sample photo `SAMPLE_PHOTOS[index % 5]`: a random
  crop of it (resized up first when the photo is smaller than H×W)."""
  photo = _sample_photo(SAMPLE_PHOTOS[index % len(SAMPLE_PHOTOS)])
  h, w = photo.shape[:2]
  scale = max(height / h, width / w, 1.0)
  if scale > 1.0:
    size = (int(np.ceil(w * scale)), int(np.ceil(h * scale)))
    photo = np.asarray(Image.fromarray(photo).resize(size, Image.BICUBIC))
    h, w = photo.shape[:2]
  top, left = int(rng.integers(0, h - height + 1)), int(rng.integers(0, w - width + 1))
  return photo[top:top + height, left:left + width].astype(np.float32)


def flat_scene(rng: np.random.Generator, *, height: int, width: int, brightness: float = 170.0) -> np.ndarray:
  """A flat-field scene `float32[H, W, 3]`: uniform grey with a mild vignetting gradient."""
  yy, xx = np.mgrid[:height, :width].astype(np.float32)
  r2 = ((yy - height / 2) / height) ** 2 + ((xx - width / 2) / width) ** 2
  tint = 1.0 + 0.03 * rng.standard_normal(3).astype(np.float32)
  return (brightness * (1.0 - 0.3 * r2)[..., None] * tint).astype(np.float32)


def capture(rng: np.random.Generator, scene: np.ndarray, prnu: np.ndarray, *, shot_gain: float = 0.3,
            read_noise: float = 1.0, exposure: float = 1.0, jpeg_quality: int | None = None) -> np.ndarray:
  """Photographs `scene` with a sensor of fingerprint `prnu`.

  Args:
    rng: the photo's random stream.
    scene: float32[H, W, 3] in [0, 255].
    prnu: float32[H, W], the multiplicative fingerprint K.
    shot_gain: shot-noise variance per grey level of signal.
    read_noise: read-noise std in grey levels.
    exposure: multiplies the scene before the sensor; > 1 saturates bright pixels at 255.
    jpeg_quality: if set, the photo is JPEG-compressed at this quality (4:2:0 chroma sub-sampling).

  Returns:
    uint8[H, W, 3].
  """
  signal = exposure * scene * (1.0 + prnu[..., None])
  noise = np.sqrt(shot_gain * np.maximum(signal, 0.0)) * rng.standard_normal(scene.shape)
  noise += read_noise * rng.standard_normal(scene.shape)
  photo = np.clip(np.round(signal + noise), 0, 255).astype(np.uint8)
  if jpeg_quality is not None:
    buf = _io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=int(jpeg_quality))
    photo = np.asarray(Image.open(buf).convert("RGB"))
  return photo


def make_dataset(*, seed: int = 0, num_devices: int = 3, num_flatfield: int = 10, num_natural: int = 4,
                 height: int = 128, width: int = 128, prnu_std: float = 0.02, flat_brightness: float = 170.0,
                 jpeg_quality: int | None = None, exposure: float = 1.0, scenes: str = "textures",
                 shot_gain: float = 0.3, read_noise: float = 1.0) -> SyntheticDataset:
  """Builds a deterministic multi-device dataset (see `SyntheticDataset`); `scenes`: 'textures'
  (`natural_scene`) or 'photos' (`photo_scene`, photo i of device d from sample photo d·num_natural + i)."""
  if scenes not in ("textures", "photos"):
    raise ValueError(f"scenes must be 'textures' or 'photos', got {scenes!r}")
  if min(height, width) < 8 or num_devices < 1:
    raise ValueError(f"need height, width ≥ 8 and ≥ 1 device, got {height}×{width}, {num_devices} devices")
  prnu = np.stack([device_prnu(seed, d, height=height, width=width, prnu_std=prnu_std)
                   for d in range(num_devices)])
  kw = dict(jpeg_quality=jpeg_quality, exposure=exposure, shot_gain=shot_gain, read_noise=read_noise)
  flat = np.stack([np.stack([capture(r, flat_scene(r, height=height, width=width, brightness=flat_brightness),
                                     prnu[d], **kw)
                             for r in (_rng(seed, 1, d, i) for i in range(num_flatfield))])
                   for d in range(num_devices)]) if num_flatfield else np.zeros(
                       (num_devices, 0, height, width, 3), np.uint8)
  natural, labels = [], []
  for d in range(num_devices):
    for i in range(num_natural):
      r = _rng(seed, 2, d, i)
      scene = (photo_scene(r, d * num_natural + i, height=height, width=width) if scenes == "photos"
               else natural_scene(r, height=height, width=width))
      natural.append(capture(r, scene, prnu[d], **kw))
      labels.append(d)
  natural = np.stack(natural) if natural else np.zeros((0, height, width, 3), np.uint8)
  return SyntheticDataset(prnu=prnu, flatfield=flat, natural=natural,
                          natural_device=np.asarray(labels, np.int32),
                          devices=tuple(f"synthetic_{d}" for d in range(num_devices)))
