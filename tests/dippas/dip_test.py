"""Tests for dippas_jax.dip: loop semantics, batching, sharding, compile-once, ground truth, input validation.

The engine runs a tiny network (3 scales, widths 4-8, input depth 32) on 16×16 images so that each compiled
runner costs ~10-20 s of XLA compile on a 2-core CPU; the runners are shared by module-scoped fixtures and built
with `chex.assert_max_traces(n=1)`, so every call in this file also checks that the chunk runner never retraces.
"""

import dataclasses
import functools
import os
import pathlib
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dippas_jax.dippas import dip
from dippas_jax.prnu import metrics

# One xdist worker runs this module (`--dist loadgroup`): its module fixtures and compiled programs are made once.
pytestmark = pytest.mark.xdist_group("dip")

SIZE = 16
NUM_IMAGES = 3
CHUNK = 4
CAP = 64  # capacity of the recording hook (steps)
TINY = dip.DipSettings(filters=(4, 8, 8), skips=(4, 4), input_depth=32, chunk_size=CHUNK,
                       perturbation="projected", projected_min_size=0, conv_impl="gemm", fast_compile=True)


def make_images(n=NUM_IMAGES, size=SIZE, seed=0):
  """Smooth colour images times (1 + s·K) with a known fingerprint K ~ N(0, 1) per image and s = 0.05, 0.1, 0."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size] / size
  strengths = [0.05, 0.1, 0.0, 0.05][:n]
  images, fingerprints = [], []
  for i, s in enumerate(strengths):
    smooth = np.stack([0.5 + 0.3 * np.sin(2 * np.pi * (xx * (1 + c) + yy * (1 + i))) for c in range(3)], -1)
    k = rng.standard_normal((size, size)).astype(np.float32)
    images.append(np.clip(smooth * (1 + s * k[..., None]), 0, 1).astype(np.float32))
    fingerprints.append(k)
  return np.stack(images), np.stack(fingerprints), np.asarray(strengths)


def recording_hook(capacity=CAP):
  """A hook that records, per image, the steps and PSNRs it is handed, the PSNR it recomputes from the uint8 image
  against its own copy of the target, and the last image."""

  def init(image, fingerprint):
    del fingerprint
    return dict(steps=jnp.full((capacity,), -1, jnp.int32), psnr=jnp.full((capacity,), jnp.nan, jnp.float32),
                own_psnr=jnp.full((capacity,), jnp.nan, jnp.float32), count=jnp.zeros((), jnp.int32),
                target_u8=dip.quantize_u8(image), last=jnp.zeros(image.shape, jnp.uint8))

  def update(c, image_u8, psnr, step, active):  # one image; the runner hands the hook a batch
    i = jnp.minimum(c["count"], capacity - 1)
    new = dict(steps=c["steps"].at[i].set(step), psnr=c["psnr"].at[i].set(psnr),
               own_psnr=c["own_psnr"].at[i].set(metrics.psnr(image_u8, c["target_u8"])), count=c["count"] + 1,
               target_u8=c["target_u8"], last=image_u8)
    return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, c)

  return dip.CandidateHook(init=init, update=jax.vmap(update))


def run(runner, images, fingerprints, ids, *, chunks, tau_stop=float("inf"), max_steps=10**6, seed=0,
        injection="paper", params0=None):
  """init + `chunks` chunk calls; returns (history dict [N, T], params after each chunk [chunks][N, P], state)."""
  images_f, images_u8, fps = dip.validate_inputs(images, fingerprints, downsampling=4)
  n = len(ids)
  state, inputs = runner.init(seed, np.asarray(ids, np.int32), images_f, images_u8, fps, np.ones(n, bool),
                              tau_stop, max_steps, injection=injection, params0=params0)
  hists, params = [], []
  for _ in range(chunks):
    state, hist = runner.run_chunk(state, inputs)
    hists.append({k: np.asarray(v) for k, v in dataclasses.asdict(hist).items()})
    params.append(np.asarray(state.params))
  history = {k: np.concatenate([h[k] for h in hists], axis=1) for k in hists[0]}
  return history, params, jax.device_get(state)


def _distance(a, b) -> np.ndarray:
  """Relative L2 distance along the last axis (per image for [N, P] params, per step for [N, T] series)."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return np.linalg.norm(a - b, axis=-1) / np.maximum(np.linalg.norm(a, axis=-1), 1e-30)


