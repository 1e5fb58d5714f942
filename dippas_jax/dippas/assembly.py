"""DIPPAS block assembly on a full candidate stack: blocks, the ranking key, the PSNR pool, top-L averaging.

DIPPAS (SPEC §2.10-§2.12) turns the stream of DIP outputs x̂_t (uint8 candidates) into the anonymized image:

1. the PSNR pool: iterations with PSNR ≥ min(max PSNR, τ) (`psnr_pool`);
2. for every B x B block position b (row-major, b = r * (W / B) + c) and candidate t, the uncentred NCC of the
   candidate's residual W(x̂_t) (σ = 3) with gray(x̂_t) ⊙ K_ref (`candidates.candidate_ncc`); K_ref is the device
   fingerprint in PRNU-aware mode and K̃ = W(I) in blind mode;
3. the pool's candidates ranked per block (`sort_order`) under one of two keys (`RANK_KEYS`):
   'paper'  SPEC §0: negative NCCs closest to 0 first, then non-negative NCCs (including -0.0) ascending, NaN
            last; ties keep iteration order. It prefers negative NCCs, so the result tends to correlate
            negatively with the fingerprint (detectable by a sign-aware analyst);
   'abs'    |NCC| ascending (closest to 0 first, either sign), NaN last: aims at NCC ≈ 0;
4. per block, the mean of the first L_eff = min(M_pool, L) ranked blocks (all 3 channels from the same
   candidate), quantised with floor like the reference's `clip(mean, 0, 255).astype(uint8)` (`assemble`).

`assemble` does this on a full candidate stack (the reference computation, O(iterations x image) memory);
`topl` does it streaming and `candidates` plugs that into the DIP runner.

Everything is vectorized over blocks and candidates (no Python loops over them) and works under `jax.jit`
(keyword-only sizes, `tau`, `num_blocks` and `key` are static) and `jax.vmap`. Shapes: M candidates
(iterations), H, W image size, B block size, nb = (H / B) * (W / B) blocks, L blocks averaged.
"""

from __future__ import annotations

import functools
import math
import operator

import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.prnu import metrics

RANK_KEYS = ("paper", "abs")
# Sort-key groups: negative NCC, non-negative NCC (incl. -0.0 and +inf), NaN, then "not a candidate" (outside
# the PSNR pool, or an empty accumulator slot). Under the 'abs' key every finite NCC is in group NONNEGATIVE.
NEGATIVE, NONNEGATIVE, NAN, EMPTY = 0, 1, 2, 3
NO_ITERATION = np.iinfo(np.int32).max


# ----------------------------------------------------------------------------------------------------------------
# Validation helpers.


def static_int(value, name: str, *, minimum: int = 1) -> int:
  """`value` as a Python int ≥ `minimum` (a static size), else ValueError naming `name`."""
  try:
    v = operator.index(value)
  except TypeError:
    raise ValueError(f"{name} must be a Python int, got {value!r}") from None
  if v < minimum:
    raise ValueError(f"{name} must be ≥ {minimum}, got {v}")
  return v


def check_block_size(height: int, width: int, block_size) -> int:
  """B as an int, or ValueError listing the sizes that divide both H and W."""
  b = static_int(block_size, "block_size")
  if height % b or width % b:
    raise ValueError(f"block_size={b} must divide both H={height} and W={width}; sizes that work: "
                     f"{metrics.common_divisors(height, width)}")
  return b


def check_key(key: str) -> str:
  if key not in RANK_KEYS:
    raise ValueError(f"Unsupported rank key {key!r}; expected one of {RANK_KEYS}")
  return key


def normalize_settings(settings) -> tuple[tuple[int, int, float], ...]:
  """Validates (B, L, τ) triples and returns them sorted, deduplicated, with int B, L and float τ.

  Accepts one triple or an iterable of triples.
  """
  settings = tuple(settings)
  if len(settings) == 3 and not isinstance(settings[0], (tuple, list)):
    settings = (settings,)
  if not settings:
    raise ValueError("settings must hold at least one (block_size, num_blocks, tau) triple")
  out = set()
  for s in settings:
    try:
      b, l, tau = s
    except (TypeError, ValueError):
      raise ValueError(f"each setting must be (block_size, num_blocks, tau), got {s!r}") from None
    tau = float(tau)
    if not math.isfinite(tau):
      raise ValueError(f"tau must be finite, got {tau}")
    out.add((static_int(b, "block_size"), static_int(l, "num_blocks"), tau))
  return tuple(sorted(out))


def _num_blocks_grid(height: int, width: int, block_size: int) -> tuple[int, int]:
  return height // block_size, width // block_size


# ----------------------------------------------------------------------------------------------------------------
# Blocks.


