"""Shared fixtures: the `../shared` data and reference outputs (tests skip cleanly without them)."""

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("DIPPAS_SHARED", REPO.parent / "shared"))

# JAX's persistent compilation cache, shared by the xdist workers and the commands the tests start as
# subprocesses (set before anything imports jax): compiling, not computing, dominates this suite on a CPU.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / ".jax_cache"))


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
  """`../shared` (or $DIPPAS_SHARED); skips the test when it is absent."""
  if not (SHARED / "data" / "dresden" / "manifest.csv").is_file():
    pytest.skip(f"shared data not found at {SHARED}")
  return SHARED


@pytest.fixture(scope="session")
def dresden_dir(shared_dir) -> pathlib.Path:
  return shared_dir / "data" / "dresden"


@pytest.fixture(scope="session")
def reference_dir(shared_dir) -> pathlib.Path:
  ref = shared_dir / "reference" / "prnu_python"
  if not ref.is_dir():
    pytest.skip(f"reference outputs not found at {ref}")
  return ref
