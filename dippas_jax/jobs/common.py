"""What the file-level jobs share: config helpers, progress bars, photo names and ids, the input-error boundary.

Every job reads its inputs through `dippas_jax.io`, calls the library, writes atomically and returns a summary
dict; `exit_code(summary)` maps it to the commands' exit code (0 all done, 1 some photos skipped or below the
quality target: listed in the summary).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import pathlib
import sys
from typing import Iterator, Sequence

from tqdm import tqdm

from dippas_jax import io

EXIT_OK, EXIT_INCOMPLETE = 0, 1


def crop_of(config) -> tuple[int, int] | None:
  """The config's centre crop (rows, cols), None for (0, 0) = uncropped; InputError for anything else that is
  not two positive sizes."""
  crop = tuple(int(c) for c in config.crop)
  if crop == (0, 0):
    return None
  if len(crop) != 2 or min(crop) < 1:
    raise io.InputError(f"config field crop must be two positive sizes (rows, cols) or (0, 0), got {crop}")
  return crop


def config_dict(config) -> dict:
  """A plain dict of an ml_collections config (or a dict)."""
  return config.to_dict() if hasattr(config, "to_dict") else dict(config)


def progress(total: int | None, desc: str, unit: str = "img") -> tqdm:
  """A progress bar on stderr."""
  return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True)


@contextlib.contextmanager
def user_input(what: str = "") -> Iterator[None]:
  """Turns the library's ValueErrors raised while checking the user's settings or files into `io.InputError`
  (one line and exit code 2 in the commands). Use it around validation only, never around computation: a
  ValueError there is a bug and must show its traceback."""
  try:
    yield
  except io.InputError:
    raise
  except ValueError as e:
    raise io.InputError(f"{what}: {e}" if what else str(e)) from None


def group_by_device(records: list[io.ImageRecord], device: str | None) -> dict[str, list[io.ImageRecord]]:
  """Images per device: the manifest's device column, else `device` for all, else the Dresden file-name rule."""
  groups = collections.defaultdict(list)
  for r in records:
    groups[device or r.device or "camera"].append(r)
  return dict(sorted(groups.items()))


def output_names(paths: Sequence[pathlib.Path]) -> list[str]:
  """One output name per input photo, unique and stable: its path relative to the inputs' common folder, with
  the extension's dot made '_' (`a/IMG_0001.JPG` → `a/IMG_0001_JPG`): photos of the same name in two folders, or
  with two extensions, get two names. Raises InputError if a photo is listed twice."""
  resolved = [pathlib.Path(os.path.abspath(p)) for p in paths]
  if len(set(resolved)) != len(resolved):
    twice = sorted({str(p) for p in resolved if resolved.count(p) > 1})
    raise io.InputError(f"photos listed twice: {', '.join(twice[:5])}")
  if not resolved:
    return []
  root = pathlib.Path(os.path.commonpath([p.parent for p in resolved]))
  return [str(p.relative_to(root).with_name(p.stem + "_" + p.suffix.lstrip("."))) for p in resolved]


def unique_names(paths: Sequence[pathlib.Path]) -> list[str]:
  """Short display names of photos (tables, plots): the file stems when they are unique, else `output_names`."""
  stems = [pathlib.Path(p).stem for p in paths]
  return stems if len(set(stems)) == len(stems) else output_names(paths)


def file_sha256(path: str | os.PathLike) -> str:
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def print_skipped(skipped: Sequence[str]) -> None:
  if skipped:
    print(f"{len(skipped)} input(s) skipped:", file=sys.stderr)
    for message in skipped:
      print(f"  {message}", file=sys.stderr)


def exit_code(summary: dict) -> int:
  """EXIT_INCOMPLETE when the summary lists skipped inputs or results below the quality target, else EXIT_OK."""
  return EXIT_INCOMPLETE if summary.get("skipped") or summary.get("below_target") else EXIT_OK