def blocks(x, *, block_size: int) -> jax.Array:
  """Cuts images into non-overlapping B x B blocks in row-major block order.

  Args:
    x: [..., H, W, C] (any dtype).
    block_size: B, dividing H and W.

  Returns:
    [..., nb, B, B, C] with nb = (H / B) * (W / B); block r * (W / B) + c covers rows [rB, (r+1)B) and
    columns [cB, (c+1)B).

  Raises:
    ValueError: if x has fewer than 3 axes or B does not divide H and W.
  """
  x = jnp.asarray(x)
  if x.ndim < 3:
    raise ValueError(f"blocks expects [..., H, W, C], got shape {tuple(x.shape)}")
  *lead, h, w, c = x.shape
  b = check_block_size(h, w, block_size)
  nr, nc = _num_blocks_grid(h, w, b)
  y = x.reshape(*lead, nr, b, nc, b, c)
  y = jnp.swapaxes(y, -4, -3)  # [..., nr, nc, B, B, C]
  return y.reshape(*lead, nr * nc, b, b, c)


def unblocks(x, *, height: int, width: int) -> jax.Array:
  """Inverse of `blocks`: [..., nb, B, B, C] -> [..., H, W, C] (exact).

  Raises:
    ValueError: if the shape does not match (H / B) * (W / B) blocks of B x B.
  """
  x = jnp.asarray(x)
  if x.ndim < 4 or x.shape[-3] != x.shape[-2]:
    raise ValueError(f"unblocks expects [..., nb, B, B, C], got shape {tuple(x.shape)}")
  *lead, nb, b, _, c = x.shape
  h, w = static_int(height, "height"), static_int(width, "width")
  b = check_block_size(h, w, b)
  nr, nc = _num_blocks_grid(h, w, b)
  if nb != nr * nc:
    raise ValueError(f"{nb} blocks of {b}x{b} do not tile a {h}x{w} image ({nr}x{nc}={nr * nc} blocks expected)")
  y = x.reshape(*lead, nr, nc, b, b, c)
  y = jnp.swapaxes(y, -4, -3)  # [..., nr, B, nc, B, C]
  return y.reshape(*lead, h, w, c)


# ----------------------------------------------------------------------------------------------------------------
# The sort key.


def key_group(ncc: jax.Array, key: str = "paper") -> jax.Array:
  """int32 group of the ranking key: NEGATIVE / NONNEGATIVE (incl. -0.0 and +inf) / NAN; 'abs' puts every
  non-NaN value in NONNEGATIVE."""
  if key == "abs":
    return jnp.where(jnp.isnan(ncc), NAN, NONNEGATIVE).astype(jnp.int32)
  return jnp.where(jnp.isnan(ncc), NAN, jnp.where(ncc < 0, NEGATIVE, NONNEGATIVE)).astype(jnp.int32)


def key_magnitude(ncc: jax.Array) -> jax.Array:
  """float32 |ncc| (+0.0 for -0.0), 0 for NaN (NaN entries are ordered by their group and index only)."""
  ncc = ncc.astype(jnp.float32)
  return jnp.where(jnp.isnan(ncc), jnp.float32(0), jnp.abs(ncc))


def sort_order(ncc, *, axis: int = 0, key: str = "paper") -> jax.Array:
  """Stable ranking of candidates under the DIPPAS block key (module docstring; SPEC §0, §4.1 item 6).

  'paper': negative values closest to 0 first (descending value), then non-negative values including -0.0 and
  +inf in ascending order, then NaN; this is the reference's `sort_nccs_block` without its collapsed-ties bug
  (see `legacy_sort_order`). 'abs': |value| ascending, then NaN. Ties (equal keys, several NaN) keep index
  order. Implemented as one lexicographic `lax.sort` on (group, |ncc|, index), so the result does not depend on
  sort stability.

  Args:
    ncc: float[..., M, ...] scores, candidates along `axis`.
    axis: the candidate axis.
    key: 'paper' or 'abs'.

  Returns:
    int32 array of ncc's shape: along `axis`, the candidate indices in rank order (rank 0 first).
  """
  check_key(key)
  ncc = jnp.asarray(ncc)
  if not jnp.issubdtype(ncc.dtype, jnp.floating):
    ncc = ncc.astype(jnp.float32)
  axis = axis % max(ncc.ndim, 1)
  index = jax.lax.broadcasted_iota(jnp.int32, ncc.shape, axis)
  *_, order = jax.lax.sort((key_group(ncc, key), key_magnitude(ncc), index), dimension=axis, num_keys=3)
  return order


