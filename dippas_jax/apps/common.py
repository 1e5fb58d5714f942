"""App harness shared by the commands: one error policy, help that helps, one-line warnings, the compile cache.

Exit codes (every command; the README's table):
  0  done
  1  done, but some inputs were skipped or some results are below the quality target (listed on stderr and in
     the summary)
  2  bad input: a missing or unreadable file, a bad flag or config field, settings that cannot work — one line
     on stderr, no traceback
  3  a bug: anything else, with its traceback (please report it)

Bad input is found before any compute, whatever the order and form of the flags: `parse_flags` turns every bad
flag or config field override (`--config.<field>`: unknown, of the wrong type, a tuple of the wrong kind, a missing
value, before `--config=FILE`) into one line naming it, whether or not `--config=FILE[:arg]` is given (ml_collections
applies the overrides when the config flag is defined without it, during flag parsing with it: both go through
`_override_error`); then `check_workdir` makes sure `--workdir` can be created and written.

JAX's persistent compilation cache is on for the commands (a second run of a command does not compile again):
in $DIPPAS_COMPILATION_CACHE, default `~/.cache/dippas_jax/jax`; DIPPAS_COMPILATION_CACHE=off turns it off (an
explicit JAX_COMPILATION_CACHE_DIR is respected).
"""

from __future__ import annotations

import difflib
import os
import pathlib
import re
import sys
import tempfile
import traceback
import warnings
from typing import Callable, Mapping, Sequence

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_dict as ml_config_dict
from ml_collections import config_flags
# Not re-exported by ml_collections.config_flags: ConfigFileFlagParser, FlagOrderError, is_config_flag.
from ml_collections.config_flags import config_flags as ml_config_flags
from ml_collections.config_flags import config_path as ml_config_path

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


def define_config(name: str, default: str, help_text: str, *, flag_values: flags.FlagValues = flags.FLAGS):
  """`config_flags.DEFINE_config_file` (locked). Without `--<name>=FILE` on the command line, ml_collections loads
  `default` and applies the `--<name>.<field>` overrides of sys.argv right here, when the flag is defined: a bad
  override is reported as bad input (exit 2) by the same rule as during flag parsing (`parse_flags`)."""
  try:
    return config_flags.DEFINE_config_file(name, default, help_text, flag_values=flag_values, lock_config=True)
  except (flags.Error, AttributeError, KeyError, OSError, TypeError) as e:
    message = _override_error(sys.argv, {name: default})
    if message is None and not isinstance(e, flags.Error):
      raise
    fail(message or _flag_error(e, [name]))


