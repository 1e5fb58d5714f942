"""Bad input is one line on stderr and exit code 2, whatever the order and form of the flags (issue 23).

Each case runs in both forms: the config file left to its default (ml_collections then applies the
`--config.<field>` overrides when the flag is defined, at import) and an explicit `--config=FILE:variant` (the
overrides are applied while the flags are parsed). The bulk runs in-process through the commands' own harness
(`common.define_config` + `common.parse_flags` on fresh flags); one subprocess per (case, form) runs the installed
console scripts as a user does, spread so that every command is run. These fail before any compute: ~2 s each.
"""

import os
import pathlib
import subprocess
import sys
from unittest import mock

from absl import flags
import pytest

from dippas_jax import io
from dippas_jax.apps import common

_VARIANT = {"anonymize": "anonymize:demo", "prnu": "prnu:dippas", "evaluate": "evaluate:cpu",
            "leakage": "leakage:tiny"}


def _config_arg(config: str, *, name: str = "config") -> str:
  """`--<name>=<path of configs/<file>.py>:<variant>` for `config` = '<file>:<variant>'."""
  file, variant = config.split(":")
  return f"--{name}={common.config_path(file)}:{variant}"


def _parse(argv, *, config="prnu", name="config"):
  """Defines the config flag `name` (default file configs/<config>.py) and --workdir on fresh flags and parses
  `argv` as a command does; returns the exit code (None if the flags were accepted) and the config."""
  flag_values = flags.FlagValues()
  flags.DEFINE_string("workdir", None, "Output folder.", flag_values=flag_values)
  holder = None
  with mock.patch.object(sys, "argv", argv):
    try:
      holder = common.define_config(name, common.config_path(config), "A config.", flag_values=flag_values)
      common.parse_flags(argv, flag_values=flag_values)
    except SystemExit as e:
      return e.code, None
  return None, holder.value


def _assert_one_line(err: str, *fragments: str) -> None:
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
  for fragment in fragments:
    assert fragment in lines[0], (fragment, lines[0])


# (case, the override arguments, what the line must contain) on configs/prnu.py.
_CASES = [
    ("misspelt", ["--config.tua=3"], ["config.tua", "--helpfull"]),
    ("misspelt_no_value", ["--config.tua"], ["config.tua", "--helpfull"]),
    ("misspelt_nested", ["--config.sigma.x=1"], ["config.sigma.x", "--helpfull"]),
    ("misspelt_parent", ["--config.crp.x=1"], ["config.crp", "did you mean --config.crop?", "--helpfull"]),
    ("wrong_type", ["--config.sigma=abc"], ["--config.sigma=abc", "--helpfull"]),
    ("wrong_type_int", ["--config.levels=2.5"], ["--config.levels=2.5", "--helpfull"]),
    ("bad_tuple", ["--config.crop=(a,b)"], ["config.crop", "tuple of int", "--helpfull"]),
    ("empty_tuple", ["--config.crop="], ["config.crop", "tuple of int", "--helpfull"]),
    ("missing_value_last", ["--config.sigma"], ["config.sigma", "no value", "--helpfull"]),
    ("missing_value_before_flag", ["--config.wavelet", "--workdir=out"], ["config.wavelet", "no value"]),
    ("missing_tuple_value", ["--config.crop", "--workdir=out"], ["config.crop", "no value"]),
]


@pytest.mark.parametrize("explicit", [False, True], ids=["default_config", "explicit_config"])
@pytest.mark.parametrize("case,args,fragments", _CASES, ids=[c[0] for c in _CASES])
def test_bad_override_is_one_line_naming_the_field(case, args, fragments, explicit, capsys):
  del case
  config_args = [_config_arg(_VARIANT["prnu"])] if explicit else []
  code, _ = _parse(["dippas-x", *config_args, *args])
  assert code == 2
  _assert_one_line(capsys.readouterr().err, *fragments)


@pytest.mark.parametrize("explicit", [False, True], ids=["default_config", "explicit_config"])
@pytest.mark.parametrize("config", ["prnu", "anonymize", "evaluate", "leakage"])
def test_misspelt_field_of_every_command_config(config, explicit, capsys):
  """configs/prnu.py: fingerprint, attribute, demo; the others: their command."""
  config_args = [_config_arg(_VARIANT[config])] if explicit else []
  code, _ = _parse(["dippas-x", *config_args, "--config.tua=3", "--workdir=out"], config=config)
  assert code == 2
  fix = "did you mean --config.tau?" if config == "anonymize" else "--helpfull"
  _assert_one_line(capsys.readouterr().err, "config.tua", fix)


def test_demo_second_config_flag(capsys):
  """dippas-demo's --anonymize config: the same rule under another flag name."""
  code, _ = _parse(["dippas-demo", _config_arg(_VARIANT["anonymize"], name="anonymize"), "--anonymize.tua=3"],
                   config="anonymize", name="anonymize")
  assert code == 2
  _assert_one_line(capsys.readouterr().err, "anonymize.tua", "did you mean --anonymize.tau?")


def test_override_before_the_config_file_and_a_missing_file(capsys):
  code, _ = _parse(["dippas-x", "--config.tua=3", _config_arg(_VARIANT["prnu"])])
  assert code == 2
  _assert_one_line(capsys.readouterr().err, "--config.tua=3", "after", "--helpfull")
  code, _ = _parse(["dippas-x", "--config=nowhere.py", "--config.sigma=3"])
  assert code == 2
  _assert_one_line(capsys.readouterr().err, "--config=nowhere.py", "No such file")


