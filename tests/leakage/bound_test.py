"""Tests of the information-leakage bound (dippas_jax.leakage.bound): μ, the water-filling optimum, units."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from dippas_jax import leakage as lk


def _constraint(gamma2, mu):
  """½ Σ γ² (sqrt(1 + 4/(μγ²)) − 1), the paper's form, float64 numpy (γ² > 0 only)."""
  g = gamma2[gamma2 > 0]
  return 0.5 * np.sum(g * (np.sqrt(1.0 + 4.0 / (mu * g)) - 1.0))


def _paper_bound(gamma2, mu):
  """½ Σ log(1 + 2 / (sqrt(1 + 4/(μγ²)) − 1)) in nats, the paper's form (γ² > 0 only)."""
  g = gamma2[gamma2 > 0]
  return 0.5 * np.sum(np.log1p(2.0 / (np.sqrt(1.0 + 4.0 / (mu * g)) - 1.0)))


def _gamma2_cases():
  rng = np.random.default_rng(0)
  heavy = rng.gamma(0.3, 1e-4, size=(48, 40))
  heavy[:3, :5] = 0.0  # Pixels without variance take no allocation.
  return {
      "gamma_heavy_tailed": heavy,
      "lognormal_wide": np.exp(rng.normal(-8.0, 3.0, size=(32, 32))),
      "constant": np.full((16, 16), 2.5e-4),
  }


# ------------------------------------------------------------------------------------------ the bound's math
@pytest.mark.parametrize("case", list(_gamma2_cases()))
@pytest.mark.parametrize("power_ratio", [1e-6, 1e-2, 0.3, 1.0, 50.0, 1e4])
def test_mu_satisfies_constraint(case, power_ratio):
  gamma2 = _gamma2_cases()[case]
  power = power_ratio * gamma2.sum()
  mu, rel = lk.solve_mu(gamma2, power)
  assert mu > 0
  assert rel < 1e-9
  # Independent check in the paper's (non-rearranged) form.
  assert abs(_constraint(gamma2, mu) - power) / power < 1e-9


@pytest.mark.parametrize("case", list(_gamma2_cases()))
def test_bound_equals_log_at_optimal_allocation(case):
  gamma2 = _gamma2_cases()[case]
  power = 0.2 * gamma2.sum()
  bound = lk.information_leakage_bound(gamma2, power)
  n_opt = lk.optimal_allocation(gamma2, bound.mu)
  assert np.all(n_opt[gamma2 == 0] == 0) and np.all(n_opt[gamma2 > 0] > 0)
  np.testing.assert_allclose(n_opt.sum(), power, rtol=1e-9)
  positive = gamma2 > 0
  # Water-filling identity: at n* = ½γ²(sqrt(1 + 4/(μγ²)) − 1), γ²/n* = 2/(sqrt(1 + 4/(μγ²)) − 1).
  np.testing.assert_allclose(lk.bound_at_allocation(gamma2[positive], n_opt[positive]), bound.nats, rtol=1e-10)
  np.testing.assert_allclose(_paper_bound(gamma2, bound.mu), bound.nats, rtol=1e-10)
  np.testing.assert_allclose(bound.bits, bound.nats / np.log(2.0), rtol=1e-12)


@pytest.mark.parametrize("case", list(_gamma2_cases()))
def test_bound_is_minimum_over_allocations(case):
  gamma2 = _gamma2_cases()[case]
  gamma2 = np.where(gamma2 > 0, gamma2, 1e-12)  # Every pixel gets an allocation in the comparisons below.
  power = 0.2 * gamma2.sum()
  bound = lk.information_leakage_bound(gamma2, power).nats
  uniform = lk.bound_at_allocation(gamma2, np.full(gamma2.shape, power / gamma2.size))
  assert bound <= uniform * (1 + 1e-12)
  if case != "constant":  # With constant γ² the uniform allocation is the optimum.
    assert bound < uniform * (1 - 1e-3)
  else:
    np.testing.assert_allclose(bound, uniform, rtol=1e-10)
  rng = np.random.default_rng(1)
  n_opt = lk.optimal_allocation(gamma2, lk.solve_mu(gamma2, power)[0])
  for _ in range(50):
    random = rng.dirichlet(np.full(gamma2.size, 0.5)).reshape(gamma2.shape) * power
    assert lk.bound_at_allocation(gamma2, random) > bound
    # Small feasible perturbations of the optimum (mass moved between pixels) never do better.
    moved = n_opt * np.exp(1e-3 * rng.standard_normal(gamma2.shape))
    moved *= power / moved.sum()
    assert lk.bound_at_allocation(gamma2, moved) >= bound * (1 - 1e-12)


