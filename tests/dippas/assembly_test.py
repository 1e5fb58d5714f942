"""Tests for the DIPPAS block assembly: sort keys, PSNR pool, full-stack assembly, streaming top-L, the hook."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dippas_jax.dippas import assembly
from dippas_jax.dippas import candidates
from dippas_jax.dippas import topl
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics

# One xdist worker runs this module (`--dist loadgroup`): its module fixtures and compiled programs are made once.
pytestmark = pytest.mark.xdist_group("assembly")

NAN = np.nan


# ----------------------------------------------------------------------------------------------------------------
# Plain-Python references (per block loops, float64 mean, clip, astype(uint8)).


def _key(value, index):
  """SPEC §0 key of one NCC: negatives closest to 0 first, then non-negatives ascending, NaN last, then index."""
  if np.isnan(value):
    return (2, 0.0, index)
  if value < 0:
    return (0, -float(value), index)
  return (1, float(value), index)


def _reference_order(column):
  return sorted(range(len(column)), key=lambda i: _key(column[i], i))


def _reference_pool(psnr, tau):
  psnr = np.asarray(psnr, np.float64)
  return np.where(psnr >= min(np.nanmax(psnr), tau))[0]


def _reference_assemble(cands, ncc, psnr, *, tau, block_size, num_blocks):
  """main_3_final.py with a stable sort: per block loops, float64 mean, clip, astype(uint8)."""
  m, h, w, c = cands.shape
  pool = _reference_pool(psnr, tau)
  l_eff = min(len(pool), num_blocks)
  out = np.zeros((h, w, c), np.float64)
  cols = w // block_size
  for b in range(ncc.shape[1]):
    order = pool[_reference_order(ncc[pool, b])]
    r, q = divmod(b, cols)
    ys, xs = slice(r * block_size, (r + 1) * block_size), slice(q * block_size, (q + 1) * block_size)
    out[ys, xs] = np.mean([cands[t, ys, xs].astype(np.float64) for t in order[:l_eff]], axis=0)
  return np.clip(out, 0, 255).astype(np.uint8)


def _random_stream(seed, *, m, h, w, block_size, nan_rate=0.1, psnr_values=(35.0, 36.0, 37.0, 38.0, 38.5)):
  """A candidate stack with tied NCCs, NaN NCCs, duplicate images and PSNR ties."""
  rng = np.random.default_rng(seed)
  cands = rng.integers(0, 256, (m, h, w, 3), dtype=np.uint8)
  cands[m // 2] = cands[0]  # duplicate image
  nb = (h // block_size) * (w // block_size)
  ncc = rng.choice(np.array([-0.2, -0.1, -0.0, 0.0, 0.05, 0.1], np.float32), size=(m, nb))
  ncc = np.where(rng.random((m, nb)) < 0.5, rng.normal(0, 0.1, (m, nb)).astype(np.float32), ncc)
  ncc[rng.random((m, nb)) < nan_rate] = NAN
  ncc[m // 2] = ncc[0]  # duplicate scores too
  psnr = rng.choice(np.array(psnr_values, np.float32), size=m)
  return cands, ncc.astype(np.float32), psnr.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
# Sort key.


@pytest.mark.parametrize("values, expected", [
    ([0.1, 0.1, -0.1, -0.1], [2, 3, 0, 1]),                       # ties keep index order
    ([NAN, 0.5, NAN, -0.5], [3, 1, 0, 2]),                        # NaN last, in index order
    ([-0.3, -0.1, -0.2, -0.1], [1, 3, 2, 0]),                     # all negative: closest to 0 first
    ([0.3, 0.0, 0.2, 0.0], [1, 3, 2, 0]),                         # all non-negative: ascending
    ([0.0, -0.0, -1e-9, 0.0], [2, 0, 1, 3]),                      # -0.0 is non-negative and ties with 0.0
    ([np.inf, NAN, 1.0, -np.inf], [3, 2, 0, 1]),                  # +inf before NaN, -inf last negative
    ([0.1, -0.2, NAN, -0.05, 0.1, NAN, 0.0], [3, 1, 6, 0, 4, 2, 5]),  # SPEC §2.11 example, fixed
    ([NAN, NAN, NAN], [0, 1, 2]),
    ([0.7], [0]),
])
def test_sort_order_crafted(values, expected):
  got = jax.jit(assembly.sort_order)(np.asarray(values, np.float32))
  np.testing.assert_array_equal(got, expected)
  assert got.dtype == jnp.int32


def test_legacy_sort_order_reproduces_collapsed_ties():
  ncc = [0.1, -0.2, NAN, -0.05, 0.1, NAN, 0.0]
  np.testing.assert_array_equal(assembly.legacy_sort_order(ncc), [3, 1, 6, 0, 0, 2, 2])
  # With no ties and no NaN the legacy order is a permutation equal to the stable key.
  rng = np.random.default_rng(1)
  distinct = rng.normal(0, 0.1, (40, 5))
  np.testing.assert_array_equal(assembly.legacy_sort_order(distinct), assembly.sort_order(distinct, axis=0))
  # All non-negative: the legacy branch is a plain argsort.
  np.testing.assert_array_equal(assembly.legacy_sort_order([0.3, 0.1, 0.2]), [1, 2, 0])


def test_sort_order_matches_python_sorted_on_tied_random_columns():
  rng = np.random.default_rng(0)
  ncc = rng.choice(np.array([-0.2, -0.1, -0.0, 0.0, 0.1, 0.2, NAN, np.inf], np.float32), size=(33, 6))
  order = np.asarray(assembly.sort_order(ncc, axis=0))
  for b in range(ncc.shape[1]):
    np.testing.assert_array_equal(order[:, b], _reference_order(ncc[:, b]))
  np.testing.assert_array_equal(assembly.sort_order(ncc.T, axis=1), order.T)
  np.testing.assert_array_equal(assembly.sort_order(ncc.T, axis=-1), order.T)


# ----------------------------------------------------------------------------------------------------------------
# PSNR pool and the naive pick.


def test_psnr_pool_threshold_and_fallback():
  psnr = np.array([30.0, 38.0, 37.0, 36.9], np.float32)
  np.testing.assert_array_equal(assembly.psnr_pool(psnr, tau=37.0), [False, True, True, False])
  np.testing.assert_array_equal(assembly.psnr_pool(psnr, tau=40.0), [False, True, False, False])  # max only
  ties = np.array([35.0, 36.0, 36.0, NAN], np.float32)
  np.testing.assert_array_equal(assembly.psnr_pool(ties, tau=40.0), [False, True, True, False])
  np.testing.assert_array_equal(jax.jit(functools.partial(assembly.psnr_pool, tau=35.5))(ties),
                                [False, True, True, False])


def test_naive_pick():
  ncc = np.array([-0.01, 0.02, 0.005, -0.005, NAN], np.float32)
  psnr = np.array([38.0, 38.0, 36.0, 37.5, 39.0], np.float32)
  assert int(assembly.naive_pick(ncc, psnr, tau=37.0)) == 3   # smallest |NCC| with PSNR ≥ τ (tie 0.005: 3 only)
  assert int(assembly.naive_pick(ncc, psnr, tau=35.0)) == 2   # ties on |NCC| would go to the earlier index
  assert int(assembly.naive_pick(ncc[:, None], psnr, tau=38.5)) == 4  # pool {4} is NaN: still picked
  # Fallback: nothing reaches τ -> the max-PSNR iteration(s), min |NCC| among them (not silently index 0).
  assert int(assembly.naive_pick(ncc, psnr, tau=45.0)) == 4
  assert int(assembly.naive_pick(ncc[:4], psnr[:4], tau=45.0)) == 0  # max PSNR 38 at {0, 1}: |-0.01| < 0.02
  tied = np.array([0.01, -0.01, 0.01], np.float32)
  assert int(assembly.naive_pick(tied, np.full(3, 38.0, np.float32), tau=37.0)) == 0  # earliest on ties


# ----------------------------------------------------------------------------------------------------------------
# Blocks and full-stack assembly.


@pytest.mark.parametrize("block_size", [8, 16, 32])
def test_blocks_round_trip_and_order(block_size):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (2, 32, 64, 3), dtype=np.uint8)
  bl = assembly.blocks(x, block_size=block_size)
  cols = 64 // block_size
  assert bl.shape == (2, (32 // block_size) * cols, block_size, block_size, 3)
  r, c = 32 // block_size - 1, cols - 1
  np.testing.assert_array_equal(bl[:, r * cols + c], x[:, r * block_size:(r + 1) * block_size, c * block_size:])
  np.testing.assert_array_equal(assembly.unblocks(bl, height=32, width=64), x)


def test_blocks_rejects_non_divisors():
  with pytest.raises(ValueError, match="must divide"):
    assembly.blocks(np.zeros((32, 48, 3)), block_size=32)
  with pytest.raises(ValueError, match="do not tile"):
    assembly.unblocks(np.zeros((5, 8, 8, 3)), height=16, width=16)


@pytest.mark.parametrize("block_size, num_blocks, tau, m", [
    (8, 3, 37.0, 12),
    (16, 5, 38.0, 9),
    (32, 50, 37.0, 7),     # M < L
    (8, 4, 45.0, 10),      # nothing reaches τ: fallback to the max-PSNR iterations (ties)
    (64, 1, 36.0, 6),      # whole image, L = 1
])
def test_assemble_equals_per_block_loop(block_size, num_blocks, tau, m):
  cands, ncc, psnr = _random_stream(block_size + m, m=m, h=64, w=64, block_size=block_size)
  pool = assembly.psnr_pool(psnr, tau=tau)
  image, chosen = assembly.assemble(cands, ncc, pool, block_size=block_size, num_blocks=num_blocks)
  expected = _reference_assemble(cands, ncc, psnr, tau=tau, block_size=block_size, num_blocks=num_blocks)
  assert image.dtype == jnp.uint8 and image.shape == (64, 64, 3)
  np.testing.assert_array_equal(image, expected)
  l_eff = min(int(np.sum(pool)), num_blocks)
  assert chosen.shape == (num_blocks, (64 // block_size) ** 2)
  assert np.all(np.asarray(chosen[l_eff:]) == -1) and np.all(np.asarray(pool)[np.asarray(chosen[:l_eff])])
  for b in range(chosen.shape[1]):  # the chosen ranks follow the key over the pool
    pool_idx = np.where(pool)[0]
    np.testing.assert_array_equal(chosen[:l_eff, b], pool_idx[_reference_order(ncc[pool_idx, b])][:l_eff])


def test_assemble_floor_quantisation():
  # 1,000 candidates of an 8x8 image: 999 threes and one two -> mean 2.999 -> 2 (floor, not round).
  cands = np.full((1000, 8, 8, 3), 3, np.uint8)
  cands[-1] = 2
  ncc = np.full((1000, 1), 0.01, np.float32)
  pool = np.ones(1000, bool)
  image, _ = assembly.assemble(cands, ncc, pool, block_size=8, num_blocks=1000)
  np.testing.assert_array_equal(image, 2)
  # 255 everywhere stays 255; a 254.5 mean gives 254.
  hi = np.full((2, 8, 8, 3), 255, np.uint8)
  hi[1, 0, 0, 0] = 254
  image, _ = assembly.assemble(hi, np.zeros((2, 1), np.float32), np.ones(2, bool), block_size=8, num_blocks=2)
  assert int(image[0, 0, 0]) == 254 and int(image[1, 1, 1]) == 255
  # The streaming accumulator quantises the same way.
  state = _stream(topl.topl_init(8, 8, block_size=8, num_blocks=1000), cands, ncc, np.full(1000, 38.0),
                  tau=37.0)
  np.testing.assert_array_equal(topl.topl_finalize(state), 2)


def test_assemble_validates_inputs():
  cands = np.zeros((3, 16, 16, 3), np.uint8)
  with pytest.raises(ValueError, match="uint8"):
    assembly.assemble(cands.astype(np.float32), np.zeros((3, 4)), np.ones(3, bool), block_size=8, num_blocks=1)
  with pytest.raises(ValueError, match="ncc must have shape"):
    assembly.assemble(cands, np.zeros((3, 5)), np.ones(3, bool), block_size=8, num_blocks=1)
  with pytest.raises(ValueError, match="must divide"):
    assembly.assemble(cands, np.zeros((3, 1)), np.ones(3, bool), block_size=12, num_blocks=1)


# ----------------------------------------------------------------------------------------------------------------
# Streaming top-L.


@functools.partial(jax.jit, static_argnames="tau")
def _scan_updates(state, cands, ncc, psnr, steps, *, tau):
  def body(s, xs):
    return topl.topl_update(s, *xs, tau=tau), None
  return jax.lax.scan(body, state, (cands, ncc, psnr, steps))[0]


def _stream(state, cands, ncc, psnr, *, tau, steps=None):
  """Merges a whole candidate stream with `topl_update` under `lax.scan` (as the DIP runner does)."""
  steps = np.arange(len(cands)) if steps is None else np.asarray(steps)
  return _scan_updates(state, jnp.asarray(cands), jnp.asarray(ncc, jnp.float32), jnp.asarray(psnr, jnp.float32),
                       jnp.asarray(steps, jnp.int32), tau=tau)


@pytest.mark.parametrize("block_size, capacity, tau, seed, key", [
    (8, 6, 37.0, 0, "paper"),
    (16, 4, 38.0, 1, "paper"),
    (32, 20, 36.0, 2, "paper"),     # capacity larger than the stream
    (64, 3, 37.0, 3, "abs"),
    (8, 3, 38.5, 5, "paper"),       # only the top PSNR value qualifies
    (16, 5, 37.0, 6, "abs"),
])
def test_streaming_topl_equals_full_pool(block_size, capacity, tau, seed, key):
  m = 14
  cands, ncc, psnr = _random_stream(seed, m=m, h=64, w=64, block_size=block_size, nan_rate=0.2)
  state = _stream(topl.topl_init(64, 64, block_size=block_size, num_blocks=capacity, key=key), cands, ncc, psnr,
                  tau=tau)
  pool = psnr >= tau
  assert int(state.count) == int(np.sum(pool))
  for l in sorted({1, 2, capacity // 2 or 1, capacity}):
    full, _ = assembly.assemble(cands, ncc, pool, block_size=block_size, num_blocks=l, key=key)
    np.testing.assert_array_equal(topl.topl_finalize(state, num_blocks=l), full)
    if key == "paper":
      np.testing.assert_array_equal(full, _reference_assemble(cands, ncc, psnr, tau=tau, block_size=block_size,
                                                              num_blocks=l))
  with pytest.raises(ValueError, match="capacity"):
    topl.topl_finalize(state, num_blocks=capacity + 1)


def test_abs_key_ranks_by_magnitude_whatever_the_sign():
  ncc = np.array([0.1, -0.2, NAN, -0.05, 0.1, NAN, 0.0, -0.0, 0.03], np.float32)
  np.testing.assert_array_equal(assembly.sort_order(ncc, key="abs"), [6, 7, 8, 3, 0, 4, 1, 2, 5])
  np.testing.assert_array_equal(assembly.sort_order(ncc), [3, 1, 6, 7, 8, 0, 4, 2, 5])
  with pytest.raises(ValueError, match="rank key"):
    assembly.sort_order(ncc, key="signed")


def test_streaming_nan_psnr_never_enters_and_empty_state_is_zero():
  state = topl.topl_init(16, 16, block_size=16, num_blocks=2)
  np.testing.assert_array_equal(topl.topl_finalize(state), 0)
  img = np.full((16, 16, 3), 9, np.uint8)
  state = _stream(state, img[None], np.zeros((1, 1), np.float32), np.array([NAN], np.float32), tau=37.0)
  assert int(state.count) == 0


def test_topl_update_compiles_once():
  cands, ncc, psnr = _random_stream(3, m=6, h=32, w=32, block_size=8)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def update(state, image, scores, p, step):
    return topl.topl_update(state, image, scores, p, step, tau=37.0)

  state = topl.topl_init(32, 32, block_size=8, num_blocks=4)
  for t in range(6):
    state = update(state, cands[t], ncc[t], jnp.float32(psnr[t]), jnp.int32(t))
  chex.assert_trees_all_equal_shapes_and_dtypes(state, topl.topl_init(32, 32, block_size=8, num_blocks=4))


def test_topl_batched_state_finalize():
  cands, ncc, psnr = _random_stream(11, m=5, h=32, w=32, block_size=16)
  state = topl.topl_init(32, 32, block_size=16, num_blocks=3, batch_shape=(2,))
  update = jax.jit(jax.vmap(functools.partial(topl.topl_update, tau=37.0)))
  for t in range(5):  # image 1 sees the candidates in reverse order of value (flipped pixels)
    pair = np.stack([cands[t], 255 - cands[t]])
    state = update(state, pair, np.stack([ncc[t], -ncc[t]]), jnp.full(2, psnr[t]), jnp.full(2, t, jnp.int32))
  out = topl.topl_finalize(state, num_blocks=2)
  assert out.shape == (2, 32, 32, 3)
  pool = psnr >= 37.0
  np.testing.assert_array_equal(out[0], assembly.assemble(cands, ncc, pool, block_size=16, num_blocks=2)[0])
  np.testing.assert_array_equal(out[1], assembly.assemble(255 - cands, -ncc, pool, block_size=16, num_blocks=2)[0])


# ----------------------------------------------------------------------------------------------------------------
# The DIP-runner hook (real residuals and block NCC).

SETTINGS = ((8, 3, 37.0), (8, 5, 37.0), (16, 2, 45.0), (32, 4, 38.0), (8, 2, 38.0))


@pytest.fixture(scope="module")
def hook_streams():
  """Two images' candidate streams (M = 10, 32x32) with their full-pool block NCCs, computed once."""
  rng = np.random.default_rng(0)
  m, n, size = 10, 2, 32
  base = rng.integers(40, 216, (n, size, size, 3)).astype(np.int16)
  cands = np.clip(base[None] + rng.integers(-6, 7, (m, n, size, size, 3)), 0, 255).astype(np.uint8)  # [M, N, ...]
  cands[3] = cands[1]  # a repeated output: tied NCCs
  psnr = rng.choice(np.array([35.0, 36.0, 37.0, 38.0, 38.5], np.float32), size=(m, n))
  active = rng.random((m, n)) > 0.2
  active[6:, 0] = False  # image 0 stops early
  k_ref = rng.normal(0, 1, (n, size, size)).astype(np.float32)
  flat = cands.reshape(m * n, size, size, 3)
  scores = candidates.candidate_ncc(flat, np.tile(k_ref, (m, 1, 1)), block_sizes={b for b, _, _ in SETTINGS})
  scores = {b: np.asarray(v).reshape(m, n, -1) for b, v in scores.items()}
  return cands, psnr, active, k_ref, scores