def assert_same_up_to_rounding(got, want, noise, *, factor=10.0):
  """Two computations that differ only in float rounding (batched vs single GEMMs, another convolution
  formulation, another device split) agree as well as the rounding noise of the computation allows: their
  distance is at most `factor` times `noise`, the distance between the run and the same run from initial
  parameters moved by the float32 rounding bound of one contraction (`rounding_noise`), plus 64 ulps."""
  floor = 64 * np.finfo(np.float32).eps
  np.testing.assert_array_less(_distance(got, want), factor * np.asarray(noise) + floor)


@pytest.fixture(scope="module")
def runner3():
  return dip.build_runner(TINY, hook=recording_hook(), wrap_chunk_fn=functools.partial(chex.assert_max_traces, n=1))


@pytest.fixture(scope="module")
def runner1():
  return dip.build_runner(TINY, hook=recording_hook(), wrap_chunk_fn=functools.partial(chex.assert_max_traces, n=1))


@pytest.fixture(scope="module")
def data():
  return make_images()


@pytest.fixture(scope="module")
def free_run(runner3, data):
  """24 steps of the 3 images with τ_stop = inf."""
  images, fingerprints, _ = data
  return run(runner3, images, fingerprints, [0, 1, 2], chunks=6)


@pytest.fixture(scope="module")
def rounding_noise(runner3, data, free_run):
  """The rounding noise of 2 chunks (8 steps) of the free run, per image: (loss envelope [3, 8], params [3]).

  Two formulations of the same step differ, at every contraction of length K, by at most γ_K = K·eps relative
  (float32 summation in another order). The baseline moves every initial parameter by that much (random signs,
  K = the longest contraction of the test network: 9·D = 288 taps of the input layer) and measures how far 8
  steps drift from the free run on this machine; the loss envelope is the running maximum over the steps.
  """
  images, fingerprints, _ = data
  history, params, _ = free_run
  images_f, images_u8, fps = dip.validate_inputs(images, fingerprints, downsampling=4)
  state, _ = runner3.init(0, np.arange(3, dtype=np.int32), images_f, images_u8, fps, np.ones(3, bool))
  p0 = np.asarray(state.params)
  gamma_k = 9 * TINY.input_depth * np.finfo(np.float32).eps
  signs = np.random.default_rng(0).choice([-1.0, 1.0], size=p0.shape).astype(np.float32)
  moved, moved_params, _ = run(runner3, images, fingerprints, [0, 1, 2], chunks=2,
                               params0=p0 * (1 + gamma_k * signs))
  loss = np.abs(moved["loss"] - history["loss"][:, :2 * CHUNK]) / np.abs(history["loss"][:, :2 * CHUNK])
  return np.maximum.accumulate(loss, axis=1), _distance(moved_params[-1], params[1])


# ------------------------------------------------------------------------------------------ pure helpers