def legacy_sort_order(ncc, *, axis: int = 0) -> np.ndarray:
  """The reference `sort_nccs_block` (main_3_final.py), bugs included, for parity experiments (numpy).

  NaN becomes +inf; with no negative value the order is `argsort(|ncc|)`; otherwise negatives in descending
  order then values ≥ 0 ascending, each sorted value mapped back to the *first* index holding it, so tied values
  repeat one index and lose the others (SPEC §2.11: [0.1, -0.2, NaN, -0.05, 0.1, NaN, 0.0] -> [3, 1, 6, 0, 0,
  2, 2]). Returns positions along `axis` (map them to iteration indices with the pool's indices).

  Args:
    ncc: float[..., M, ...].
    axis: the candidate axis.

  Returns:
    int64 numpy array of ncc's shape.
  """
  ncc = np.moveaxis(np.array(ncc, dtype=np.float64), axis, -1)
  out = np.empty(ncc.shape, dtype=np.int64)
  flat_in, flat_out = ncc.reshape(-1, ncc.shape[-1]), out.reshape(-1, ncc.shape[-1])
  for row in range(flat_in.shape[0]):  # numpy parity helper: follows the reference line by line
    block = flat_in[row].copy()
    block[np.isnan(block)] = np.inf
    negatives, positives = block[block < 0], block[block >= 0]
    idx_negative = [int(np.where(block == v)[0][0]) for v in negatives[np.flip(np.argsort(negatives))]]
    idx_positive = [int(np.where(block == v)[0][0]) for v in positives[np.argsort(positives)]]
    if not idx_negative:
      flat_out[row] = np.argsort(np.abs(block))
    elif not idx_positive:
      flat_out[row] = idx_negative
    else:
      flat_out[row] = idx_negative + idx_positive
  return np.moveaxis(out, -1, axis)


# ----------------------------------------------------------------------------------------------------------------
# PSNR pool, full-stack assembly, naive pick.


def psnr_pool(psnr, *, tau) -> jax.Array:
  """The DIPPAS candidate pool: `psnr >= min(max(psnr), tau)` (SPEC §2.11 step 2).

  When no iteration reaches τ the pool falls back to the iteration(s) with the maximum PSNR. NaN PSNRs are
  never in the pool and do not count for the maximum.

  Args:
    psnr: float[M].
    tau: the PSNR threshold τ in dB.

  Returns:
    bool[M].
  """
  psnr = jnp.asarray(psnr, jnp.float32)
  best = jnp.max(jnp.where(jnp.isnan(psnr), -jnp.inf, psnr), axis=-1, keepdims=True)
  return psnr >= jnp.minimum(best, jnp.float32(tau))


ROUNDINGS = ("floor", "nearest")


