"""File boundary: images, fingerprints, manifests and atomic writes.

Only this module (and the apps) touch files. Every reader validates what it returns and raises `InputError`
(a `ValueError`) whose message starts with the offending path and says what is wrong and what to do, so the
command-line apps can print it and exit non-zero instead of showing a traceback from deep inside JAX.

Conventions: images are returned in image orientation (row = y), NHWC without the N, EXIF orientation is
never applied (it would misalign images with fingerprints; `display.read_display` tells how a file is shown, and
the writers' `display` makes an output show the same way). 8-bit files give `uint8[H, W, 3]`; 16-bit files give
`float32[H, W, 3]` in [0, 255] (value / 257), the grey-level scale of the PRNU core.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import glob as globlib
import json
import math
import os
import pathlib
import sys
import warnings
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from dippas_jax import display as display_lib

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff") + display_lib.HEIF_EXTENSIONS
FINGERPRINT_EXTENSIONS = (".npz", ".npy", ".mat")


InputError = display_lib.InputError  # bad user input (file, folder, size, content); names the file and the fix


PARTIAL_SUFFIX = ".partial"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields a temporary path beside `path` (`.<name>.<pid>.partial`); renames it onto `path` only if the block
  succeeds. A crash never leaves a half-written file under the final name; what a killed process leaves is a
  hidden `.partial` file that `remove_partials` clears."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}"
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()


def remove_partials(folder: str | os.PathLike) -> int:
  """Deletes the `.partial` files left in `folder` by killed writers; returns how many."""
  folder = pathlib.Path(folder)
  stale = list(folder.glob(f".*{PARTIAL_SUFFIX}")) if folder.is_dir() else []
  for f in stale:
    f.unlink(missing_ok=True)
  return len(stale)


def json_safe(obj: Any) -> Any:
  """A copy of `obj` that strict JSON accepts: NaN → None, ±inf → 'inf'/'-inf'; numpy scalars and arrays,
  tuples, paths and dataclasses converted."""
  if isinstance(obj, dict):
    return {str(k): json_safe(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [json_safe(v) for v in obj]
  if isinstance(obj, np.ndarray):
    return json_safe(obj.tolist())
  if isinstance(obj, np.generic):
    obj = obj.item()
  if isinstance(obj, float):
    if math.isnan(obj):
      return None
    if math.isinf(obj):
      return "inf" if obj > 0 else "-inf"
  if isinstance(obj, pathlib.Path):
    return str(obj)
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return json_safe(dataclasses.asdict(obj))
  return obj


def to_json(obj: Any, **kwargs) -> str:
  """Strict JSON text of `obj` (`json_safe` first; `allow_nan=False` guarantees no NaN/Infinity tokens)."""
  return json.dumps(json_safe(obj), allow_nan=False, **kwargs)


def write_json(path, obj: Any) -> None:
  """Atomically writes `obj` as indented strict JSON (NaN → null, ±inf → "inf"/"-inf")."""
  with atomic_path(path) as tmp:
    tmp.write_text(to_json(obj, indent=2) + "\n")


def write_csv(path, rows: Sequence[dict], fieldnames: Sequence[str] | None = None) -> None:
  """Atomically writes a list of dicts as CSV."""
  fieldnames = list(fieldnames or (rows[0].keys() if rows else []))
  with atomic_path(path) as tmp:
    with open(tmp, "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=fieldnames)
      writer.writeheader()
      writer.writerows(rows)


def write_png(path, image: np.ndarray, *, display: display_lib.Display | None = None) -> None:
  """Atomically writes `uint8[H, W, 3]` (RGB) or `uint8[H, W]` (grey) as a PNG, pixels only, no EXIF; `display`
  (the input's): turned by its orientation, with its colour profile, so the file shows as the input did."""
  _write_pixels(path, image, "PNG", display, pnginfo=None)


def write_jpeg(path, image: np.ndarray, *, quality: int, display: display_lib.Display | None = None) -> None:
  """As `write_png`, as a baseline JPEG (Pillow, `quality` 1-95, its default chroma subsampling)."""
  if not 1 <= int(quality) <= 95:
    raise ValueError(f"JPEG quality must be in [1, 95] (Pillow's useful range), got {quality}")
  _write_pixels(path, image, "JPEG", display, quality=int(quality))


def _write_pixels(path, image: np.ndarray, fmt: str, display: display_lib.Display | None, **options) -> None:
  image = np.asarray(image)
  if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] == 3)):
    raise ValueError(f"writing a {fmt} expects uint8[H, W, 3] or uint8[H, W], got {image.dtype}{list(image.shape)}")
  display = display or display_lib.Display()
  image = display_lib.to_display(image, display)
  with atomic_path(path) as tmp:
    Image.fromarray(image, mode="L" if image.ndim == 2 else "RGB").save(
        tmp, format=fmt, icc_profile=display.icc_profile, exif=b"", **options)