@pytest.mark.parametrize("explicit", [False, True], ids=["default_config", "explicit_config"])
def test_good_overrides_are_accepted(explicit):
  """The checks reject nothing valid: ints in a float tuple, a negative value after a space, a space form."""
  config_args = [_config_arg("evaluate:cpu")] if explicit else []
  code, config = _parse(["dippas-x", *config_args, "--config.sigma=3", "--config.crop=(64,64)",
                         "--config.dippas.sweep.taus=(37,38.5)", "--config.fpr_target", "0.05",
                         "--config.batch_size", "-1"], config="evaluate")
  assert code is None
  assert (config.sigma, config.crop, config.dippas.sweep.taus) == (3.0, (64, 64), (37, 38.5))
  assert (config.fpr_target, config.batch_size) == (0.05, -1)


def _can_write(folder: pathlib.Path) -> bool:
  try:
    (folder / ".dippas_probe").touch()
  except OSError:
    return False
  (folder / ".dippas_probe").unlink()
  return True


@pytest.fixture
def read_only_dir(tmp_path):
  """A folder this process cannot write in: a 0o555 folder; as root, whom mode bits do not bind, /sys (sysfs
  refuses new files to everyone). Skipped where neither holds."""
  folder = tmp_path / "read_only"
  folder.mkdir()
  folder.chmod(0o555)
  try:
    if _can_write(folder):
      if _can_write(pathlib.Path("/sys")) or not pathlib.Path("/sys").is_dir():
        pytest.skip("no folder here is read-only for this user")
      yield pathlib.Path("/sys")
    else:
      yield folder
  finally:
    folder.chmod(0o755)


@pytest.mark.parametrize("case", ["creatable", "file", "under_a_file", "proc", "read_only", "empty"])
def test_check_workdir(case, tmp_path, request):
  (tmp_path / "file").write_text("x")
  if case == "read_only":
    path = request.getfixturevalue("read_only_dir")
  else:
    path = {"creatable": tmp_path / "a" / "b", "file": tmp_path / "file", "under_a_file": tmp_path / "file" / "x",
            "proc": "/proc/x", "empty": ""}[case]
  if case == "creatable":
    common.check_workdir(str(path))
    assert path.is_dir() and not list(path.iterdir())  # created, the probe file removed
    return
  fragment = {"file": "is a file", "empty": "needs a value"}.get(case, "cannot create or write")
  with pytest.raises(io.InputError, match=fragment):
    common.check_workdir(str(path))


def _command(name: str) -> list[str]:
  """The installed console script `dippas-<name>` (as a user runs it), else `python -m`."""
  script = pathlib.Path(sys.executable).parent / f"dippas-{name}"
  return [str(script)] if script.exists() else [sys.executable, "-m", f"dippas_jax.apps.{name}"]


# The command's inputs do not exist: had the workdir or a field not been checked first, the line would name them.
_INPUTS = {"anonymize": ["--inputs={missing}", "--blind"], "fingerprint": ["--images={missing}"],
           "attribute": ["--fingerprints={missing}", "--images={missing}"], "evaluate": ["--images={missing}"],
           "leakage": ["--images={missing}", "--device=cam"], "demo": []}
_CONFIG_OF = {"anonymize": "anonymize", "evaluate": "evaluate", "leakage": "leakage"}

# (case, command without --config, command with --config=FILE:variant, arguments, what the line must contain):
# every case in both forms, every command run at least once with a bad field and once with a bad workdir.
_SUBPROCESS_CASES = [
    ("misspelt_field", "fingerprint", "anonymize", ["--config.tua=3"], ["config.tua", "--helpfull"]),
    ("wrong_type", "attribute", "evaluate", ["--config.sigma=abc"], ["--config.sigma=abc", "--helpfull"]),
    ("bad_tuple", "leakage", "fingerprint", ["--config.crop=(a,b)"], ["config.crop", "tuple of int"]),
    ("missing_value", "demo", "attribute", ["--config.sigma", "--workdir={workdir}"], ["config.sigma", "no value"]),
    ("workdir_proc", "evaluate", "demo", ["--workdir=/proc/x"], ["--workdir=/proc/x", "cannot create"]),
    ("workdir_read_only", "anonymize", "leakage", ["--workdir={read_only}"], ["cannot create or write"]),
    ("workdir_is_a_file", "attribute", "fingerprint", ["--workdir={file}"], ["is a file"]),
]


@pytest.mark.parametrize("explicit", [False, True], ids=["default_config", "explicit_config"])
@pytest.mark.parametrize("case,plain,with_config,args,fragments", _SUBPROCESS_CASES,
                         ids=[c[0] for c in _SUBPROCESS_CASES])
def test_bad_input_as_a_user_runs_it(case, plain, with_config, args, fragments, explicit, tmp_path, request):
  command = with_config if explicit else plain
  (tmp_path / "file").write_text("x")
  where = {"missing": tmp_path / "missing", "workdir": tmp_path / "out", "file": tmp_path / "file",
           "read_only": request.getfixturevalue("read_only_dir") if case == "workdir_read_only" else None}
  argv = [a.format(**where) for a in _INPUTS[command]]
  if explicit:
    argv.append(_config_arg(_VARIANT[_CONFIG_OF.get(command, "prnu")]))
  argv += [a.format(**where) for a in args]
  if not any(a.startswith("--workdir") for a in argv) and command != "demo":
    argv.insert(0, f"--workdir={tmp_path / 'out'}")
  proc = subprocess.run(_command(command) + argv, capture_output=True, text=True, timeout=120,
                        cwd=tmp_path, env={**os.environ, "DIPPAS_COMPILATION_CACHE": "off"})
  assert proc.returncode == 2, (command, argv, proc.stderr)
  _assert_one_line(proc.stderr, *fragments)
