"""Tests for dippas_jax.models: MultiRes U-Net topology, size, MACs, init, convolution variants, injection."""

import math

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dippas_jax.dippas import dip
from dippas_jax.dippas import injection
from dippas_jax.dippas import layers
from dippas_jax.dippas import unet as mru

PAPER_PARAMS = 2_219_718
PAPER_MACS_512 = 22_679_433_216
TINY = dict(filters=(4, 8, 8), skips=(4, 4))


def count(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def abstract_variables(model, size=16, depth=512):
  return jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, size, size, depth), jnp.float32))


def numpy_variables(model, *inputs, seed=0):
  """Random variables for `model` drawn with numpy (compiling `model.init` costs ~30 s of threefry on CPU)."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(model.init, jax.random.key(0), *inputs)
  return jax.tree.map(lambda s: jnp.asarray(rng.uniform(-0.5, 0.5, s.shape), s.dtype), shapes)


# ------------------------------------------------------------------------------------------ topology and size

def test_multires_widths_table():
  table = {16: (4, 8, 13), 32: (8, 17, 26), 64: (17, 35, 53), 128: (35, 71, 106), 256: (71, 142, 213)}
  for units, widths in table.items():
    assert mru.multires_widths(units) == widths
  assert [mru.multires_out(u) for u in table] == [25, 51, 105, 212, 426]


def test_parameter_count_paper():
  variables = abstract_variables(mru.MultiResUNet())
  assert count(variables["params"]) == PAPER_PARAMS
  # BN running mean + var (torch also counts 70 num_batches_tracked buffers: 11,992).
  assert count(variables["batch_stats"]) == 11_922
  full = jax.eval_shape(dip.make_model(dip.DipSettings()).init, jax.random.key(0),
                        jax.ShapeDtypeStruct((1, 16, 16, 512), jnp.float32), jax.ShapeDtypeStruct((16, 16), jnp.float32))
  assert count(full["params"]) == PAPER_PARAMS + 1  # + γ
  assert full["params"]["injection"]["gamma"].shape == ()


def test_parameter_count_does_not_depend_on_resolution():
  assert count(abstract_variables(mru.MultiResUNet(), size=64)["params"]) == PAPER_PARAMS


@pytest.mark.parametrize("size", [512, 256])
def test_output_shapes(size):
  model = mru.MultiResUNet()
  variables = abstract_variables(model)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, mutable=["batch_stats"])[0], variables,
                       jax.ShapeDtypeStruct((2, size, size, 512), jnp.float32))
  assert out.shape == (2, size, size, 3) and out.dtype == jnp.float32


def _conv_eqns(size):
  """(lhs shape, rhs shape, params) of every convolution of the paper U-Net's forward at size²."""
  model = mru.MultiResUNet(conv_impl="xla")
  variables = abstract_variables(model)
  jaxpr = jax.make_jaxpr(lambda v, x: model.apply(v, x, mutable=["batch_stats"])[0])(
      variables, jax.ShapeDtypeStruct((1, size, size, 512), jnp.float32))
  return [(e.invars[0].aval.shape, e.invars[1].aval.shape, e.params) for e in jaxpr.jaxpr.eqns
          if e.primitive is lax.conv_general_dilated_p]


def _xla_conv_flops(eqns, explicit_padding):
  """Sum of XLA cost-analysis flops of each convolution lowered on its own (cached per distinct shape)."""
  cache, total = {}, 0.0
  for lhs, rhs, params in eqns:
    stride = params["window_strides"]
    pad = params["padding"]
    key = (lhs, rhs, stride, pad)
    if key not in cache:
      def conv(x, w, stride=stride, pad=pad):
        if explicit_padding:  # pad first: XLA then counts every window position, like the reference's counter
          x = jnp.pad(x, ((0, 0), pad[0], pad[1], (0, 0)))
          pad = ((0, 0), (0, 0))
        return lax.conv_general_dilated(x, w, stride, pad, dimension_numbers=("NHWC", "HWIO", "NHWC"))
      lowered = jax.jit(conv).lower(jax.ShapeDtypeStruct(lhs, jnp.float32), jax.ShapeDtypeStruct(rhs, jnp.float32))
      cost = lowered.cost_analysis()
      cost = cost[0] if isinstance(cost, (list, tuple)) else cost
      cache[key] = cost["flops"]
    total += cache[key]
  return total