# ------------------------------------------------------------------------------------------------------ images
def read_image(path: str | os.PathLike) -> np.ndarray:
  """Reads an RGB photo.

  Args:
    path: a JPEG, PNG, TIFF (8 or 16 bit) or HEIC/HEIF (optional extra `heif`) file.

  Returns:
    `uint8[H, W, 3]` for 8-bit files, `float32[H, W, 3]` in [0, 255] for 16-bit files. Grey files are
    replicated to 3 channels and fully opaque RGBA files lose their alpha channel (both with a warning);
    translucent RGBA, palettes with alpha, CMYK and other modes are errors.

  Raises:
    InputError: missing, unreadable, corrupt or truncated file, or an unsupported colour mode.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(f"{path}: no such file")
  suffix = path.suffix.lower()
  if suffix not in IMAGE_EXTENSIONS:
    raise InputError(f"{path}: unsupported extension {suffix!r}; expected one of {', '.join(IMAGE_EXTENSIONS)}")
  try:
    if suffix in (".tif", ".tiff"):
      array = _read_tiff(path)
    else:
      with display_lib.open_image(path) as im:
        im.load()  # Decodes now, so a truncated or corrupt file fails here.
        array = _pil_to_array(im, path)
  except InputError:
    raise
  except Exception as e:  # Pillow/tifffile raise many types (OSError, SyntaxError, ValueError, ...).
    raise InputError(f"{path}: cannot decode image ({type(e).__name__}: {e}); the file is corrupt, truncated "
                     "or not an image") from None
  return _to_rgb(array, path)


def _pil_to_array(im: Image.Image, path) -> np.ndarray:
  if im.mode in ("RGB", "L", "RGBA", "LA"):
    return np.asarray(im)
  if im.mode in ("I;16", "I;16B", "I;16L", "I"):
    return np.asarray(im).astype(np.uint16)
  if im.mode == "P" and "transparency" not in im.info:
    return np.asarray(im.convert("RGB"))
  raise InputError(f"{path}: unsupported colour mode {im.mode!r}; save the photo as 8-bit RGB")


def _read_tiff(path) -> np.ndarray:
  import tifffile  # Imported lazily: only TIFF input needs it.
  array = tifffile.imread(path)
  if array.dtype not in (np.uint8, np.uint16):
    raise InputError(f"{path}: unsupported TIFF sample type {array.dtype}; expected 8 or 16 bit unsigned")
  if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
    array = np.moveaxis(array, 0, -1)  # Planar (C, H, W) storage.
  return array


def _to_rgb(array: np.ndarray, path) -> np.ndarray:
  if array.ndim == 2:
    warnings.warn(f"{path}: grey image replicated to 3 identical channels")
    array = np.repeat(array[..., None], 3, axis=-1)
  if array.ndim != 3 or array.shape[-1] not in (2, 3, 4):
    raise InputError(f"{path}: expected an RGB image, got an array of shape {array.shape}")
  if array.shape[-1] in (2, 4):
    alpha = array[..., -1]
    if alpha.min() != np.iinfo(array.dtype).max:
      raise InputError(f"{path}: image has transparent pixels (alpha channel); flatten it to RGB first")
    warnings.warn(f"{path}: fully opaque alpha channel dropped")
    array = array[..., :-1]
    if array.shape[-1] == 1:
      array = np.repeat(array, 3, axis=-1)
  if array.dtype == np.uint16:
    return (array.astype(np.float32) / np.float32(257.0))
  if array.dtype != np.uint8:
    raise InputError(f"{path}: unsupported sample type {array.dtype}")
  return np.ascontiguousarray(array)


def center_crop(image: np.ndarray, height: int, width: int, *, name: str = "image") -> np.ndarray:
  """Central `height × width` crop exactly as prnu-python `cut_ctr` (start = (size − target) // 2).

  Args:
    image: `[H, W, ...]` array.
    height, width: target size; must not exceed the image size.
    name: used in the error message (the file name).

  Raises:
    InputError: the image is smaller than the crop.
  """
  h, w = image.shape[:2]
  if height > h or width > w:
    raise InputError(f"{name}: image is {h}×{w}, smaller than the {height}×{width} crop; "
                     "use a smaller crop (config field `crop`) or a larger image")
  top, left = (h - height) // 2, (w - width) // 2
  return image[top:top + height, left:left + width]


def load_images(paths: Sequence[str | os.PathLike], *, crop: tuple[int, int] | None) -> np.ndarray:
  """Reads and centre-crops images into one stacked array `[N, h, w, 3]` (uint8 or float32 in [0, 255])."""
  images = []
  for p in paths:
    im = read_image(p)
    if crop is not None:
      im = center_crop(im, *crop, name=str(p))
    elif images and im.shape != images[0].shape:
      raise InputError(f"{p}: size {im.shape[:2]} differs from {images[0].shape[:2]} of {paths[0]}; "
                       "set a centre crop (config field `crop`)")
    images.append(im)
  if not images:
    raise InputError("no images given")
  if len({im.dtype for im in images}) > 1:
    images = [im.astype(np.float32) for im in images]
  return np.stack(images)


def read_usable_images(records: Sequence["ImageRecord"], *, crop: tuple[int, int] | None,
                       convert: Callable[[np.ndarray], np.ndarray] = lambda im: im, spec: str = "images",
                       ) -> tuple[list[np.ndarray], list["ImageRecord"], list[str]]:
  """Reads and centre-crops `records`, skipping (with a line on stderr) the unreadable ones, the too small ones and,
  without a crop, those whose size differs from the first usable one. A progress bar is shown on stderr.

  Returns (images, their records, skip messages); each image is `convert(read_image(path))`, cropped.
  Raises:
    InputError: no image could be used (`spec` names the input in the message).
  """
  images, kept, skipped = [], [], []
  for r in tqdm(records, desc="read images", unit="img", file=sys.stderr):
    try:
      im = convert(read_image(r.path))
      im = center_crop(im, *crop, name=str(r.path)) if crop else im
      if images and im.shape != images[0].shape:
        raise InputError(f"{r.path}: size {im.shape[:2]} differs from the other images; set a crop")
    except InputError as e:
      print(f"skipped: {e}", file=sys.stderr)
      skipped.append(str(e))
      continue
    images.append(im)
    kept.append(r)
  if not images:
    raise InputError(f"{spec}: none of the {len(records)} images could be used")
  return images, kept, skipped


# ------------------------------------------------------------------------------------------- listing / manifest
@dataclasses.dataclass(frozen=True)
class ImageRecord:
  """One image of a dataset: its path, device label ('' if unknown) and kind ('flatfield', 'natural', ...)."""
  path: pathlib.Path
  device: str = ""
  kind: str = ""


def device_of(path: str | os.PathLike) -> str:
  """Device id from a Dresden-style file name: the stem up to its last underscore (`Nikon_D70_0_19445`)."""
  stem = pathlib.Path(path).stem
  return stem.rsplit("_", 1)[0] if "_" in stem else stem


def resolve_spec(spec: str, extensions: Sequence[str], *, what: str = "images") -> list[pathlib.Path]:
  """The files of a user's specification: a comma-separated list of folders (their files with `extensions`,
  sorted; not their subfolders), glob patterns (sorted matches with `extensions`; `**` matches any depth:
  `photos/**/*.jpg`) and files. Every part must name something: a missing
  file or folder, or a pattern or folder without a matching file, is an InputError naming that part."""
  paths: list[pathlib.Path] = []
  parts = [s.strip() for s in spec.split(",") if s.strip()]
  if not parts:
    raise InputError(f"no {what} given (empty specification)")
  for part in parts:
    p = pathlib.Path(part)
    if p.is_dir():
      found = [f for f in sorted(p.iterdir()) if f.suffix.lower() in extensions]
    elif p.is_file():
      found = [p]
    elif globlib.has_magic(part):
      found = [pathlib.Path(f) for f in sorted(globlib.glob(part, recursive=True))
               if pathlib.Path(f).suffix.lower() in extensions]
    else:
      raise InputError(f"{part}: no such file or folder")
    if not found:
      raise InputError(f"{part}: no {what} there (extensions {', '.join(extensions)})")
    paths += found
  return paths


def list_images(spec: str, *, kind: str | None = None, device: str | None = None) -> list[ImageRecord]:
  """Resolves a user's image specification to records.

  Args:
    spec: a folder (its image files, sorted), a glob pattern, a single image file, a comma-separated list of
      those (`resolve_spec`), or a `manifest.csv` with columns file, device, kind (paths relative to the
      manifest).
    kind: keep only manifest rows of this kind (e.g. 'flatfield').
    device: keep only records of this device.

  Raises:
    InputError: a part of the spec names nothing, nothing matches, or the manifest is malformed.
  """
  records: list[ImageRecord] = []
  for part in [s.strip() for s in spec.split(",") if s.strip()]:
    if pathlib.Path(part).suffix.lower() == ".csv":
      records += read_manifest(part)
    else:
      records += [ImageRecord(f, device_of(f)) for f in resolve_spec(part, IMAGE_EXTENSIONS)]
  if kind is not None:
    records = [r for r in records if not r.kind or r.kind == kind]
  if device is not None:
    records = [r for r in records if r.device == device]
  if not records:
    what = f" of kind {kind!r}" if kind else ""
    what += f" of device {device!r}" if device else ""
    raise InputError(f"{spec}: no images{what} found (expected a folder, glob, image file or manifest.csv; "
                     f"image extensions {', '.join(IMAGE_EXTENSIONS)})")
  return records


def read_manifest(path: str | os.PathLike) -> list[ImageRecord]:
  """Reads a `manifest.csv` (columns file, device, kind; other columns ignored)."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(f"{path}: no such manifest")
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    missing = {"file", "device"} - set(reader.fieldnames or ())
    if missing:
      raise InputError(f"{path}: manifest lacks column(s) {sorted(missing)}; expected file, device[, kind]")
    records = [ImageRecord(path.parent / row["file"], row["device"], row.get("kind", "") or "") for row in reader]
  missing = [str(r.path) for r in records if not r.path.is_file()]
  if missing:
    raise InputError(f"{path}: {len(missing)} listed file(s) missing: {', '.join(missing[:5])}"
                     + (" ..." if len(missing) > 5 else ""))
  return records


