"""DIPPAS block assembly: block ranking, top-L averaging, the PSNR pool, and the streaming top-L accumulator.

DIPPAS (SPEC §2.10-§2.12) turns the stream of DIP outputs x̂_t (uint8 candidates) into the anonymized image:

1. the PSNR pool: iterations with PSNR ≥ min(max PSNR, τ) (`psnr_pool`);
2. for every B x B block position b (row-major, b = r * (W / B) + c) and candidate t, the uncentred NCC of the
   candidate's residual W(x̂_t) (σ = 3) with gray(x̂_t) ⊙ K_ref (`candidate_ncc`); K_ref is the device
   fingerprint in PRNU-aware mode and K̃ = W(I) in blind mode;
3. the pool's candidates ranked per block under the key of SPEC §0 (`sort_order`): negative NCCs closest to 0
   first, then non-negative NCCs (including -0.0) ascending, NaN last; ties keep iteration order;
4. per block, the mean of the first L_eff = min(M_pool, L) ranked blocks (all 3 channels from the same
   candidate), quantised with floor like the reference's `clip(mean, 0, 255).astype(uint8)` (`assemble`).

`assemble` does this on a full candidate stack (the reference computation, O(iterations x image) memory).
`TopL` / `topl_update` / `topl_finalize` do the same thing streaming, on the device, in O(L x image) memory: per
block position they keep the L best blocks seen so far under the same key (iteration index as the final
tie-break), plus a second accumulator for the fallback pool (the candidates whose PSNR equals the running
maximum), and give the same image bit for bit. `make_candidate_hook` plugs the accumulators into the DIP runner.

Everything is vectorized over blocks and candidates (no Python loops over them) and works under `jax.jit`
(keyword-only sizes, `tau` and `num_blocks` are static) and `jax.vmap`. Shapes: M candidates (iterations),
H, W image size, B block size, nb = (H / B) * (W / B) blocks, L blocks averaged.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Any, Iterable, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics

__all__ = [
    "Candidates",
    "TopL",
    "TopLSlots",
    "assemble",
    "blocks",
    "candidate_ncc",
    "describe_settings",
    "finalize_candidates",
    "init_candidates",
    "legacy_sort_order",
    "make_candidate_hook",
    "naive_pick",
    "normalize_settings",
    "psnr_pool",
    "sort_order",
    "topl_finalize",
    "topl_init",
    "topl_selection",
    "topl_update",
    "unblocks",
]

# Sort-key groups (SPEC §0): negative NCC, non-negative NCC (incl. -0.0 and +inf), NaN, then "not a candidate"
# (outside the PSNR pool, or an empty accumulator slot).
_NEGATIVE, _NONNEGATIVE, _NAN, _EMPTY = 0, 1, 2, 3
_NO_ITERATION = np.iinfo(np.int32).max


# ----------------------------------------------------------------------------------------------------------------
# Validation helpers.


def _static_int(value, name: str, *, minimum: int = 1) -> int:
  try:
    v = operator.index(value)
  except TypeError:
    raise ValueError(f"{name} must be a Python int, got {value!r}") from None
  if v < minimum:
    raise ValueError(f"{name} must be ≥ {minimum}, got {v}")
  return v


def _common_divisors(h: int, w: int) -> list[int]:
  return [d for d in range(1, math.gcd(h, w) + 1) if h % d == 0 and w % d == 0]


def _check_block_size(height: int, width: int, block_size) -> int:
  b = _static_int(block_size, "block_size")
  if height % b or width % b:
    raise ValueError(f"block_size={b} must divide both H={height} and W={width}; sizes that work: "
                     f"{_common_divisors(height, width)}")
  return b


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
  b = _check_block_size(h, w, block_size)
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
  h, w = _static_int(height, "height"), _static_int(width, "width")
  b = _check_block_size(h, w, b)
  nr, nc = _num_blocks_grid(h, w, b)
  if nb != nr * nc:
    raise ValueError(f"{nb} blocks of {b}x{b} do not tile a {h}x{w} image ({nr}x{nc}={nr * nc} blocks expected)")
  y = x.reshape(*lead, nr, nc, b, b, c)
  y = jnp.swapaxes(y, -4, -3)  # [..., nr, B, nc, B, C]
  return y.reshape(*lead, h, w, c)


# ----------------------------------------------------------------------------------------------------------------
# The sort key.


def _key_group(ncc: jax.Array) -> jax.Array:
  """int32 group of the SPEC §0 key: 0 negative, 1 non-negative (incl. -0.0 and +inf), 2 NaN."""
  return jnp.where(jnp.isnan(ncc), _NAN, jnp.where(ncc < 0, _NEGATIVE, _NONNEGATIVE)).astype(jnp.int32)


def _key_magnitude(ncc: jax.Array) -> jax.Array:
  """float32 |ncc| (+0.0 for -0.0), 0 for NaN (NaN entries are ordered by their group and index only)."""
  ncc = ncc.astype(jnp.float32)
  return jnp.where(jnp.isnan(ncc), jnp.float32(0), jnp.abs(ncc))


def sort_order(ncc, *, axis: int = 0) -> jax.Array:
  """Stable ranking of candidates under the DIPPAS block key (SPEC §0, §4.1 item 6).

  Order: negative values closest to 0 first (descending value), then non-negative values including -0.0 and
  +inf in ascending order, then NaN; ties (equal values, -0.0 vs 0.0, several NaN) keep index order. This is the
  reference's `sort_nccs_block` without its collapsed-ties bug (see `legacy_sort_order`). Implemented as one
  lexicographic `lax.sort` on (group, |ncc|, index), so the result does not depend on sort stability.

  Args:
    ncc: float[..., M, ...] scores, candidates along `axis`.
    axis: the candidate axis.

  Returns:
    int32 array of ncc's shape: along `axis`, the candidate indices in rank order (rank 0 first).
  """
  ncc = jnp.asarray(ncc)
  if not jnp.issubdtype(ncc.dtype, jnp.floating):
    ncc = ncc.astype(jnp.float32)
  axis = axis % max(ncc.ndim, 1)
  index = jax.lax.broadcasted_iota(jnp.int32, ncc.shape, axis)
  *_, order = jax.lax.sort((_key_group(ncc), _key_magnitude(ncc), index), dimension=axis, num_keys=3)
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


def _floor_mean(block_stack: jax.Array, valid: jax.Array, l_eff: jax.Array) -> jax.Array:
  """floor(sum of the valid uint8 blocks / l_eff) with exact integer arithmetic -> uint8.

  Equals the reference's `clip(float64 mean, 0, 255).astype(uint8)`: the float64 mean of integers is the
  correctly rounded quotient, whose floor is the integer floor quotient. Zero when l_eff is 0.
  """
  mask = valid.reshape(valid.shape + (1,) * (block_stack.ndim - valid.ndim))
  total = jnp.sum(jnp.where(mask, block_stack.astype(jnp.uint32), jnp.uint32(0)), axis=0)
  return (total // jnp.maximum(l_eff, 1).astype(jnp.uint32)).astype(jnp.uint8)


@functools.partial(jax.jit, static_argnames=("block_size", "num_blocks"))
def assemble(candidates, ncc, pool, *, block_size: int, num_blocks: int) -> tuple[jax.Array, jax.Array]:
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
  b = _check_block_size(h, w, block_size)
  l = _static_int(num_blocks, "num_blocks")
  nr, nc = _num_blocks_grid(h, w, b)
  ncc = jnp.asarray(ncc)
  pool = jnp.asarray(pool)
  if ncc.shape != (m, nr * nc):
    raise ValueError(f"ncc must have shape [M, nb] = {[m, nr * nc]} for B={b}, got {list(ncc.shape)}")
  if pool.shape != (m,) or pool.dtype != jnp.bool_:
    raise ValueError(f"pool must be bool[{m}], got {pool.dtype}{list(pool.shape)}")

  group = jnp.where(pool[:, None], _key_group(ncc), _EMPTY)
  index = jax.lax.broadcasted_iota(jnp.int32, ncc.shape, 0)
  *_, order = jax.lax.sort((group, _key_magnitude(ncc), index), dimension=0, num_keys=3)  # [M, nb]
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
  mean = _floor_mean(picked, valid.reshape(l, 1, 1), l_eff)  # [nr, nc, B, B, C]
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
  *_, order = jax.lax.sort((outside, _key_magnitude(ncc_full), index), num_keys=3)
  return order[0]


# ----------------------------------------------------------------------------------------------------------------
# Streaming top-L.


@flax.struct.dataclass
class TopLSlots:
  """The L best candidate blocks per block position: keys sorted by rank, pixels in unordered storage slots.

  The keys are kept in rank order (rank 0 first); `slot[r, b]` says which storage slot of `pixels` holds the
  block of rank r at block position b (a permutation of 0..L-1 per block position). An update then writes one
  block per position into the slot of the evicted entry (O(image) bytes) instead of shifting L blocks
  (O(L x image)). Empty ranks have group 3 and iteration INT32_MAX and sort after every candidate; their
  slots' pixels are stale and never read (only ranks < min(count, L) are averaged).

  Attributes:
    pixels: uint8[L, nb, B, B, 3] storage, indexed by slot.
    slot: int32[L, nb] storage slot of each rank.
    group: int8[L, nb] key group by rank (0 negative, 1 non-negative, 2 NaN, 3 empty).
    magnitude: float32[L, nb] |NCC| by rank.
    iteration: int32[L, nb] the candidate's iteration by rank (final tie-break, earlier first).
    count: int32[] candidates merged so far (the pool size M; may exceed L).
  """

  pixels: jax.Array
  slot: jax.Array
  group: jax.Array
  magnitude: jax.Array
  iteration: jax.Array
  count: jax.Array


@flax.struct.dataclass
class TopL:
  """Streaming DIPPAS assembly state for one (B, τ) pair, any L up to the capacity.

  `main` ranks the candidates with PSNR ≥ τ; `fallback` ranks the candidates whose PSNR equals the running
  maximum (reset when a strictly higher PSNR arrives, merged on ties), used only if no candidate reaches τ. It
  is frozen once `main` is non-empty (it can no longer be used). With both, `topl_finalize` equals `assemble`
  on the pool `psnr_pool(psnr, tau)` of the full stack, bit for bit.

  Attributes:
    main, fallback: TopLSlots.
    best_psnr: float32[] running maximum PSNR (-inf before any candidate; NaN PSNRs are ignored).
    height, width, block_size: static image geometry.
  """

  main: TopLSlots
  fallback: TopLSlots
  best_psnr: jax.Array
  height: int = flax.struct.field(pytree_node=False)
  width: int = flax.struct.field(pytree_node=False)
  block_size: int = flax.struct.field(pytree_node=False)

  @property
  def capacity(self) -> int:
    """The stored L (the largest num_blocks `topl_finalize` accepts)."""
    return self.main.group.shape[-2]


def _empty_slots(l: int, nb: int, b: int, c: int, batch_shape: tuple[int, ...] = ()) -> TopLSlots:
  return TopLSlots(
      pixels=jnp.zeros(batch_shape + (l, nb, b, b, c), jnp.uint8),
      slot=jnp.broadcast_to(jnp.arange(l, dtype=jnp.int32)[:, None], batch_shape + (l, nb)),
      group=jnp.full(batch_shape + (l, nb), _EMPTY, jnp.int8),
      magnitude=jnp.zeros(batch_shape + (l, nb), jnp.float32),
      iteration=jnp.full(batch_shape + (l, nb), _NO_ITERATION, jnp.int32),
      count=jnp.zeros(batch_shape, jnp.int32),
  )


def topl_init(height: int, width: int, *, block_size: int, num_blocks: int,
              batch_shape: Sequence[int] = ()) -> TopL:
  """An empty accumulator keeping L = num_blocks blocks per position (2 x L x image bytes of pixels).

  Args:
    height, width: image size H, W.
    block_size: B, dividing H and W.
    num_blocks: the capacity L (finalize with any L' ≤ L).
    batch_shape: leading axes for a batch of independent images (e.g. (N,)); default one image.

  Raises:
    ValueError: if B does not divide H and W or L < 1.
  """
  h, w = _static_int(height, "height"), _static_int(width, "width")
  b = _check_block_size(h, w, block_size)
  l = _static_int(num_blocks, "num_blocks")
  nb = (h // b) * (w // b)
  batch_shape = tuple(int(d) for d in batch_shape)
  return TopL(main=_empty_slots(l, nb, b, 3, batch_shape), fallback=_empty_slots(l, nb, b, 3, batch_shape),
              best_psnr=jnp.full(batch_shape, -jnp.inf, jnp.float32), height=h, width=w, block_size=b)


def _reset_keys(slots: TopLSlots, reset: jax.Array) -> TopLSlots:
  """Empties the ranks when `reset` (keys only: the slot permutation stays, stale pixels are never read)."""
  return slots.replace(
      group=jnp.where(reset, jnp.int8(_EMPTY), slots.group),
      iteration=jnp.where(reset, jnp.int32(_NO_ITERATION), slots.iteration),
      count=jnp.where(reset, 0, slots.count),
  )


def _merge(slots: TopLSlots, new_pixels: jax.Array, new_group: jax.Array, new_magnitude: jax.Array,
           new_iteration: jax.Array, enter: jax.Array) -> TopLSlots:
  """Inserts one candidate into the ranked entries of every block position (a stable merge of L + 1 entries).

  The keys are sorted, so the candidate's rank is the number of kept entries with a strictly smaller key
  (group, magnitude, iteration); ranks from there on shift down by one and the last one drops out. This is
  exactly the first L of a stable sort of the L kept plus the new one. The new block is written into the storage
  slot of the dropped entry (a scatter, in place under jit with donation); positions it does not enter are left
  untouched.
  """
  l, nb = slots.group.shape
  g_old, g_new = slots.group.astype(jnp.int32), new_group[None, :].astype(jnp.int32)
  m_old, m_new = slots.magnitude, new_magnitude[None, :]
  before = (g_old < g_new) | ((g_old == g_new) & (
      (m_old < m_new) | ((m_old == m_new) & (slots.iteration < new_iteration))))  # [L, nb], a prefix per column
  position = jnp.where(enter, jnp.sum(before, axis=0, dtype=jnp.int32), l)  # [nb]; L = not kept
  rank = jnp.arange(l, dtype=jnp.int32)[:, None]
  keep, is_new = rank < position, rank == position  # [L, nb]; ranks after `position` take the entry above

  def shift(old, new):  # rank r <- old[r] | new | old[r - 1]
    above = jnp.concatenate([old[:1], old[:-1]], axis=0)
    return jnp.where(keep, old, jnp.where(is_new, new[None].astype(old.dtype), above))

  freed = slots.slot[l - 1]  # [nb] slot of the entry that drops out (an empty rank's free slot if count < L)
  target = jnp.where(position < l, freed, l)  # l = out of range: no write
  pixels = slots.pixels.at[target, jnp.arange(nb)].set(new_pixels, mode="drop", unique_indices=True)
  return TopLSlots(
      pixels=pixels,
      slot=shift(slots.slot, freed),
      group=shift(slots.group, new_group),
      magnitude=shift(slots.magnitude, new_magnitude),
      iteration=shift(slots.iteration, jnp.broadcast_to(new_iteration, new_group.shape)),
      count=slots.count + enter.astype(jnp.int32),
  )


def topl_update(state: TopL, image_u8, ncc, psnr, step, *, tau) -> TopL:
  """Merges one candidate into the accumulator (jit-friendly; one image; vmap for a batch).

  The candidate enters `main` when psnr ≥ τ; it enters `fallback` when `main` is still empty and psnr ≥ the
  running maximum (a strictly higher PSNR empties `fallback` first). A NaN PSNR never enters (use it to mask
  inactive images). Steps must increase from call to call (they break ties like the candidate index in
  `assemble`). Carry the state through `lax.scan` or jit with `donate_argnums` so the block write happens in
  place: then a step costs O(image) bytes, not O(L x image) (512², B=32, L=50 on 2 CPU cores: 2.4 ms with
  donation; 0.8 ms per image vmapped over 4 inside a scan).

  Args:
    state: TopL.
    image_u8: uint8[H, W, 3] the candidate x̂_t.
    ncc: float[nb] its block NCCs for the state's B.
    psnr: float[] its PSNR in dB.
    step: int[] its iteration index t.
    tau: the PSNR threshold τ (static under jit).

  Returns:
    the updated TopL.
  """
  image_u8 = jnp.asarray(image_u8)
  nb = state.main.group.shape[-1]
  if image_u8.shape != (state.height, state.width, 3) or image_u8.dtype != jnp.uint8:
    raise ValueError(f"image_u8 must be uint8[{state.height}, {state.width}, 3], got "
                     f"{image_u8.dtype}{list(image_u8.shape)}")
  ncc = jnp.asarray(ncc, jnp.float32)
  if ncc.shape != (nb,):
    raise ValueError(f"ncc must be float[{nb}] for B={state.block_size}, got shape {list(ncc.shape)}")
  psnr = jnp.asarray(psnr, jnp.float32)
  step = jnp.asarray(step, jnp.int32)
  new_pixels = blocks(image_u8, block_size=state.block_size)
  new_group = _key_group(ncc).astype(jnp.int8)
  new_magnitude = _key_magnitude(ncc)

  main = _merge(state.main, new_pixels, new_group, new_magnitude, step, psnr >= jnp.float32(tau))
  use_fallback = state.main.count == 0
  higher = psnr > state.best_psnr
  fallback = _reset_keys(state.fallback, use_fallback & higher)
  fallback = _merge(fallback, new_pixels, new_group, new_magnitude, step,
                    use_fallback & (psnr >= state.best_psnr))
  best = jnp.where(higher, psnr, state.best_psnr)
  return state.replace(main=main, fallback=fallback, best_psnr=best)


def _batched(fn, state: TopL, *args, **kwargs):
  """Applies a one-image function over the leading batch axes of a TopL (count.ndim of them)."""
  for _ in range(state.main.count.ndim):
    fn = jax.vmap(fn)
  return fn(state, *args, **kwargs)


def _active_slots(state: TopL) -> TopLSlots:
  use_main = state.main.count > 0
  return jax.tree_util.tree_map(lambda a, b: jnp.where(use_main, a, b), state.main, state.fallback)


def _check_num_blocks(state: TopL, num_blocks: Optional[int]) -> int:
  if num_blocks is None:
    return state.capacity
  l = _static_int(num_blocks, "num_blocks")
  if l > state.capacity:
    raise ValueError(f"num_blocks={l} exceeds the accumulator's capacity L={state.capacity}; initialise it with "
                     f"num_blocks ≥ {l}")
  return l


@functools.partial(jax.jit, static_argnames="num_blocks")
def topl_finalize(state: TopL, *, num_blocks: Optional[int] = None) -> jax.Array:
  """The anonymized image: per block the floor mean of the first L_eff = min(count, L) kept blocks.

  Uses `main` if any candidate reached τ, else `fallback` (the max-PSNR candidates), so it equals
  `assemble(stack, ncc, psnr_pool(psnr, tau=τ), ...)` on the same stream. All zeros if nothing was merged.

  Args:
    state: TopL, optionally with leading batch axes.
    num_blocks: L ≤ the capacity (default: the capacity).

  Returns:
    uint8[..., H, W, 3].
  """
  l = _check_num_blocks(state, num_blocks)

  def one(s: TopL) -> jax.Array:
    slots = _active_slots(s)
    l_eff = jnp.minimum(slots.count, l)
    rank_of_slot = jnp.argsort(slots.slot, axis=0)  # inverse permutation: [L_capacity, nb]
    mean = _floor_mean(slots.pixels, rank_of_slot < l_eff, l_eff)  # [nb, B, B, 3]
    return unblocks(mean, height=s.height, width=s.width)

  return _batched(one, state)


@functools.partial(jax.jit, static_argnames="num_blocks")
def topl_selection(state: TopL, *, num_blocks: Optional[int] = None) -> jax.Array:
  """The iterations averaged by `topl_finalize`: int32[..., L, nb], -1 for ranks ≥ L_eff (for reports)."""
  l = _check_num_blocks(state, num_blocks)

  def one(s: TopL) -> jax.Array:
    slots = _active_slots(s)
    valid = jnp.arange(l, dtype=jnp.int32)[:, None] < jnp.minimum(slots.count, l)
    return jnp.where(valid, slots.iteration[:l], -1)

  return _batched(one, state)


# ----------------------------------------------------------------------------------------------------------------
# Candidate NCC and the DIP-runner hook.


def candidate_ncc(images_u8, k_ref, *, block_sizes: Iterable[int], sigma: float = 3.0) -> dict[int, jax.Array]:
  """Block NCCs of candidates with the reference fingerprint (SPEC §2.10; §0 blind mode).

  NCC_{t,b} = ncc(W(x̂_t), gray(x̂_t) ⊙ K_ref) over block b, W = `denoise.extract_residual` (σ = 3 in DIPPAS).

  Args:
    images_u8: uint8[M, H, W, 3] candidates.
    k_ref: float[H, W] (or [M, H, W]) the NCC reference: device K (aware) or K̃ = W(I) (blind).
    block_sizes: the B values (each dividing H and W).
    sigma: residual σ.

  Returns:
    {B: float32[M, (H / B) * (W / B)]}, NaN for blocks with a zero norm.
  """
  residual = denoise.extract_residual(images_u8, sigma=sigma)  # [M, H, W]
  gray_k = denoise.rgb2gray(jnp.asarray(images_u8, jnp.float32)) * jnp.asarray(k_ref, jnp.float32)
  return {b: metrics.block_ncc(residual, gray_k, block_size=b) for b in sorted(set(block_sizes))}


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
    out.add((_static_int(b, "block_size"), _static_int(l, "num_blocks"), tau))
  return tuple(sorted(out))


def _accumulator_specs(settings) -> tuple[tuple[int, float, int], ...]:
  """(B, τ, capacity) per accumulator: the L values sharing (B, τ) share one, of the largest L."""
  capacity: dict[tuple[int, float], int] = {}
  for b, l, tau in normalize_settings(settings):
    capacity[(b, tau)] = max(capacity.get((b, tau), 0), l)
  return tuple((b, tau, l) for (b, tau), l in sorted(capacity.items()))


@flax.struct.dataclass
class Candidates:
  """Per-image candidate state carried by the DIP runner.

  Attributes:
    k_ref: float32[H, W] the NCC reference (device K in aware mode, K̃ = W(I) in blind mode).
    accumulators: one TopL per (B, τ), in the order of `keys`.
    keys: static ((B, τ), ...).
  """

  k_ref: jax.Array
  accumulators: tuple[TopL, ...]
  keys: tuple[tuple[int, float], ...] = flax.struct.field(pytree_node=False)


def init_candidates(k_ref, *, settings, height: int, width: int) -> Candidates:
  """Empty candidate state for the (B, L, τ) settings.

  Args:
    k_ref: float[..., H, W]; leading axes (e.g. N images) become batch axes of every accumulator.
    settings: (B, L, τ) triples; one accumulator of capacity max L per distinct (B, τ).
    height, width: H, W (checked against k_ref).
  """
  k_ref = jnp.asarray(k_ref, jnp.float32)
  h, w = _static_int(height, "height"), _static_int(width, "width")
  if k_ref.ndim < 2 or k_ref.shape[-2:] != (h, w):
    raise ValueError(f"k_ref must be float[..., {h}, {w}], got shape {list(k_ref.shape)}")
  specs = _accumulator_specs(settings)
  accs = tuple(topl_init(h, w, block_size=b, num_blocks=l, batch_shape=k_ref.shape[:-2]) for b, _, l in specs)
  return Candidates(k_ref=k_ref, accumulators=accs, keys=tuple((b, tau) for b, tau, _ in specs))


def _check_keys(candidates: Candidates, specs) -> None:
  keys = tuple((b, tau) for b, tau, _ in specs)
  capacities = tuple(l for _, _, l in specs)
  got = tuple(acc.capacity for acc in candidates.accumulators)
  if candidates.keys != keys or got != capacities:
    raise ValueError(f"candidates were initialised for (B, tau) {candidates.keys} with L {got}, but the settings "
                     f"give {keys} with L {capacities}")


def make_candidate_hook(*, settings, sigma: float = 3.0, batched: bool = False):
  """The DIP runner's per-step candidate hook: ranks the candidate and merges it into every accumulator.

  `hook(candidates, image_u8, psnr, step, active) -> candidates` with `image_u8` uint8[H, W, 3] the candidate x̂_t
  (pre-injection, SPEC §0), `psnr` float32[], `step` int32[] its iteration, `active` bool[] (False for images
  that have stopped: nothing is merged). The residual W(x̂_t) (σ = `sigma`) is computed once per step for all
  block sizes, inside a `lax.cond` that skips it when the candidate cannot enter any accumulator (inactive, or
  psnr below every τ and below the running best PSNR of accumulators still on their fallback).

  Under `jax.vmap` a `lax.cond` with a per-image predicate runs both branches, so the skip is lost; with
  `batched=True` the hook instead takes a batch (`image_u8` uint8[N, H, W, 3], `psnr`, `step`, `active` [N],
  candidates with a leading N axis) and skips the residuals of the whole batch when no image needs them.

  Args:
    settings: (B, L, τ) triples (the L values of one (B, τ) share an accumulator of the largest L).
    sigma: the residual σ (3 in DIPPAS).
    batched: see above.
  """
  specs = _accumulator_specs(settings)
  block_sizes = tuple(sorted({b for b, _, _ in specs}))

  def needs(candidates: Candidates, psnr, active):
    need = jnp.zeros(psnr.shape, jnp.bool_)
    for (_, tau, _), acc in zip(specs, candidates.accumulators):
      on_fallback = acc.main.count == 0
      need = need | (psnr >= jnp.float32(tau)) | (on_fallback & (psnr >= acc.best_psnr))
    return need & active

  def scores(image_u8, k_ref):  # one image -> {B: float32[nb]}
    out = candidate_ncc(image_u8[None], k_ref, block_sizes=block_sizes, sigma=sigma)
    return {b: v[0] for b, v in out.items()}

  def no_scores(image_u8):
    h, w = image_u8.shape[-3:-1]
    return {b: jnp.full(image_u8.shape[:-3] + ((h // b) * (w // b),), jnp.nan, jnp.float32) for b in block_sizes}

  def merge_all(candidates: Candidates, image_u8, ncc, psnr, step):  # one image
    accs = tuple(topl_update(acc, image_u8, ncc[b], psnr, step, tau=tau)
                 for (b, tau, _), acc in zip(specs, candidates.accumulators))
    return candidates.replace(accumulators=accs)

  def prepare(candidates, image_u8, psnr, step, active):
    _check_keys(candidates, specs)
    image_u8 = jnp.asarray(image_u8)
    if image_u8.dtype != jnp.uint8:
      raise ValueError(f"image_u8 must be uint8, got {image_u8.dtype}")
    psnr = jnp.asarray(psnr, jnp.float32)
    active = jnp.asarray(active, jnp.bool_)
    # An inactive image gets a NaN PSNR: it then enters no accumulator and leaves the running best unchanged.
    return image_u8, jnp.where(active, psnr, jnp.nan), jnp.asarray(step, jnp.int32), active

  def hook(candidates: Candidates, image_u8, psnr, step, active) -> Candidates:
    image_u8, psnr, step, active = prepare(candidates, image_u8, psnr, step, active)
    ncc = jax.lax.cond(needs(candidates, psnr, active), lambda: scores(image_u8, candidates.k_ref),
                       lambda: no_scores(image_u8))
    return merge_all(candidates, image_u8, ncc, psnr, step)

  def batched_hook(candidates: Candidates, image_u8, psnr, step, active) -> Candidates:
    image_u8, psnr, step, active = prepare(candidates, image_u8, psnr, step, active)
    ncc = jax.lax.cond(jnp.any(needs(candidates, psnr, active)),
                       lambda: jax.vmap(scores)(image_u8, candidates.k_ref), lambda: no_scores(image_u8))
    return jax.vmap(merge_all)(candidates, image_u8, ncc, psnr, step)

  return batched_hook if batched else hook


def finalize_candidates(candidates: Candidates, *, settings,
                        num_blocks_list: Optional[Sequence[int]] = None) -> dict[tuple[int, int, float], jax.Array]:
  """The anonymized image of every setting.

  Args:
    candidates: the state after the last step (optionally with leading batch axes).
    settings: the (B, L, τ) triples the state was initialised with.
    num_blocks_list: L values to finalise for every (B, τ) (each ≤ that accumulator's capacity); default: the
      settings' own triples.

  Returns:
    {(B, L, τ): uint8[..., H, W, 3]}.
  """
  specs = _accumulator_specs(settings)
  _check_keys(candidates, specs)
  if num_blocks_list is None:
    wanted = normalize_settings(settings)
  else:
    ls = sorted({_static_int(l, "num_blocks") for l in num_blocks_list})
    wanted = tuple((b, l, tau) for b, tau, _ in specs for l in ls)
  index = {(b, tau): i for i, (b, tau, _) in enumerate(specs)}
  return {(b, l, tau): topl_finalize(candidates.accumulators[index[(b, tau)]], num_blocks=l)
          for b, l, tau in wanted}


def describe_settings(settings) -> list[dict[str, Any]]:
  """The settings as JSON-friendly dicts (for reports)."""
  return [{"block_size": b, "num_blocks": l, "tau": tau} for b, l, tau in normalize_settings(settings)]