def test_conv_macs_match_the_reference():
  eqns512, eqns256 = _conv_eqns(512), _conv_eqns(256)
  assert len(eqns512) == len(eqns256) == 49
  # Analytic count, as the reference's hooks do it (output pixels × k² × C_in × C_out).
  analytic = lambda eqns: sum(  # noqa: E731
      (lhs[1] // p["window_strides"][0]) * (lhs[2] // p["window_strides"][1]) * math.prod(rhs) for lhs, rhs, p in eqns)
  assert analytic(eqns512) == PAPER_MACS_512
  assert analytic(eqns256) * 4 == PAPER_MACS_512
  # XLA cost analysis (2 flops per MAC). Explicit padding: exact; XLA's own padded convolution skips the zero
  # border taps (-0.65 % at 512², -1.3 % at 256²).
  assert _xla_conv_flops(eqns512, explicit_padding=True) / 2 == PAPER_MACS_512
  assert _xla_conv_flops(eqns256, explicit_padding=True) / 2 * 4 == PAPER_MACS_512
  native = _xla_conv_flops(eqns512, explicit_padding=False) / 2
  assert abs(native / PAPER_MACS_512 - 1) < 0.01


def test_conv_order_and_widths_of_the_first_block():
  eqns = _conv_eqns(64)
  first = [rhs for _, rhs, _ in eqns[:4]]  # SPEC §3.2: E0's 3×3 chain, then its 1×1 shortcut
  assert first == [(3, 3, 512, 4), (3, 3, 4, 8), (3, 3, 8, 13), (1, 1, 512, 25)]
  assert sorted(rhs for _, rhs, _ in eqns) == sorted(rhs for _, rhs, _ in _conv_eqns(32))
  strides = [p["window_strides"] for _, _, p in eqns]
  assert strides.count((2, 2)) == 4


# ------------------------------------------------------------------------------------------ init

def test_pytorch_init_bounds_and_tree():
  settings = dip.DipSettings(input_depth=64)
  variables = jax.jit(lambda key: dip.init_variables(settings, key))(jax.random.key(0))
  reference = dip.variable_shapes(settings)
  assert jax.tree.structure(variables) == jax.tree.structure(reference)
  assert jax.tree.map(jnp.shape, variables) == jax.tree.map(jnp.shape, reference)
  flat = flax.traverse_util.flatten_dict(variables["params"])
  for path, leaf in flat.items():
    leaf = np.asarray(leaf)
    if path[-1] == "kernel":
      bound = 1 / math.sqrt(math.prod(leaf.shape[:3]))
      bias = np.asarray(flat[path[:-1] + ("bias",)])
      assert np.abs(leaf).max() <= bound and np.abs(bias).max() <= bound
      if leaf.size > 2000:  # uniform: std = bound/√3
        assert abs(leaf.std() / (bound / math.sqrt(3)) - 1) < 0.1
    elif path[-1] == "scale":
      np.testing.assert_array_equal(leaf, 1.0)
    elif path[-1] == "gamma":
      assert leaf == 0.0



def test_module_init_schemes():
  x = jnp.zeros((1, 8, 8, 50))
  params = jax.jit(mru.Conv(40, 3).init)(jax.random.key(0), x)["params"]  # 'pytorch'
  bound = 1 / math.sqrt(9 * 50)
  assert np.abs(params["kernel"]).max() <= bound and np.abs(params["bias"]).max() <= bound
  assert abs(np.std(params["kernel"]) / (bound / math.sqrt(3)) - 1) < 0.05 and np.all(params["bias"] != 0)
  params = jax.jit(mru.Conv(40, 3, init_scheme="flax").init)(jax.random.key(0), x)["params"]
  assert np.all(np.asarray(params["bias"]) == 0)
  with pytest.raises(ValueError, match="init_scheme"):
    jax.eval_shape(mru.MultiResUNet(init_scheme="torch", **TINY).init, jax.random.key(0), x)


# ------------------------------------------------------------------------------------------ building blocks

CONV_CASES = [(8, 3, 3, 1), (3, 8, 3, 1), (5, 5, 3, 2), (6, 4, 1, 1), (4, 6, 3, 2), (7, 2, 3, 2), (6, 4, 1, 2)]


@pytest.mark.parametrize("cin,cout,k,stride", CONV_CASES)
@pytest.mark.parametrize("impl", ["xla_gemm_grad", "gemm"])
def test_conv_impls_agree(cin, cout, k, stride, impl):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((2, 8, 12, cin)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((k, k, cin, cout)), jnp.float32)
  f = lambda impl: lambda x, w: layers.conv2d(x, w, stride=stride, impl=impl)  # noqa: E731
  y_ref, vjp_ref = jax.vjp(f("xla"), x, w)
  y, vjp = jax.vjp(jax.jit(f(impl)), x, w)
  g = jnp.asarray(rng.standard_normal(y_ref.shape), jnp.float32)
  np.testing.assert_allclose(y, y_ref, atol=2e-5, rtol=1e-5)
  for got, want in zip(vjp(g), vjp_ref(g)):
    np.testing.assert_allclose(got, want, atol=5e-5, rtol=1e-5)


def test_stride2_conv_samples_rows_like_pytorch():
  # PyTorch Conv2d(k=3, stride=2, padding=1): output o reads input rows/cols 2o-1, 2o, 2o+1 (zero outside).
  rng = np.random.default_rng(1)
  x = rng.standard_normal((1, 6, 8, 2)).astype(np.float32)
  w = rng.standard_normal((3, 3, 2, 3)).astype(np.float32)
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  want = np.zeros((1, 3, 4, 3), np.float32)
  for o in range(3):
    for p in range(4):
      want[0, o, p] = np.einsum("hwc,hwcd->d", xp[0, 2 * o:2 * o + 3, 2 * p:2 * p + 3], w)
  for impl in mru.CONV_IMPLS:
    np.testing.assert_allclose(layers.conv2d(jnp.asarray(x), jnp.asarray(w), stride=2, impl=impl), want, atol=1e-5)


def test_upsample_nearest():
  x = jnp.arange(2 * 2 * 3 * 1, dtype=jnp.float32).reshape(2, 2, 3, 1)
  y = mru.upsample_nearest(x)
  np.testing.assert_array_equal(y, np.repeat(np.repeat(np.asarray(x), 2, axis=1), 2, axis=2))


@pytest.mark.parametrize("slope", [None, 0.2])
def test_batch_norm_matches_flax_and_updates_running_stats_like_torch(slope):
  rng = np.random.default_rng(2)
  x = jnp.asarray(rng.standard_normal((1, 6, 5, 4)) * 2 + 1, jnp.float32)
  ours, theirs = mru.BatchNorm(negative_slope=slope), nn.BatchNorm(use_running_average=False, epsilon=1e-5)
  variables = ours.init(jax.random.key(0), x)
  params = {"scale": jnp.arange(4.0) + 0.5, "bias": jnp.arange(4.0) - 1}
  act = (lambda u: u) if slope is None else (lambda u: nn.leaky_relu(u, slope))
  g = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)

  def loss_ours(p, x):
    return jnp.sum(ours.apply({"params": p, "batch_stats": variables["batch_stats"]}, x,
                              mutable=["batch_stats"])[0] * g)

  def loss_flax(p, x):
    stats = theirs.init(jax.random.key(0), x)["batch_stats"]
    return jnp.sum(act(theirs.apply({"params": p, "batch_stats": stats}, x, mutable=["batch_stats"])[0]) * g)

  np.testing.assert_allclose(loss_ours(params, x), loss_flax(params, x), rtol=1e-5, atol=1e-5)
  for a, b in zip(jax.tree.leaves(jax.grad(loss_ours, (0, 1))(params, x)),
                  jax.tree.leaves(jax.grad(loss_flax, (0, 1))(params, x))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
  _, mutated = ours.apply({"params": params, "batch_stats": variables["batch_stats"]}, x, mutable=["batch_stats"])
  xs = np.asarray(x).reshape(-1, 4)
  np.testing.assert_allclose(mutated["batch_stats"]["mean"], 0.1 * xs.mean(0), rtol=1e-5)
  np.testing.assert_allclose(mutated["batch_stats"]["var"], 0.9 + 0.1 * xs.var(0, ddof=1), rtol=1e-5)


def test_network_input_provider_equals_array_input():
  model = mru.MultiResUNet(**TINY)
  depth, size = 20, 8
  z = jax.random.normal(jax.random.key(3), (depth, size, size))
  variables = numpy_variables(model, jnp.zeros((1, size, size, depth)))
  apply = lambda x: jax.jit(lambda: model.apply(variables, x, mutable=["batch_stats"])[0])()  # noqa: E731
  want = apply(z.transpose(1, 2, 0)[None])
  np.testing.assert_allclose(apply(dip.PlanarInput(z, None, 0.0, "full")), want, atol=1e-5)
  # 'full': the provider adds exactly std·N(0,1) drawn from its key, in planar layout.
  key = jax.random.key(4)
  noise = dip.standard_normal(key, (depth, size * size)).reshape(depth, size, size)
  want = apply((z + 0.1 * noise).transpose(1, 2, 0)[None])
  np.testing.assert_allclose(apply(dip.PlanarInput(z, key, 0.1, "full")), want, atol=1e-5)


def test_unet_rejects_bad_sizes():
  with pytest.raises(ValueError, match="10x8 is not a multiple of 4"):
    jax.eval_shape(mru.MultiResUNet(**TINY).init, jax.random.key(0), jnp.zeros((1, 10, 8, 3)))


# ------------------------------------------------------------------------------------------ injection

@pytest.mark.parametrize("mode,expected", [("paper", (2, 5)), ("legacy_transposed", (5, 2))])
def test_delta_fingerprint_changes_one_pixel(mode, expected):
  rng = np.random.default_rng(5)
  x_hat = jnp.asarray(rng.uniform(0.2, 0.8, (1, 8, 8, 3)), jnp.float32)
  k = np.zeros((8, 8), np.float32)
  k[2, 5] = 1.0
  y = injection.inject(x_hat, jnp.asarray(k), jnp.float32(0.5), mode=mode)
  changed = np.argwhere(np.any(np.asarray(y) != np.asarray(x_hat), axis=-1))
  assert changed.tolist() == [[0, *expected]]
  np.testing.assert_allclose(y[0, expected[0], expected[1]], 1.5 * x_hat[0, expected[0], expected[1]], rtol=1e-6)


def test_delta_fingerprint_through_the_network():
  """With the U-Net fixed, the injected output differs from x̂ at (h, w) only; x̂ does not depend on K."""
  model = injection.InjectedUNet(mru.MultiResUNet(**TINY), mode="paper")
  z = jax.random.normal(jax.random.key(0), (1, 8, 8, 5))
  k = jnp.zeros((8, 8)).at[3, 6].set(1.0)
  variables = numpy_variables(model, z, k)
  variables["params"]["injection"]["gamma"] = jnp.float32(0.25)
  apply = jax.jit(lambda k: model.apply(variables, z, k, mutable=["batch_stats"])[0])
  x_hat, y = apply(k)
  x_hat0, _ = apply(jnp.zeros((8, 8)))
  np.testing.assert_array_equal(x_hat, x_hat0)
  assert np.argwhere(np.any(np.asarray(y != x_hat), axis=-1)).tolist() == [[0, 3, 6]]


def test_injection_modes():
  x_hat = jnp.full((1, 4, 6, 3), 0.5)
  k = jnp.ones((4, 6))
  np.testing.assert_array_equal(injection.inject(x_hat, k, jnp.float32(3.0), mode="none"), x_hat)
  with pytest.raises(ValueError, match="square"):
    injection.inject(x_hat, k, jnp.float32(1.0), mode="legacy_transposed")
  with pytest.raises(ValueError, match="Unsupported injection"):
    injection.inject(x_hat, k, jnp.float32(1.0), mode="transposed")
  with pytest.raises(ValueError, match="does not match"):
    injection.inject(x_hat, jnp.ones((6, 4)), jnp.float32(1.0))


def test_gamma_init_and_projection():
  module = injection.PrnuInjection()
  variables = module.init(jax.random.key(0), jnp.ones((1, 4, 4, 3)), jnp.ones((4, 4)))
  assert variables["params"]["gamma"] == 0.0
  params = {"unet": {"w": jnp.ones(2)}, "injection": {"gamma": jnp.float32(-0.3)}}
  projected = injection.project_gamma(params)
  assert projected["injection"]["gamma"] == 0.0 and params["injection"]["gamma"] == -0.3
  assert injection.project_gamma({"injection": {"gamma": jnp.float32(0.2)}})["injection"]["gamma"] == np.float32(0.2)


def test_sigmoid_gradient_floor():
  x = jnp.asarray([-30.0, 0.0, 30.0])
  np.testing.assert_array_equal(layers.sigmoid(x, 0.05), jax.nn.sigmoid(x))  # the forward is the sigmoid
  plain = jax.grad(lambda v: jnp.sum(layers.sigmoid(v, 0.0)))(x)
  floored = jax.grad(lambda v: jnp.sum(layers.sigmoid(v, 0.05)))(x)
  np.testing.assert_allclose(plain, jax.grad(lambda v: jnp.sum(jax.nn.sigmoid(v)))(x), rtol=1e-6)
  np.testing.assert_allclose(floored, [0.05, 0.25, 0.05], rtol=1e-6)  # saturated outputs still get gradient