def test_bound_matches_a_generic_optimizer():
  gamma2 = np.array([0.5, 1.0, 2.0, 4.0, 8.0, 0.1])
  power = 3.0
  objective = lambda n: 0.5 * np.sum(np.log1p(gamma2 / n))
  result = optimize.minimize(objective, np.full(6, power / 6), method="SLSQP", bounds=[(1e-9, None)] * 6,
                             constraints=[{"type": "eq", "fun": lambda n: n.sum() - power}],
                             options={"ftol": 1e-14, "maxiter": 500})
  assert result.success
  bound = lk.information_leakage_bound(gamma2, power)
  np.testing.assert_allclose(bound.nats, result.fun, rtol=1e-6)
  np.testing.assert_allclose(lk.optimal_allocation(gamma2, bound.mu), result.x, rtol=1e-3)


def test_units_on_hand_examples():
  # γ² = 1 on a 2×2 image, P = 4: by symmetry n* = 1 per pixel, μ solves ½(sqrt(1 + 4/μ) − 1) = 1 → μ = 1/2,
  # and the bound is ½ · 4 · log2(1 + 1/1) = 2 bits = 0.5 bit per pixel.
  bound = lk.information_leakage_bound(np.ones((2, 2)), 4.0)
  np.testing.assert_allclose(bound.mu, 0.5, rtol=1e-12)
  np.testing.assert_allclose(bound.bits, 2.0, rtol=1e-12)
  np.testing.assert_allclose(bound.bits_per_pixel, 0.5, rtol=1e-12)
  np.testing.assert_allclose(bound.nats, 2.0 * np.log(2.0), rtol=1e-12)
  assert bound.n_pixels == 4
  # One pixel, γ² = 3, P = 1: n* = 1, bound ½ log2(1 + 3) = 1 bit; ½·3(sqrt(1 + 4/(3μ)) − 1) = 1 → μ = 3/4.
  bound = lk.information_leakage_bound(np.array([[3.0]]), 1.0)
  np.testing.assert_allclose([bound.mu, bound.bits, bound.bits_per_pixel], [0.75, 1.0, 1.0], rtol=1e-12)
  # Pixels with γ² = 0 count in the pixel total but add no information.
  bound = lk.information_leakage_bound(np.array([[1.0, 1.0], [0.0, 0.0]]), 2.0)
  np.testing.assert_allclose([bound.bits, bound.bits_per_pixel], [1.0, 0.25], rtol=1e-12)


def test_bound_is_scale_invariant():
  gamma2 = _gamma2_cases()["gamma_heavy_tailed"]
  a = lk.information_leakage_bound(gamma2, 0.1 * gamma2.sum())
  b = lk.information_leakage_bound(gamma2 * 1e6, 0.1 * gamma2.sum() * 1e6)
  np.testing.assert_allclose(a.nats, b.nats, rtol=1e-10)
  np.testing.assert_allclose(a.mu, b.mu * 1e6, rtol=1e-8)


def test_nonpositive_power():
  bound = lk.information_leakage_bound(np.ones((4, 4)), -0.5)
  assert np.isnan(bound.bits_per_pixel) and np.isnan(bound.mu)
  with pytest.raises(ValueError, match="power P"):
    lk.solve_mu(np.ones((4, 4)), 0.0)
  with pytest.raises(ValueError, match="gamma2"):
    lk.solve_mu(-np.ones((4, 4)), 1.0)


def test_solver_stays_float32_outside():
  lk.solve_mu(np.ones((4, 4)), 3.0)
  assert jnp.ones(2).dtype == jnp.float32  # x64 was scoped to the solver.
