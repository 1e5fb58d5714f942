"""The package's shape: small modules, short functions, imports that flow one way (BUILD_NOTES "Where things are")."""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "dippas_jax"
# Layers, lowest first. A module may import its own layer and those below, never above; numerical layers never
# touch files, flags or configs.
LAYERS = {
    "dippas_jax.batching": 0, "dippas_jax.imaging": 0, "dippas_jax.synthetic": 0,
    "dippas_jax.prnu": 1, "dippas_jax.dippas": 2, "dippas_jax.evaluation": 3, "dippas_jax.leakage": 3,
    "dippas_jax.io": 4, "dippas_jax.display": 4, "dippas_jax.prnu_python": 4, "dippas_jax.plotting": 5, "dippas_jax.configs": 6, "dippas_jax.jobs": 7,
    "dippas_jax.apps": 8,
}
NUMERICAL = ("dippas_jax.prnu", "dippas_jax.dippas", "dippas_jax.evaluation", "dippas_jax.leakage",
             "dippas_jax.batching", "dippas_jax.imaging", "dippas_jax.synthetic")
FORBIDDEN_IN_NUMERICAL = ("absl", "ml_collections", "dippas_jax.io", "dippas_jax.plotting", "dippas_jax.jobs",
                          "dippas_jax.apps", "matplotlib")


def _modules():
  for path in sorted(PACKAGE.rglob("*.py")):
    name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
    yield name, path, ast.parse(path.read_text())


def _layer(module: str) -> int | None:
  matches = [key for key in LAYERS if module == key or module.startswith(key + ".")]
  return LAYERS[max(matches, key=len)] if matches else None


def _imports(tree) -> set[str]:
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      out.update(f"{node.module}.{alias.name}" for alias in node.names)
  return out


def test_modules_are_small_and_functions_short():
  long_functions = []
  for name, path, tree in list(_modules()) + [(p.stem, p, ast.parse(p.read_text()))
                                              for p in sorted((REPO / "configs").glob("*.py"))]:
    assert len(path.read_text().splitlines()) <= 450, f"{name}: over 450 lines"
    for node in ast.walk(tree):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        body = node.body[1:] if ast.get_docstring(node) else node.body
        if body and body[-1].end_lineno - body[0].lineno + 1 > 60:
          long_functions.append(f"{name}.{node.name}")
  assert not long_functions, f"function bodies over 60 lines: {long_functions}"


@pytest.mark.parametrize("name, path, tree", list(_modules()), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_flow_one_way(name, path, tree):
  del path
  own = _layer(name)
  for imported in _imports(tree):
    if name.startswith(NUMERICAL):
      assert not imported.startswith(FORBIDDEN_IN_NUMERICAL), f"{name} imports {imported}"
    layer = _layer(imported)
    if imported.startswith("dippas_jax.") and layer is not None and own is not None:
      assert layer <= own, f"{name} (layer {own}) imports {imported} (layer {layer})"
