"""The one parser of config arguments: `get_config("base,field=value,...")` of every config in this folder.

An argument is a comma-separated list of tokens: at most one base name (a key of the config's `BASES`) and any
number of `field=value` overrides, where `field` is a dotted path into the config (`dip.injection=none`) or a
short alias the config declares (`injection=none`). Values are converted to the type of the field they replace
(bool: true/false/1/0; int; float; str; a tuple as slash-separated values, `dip.model.filters=16/32/64`,
empty for `()`).
Unknown bases, unknown fields and badly typed values are `ValueError`s that say what is accepted.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def parse(arg: str | None, bases: Sequence[str]) -> tuple[str, list[tuple[str, str]]]:
  """(base, [(field, value), ...]) of `arg`; the base defaults to bases[0]."""
  base, overrides = bases[0], []
  for token in filter(None, (t.strip() for t in (arg or "").split(","))):
    if "=" in token:
      key, value = (s.strip() for s in token.split("=", 1))
      overrides.append((key, value))
    elif token in bases:
      base = token
    else:
      raise ValueError(f"Unknown config base {token!r}; expected one of {tuple(b for b in bases if b)} "
                       "(or field=value overrides)")
  return base, overrides


def _convert(current: Any, value: str, path: str) -> Any:
  if isinstance(current, bool):
    if value.lower() not in _TRUE + _FALSE:
      raise ValueError(f"config field {path} is a bool; got {value!r} (use true or false)")
    return value.lower() in _TRUE
  if isinstance(current, (tuple, list)):
    kind = type(current[0]) if current else float
    try:
      return tuple(kind(v) for v in value.split("/") if v)
    except ValueError:
      raise ValueError(f"config field {path} is a tuple of {kind.__name__}; got {value!r} (use a/b/c)") from None
  try:
    return type(current)(value)
  except ValueError:
    raise ValueError(f"config field {path} is a {type(current).__name__}; got {value!r}") from None


def set_field(config: Any, path: str, value: Any) -> None:
  """Sets the dotted `path` of a ConfigDict to `value` (a string is converted to the field's type)."""
  *parents, name = path.split(".")
  node = config
  for part in parents:
    if part not in node:
      raise ValueError(f"Unknown config field {path!r}")
    node = node[part]
  if name not in node:
    raise ValueError(f"Unknown config field {path!r}; fields here: {', '.join(sorted(node.keys()))}")
  node[name] = _convert(node[name], value, path) if isinstance(value, str) and not isinstance(node[name], str) \
      else value


def apply(config: Any, overrides: Sequence[tuple[str, Any]] | Mapping[str, Any],
          aliases: Mapping[str, str] | None = None) -> Any:
  """Applies overrides (pairs or a mapping of field → value; alias names allowed) to `config`; returns it."""
  items = overrides.items() if isinstance(overrides, Mapping) else overrides
  for key, value in items:
    set_field(config, (aliases or {}).get(key, key), value)
  return config