# ------------------------------------------------------------------------------------------------ fingerprints
def load_fingerprint(path: str | os.PathLike, *, key: str | None = None) -> tuple[np.ndarray, dict]:
  """Reads a fingerprint `float32[H, W]` and its metadata (our .npz files' JSON; empty for .npy and .mat files,
  whose device is not known: callers name it, e.g. `attribution.fingerprint_name`).

  Formats: our `.npz` (array `fingerprint` + JSON `metadata`), `.npy` (prnu-python / DIPPAS `prnu.npy`;
  never unpickled) and MATLAB `.mat` (Binghamton toolbox; the variable `key`, else the only 2-D numeric one).

  Raises:
    InputError: unreadable file, not a 2-D array, or non-finite values.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise InputError(f"{path}: no such fingerprint file")
  suffix = path.suffix.lower()
  meta: dict = {}
  try:
    if suffix == ".npz":
      with np.load(path, allow_pickle=False) as z:
        if "fingerprint" not in z:
          raise InputError(f"{path}: no array named 'fingerprint' (arrays: {sorted(z.files)})")
        k = z["fingerprint"]
        if "metadata" in z:
          meta = json.loads(str(z["metadata"]))
    elif suffix == ".npy":
      k = np.load(path, allow_pickle=False)
    elif suffix == ".mat":
      k = _load_mat(path, key)
    else:
      raise InputError(f"{path}: unsupported fingerprint format {suffix!r}; expected .npz, .npy or .mat")
  except InputError:
    raise
  except Exception as e:
    raise InputError(f"{path}: cannot read fingerprint ({type(e).__name__}: {e})") from None
  k = np.asarray(k)
  if k.ndim == 3 and k.shape[-1] == 1:
    k = k[..., 0]
  if k.ndim != 2 or not np.issubdtype(k.dtype, np.number):
    raise InputError(f"{path}: a fingerprint must be a 2-D numeric array, got {k.dtype}{list(k.shape)}")
  k = k.astype(np.float32)
  if not np.all(np.isfinite(k)):
    raise InputError(f"{path}: fingerprint contains {int(np.sum(~np.isfinite(k)))} NaN/inf values")
  return k, meta


def _load_mat(path, key):
  from scipy import io as sio  # Imported lazily: only .mat input needs scipy.
  try:
    data = sio.loadmat(path)
  except NotImplementedError:
    raise InputError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; save with -v7") from None
  arrays = {k: v for k, v in data.items() if not k.startswith("__") and isinstance(v, np.ndarray)
            and np.issubdtype(v.dtype, np.number) and v.squeeze().ndim == 2}
  if key is not None:
    if key not in arrays:
      raise InputError(f"{path}: no 2-D variable {key!r} (2-D variables: {sorted(arrays)})")
    return arrays[key]
  if len(arrays) != 1:
    raise InputError(f"{path}: found 2-D variables {sorted(arrays)}; name the fingerprint with key=")
  return next(iter(arrays.values())).squeeze()


def save_fingerprint(path: str | os.PathLike, fingerprint: np.ndarray, *, metadata: dict) -> None:
  """Atomically writes `float32[H, W]` and JSON metadata as our `.npz` (no pickles)."""
  k = np.asarray(fingerprint, dtype=np.float32)
  if k.ndim != 2:
    raise ValueError(f"fingerprint must be 2-D, got shape {k.shape}")
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      np.savez(f, fingerprint=k, metadata=np.asarray(to_json(metadata)))


def check_fingerprint(k: np.ndarray, shape: tuple[int, int], *, name: str) -> None:
  """Raises InputError when `k` is not a finite `[H, W]` array of the given shape."""
  if tuple(k.shape) != tuple(shape):
    raise InputError(f"{name}: fingerprint is {k.shape[0]}×{k.shape[1]} but the images are "
                     f"{shape[0]}×{shape[1]}; use the same centre crop for both")
  if not np.all(np.isfinite(k)):
    raise InputError(f"{name}: fingerprint contains NaN/inf values")