def test_quantize_and_psnr_match_numpy():
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.uniform(-0.1, 1.1, 997), [0, 1, 1 / 255, 254.99 / 255, 0.5, -1e-9]]).astype(np.float32)
  np.testing.assert_array_equal(dip.quantize_u8(jnp.asarray(x)),
                                np.floor(np.clip(255 * x, 0, 255)).astype(np.uint8))
  a = rng.integers(0, 256, (2, 16, 12, 3), dtype=np.uint8)
  b = rng.integers(0, 256, (2, 16, 12, 3), dtype=np.uint8)
  mse = np.mean((a.astype(np.float64) - b) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(metrics.psnr(jnp.asarray(a), jnp.asarray(b)), 10 * np.log10(255 ** 2 / mse), rtol=1e-6)
  assert np.isinf(metrics.psnr(jnp.asarray(a), jnp.asarray(a))).all()
  # Large errors: no uint8 wrap-around (SPEC §2.11: 20 grey levels on one pixel of 48 -> 38.92 dB).
  c = np.zeros((4, 4, 3), np.uint8)
  d = c.copy()
  d[0, 0, 0] = 20
  assert abs(float(metrics.psnr(jnp.asarray(c), jnp.asarray(d))) - 38.92) < 0.01


def test_projected_perturbation_has_the_reference_distribution():
  """Forward outputs and kernel gradients of aᵀ(z + σn): the same joint mean and covariance as drawing n in full."""
  rng = np.random.default_rng(0)
  d, m, p, std = 6, 2, 3, 0.7
  a = jnp.asarray(rng.standard_normal((d, m)), jnp.float32)
  z = jnp.asarray(rng.standard_normal((d, p)), jnp.float32)
  g = jnp.asarray(rng.standard_normal((m, p)), jnp.float32)

  def sample(key):
    out, vjp = jax.vjp(lambda a: dip.projected_perturbed_product(a, z, key, std, "highest"), a)
    return jnp.concatenate([out.ravel(), vjp(g)[0].ravel()])

  s = np.asarray(jax.jit(jax.vmap(sample))(jax.random.split(jax.random.key(1), 40_000)), np.float64)
  # Reference moments of (out = aᵀ(z + σn), grad = (z + σn)·gᵀ), n ~ N(0, I): linear in x = vec(z + σn).
  an, zn, gn = (np.asarray(v, np.float64) for v in (a, z, g))
  lin = np.zeros((m * p + d * m, d * p))
  for mm in range(m):
    for pp in range(p):
      lin[mm * p + pp, np.arange(d) * p + pp] = an[:, mm]
  for i in range(d):
    for j in range(m):
      lin[m * p + i * m + j, i * p + np.arange(p)] = gn[j]
  mean, cov = lin @ zn.ravel(), std ** 2 * lin @ lin.T
  stderr = np.sqrt(np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / np.sqrt(len(s))
  assert np.all(np.abs(s.mean(0) - mean) < 5 * np.sqrt(np.diag(cov) / len(s)) + 1e-6)
  assert np.all(np.abs(np.cov(s.T) - cov) < 6 * stderr + 1e-6)


def test_projection_is_used_where_it_saves_work():
  paper = dip.DipSettings()
  assert dip.first_layer_columns(paper) == 61  # 9·4 (3×3 conv) + 25 (1×1 shortcut) columns over the 512 inputs
  kw = dict(depth=512, num_kernels=61, min_size=dip.PROJECTED_MIN_SIZE)
  assert not dip.draws_projected("projected", num_values=512 * 64 * 64, **kw)   # 64²: the full draw is cheaper
  assert dip.draws_projected("projected", num_values=512 * 128 * 128, **kw)
  assert not dip.draws_projected("full", num_values=512 * 128 * 128, **kw)
  assert not dip.draws_projected("projected", depth=32, num_kernels=61, num_values=2**30, min_size=0)  # M ≥ D


def test_standard_normal_is_standard_normal_and_batch_invariant():
  """The engine's half-hash threefry normal: N(0, 1) moments and quantiles, independent neighbours, the same
  samples vmapped as one at a time; other key implementations are `jax.random.normal`."""
  from scipy import stats
  key = jax.random.key(3)
  x = np.asarray(jax.jit(lambda k: dip.standard_normal(k, (1000, 1000)))(key), np.float64).ravel()
  n = x.size
  assert abs(x.mean()) < 5 / np.sqrt(n) and abs(x.var() - 1) < 5 * np.sqrt(2 / n)
  assert stats.kstest(x, "norm").pvalue > 1e-3
  assert abs(np.corrcoef(x[:-1], x[1:])[0, 1]) < 5 / np.sqrt(n)            # neighbouring counters
  assert abs(np.corrcoef(x[: n // 2], x[n // 2:])[0, 1]) < 5 / np.sqrt(n)  # the two words of each block
  keys = jax.random.split(key, 3)
  batched = jax.vmap(lambda k: dip.standard_normal(k, (5, 7)))(keys)
  for i in range(3):
    np.testing.assert_array_equal(batched[i], dip.standard_normal(keys[i], (5, 7)))
  rbg = jax.random.key(3, impl="rbg")
  np.testing.assert_array_equal(dip.standard_normal(rbg, (4, 4)), jax.random.normal(rbg, (4, 4)))


# ------------------------------------------------------------------------------------------ validation

def test_bad_inputs_are_rejected_before_compute():
  images, fingerprints, _ = make_images(n=1)
  kwargs = dict(settings=dip.DipSettings())
  with pytest.raises(ValueError, match=r"not a multiple of 16.*crop to 16x16 or pad to 32x32"):
    dip.optimize(np.zeros((1, 30, 17, 3), np.float32), np.zeros((30, 17)), **kwargs)
  with pytest.raises(ValueError, match="fingerprints must be"):
    dip.optimize(images, np.zeros((SIZE, SIZE + 16)), **kwargs)
  bad = images.copy()
  bad[0, 1, 2, 0] = np.nan
  with pytest.raises(ValueError, match="NaN or inf"):
    dip.optimize(bad, fingerprints, **kwargs)
  bad_k = fingerprints.copy()
  bad_k[0, 3, 3] = np.inf
  with pytest.raises(ValueError, match="finite"):
    dip.optimize(images, bad_k, **kwargs)
  with pytest.raises(ValueError, match=r"\[0, 1\]"):
    dip.optimize(images * 255, fingerprints, **kwargs)
  with pytest.raises(ValueError, match="square"):
    dip.optimize(np.zeros((1, 16, 32, 3), np.float32), np.zeros((16, 32)),
                 settings=dataclasses.replace(dip.DipSettings(), injection="legacy_transposed"))
  with pytest.raises(ValueError, match="Unsupported optimizer"):
    dip.optimize(images, fingerprints,
                 settings=dataclasses.replace(dip.DipSettings(), optimizer=dip.OptimizerSettings(name="lbfgs")))
  with pytest.raises(ValueError, match="Unsupported batching"):
    dip.build_runner(dataclasses.replace(dip.DipSettings(), batching="pmap"))


def test_validate_inputs_uint8_and_float():
  rng = np.random.default_rng(1)
  u8 = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  f, q, k = dip.validate_inputs(u8, np.zeros((16, 16)))
  np.testing.assert_array_equal(q, u8)
  assert f.dtype == np.float32 and k.shape == (2, 16, 16)
  _, q2, _ = dip.validate_inputs(u8 / 255.0, np.zeros((2, 16, 16)))
  np.testing.assert_array_equal(q2, u8)  # q(v/255) = v


# ------------------------------------------------------------------------------------------ loop semantics

def test_history_psnr_gamma_and_hook_alignment(free_run):
  history, _, state = free_run
  steps = NUM_IMAGES, CHUNK * 6
  assert history["psnr"].shape == steps and history["active"].all()
  np.testing.assert_array_equal(history["step"], np.broadcast_to(np.arange(steps[1]), steps))
  hook = state.candidates
  np.testing.assert_array_equal(hook["count"], steps[1])
  np.testing.assert_array_equal(hook["steps"][:, :steps[1]], history["step"])
  np.testing.assert_array_equal(hook["psnr"][:, :steps[1]], history["psnr"])
  # The PSNR recorded is the PSNR of the uint8 image handed to the hook (truncated q(x̂) vs q(I)) ...
  np.testing.assert_allclose(hook["own_psnr"][:, :steps[1]], history["psnr"], rtol=1e-6)
  # ... and a float64 numpy recomputation of the last one agrees.
  target = hook["target_u8"].astype(np.float64)
  mse = np.mean((hook["last"].astype(np.float64) - target) ** 2, axis=(1, 2, 3))
  np.testing.assert_allclose(history["psnr"][:, -1], 10 * np.log10(255 ** 2 / mse), rtol=1e-5)
  # γ starts at 0, is recorded before its update and never goes negative.
  np.testing.assert_array_equal(history["gamma"][:, 0], 0.0)
  assert np.all(history["gamma"] >= 0)
  assert np.all(np.isfinite(history["loss"]))
  assert not state.done.any() and not state.stopped.any()
  np.testing.assert_array_equal(state.best_psnr, np.max(history["psnr"], axis=1))
  np.testing.assert_array_equal(state.best_step, np.argmax(history["psnr"], axis=1))


def test_stop_rule_records_the_crossing_step_and_skips_its_update(runner3, data, free_run):
  images, fingerprints, _ = data
  history, params, _ = free_run
  psnr = history["psnr"][0]
  # A chunk boundary r where image 0 sets a new PSNR record: with τ between the old and new record the image
  # stops at step r exactly, before the update of step r, i.e. with the params the free run had after chunk r/4-1.
  records = [r for r in range(CHUNK, psnr.size, CHUNK) if psnr[r] > psnr[:r].max()]
  assert records, f"no PSNR record at a chunk boundary: {psnr}"
  r = records[0]
  tau = float(psnr[:r].max() + psnr[r]) / 2
  stopped, stopped_params, state = run(runner3, images, fingerprints, [0, 1, 2], chunks=6, tau_stop=tau)
  assert state.stopped[0] and state.done[0] and int(state.step[0]) == r + 1
  # Identical trajectory up to and including the crossing iteration, which is recorded ...
  for key in ("loss", "psnr", "gamma", "step"):
    np.testing.assert_array_equal(stopped[key][0, :r + 1], history[key][0, :r + 1])
  assert stopped["psnr"][0, r] > tau and np.all(stopped["psnr"][0, :r] <= tau)
  # ... and handed to the hook, which sees nothing after it.
  assert int(state.candidates["count"][0]) == r + 1 and int(state.candidates["steps"][0, r]) == r
  # No update at the crossing step: the params equal those used by its forward, and stay so.
  chunk = r // CHUNK
  np.testing.assert_array_equal(stopped_params[chunk][0], params[chunk - 1][0])
  np.testing.assert_array_equal(stopped_params[-1][0], params[chunk - 1][0])
  # Inactive steps are masked in the history.
  assert not stopped["active"][0, r + 1:].any() and np.isnan(stopped["psnr"][0, r + 1:]).all()
  assert (stopped["step"][0, r + 1:] == -1).all()
  # Other images are unaffected if they did not cross τ.
  other = [i for i in (1, 2) if np.all(history["psnr"][i] <= tau)]
  for i in other:
    np.testing.assert_array_equal(stopped["psnr"][i], history["psnr"][i])


def test_iteration_cap(runner3, data):
  images, fingerprints, _ = data
  history, _, state = run(runner3, images, fingerprints, [0, 1, 2], chunks=2, max_steps=5)
  np.testing.assert_array_equal(state.step, 5)
  assert state.done.all() and not state.stopped.any()
  assert history["active"][:, :5].all() and not history["active"][:, 5:].any()


# ------------------------------------------------------------------------------------------ batching, sharding

def test_vmap_equals_single_runs_and_batch_composition(runner1, runner3, data, free_run, rounding_noise):
  images, fingerprints, _ = data
  history, params, _ = free_run
  loss_noise, params_noise = rounding_noise
  for i in range(NUM_IMAGES):
    single, single_params, _ = run(runner1, images[i:i + 1], fingerprints[i:i + 1], [i], chunks=2)
    assert_same_up_to_rounding(single["loss"][0][:, None], history["loss"][i, :2 * CHUNK][:, None], loss_noise[i])
    assert_same_up_to_rounding(single_params[-1][0], params[1][i], params_noise[i])
  # The same images in another order, with their ids: the same per-image results.
  perm = [2, 0, 1]
  permuted, permuted_params, _ = run(runner3, images[perm], fingerprints[perm], perm, chunks=2)
  assert_same_up_to_rounding(permuted["loss"][..., None], history["loss"][perm, :2 * CHUNK][..., None],
                             loss_noise[perm])
  assert_same_up_to_rounding(permuted_params[-1], params[1][perm], params_noise[perm])


def test_gpu_defaults_agree_with_the_cpu_formulation(data, free_run, rounding_noise):
  """The GPU path (XLA convolutions, perturbation drawn in full) runs here and computes what the gemm path does."""
  gpu = dip.resolve(dataclasses.replace(TINY, conv_impl="auto", perturbation="auto"), platform="gpu")
  assert (gpu.conv_impl, gpu.perturbation) == ("xla", "full")
  images, fingerprints, _ = data
  loss_noise, params_noise = rounding_noise
  want, want_params, _ = run(dip.build_runner(dataclasses.replace(gpu, conv_impl="gemm")), images, fingerprints,
                             [0, 1, 2], chunks=2)
  got, got_params, _ = run(dip.build_runner(gpu), images, fingerprints, [0, 1, 2], chunks=2)
  assert_same_up_to_rounding(got["loss"][..., None], want["loss"][..., None], loss_noise)
  assert_same_up_to_rounding(got_params[-1], want_params[-1], params_noise)


@pytest.mark.slow  # one full-optimization compile (~30 s on 2 cores): `pytest -m slow`, kept out of CI's 10 minutes
def test_fast_compile_computes_what_the_default_compilation_does(data, free_run, rounding_noise):
  """Every other runner test compiles with `fast_compile` (XLA backend optimization level 0); users' runs do not.
  The two compilations of the same step agree up to float32 rounding noise."""
  assert dip.compiler_options(TINY) == {"xla_backend_optimization_level": 0}
  assert dip.compiler_options(dataclasses.replace(TINY, fast_compile=False)) is None
  images, fingerprints, _ = data
  loss_noise, params_noise = rounding_noise
  want, want_params, _ = free_run
  got, got_params, _ = run(dip.build_runner(dataclasses.replace(TINY, fast_compile=False)), images, fingerprints,
                           [0, 1, 2], chunks=2)
  assert_same_up_to_rounding(got["loss"][..., None], want["loss"][:, :got["loss"].shape[1], None], loss_noise)
  assert_same_up_to_rounding(got_params[-1], want_params[1], params_noise)


def test_compiles_once(runner3):
  # Every call through runner3 in this module went through chex.assert_max_traces(n=1); the jit cache agrees.
  cache_size = getattr(runner3.run_chunk, "_cache_size", None)
  if cache_size is not None:
    assert cache_size() == 1


SHARDED_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    sys.path[:0] = [{repo!r}, {tests!r}]
    import jax, numpy as np
    import dip_test as t
    from dippas_jax.dippas import dip
    assert len(jax.devices()) == 4, jax.devices()
    runner = dip.build_runner(t.TINY, hook=t.recording_hook(), mesh=dip.make_mesh())
    images, fingerprints, _ = t.make_images()
    pad = np.array([0, 1, 2, 2])  # 3 images on 4 devices: one dummy, done from the start
    f, u8, k = dip.validate_inputs(images[pad], fingerprints[pad], downsampling=4)
    state, inputs = runner.init(0, np.array([0, 1, 2, 2], np.int32), f, u8, k, np.array([1, 1, 1, 0], bool),
                                float("inf"), 10**6)
    losses = []
    for _ in range(2):
      state, hist = runner.run_chunk(state, inputs)
      losses.append(np.asarray(hist.loss))
    assert not np.asarray(hist.active)[3].any()
    assert len(state.params.sharding.device_set) == 4
    np.savez({out!r}, loss=np.concatenate(losses, 1)[:3], params=np.asarray(state.params)[:3])
""")


@pytest.mark.slow  # a subprocess with 4 forced devices compiles its own runner (~25 s): `pytest -m slow`
def test_sharded_over_4_devices_equals_1_device(free_run, rounding_noise, tmp_path):
  history, params, _ = free_run
  out = tmp_path / "sharded.npz"
  repo = pathlib.Path(__file__).resolve().parents[2]
  script = SHARDED_SCRIPT.format(repo=str(repo), tests=str(pathlib.Path(__file__).parent), out=str(out))
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  sharded = np.load(out)
  loss_noise, params_noise = rounding_noise
  assert_same_up_to_rounding(sharded["loss"][..., None], history["loss"][:, :2 * CHUNK][..., None], loss_noise)
  assert_same_up_to_rounding(sharded["params"], params[1], params_noise)


# ------------------------------------------------------------------------------------------ ground truth

@pytest.fixture(scope="module")
def long_run(runner3, data):
  images, fingerprints, _ = data
  return run(runner3, images, fingerprints, [0, 1, 2], chunks=100)  # 400 steps


def test_gamma_finds_the_true_strength_in_paper_mode(long_run, data):
  _, _, strengths = data
  history, _, _ = long_run
  gamma = np.mean(history["gamma"][:, -100:], axis=1)
  # Strengths 0.05, 0.1, 0 (a clean image: γ has nothing to explain).
  assert 0.03 < gamma[0] < 0.09, gamma
  assert 0.06 < gamma[1] < 0.14, gamma
  assert gamma[2] < 0.025, gamma
  assert gamma[1] > gamma[0] > gamma[2]


def test_loss_decreases_and_psnr_rises(long_run):
  history, _, _ = long_run
  loss, psnr = history["loss"], history["psnr"]
  assert np.all(np.mean(loss[:, -20:], axis=1) < 0.15 * np.mean(loss[:, :20], axis=1))
  assert np.all(np.max(psnr, axis=1) > 20.0), np.max(psnr, axis=1)
  assert np.all(np.max(psnr, axis=1) - psnr[:, 0] > 7.0)


def test_gamma_stays_near_zero_with_the_transposed_fingerprint(runner3, data):
  images, fingerprints, _ = data
  history, _, _ = run(runner3, images, fingerprints, [0, 1, 2], chunks=100, injection="legacy_transposed")
  gamma = np.mean(history["gamma"][:, -100:], axis=1)
  assert np.all(gamma < 0.015), gamma
  assert np.all(history["gamma"] >= 0)


def test_gamma_stays_zero_without_injection(runner3, data):
  images, fingerprints, _ = data
  history, _, _ = run(runner3, images, fingerprints, [0, 1, 2], chunks=5, injection="none")
  np.testing.assert_array_equal(history["gamma"], 0.0)


# ------------------------------------------------------------------------------------------ driver and configs

def _dip_config():
  try:
    from dippas_jax.configs import dip as dip_config  # pylint: disable=g-import-not-at-top
  except ImportError:  # a checkout that is not pip-installed
    dip_config = pytest.importorskip("configs.dip")
  return dip_config


def test_configs():
  dip_config = _dip_config()
  paper = dip.DipSettings.from_config(dip_config.get_config())
  assert paper == dip.DipSettings(), "configs/dip.py defaults must be the engine's (paper) defaults"
  assert (paper.tau_stop, paper.max_steps, paper.optimizer.learning_rate) == (39.0, 10001, 1e-3)
  tiny = dip.DipSettings.from_config(dip_config.get_config("tiny,injection=legacy_transposed,optimizer=adam"))
  assert tiny.filters == (4, 8, 8) and tiny.injection == "legacy_transposed" and tiny.optimizer.name == "adam"
  config = dip_config.get_config("batching=map")
  assert config.runner.batching == "map"
  with pytest.raises(AttributeError):
    config.tua_stop = 3.0  # locked: typos are errors
  with pytest.raises(ValueError, match="Unsupported injection"):
    dip_config.get_config("injection=transposed")
  with pytest.raises(ValueError, match="Unknown config"):
    dip_config.get_config("huge")


def test_optimize_driver_stops_pads_and_reports(data):
  images, fingerprints, _ = data
  chunks = []
  settings = dataclasses.replace(TINY, tau_stop=12.0, max_steps=40)
  result = dip.optimize(images[:2], fingerprints[:2], settings=settings, seed=3, on_chunk=chunks.append)
  assert result.history["psnr"].shape == (2, int(result.num_steps.max()))
  for i in range(2):
    n = int(result.num_steps[i])
    psnr = result.history["psnr"][i]
    if result.stopped[i]:  # stopped at the first step above τ, which is recorded
      assert psnr[n - 1] > 12.0 and np.all(psnr[:n - 1] <= 12.0)
    else:
      assert n == 40 and np.all(psnr[:n] <= 12.0)
    assert result.history["active"][i, :n].all() and not result.history["active"][i, n:].any()
  assert result.stopped.any()
  assert [c.steps for c in chunks] == [CHUNK * (c + 1) for c in range(len(chunks))]
  assert chunks[-1].num_active == 0 and len(chunks) == -(-int(result.num_steps.max()) // CHUNK)
  last_gamma = [result.history["gamma"][i, int(result.num_steps[i]) - 1] for i in range(2)]
  np.testing.assert_allclose(result.gamma, last_gamma, atol=1.01e-3)  # one update (≤ lr) after the last forward
  assert np.all(result.gamma >= 0)


@pytest.mark.slow
def test_benchmark_script_smoke(capsys):
  import importlib.util  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl.testing import flagsaver  # pylint: disable=g-import-not-at-top
  path = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "benchmark_dip.py"
  spec = importlib.util.spec_from_file_location("benchmark_dip", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  flags.FLAGS(["benchmark_dip.py"])
  with flagsaver.flagsaver(config="tiny", sizes=["32"], batch=["2"], formulations=["vmap"], precisions=["highest"],
                           steps=2, chunks=1, isolate=False, hook=["none", "assembly"]):
    module.main(["benchmark_dip.py"])
  out = capsys.readouterr().out
  assert "| 32 | 2 | vmap | highest | none |" in out and "| 32 | 2 | vmap | highest | assembly |" in out
  assert "error" not in out


def test_runner_reports_the_settings_it_was_asked_for():
  """τ_stop, max_steps and the injection mode are runtime data: runners that differ only there share the
  compiled chunk, but each reports (and defaults to) its own settings."""
  a = dip.build_runner(dataclasses.replace(TINY, tau_stop=30.0, max_steps=77, injection="none"))
  b = dip.build_runner(TINY)
  assert (a.settings.tau_stop, a.settings.max_steps, a.settings.injection) == (30.0, 77, "none")
  assert b.settings == TINY and a.run_chunk is b.run_chunk
  images, fingerprints, _ = make_images(n=1)
  f, u8, k = dip.validate_inputs(images, fingerprints, downsampling=4)
  _, inputs = a.init(0, np.zeros(1, np.int32), f, u8, k, np.ones(1, bool))
  assert float(inputs.tau_stop[0]) == 30.0 and int(inputs.max_steps[0]) == 77
  np.testing.assert_array_equal(inputs.injected, 0.0)


def test_weights_file_round_trip_and_architecture_check(tmp_path):
  from dippas_jax.dippas.dip import parameters  # pylint: disable=g-import-not-at-top
  flat = np.array(dip.init_flat(TINY, jax.random.key(5))[0])
  flat[parameters.flat_specs(TINY)[0].index(("injection", "gamma"))] = 0.7
  parameters.save_params(tmp_path / "w.npz", TINY, flat, metadata={"recipe": "test"})
  loaded = parameters.load_params(str(tmp_path / "w.npz"), TINY)
  gamma = parameters.flat_specs(TINY)[0].index(("injection", "gamma"))
  np.testing.assert_array_equal(np.delete(loaded, gamma), np.delete(flat, gamma))
  assert loaded[gamma] == 0.0  # γ starts at 0 whatever the file holds
  with pytest.raises(ValueError, match="these weights are for the network"):
    parameters.load_params(str(tmp_path / "w.npz"), dataclasses.replace(TINY, input_depth=16))
  with pytest.raises(ValueError, match="no such weights file"):
    parameters.load_params("no_such_weights", TINY)


def test_a_run_from_given_weights_equals_the_run_that_drew_them(runner3, data, free_run):
  """Warm starts and learned initialisations go through params0: given the weights a cold run drew, the run is
  the cold run (bit for bit), with the settings' weights file or with params0."""
  images, fingerprints, _ = data
  history, params, _ = free_run
  f, u8, k = dip.validate_inputs(images, fingerprints, downsampling=4)
  state, _ = runner3.init(0, np.arange(3, dtype=np.int32), f, u8, k, np.ones(3, bool))
  warm, warm_params, _ = run(runner3, images, fingerprints, [0, 1, 2], chunks=2, params0=np.asarray(state.params))
  np.testing.assert_array_equal(warm["loss"], history["loss"][:, :2 * CHUNK])
  np.testing.assert_array_equal(warm_params[-1], params[1])
