"""App harness shared by the absl commands: user errors become one clear line and a non-zero exit."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging

from dippas_jax import io

EXIT_INPUT_ERROR = 2


def config_path(name: str) -> str:
  """Path of a config file shipped in `configs/` (installed as the package `dippas_jax.configs`)."""
  from importlib import resources
  return str(resources.files("dippas_jax.configs") / f"{name}.py")


def main_wrapper(job: Callable[[], int | None]) -> Callable[[Sequence[str]], None]:
  """Wraps a job for `app.run`: rejects stray arguments (typos, `--flag False`) and turns `InputError` and the
  library's `ValueError`s (invalid sizes, settings or values, raised before any compute) into one line on stderr
  and exit code 2 instead of a traceback."""

  def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])} (use --flag=value, e.g. --blind=false)")
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # Keep library INFO chatter (backend probing) off the console.
    try:
      code = job()
    except ValueError as e:  # io.InputError is a ValueError.
      print(f"error: {e}", file=sys.stderr)
      sys.exit(EXIT_INPUT_ERROR)
    sys.exit(code or 0)

  return main