def _full_pool(cands, psnr, active, scores, n, settings=SETTINGS):
  """`assemble` on image n's whole stack with the DIPPAS pool (fallback included); inactive candidates are
  outside the pool (NaN PSNR)."""
  out = {}
  for b, l, tau in assembly.normalize_settings(settings):
    pool = assembly.psnr_pool(np.where(active[:, n], psnr[:, n], np.nan), tau=tau)
    out[(b, l, tau)] = assembly.assemble(cands[:, n], scores[b][:, n], pool, block_size=b, num_blocks=l)[0]
  return out


@functools.partial(jax.jit, static_argnums=0)
def _run_hook(hook, state, cands, psnr, steps, active):
  """The hook over a stream of batches: cands [M, N, H, W, 3], psnr/steps/active [M, N]."""
  def body(s, xs):
    return hook.update(s, *xs), None
  xs = (cands, jnp.asarray(psnr, jnp.float32), jnp.asarray(steps, jnp.int32), jnp.asarray(active))
  return jax.lax.scan(body, state, xs)[0]


def _init(hook, k_ref):
  return jax.vmap(lambda k: hook.init(None, k))(jnp.asarray(k_ref))


def test_hook_over_a_batch_equals_full_pool(hook_streams):
  cands, psnr, active, k_ref, scores = hook_streams
  hook = candidates.AssemblyHook.make(SETTINGS, height=32, width=32)
  assert hook == candidates.AssemblyHook.make(list(reversed(SETTINGS)), height=32, width=32)  # a value: one compile
  state = _init(hook, k_ref)
  assert state.keys == ((8, 37.0), (8, 38.0), (16, 45.0), (32, 38.0))
  assert [acc.capacity for acc in state.accumulators] == [5, 2, 2, 4]
  steps = np.repeat(np.arange(cands.shape[0])[:, None], 2, axis=1)
  state = _run_hook(hook, state, cands, psnr, steps, active)
  got = candidates.finalize_candidates(state, hook)
  for n in range(2):
    for key, expected in _full_pool(cands, psnr, active, scores, n).items():
      np.testing.assert_array_equal(got[key][n], expected, err_msg=f"{key} image {n}")
  # (16, 45.0): nothing reaches τ, the fallback pool served; the others reached τ.
  pools = candidates.pool_sizes(state)
  assert np.all(pools[(16, 45.0)] == 0) and np.all(pools[(8, 37.0)] > 0)
  # Every L up to a shared capacity from one accumulator.
  some = candidates.finalize_candidates(state, hook, num_blocks_list=[1, 2])
  assert set(some) == {(b, l, tau) for b, tau in state.keys for l in (1, 2)}
  with pytest.raises(ValueError, match="capacity"):
    candidates.finalize_candidates(state, hook, num_blocks_list=[3])


