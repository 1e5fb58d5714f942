"""The information-leakage bound (ILB) of a fingerprint estimate: the water-filling minimisation over noise
allocations, solved for its Lagrange multiplier in float64 (see `leakage.model` for the model)."""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_LN2 = math.log(2.0)


class LeakageBound(NamedTuple):
  """The information-leakage bound and its solution.

  Attributes:
    nats: ½ Σ log(1 + 2/(sqrt(1 + 4/(μγ²)) − 1)), the bound in nats (NaN when P ≤ 0).
    bits: nats / ln 2.
    bits_per_pixel: bits / (H·W) (all pixels count, including those with γ² = 0).
    mu: the Lagrange multiplier μ.
    constraint_rel_error: |Σ n* − P| / P at the returned μ.
    power: P.
    n_pixels: H·W.
  """
  nats: float
  bits: float
  bits_per_pixel: float
  mu: float
  constraint_rel_error: float
  power: float
  n_pixels: int


def _g(a):
  """γ²/n* as a function of a = μγ² (stable form of 2 / (sqrt(1 + 4/a) − 1)): (a + sqrt(a² + 4a)) / 2."""
  return 0.5 * (a + jnp.sqrt(a * a + 4.0 * a))


def _allocation(gamma2, log_mu):
  a = jnp.exp(log_mu) * gamma2
  return jnp.where(gamma2 > 0, gamma2 / jnp.where(gamma2 > 0, _g(a), 1.0), 0.0)


@functools.partial(jax.jit, static_argnames=("iterations",))
def _bisect_log_mu(gamma2, power, *, iterations):
  """Bisection on log μ of Σ n*(μ) = P (float64 under a scoped enable_x64)."""
  positive = gamma2 > 0
  count = jnp.sum(positive)
  sum_gamma = jnp.sum(jnp.sqrt(gamma2))
  # Brackets: sqrt(1+x) − 1 ≤ x/2 gives Σ n*(μ) ≤ count/μ, so Σ n*(count/P) ≤ P; sqrt(1+x) − 1 ≥ sqrt(x) − 1
  # gives Σ n*(μ) ≥ Σγ/sqrt(μ) − ½Σγ², so Σ n* ≥ P at μ = (Σγ / (P + ½Σγ²))².
  hi = jnp.log(count / power)
  lo = 2.0 * jnp.log(sum_gamma / (power + 0.5 * jnp.sum(gamma2)))

  def unfinished(state):
    i, lo, hi = state
    # Stop at float64 resolution of log μ (~50 halvings); the relative constraint error is then ~|Δ log μ|.
    return (i < iterations) & (hi - lo > 8 * jnp.finfo(jnp.float64).eps * jnp.maximum(1.0, jnp.abs(hi)))

  def body(state):
    i, lo, hi = state
    mid = 0.5 * (lo + hi)
    too_much = jnp.sum(_allocation(gamma2, mid)) > power  # Σ n* decreases in μ: μ must grow.
    return i + 1, jnp.where(too_much, mid, lo), jnp.where(too_much, hi, mid)

  _, lo, hi = jax.lax.while_loop(unfinished, body, (0, lo, hi))
  log_mu = 0.5 * (lo + hi)
  total = jnp.sum(_allocation(gamma2, log_mu))
  nats = 0.5 * jnp.sum(jnp.where(positive, jnp.log1p(_g(jnp.exp(log_mu) * gamma2)), 0.0))
  return log_mu, jnp.abs(total - power) / power, nats


def _check_bound_inputs(gamma2, power) -> np.ndarray:
  gamma2 = np.asarray(gamma2, np.float64)
  if not (np.isfinite(power) and power > 0):
    raise ValueError(f"the PRNU power P must be finite and > 0, got {power}")
  if np.any(gamma2 < 0) or not np.all(np.isfinite(gamma2)) or not np.any(gamma2 > 0):
    raise ValueError("gamma2 must be finite, ≥ 0, and positive somewhere")
  return gamma2


def _solve(gamma2: np.ndarray, power: float, iterations: int) -> tuple[float, float, float]:
  """(μ, relative constraint error, bound in nats), in float64 under a scoped enable_x64."""
  with jax.enable_x64(True):
    log_mu, rel, nats = _bisect_log_mu(jnp.asarray(gamma2, jnp.float64), jnp.float64(power),
                                       iterations=iterations)
    return float(np.exp(float(log_mu))), float(rel), float(nats)


def solve_mu(gamma2, power: float, *, iterations: int = 200) -> tuple[float, float]:
  """μ > 0 solving `½ Σ γ² (sqrt(1 + 4/(μγ²)) − 1) = P`, by bisection on log μ in float64.

  The bracket is analytic (see `_bisect_log_mu`) and a few tens wide in log μ; halving stops at float64
  resolution of log μ (about 50 steps, at most `iterations`), where the constraint's relative error is ~1e-14
  (returned, so callers can check it). float32 cannot reach the 1e-9 target, hence the scoped
  `jax.enable_x64` (never global); the loop is a jitted `lax.while_loop`.

  Args:
    gamma2: float[...] ≥ 0, the local variances γ² (pixels with γ² = 0 get n* = 0 and add nothing).
    power: P > 0 (a total over pixels, the units of Σ γ²).
    iterations: the most bisection steps.

  Returns:
    (μ, relative constraint error |Σ n* − P| / P) as Python floats.
  """
  mu, rel, _ = _solve(_check_bound_inputs(gamma2, power), power, iterations)
  return mu, rel


def optimal_allocation(gamma2, mu: float) -> np.ndarray:
  """The minimising allocation `n* = ½ γ² (sqrt(1 + 4/(μγ²)) − 1)` (0 where γ² = 0), float64 numpy."""
  gamma2 = np.asarray(gamma2, np.float64)
  with jax.enable_x64(True):
    return np.asarray(_allocation(jnp.asarray(gamma2), jnp.log(jnp.float64(mu))))


def bound_at_allocation(gamma2, allocation) -> float:
  """`½ Σ log(1 + γ²/n)` in nats for a given allocation n > 0 (float64 numpy; the objective the ILB minimises)."""
  gamma2 = np.asarray(gamma2, np.float64)
  n = np.asarray(allocation, np.float64)
  if gamma2.shape != n.shape:
    raise ValueError(f"gamma2 {gamma2.shape} and allocation {n.shape} must have the same shape")
  return float(0.5 * np.sum(np.log1p(gamma2 / n)))


def information_leakage_bound(gamma2, power: float, *, iterations: int = 200) -> LeakageBound:
  """The ILB for local variances γ² float[H, W] (or any shape) and PRNU power P (total over pixels).

  P ≤ 0 (no PRNU power measurable: the bound is then +∞ in the model and meaningless in practice) returns NaN
  fields instead of raising, so a table row can say so.
  """
  gamma2 = np.asarray(gamma2, np.float64)
  n_pixels = int(gamma2.size)
  if not (np.isfinite(power) and power > 0) or not np.any(gamma2 > 0):
    nan = float("nan")
    return LeakageBound(nan, nan, nan, nan, nan, float(power), n_pixels)
  mu, rel, nats = _solve(_check_bound_inputs(gamma2, power), power, iterations)
  bits = nats / _LN2
  return LeakageBound(nats, bits, bits / n_pixels, mu, rel, float(power), n_pixels)