def _last_line(error: BaseException) -> str:
  """The meaningful line of a flag error (config_flags embeds the traceback of the config file's failure)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  if len(lines) > 1 and lines[0].endswith("Error whilst parsing config file:"):
    return f"{lines[0].split(':')[0]}: {lines[-1]}"
  return lines[0] if lines else type(error).__name__


def _last_line_of_text(text: str) -> str:
  """The last non-empty line (of a config loading error: the OS's reason)."""
  return ([line.strip() for line in text.splitlines() if line.strip()] or [""])[-1]


def _config_names(flag_values: flags.FlagValues) -> list[str]:
  """The names of the config file flags (`--config`, dippas-demo's `--anonymize`)."""
  return [name for name in flag_values if ml_config_flags.is_config_flag(flag_values[name])]


def _overrides(argv: Sequence[str], name: str) -> list[tuple[int, str, str]]:
  """(index in argv, field path, the argument) of each `--<name>.<path>[=value]` (or `--no<name>.<path>`)."""
  found = []
  for i, arg in enumerate(argv[1:], 1):
    match = re.match(rf"--?(?:no)?{re.escape(name)}\.([^=]+)", arg)
    if match:
      found.append((i, match.group(1), arg))
  return found


def _config_file_args(argv: Sequence[str], names: Sequence[str]) -> dict[str, str]:
  """The config file argument (`--<name>=FILE[:arg]` or `--<name> FILE`) given on the command line, per name."""
  given = {}
  for i, arg in enumerate(argv[1:], 1):
    for name in names:
      if arg.startswith(f"--{name}=") or arg.startswith(f"-{name}="):
        given[name] = arg.split("=", 1)[1]
      elif arg in (f"--{name}", f"-{name}") and i + 1 < len(argv):
        given[name] = argv[i + 1]
  return given


def _unknown_field(config, path: str) -> tuple[str, str | None]:
  """`path` up to its first component that is not a field of `config`, and the closest existing path, if any."""
  holder, parts = config, path.split(".")
  for depth, part in enumerate(parts):
    if not isinstance(holder, ml_config_dict.ConfigDict) or part not in holder:
      known = list(holder.keys()) if isinstance(holder, ml_config_dict.ConfigDict) else []
      close = difflib.get_close_matches(part, known, n=1)
      return ".".join(parts[:depth + 1]), ".".join(parts[:depth] + close[:1]) if close else None
    holder = holder[part]
  return path, None


def _override_error(argv: Sequence[str], configs: Mapping[str, str]) -> str | None:
  """The one-line message for the first `--<name>.<path>` override of `argv` that names no field of its config,
  or whose config cannot be loaded (`configs`: config flag name → config file argument); None if there is none.

  ml_collections reports these as a bare AttributeError/KeyError ("'tua'") or OSError from deep inside flag
  parsing, without the flag; this loads the config again, as the flag does, and finds the override."""
  argv = flags.FLAGS.read_flags_from_files(list(argv), force_gnu=False)  # as ml_collections reads sys.argv
  for name, file_arg in configs.items():
    try:
      config = ml_config_flags.ConfigFileFlagParser(name=name, lock_config=True).parse(file_arg)
    except (TypeError, ValueError):
      continue  # the config file itself fails: absl reports it as a flag error
    for _, path, arg in _overrides(argv, name):
      try:
        ml_config_path.get_type(path, config)
      except OSError as e:  # the config file did not load
        return f"cannot load --{name}={file_arg}: {_last_line_of_text(str(e))}"
      except (AttributeError, KeyError, IndexError, TypeError, ValueError):
        unknown, close = _unknown_field(config, path)
        hint = f" (did you mean --{name}.{close}?)" if close else ""
        return f"unknown config field {name}.{unknown} in {arg}{hint}; see --helpfull for the fields of --{name}"
  return None


def _flag_error(error: BaseException, names: Sequence[str]) -> str:
  """One line for an absl flag error; a config field's error points to --helpfull, where the fields are listed."""
  line = _last_line(error)
  if isinstance(error, ml_config_flags.FlagOrderError):
    return f"{line}: put the field overrides after it; see --helpfull"
  if any(f"-{name}." in line for name in names):
    return f"{line}; see --helpfull for the config fields"
  return f"{line} (see --help)"


def _missing_value(argv: Sequence[str], names: Sequence[str], flag_values: flags.FlagValues) -> str | None:
  """A config field override given without a value (`--config.wavelet --workdir=out` makes absl take
  `--workdir=out` as the wavelet): one line naming it, or None."""
  for name in names:
    for i, path, arg in _overrides(argv, name):
      field = flag_values[f"{name}.{path}"] if f"{name}.{path}" in flag_values else None
      if "=" in arg or field is None or field.boolean:
        continue
      if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
        return f"config field {name}.{path} has no value: write {arg}=VALUE; see --helpfull for the fields"
  return None


def _tuple_kind_error(argv: Sequence[str], names: Sequence[str], flag_values: flags.FlagValues) -> str | None:
  """ml_collections parses any text as a tuple (`--config.crop=(a,b)` gives ('(a,b)',)): an overridden tuple field
  whose config file value holds one kind of scalar (int, float, str, bool) must hold that kind again (an int
  where a float is expected is fine), so a bad tuple is bad input here, not a crash in the job."""
  for name in names:
    for path in dict.fromkeys(path for _, path, _ in _overrides(argv, name)):
      field = flag_values[f"{name}.{path}"] if f"{name}.{path}" in flag_values else None
      if not isinstance(field, flags.MultiFlag) or not field.present or not field.default:
        continue
      kinds = {type(v) for v in field.default}
      kind = kinds.pop() if len(kinds) == 1 else None
      if kind not in (int, float, str, bool):
        continue
      accepted = (int, float) if kind is float else (kind,)
      value = tuple(field.value)
      if not all(isinstance(v, accepted) and (kind is bool or not isinstance(v, bool)) for v in value):
        example = "(" + ",".join(str(v) for v in field.default) + ")"
        return (f"config field {name}.{path} is a tuple of {kind.__name__}; got {value!r} (write "
                f"--{name}.{path}='{example}'); see --helpfull for the fields")
  return None


def parse_flags(argv: Sequence[str], *, flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
  """`flag_values(argv)` with the error policy: any bad flag or config field override → one line naming it and
  exit 2 (see the module docstring); the arguments that are not flags otherwise."""
  names = _config_names(flag_values)
  try:
    rest = flag_values(argv)
  except flags.Error as e:
    fail(_missing_value(argv, names, flag_values) or _flag_error(e, names))
  except (AttributeError, KeyError, OSError, TypeError) as e:
    # Raised by ml_collections while it applies the overrides to a config given as --<name>=FILE.
    message = _override_error(argv, _config_file_args(argv, names))
    if message is None:
      raise
    fail(message)
  message = _missing_value(argv, names, flag_values) or _tuple_kind_error(argv, names, flag_values)
  if message:
    fail(message)
  return rest


def check_workdir(path: str | None, *, flag: str = "--workdir") -> None:
  """InputError unless `path` is (or can be created as) a folder this process can write in: it is created and a
  probe file is written there and removed. A probe, not `os.access`: root passes access checks on read-only
  folders, and `/proc/x` cannot be created by anyone."""
  if path is None:
    return
  if not str(path).strip():
    raise io.InputError(f"{flag} needs a value: {flag}=FOLDER")
  folder = pathlib.Path(path).expanduser()
  if folder.exists() and not folder.is_dir():
    raise io.InputError(f"{flag}={path} is a file, not a folder: give a folder for the outputs")
  try:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".dippas_write_check_"):
      pass
  except OSError as e:
    raise io.InputError(f"cannot create or write in {flag}={path} ({e.strerror or e}): give a folder you can "
                        f"write in") from None


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
  """Runs a command: --help/--helpfull (exit 0), flags (bad flag or config field: exit 2), the configs loaded
  (bad config: exit 2), `--workdir` if the command has one (cannot be written: exit 2), then `job()`; its summary
  gives the exit code (`jobs.common.exit_code`); see the module docstring."""
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
      fail(f"cannot load the config: {_last_line_of_text(str(e))}")
    try:
      if "workdir" in flags.FLAGS:  # every command's output folder: checked before any compute
        check_workdir(flags.FLAGS.workdir)
      _use_compilation_cache()
      summary = job()
    except io.InputError as e:
      fail(str(e))
    except KeyboardInterrupt:
      fail("interrupted; rerun the same command to resume", 130)
    except Exception:  # pylint: disable=broad-except
      traceback.print_exc()
      fail("unexpected failure (a bug, not your input): please report it with the traceback above", EXIT_BUG)
    sys.exit(job_common.exit_code(summary or {}))

  app.run(main, flags_parser=parse_flags)