def block_mean(block_stack: jax.Array, valid: jax.Array, l_eff: jax.Array, rounding: str = "floor") -> jax.Array:
  """The uint8 mean of the valid uint8 blocks, with exact integer arithmetic: 'floor' = floor(sum / l_eff), which
  equals the reference's `clip(float64 mean, 0, 255).astype(uint8)` (the float64 mean of integers is the
  correctly rounded quotient, whose floor is the integer floor quotient); 'nearest' = round half up (no −0.5
  grey-level bias). Zero when l_eff is 0."""
  if rounding not in ROUNDINGS:
    raise ValueError(f"Unsupported rounding {rounding!r}; expected one of {ROUNDINGS}")
  mask = valid.reshape(valid.shape + (1,) * (block_stack.ndim - valid.ndim))
  total = jnp.sum(jnp.where(mask, block_stack.astype(jnp.uint32), jnp.uint32(0)), axis=0)
  count = jnp.maximum(l_eff, 1).astype(jnp.uint32)
  if rounding == "nearest":
    total = total + count // 2
  return (total // count).astype(jnp.uint8)


@functools.partial(jax.jit, static_argnames=("block_size", "num_blocks", "key", "rounding"))
def assemble(candidates, ncc, pool, *, block_size: int, num_blocks: int, key: str = "paper",
             rounding: str = "floor") -> tuple[jax.Array, jax.Array]:
  """Full-stack DIPPAS assembly (main_3_final.py without its tie bug): the per-block mean of the L best blocks.

  For each block position, the pool's candidates are ranked with `sort_order` (ties: lower candidate index
  first, so the stack must be in iteration order); the first L_eff = min(M_pool, L) blocks, all 3 channels from
  the same candidate, are averaged with floor quantisation.

  Args:
    candidates: uint8[M, H, W, C] candidate images (C = 3 for DIPPAS).
    ncc: float[M, nb] block NCCs (`candidate_ncc`), nb = (H / B) * (W / B).
    pool: bool[M] (`psnr_pool`).
    block_size: B (static).
    num_blocks: L (static).
    key: the ranking key, 'paper' or 'abs' (static).
    rounding: the mean's quantisation, 'floor' (the reference) or 'nearest' (`block_mean`, static).

  Returns:
    (image uint8[H, W, C], chosen int32[L, nb]): chosen[r, b] is the candidate index of rank r at block b,
    -1 for ranks ≥ L_eff. All zeros with chosen = -1 when the pool is empty.

  Raises:
    ValueError: on dtype or shape mismatches, or B not dividing H and W.
  """
  candidates = jnp.asarray(candidates)
  if candidates.dtype != jnp.uint8 or candidates.ndim != 4:
    raise ValueError(f"candidates must be uint8[M, H, W, C], got {candidates.dtype}{list(candidates.shape)}")
  m, h, w, c = candidates.shape
  b = check_block_size(h, w, block_size)
  l = static_int(num_blocks, "num_blocks")
  nr, nc = _num_blocks_grid(h, w, b)
  ncc = jnp.asarray(ncc)
  pool = jnp.asarray(pool)
  if ncc.shape != (m, nr * nc):
    raise ValueError(f"ncc must have shape [M, nb] = {[m, nr * nc]} for B={b}, got {list(ncc.shape)}")
  if pool.shape != (m,) or pool.dtype != jnp.bool_:
    raise ValueError(f"pool must be bool[{m}], got {pool.dtype}{list(pool.shape)}")

  group = jnp.where(pool[:, None], key_group(ncc, check_key(key)), EMPTY)
  index = jax.lax.broadcasted_iota(jnp.int32, ncc.shape, 0)
  *_, order = jax.lax.sort((group, key_magnitude(ncc), index), dimension=0, num_keys=3)  # [M, nb]
  if m < l:
    order = jnp.concatenate([order, jnp.zeros((l - m, nr * nc), jnp.int32)], axis=0)
  order = order[:l]  # [L, nb]
  l_eff = jnp.minimum(jnp.sum(pool, dtype=jnp.int32), l)
  valid = jnp.arange(l, dtype=jnp.int32)[:, None] < l_eff  # [L, 1]
  chosen = jnp.where(valid, order, -1)

  # Gather block (r, c) of candidate order[k, r*nc + c] without materialising the blocked stack.
  grid = candidates.reshape(m, nr, b, nc, b, c)
  sel = jnp.where(valid, order, 0).reshape(l, nr, nc)
  rows = jnp.arange(nr)[None, :, None]
  cols = jnp.arange(nc)[None, None, :]
  picked = grid[sel, rows, :, cols]  # [L, nr, nc, B, B, C]
  mean = block_mean(picked, valid.reshape(l, 1, 1), l_eff, rounding)  # [nr, nc, B, B, C]
  image = jnp.swapaxes(mean, 1, 2).reshape(h, w, c)
  return image, chosen


@functools.partial(jax.jit, static_argnames=("tau",))
def naive_pick(ncc_full, psnr, *, tau) -> jax.Array:
  """The "no post-processing" baseline (main_4_nopost.py, SPEC §2.12) with its bugs fixed: an iteration index.

  Picks the candidate with the smallest |NCC| (whole image, no preference for negatives) within the PSNR pool
  `psnr_pool(psnr, tau=tau)`. Explicit fallback: when no iteration reaches τ, the pool is the max-PSNR
  iteration(s), as in the block assembly (the reference silently returned iteration 0). Ties go to the earlier
  iteration; NaN NCCs are picked only when the whole pool is NaN. The caller takes the *colour* candidate at
  the returned index (the reference saved the grayscale image by mistake).

  Args:
    ncc_full: float[M] (or float[M, 1] from `block_ncc` with B = H = W) whole-image NCC per iteration.
    psnr: float[M].
    tau: the PSNR threshold in dB.

  Returns:
    int32[] index into the M iterations (0 when the pool is empty, i.e. every PSNR is NaN).
  """
  ncc_full = jnp.asarray(ncc_full)
  if ncc_full.ndim == 2 and ncc_full.shape[1] == 1:
    ncc_full = ncc_full[:, 0]
  psnr = jnp.asarray(psnr)
  if ncc_full.ndim != 1 or psnr.shape != ncc_full.shape:
    raise ValueError(f"naive_pick expects ncc_full[M] and psnr[M], got {list(ncc_full.shape)} and "
                     f"{list(psnr.shape)}")
  ncc_full = ncc_full.astype(jnp.float32)
  pool = psnr_pool(psnr, tau=tau)
  outside = jnp.where(pool, 0, 2) + jnp.isnan(ncc_full).astype(jnp.int32)  # 0 pool, 1 pool NaN, 2+ outside
  index = jnp.arange(ncc_full.shape[0], dtype=jnp.int32)
  *_, order = jax.lax.sort((outside, key_magnitude(ncc_full), index), num_keys=3)
  return order[0]