def test_fallback_resets_on_higher_psnr_and_keeps_ties():
  rng = np.random.default_rng(7)
  cands = rng.integers(0, 256, (7, 1, 16, 16, 3), dtype=np.uint8)
  psnr = np.array([30.0, 33.0, 33.0, 31.0, 34.0, 34.0, 34.0], np.float32)[:, None]  # rises, ties, dips, rises, ties
  k_ref = rng.normal(0, 1, (1, 16, 16)).astype(np.float32)
  hook = candidates.AssemblyHook.make([(8, 5, 40.0)], height=16, width=16)
  state = _run_hook(hook, _init(hook, k_ref), cands, psnr, np.arange(7)[:, None], np.ones((7, 1), bool))
  fb = state.fallback
  assert int(fb.count[0]) == 3 and float(fb.best_psnr[0]) == 34.0
  np.testing.assert_array_equal(fb.iteration[0, :3], [4, 5, 6])
  scores = candidates.candidate_ncc(cands[:, 0], k_ref[0], block_sizes=[8])
  full, _ = assembly.assemble(cands[:, 0], scores[8], assembly.psnr_pool(psnr[:, 0], tau=40.0), block_size=8,
                              num_blocks=5)
  np.testing.assert_array_equal(candidates.finalize_candidates(state, hook)[(8, 5, 40.0)][0], full)
  # Once a candidate reaches τ the fallback is not used: the main pool wins.
  state = _run_hook(hook, state, cands[:1], np.array([[40.5]], np.float32), np.array([[7]]), np.ones((1, 1), bool))
  np.testing.assert_array_equal(candidates.finalize_candidates(state, hook)[(8, 5, 40.0)][0], cands[0, 0])


