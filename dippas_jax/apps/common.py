"""App harness shared by the commands: one error policy, help that helps, one-line warnings, the compile cache.

Exit codes (every command; the README's table):
  0  done
  1  done, but some inputs were skipped or some results are below the quality target (listed on stderr and in
     the summary)
  2  bad input: a missing or unreadable file, a bad flag or config field, settings that cannot work — one line
     on stderr, no traceback
  3  a bug: anything else, with its traceback (please report it)

JAX's persistent compilation cache is on for the commands (a second run of a command does not compile again):
in $DIPPAS_COMPILATION_CACHE, default `~/.cache/dippas_jax/jax`; DIPPAS_COMPILATION_CACHE=off turns it off (an
explicit JAX_COMPILATION_CACHE_DIR is respected).
"""

from __future__ import annotations

import os
import pathlib
import sys
import traceback
import warnings
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from dippas_jax import io
from dippas_jax.jobs import common as job_common

EXIT_OK, EXIT_INCOMPLETE, EXIT_INPUT_ERROR, EXIT_BUG = 0, 1, 2, 3
_HELP = ("--help", "-help", "-h", "--helpshort", "-?")


def config_path(name: str) -> str:
  """Path of a config file shipped in `configs/` (installed as the package `dippas_jax.configs`)."""
  from importlib import resources
  return str(resources.files("dippas_jax.configs") / f"{name}.py")


def fail(message: str, code: int = EXIT_INPUT_ERROR) -> None:
  """One line on stderr and exit."""
  print(f"error: {message}", file=sys.stderr)
  sys.exit(code)


def define_config(name: str, default: str, help_text: str):
  """`config_flags.DEFINE_config_file` (locked). ml_collections checks `--<name>.<field>` overrides of sys.argv
  when the flag is defined: a misspelt field is reported here as bad input (exit 2), not as a traceback."""
  try:
    return config_flags.DEFINE_config_file(name, default, help_text, lock_config=True)
  except (AttributeError, KeyError) as e:
    given = [a for a in sys.argv[1:] if a.startswith(f"--{name}.")]
    fail(f"unknown config field in {' '.join(given) or '--' + name}: {str(e).strip(chr(34))}; "
         f"see --helpfull for the fields")


def _last_line(error: BaseException) -> str:
  """The meaningful line of a flag error (config_flags embeds the traceback of the config file's failure)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if len(lines) > 1 and lines[0].endswith("Error whilst parsing config file:"):
    return f"{lines[0].split(':')[0]}: {lines[-1]}"
  return lines[0] if lines else type(error).__name__


def _parse_flags(argv: Sequence[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(f"{_last_line(e)} (see --help)")


def _print_help(module_name: str, full: bool) -> None:
  print((sys.modules[module_name].__doc__ or "").strip() + "\n")
  print(flags.FLAGS.get_help() if full else "flags:\n" + flags.FLAGS.module_help(module_name))
  if not full:
    print("\nConfig fields (--config.<field>=...) and every other flag: --helpfull")


def _use_compilation_cache() -> None:
  where = os.environ.get("DIPPAS_COMPILATION_CACHE", "")
  if where.lower() == "off" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    return
  import jax  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(where or pathlib.Path.home() / ".cache" / "dippas_jax" / "jax").expanduser()
  jax.config.update("jax_compilation_cache_dir", str(path))


def join_processes(coordinator: str | None, num_processes: int, process_id: int) -> tuple[int, int]:
  """(process index, process count): (0, 1) alone; with `num_processes` > 1, joins JAX's multi-process runtime
  (`jax.distributed.initialize`) and returns this process's place in it."""
  if num_processes <= 1:
    return 0, 1
  if not coordinator or not 0 <= process_id < num_processes:
    raise io.InputError(f"--num_processes={num_processes} needs --coordinator_address=host:port and "
                        f"0 ≤ --process_id < {num_processes} (got {process_id})")
  import jax  # pylint: disable=g-import-not-at-top
  jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
  return jax.process_index(), jax.process_count()


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
  del category, filename, lineno, line
  return f"warning: {message}\n"


def command(job: Callable[[], dict | None], module: str, configs: Sequence = ()) -> Callable[[], None]:
  """The console-script entry point of a command whose job returns its summary (see `run`)."""
  return lambda: run(job, module=module, configs=configs)


def run(job: Callable[[], dict | None], *, module: str, configs: Sequence = ()) -> None:
  """Runs a command: --help/--helpfull (exit 0), flags (bad flag: exit 2), the configs loaded (bad config: exit
  2), then `job()`; its summary gives the exit code (`jobs.common.exit_code`); see the module docstring."""
  if any(a in _HELP or a == "--helpfull" for a in sys.argv[1:]):
    _print_help(module, full="--helpfull" in sys.argv[1:])
    sys.exit(EXIT_OK)

  def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
      fail(f"unexpected arguments: {' '.join(argv[1:])} (use --flag=value, e.g. --blind=false)")
    if not flags.FLAGS["verbosity"].present:
      logging.set_verbosity(logging.WARNING)  # Keep library INFO chatter (backend probing) off the console.
    warnings.formatwarning = _one_line_warning
    try:
      for config in configs:
        config.value.to_dict()  # a config file that failed to load raises on first use
    except (OSError, ValueError) as e:
      fail(f"cannot load the config: {[line for line in str(e).splitlines() if line.strip()][-1].strip()}")
    _use_compilation_cache()
    try:
      summary = job()
    except io.InputError as e:
      fail(str(e))
    except KeyboardInterrupt:
      fail("interrupted; rerun the same command to resume", 130)
    except Exception:  # pylint: disable=broad-except
      traceback.print_exc()
      fail("unexpected failure (a bug, not your input): please report it with the traceback above", EXIT_BUG)
    sys.exit(job_common.exit_code(summary or {}))

  app.run(main, flags_parser=_parse_flags)
