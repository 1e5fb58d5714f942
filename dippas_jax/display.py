"""How a photo file is shown: its EXIF orientation and its ICC colour profile (read from a file's header; the rest
in memory), and HEIC/HEIF files opened through the optional extra.

The PRNU work always runs on the stored pixels in the sensor's orientation (a fingerprint is in sensor
orientation). What is written back for a person must display as the input did:

- **orientation**: the output pixels are turned by the input's EXIF orientation tag (1-8, as
  `PIL.ImageOps.exif_transpose`), so the file needs no tag and no EXIF block at all (a viewer that ignores EXIF
  shows it upright too; keeping only the tag would need an EXIF block, which every writer and editor may extend
  with other metadata). `from_display` turns a written image back (lossless) for scoring against the fingerprint.
- **colour profile**: the input's ICC profile is written with the output unchanged, so a colour-managed viewer
  shows the anonymized pixels exactly as it showed the input's, and no pixel is converted. Converting to sRGB
  instead (`to_srgb`, Pillow's ImageCms) would need no profile, but rounds every pixel again and clips colours
  outside sRGB (saturated Display P3 reds and greens): measured on the test's wide-gamut image, BUILD_NOTES "Phone
  photos". A colour profile describes a colour space shared by every device of a maker, not a sensor.
"""

from __future__ import annotations

import dataclasses
import io as _io
import pathlib

import numpy as np
from PIL import Image

HEIF_EXTENSIONS = (".heic", ".heif")


class InputError(ValueError):
  """Bad user input (file, folder, size, content); the message names the file and the fix (= `io.InputError`)."""

# EXIF orientation tag -> the array operation that shows the stored pixels upright (the transpositions of
# PIL.ImageOps.exif_transpose: 6 = ROTATE_270, i.e. a quarter turn clockwise; 8 = ROTATE_90), on [H, W, ...].
_TRANSPOSE = {2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1],
              5: lambda x: np.swapaxes(x, 0, 1), 6: lambda x: np.rot90(x, -1),
              7: lambda x: np.swapaxes(x[::-1, ::-1], 0, 1), 8: lambda x: np.rot90(x, 1)}
# Its inverse (5 and 7 are their own inverses, as the flips and the half turn; 6 and 8 invert each other).
_INVERSE = {2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6}


@dataclasses.dataclass(frozen=True)
class Display:
  """How the input file is shown: orientation (EXIF tag 1-8; 1 = as stored) and icc_profile (bytes or None)."""
  orientation: int = 1
  icc_profile: bytes | None = None

  def __post_init__(self):
    if self.orientation not in range(1, 9):
      raise ValueError(f"EXIF orientation must be 1-8, got {self.orientation}")

  def describe(self) -> dict:
    """JSON-able record for report.json: the orientation applied and the profile kept (its description)."""
    return {"orientation_applied": self.orientation, "icc_profile": profile_name(self.icc_profile)}


def profile_name(icc_profile: bytes | None) -> str | None:
  """The profile's description ('Display P3', 'sRGB IEC61966-2.1', ...), '(unreadable)', or None."""
  if not icc_profile:
    return None
  from PIL import ImageCms  # pylint: disable=g-import-not-at-top
  try:
    return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(_io.BytesIO(icc_profile))).strip()
  except (OSError, ImageCms.PyCMSError):
    return "(unreadable)"


def to_display(image: np.ndarray, display: Display) -> np.ndarray:
  """[H, W, ...] stored pixels (any dtype) -> the pixels as shown (turned by the orientation; [W, H, ...] for the
  tags 5-8)."""
  turn = _TRANSPOSE.get(display.orientation)
  return np.asarray(image) if turn is None else np.ascontiguousarray(turn(np.asarray(image)))


def from_display(image: np.ndarray, display: Display) -> np.ndarray:
  """The inverse of `to_display` (back to the stored, sensor orientation; lossless)."""
  return to_display(image, Display(orientation=_INVERSE.get(display.orientation, 1)))


def to_srgb(image: np.ndarray, icc_profile: bytes | None) -> np.ndarray:
  """uint8[H, W, 3] in the colour space of `icc_profile` -> sRGB (relative colorimetric, Pillow's ImageCms); the
  image itself without a profile. What a colour-managed viewer shows, on the sRGB scale."""
  if not icc_profile:
    return np.asarray(image)
  from PIL import Image, ImageCms  # pylint: disable=g-import-not-at-top
  source = ImageCms.ImageCmsProfile(_io.BytesIO(icc_profile))
  out = ImageCms.profileToProfile(Image.fromarray(np.asarray(image)), source, ImageCms.createProfile("sRGB"),
                                  renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGB")
  return np.asarray(out)


def _from_header(path, read):
  """read(opened image, path) on the file's header (no pixels decoded); InputError on an unreadable file."""
  path = pathlib.Path(path)
  try:
    with open_image(path) as im:
      return read(im, path)
  except InputError:
    raise
  except Exception as e:  # Pillow raises many types on a bad file.
    raise InputError(f"{path}: cannot read the image header ({type(e).__name__}: {e})") from None


def _display_of(im, path: pathlib.Path) -> Display:
  tag = im.getexif().get(0x0112, 1) if path.suffix.lower() not in HEIF_EXTENSIONS else 1
  return Display(orientation=tag if tag in range(1, 9) else 1, icc_profile=im.info.get("icc_profile") or None)


def read_display(path) -> Display:
  """How a viewer shows the image file: its EXIF orientation (1 when absent or invalid, and for HEIC, whose
  decoder applies it) and its ICC profile. Raises InputError on an unreadable file."""
  return _from_header(path, _display_of)


def image_size(path) -> tuple[int, int]:
  """(H, W) of an image file from its header, without decoding the pixels. Raises InputError."""
  return _from_header(path, lambda im, _: (im.size[1], im.size[0]))


def open_image(path: pathlib.Path):
  """Image.open, with HEIC/HEIF support from the optional extra (a one-line InputError without it)."""
  if path.suffix.lower() in HEIF_EXTENSIONS:
    try:
      import pillow_heif  # pylint: disable=g-import-not-at-top
    except ImportError:
      raise InputError(f"{path}: reading HEIC/HEIF needs the optional extra: pip install -e '.[heif]' (pillow-heif)"
                       ) from None
    pillow_heif.register_heif_opener()
  return Image.open(path)