def test_residual_is_computed_only_when_a_candidate_can_enter(hook_streams, monkeypatch):
  """The hook's expensive part (one residual per image) runs on a step only if some image of the batch reaches
  a τ or the NCC trace is due: counted with a host callback, which runs only when its branch does."""
  cands, _, _, k_ref, _ = hook_streams
  calls = []
  residual = candidates.denoise.extract_residual

  def counting(images, **kwargs):
    jax.debug.callback(lambda: calls.append(1))
    return residual(images, **kwargs)

  monkeypatch.setattr(candidates.denoise, "extract_residual", counting)
  hook = candidates.AssemblyHook.make([(8, 3, 37.0)], height=32, width=32, trace_every=4, trace_length=3)
  psnr = np.full((10, 2), 30.0, np.float32)
  psnr[7:, 1] = 38.0  # image 1 reaches τ at steps 7, 8, 9
  steps = np.repeat(np.arange(10)[:, None], 2, axis=1)
  state = _run_hook(hook, _init(hook, k_ref), cands, psnr, steps, np.ones((10, 2), bool))
  jax.effects_barrier()
  # Steps 0, 4 and 8 trace the NCC; steps 7, 8, 9 rank: 5 steps of 10 (one residual call per batch each).
  assert len(calls) == 5, len(calls)
  trace = np.asarray(state.ncc_trace)
  assert np.isfinite(trace).all() and trace.shape == (2, 3)
  assert int(state.accumulators[0].count[1]) == 3 and int(state.accumulators[0].count[0]) == 0


def test_settings_validation():
  assert assembly.normalize_settings((64, 50, 37)) == ((64, 50, 37.0),)
  with pytest.raises(ValueError):
    assembly.normalize_settings(())
  with pytest.raises(ValueError):
    assembly.normalize_settings([(64, 0, 37.0)])
  with pytest.raises(ValueError, match="must divide"):
    candidates.AssemblyHook.make([(12, 2, 37.0)], height=32, width=32)
  hook = candidates.AssemblyHook.make([(8, 2, 37.0)], height=32, width=32)
  state = _init(hook, np.zeros((1, 32, 32)))
  with pytest.raises(ValueError, match="hook's settings"):
    candidates.finalize_candidates(state, candidates.AssemblyHook.make([(8, 3, 38.0)], height=32, width=32))


def test_nearest_rounding_of_the_block_mean():
  cands = np.zeros((2, 8, 8, 3), np.uint8)
  cands[0], cands[1] = 3, 4  # mean 3.5: floor 3, nearest 4
  pool = np.ones(2, bool)
  floor, _ = assembly.assemble(cands, np.zeros((2, 1), np.float32), pool, block_size=8, num_blocks=2)
  nearest, _ = assembly.assemble(cands, np.zeros((2, 1), np.float32), pool, block_size=8, num_blocks=2,
                                 rounding="nearest")
  assert int(floor[0, 0, 0]) == 3 and int(nearest[0, 0, 0]) == 4
  state = _stream(topl.topl_init(8, 8, block_size=8, num_blocks=2), cands, np.zeros((2, 1)), np.full(2, 40.0),
                  tau=37.0)
  np.testing.assert_array_equal(topl.topl_finalize(state, rounding="nearest"), nearest)


def test_rank_scores_with_the_photos_own_residual_take_the_larger_magnitude():
  rng = np.random.default_rng(7)
  images = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  residual = denoise.extract_residual(images, sigma=3.0)
  k_ref = rng.normal(0, 1, (32, 32)).astype(np.float32)
  k_self = rng.normal(0, 1, (32, 32)).astype(np.float32)
  gray = denoise.rgb2gray(images.astype(np.float32))
  plain = candidates.rank_scores(residual, images, k_ref, None, block_sizes=[16])[16]
  np.testing.assert_allclose(plain, metrics.block_ncc(residual, gray * k_ref, block_size=16), rtol=1e-6)
  both = candidates.rank_scores(residual, images, k_ref, k_self, block_sizes=[16])[16]
  own = metrics.block_ncc(residual, gray * k_self, block_size=16)
  np.testing.assert_allclose(both, np.maximum(np.abs(plain), np.abs(own)), rtol=1e-6)
  assert (np.asarray(both) >= 0).all()
