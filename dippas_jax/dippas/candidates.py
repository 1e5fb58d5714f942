"""The DIP runner's candidate hook for DIPPAS: block NCCs, the streaming top-L accumulators, the fallback pool.

At every iteration the runner hands `AssemblyHook.update` the kept images q(x̂_t) of a batch and their PSNRs.
The residual W(x̂_t) — the expensive part — is computed (for the whole batch, in one `lax.cond`) only when a
candidate can enter an accumulator (PSNR ≥ some τ) or the NCC history trace is due; then every accumulator
(`topl.TopL`, one per (B, τ) of the settings, shared by the L values) merges the candidate. The fallback pool of
DIPPAS (no candidate reaches τ: the iterations with the maximum PSNR, SPEC §2.11) needs no residual during the
run: `Fallback` stores those images whole and `finalize_candidates` ranks them once at the end.

Shapes: N images of a batch, H, W image size, B block size, nb = (H / B) * (W / B), L the largest L of the
settings.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp

from dippas_jax.dippas import assembly
from dippas_jax.dippas import topl
from dippas_jax.dippas.dip import runner
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics


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
  return rank_scores(residual, images_u8, k_ref, None, block_sizes=block_sizes)


def rank_scores(residual, images_u8, k_ref, k_self, *, block_sizes: Iterable[int]) -> dict[int, jax.Array]:
  """{B: float32[M, nb]} the ranking scores of candidates from their residuals float32[M, H, W]: the block NCC
  with gray ⊙ K_ref or, with a second reference K_self (the photo's own residual W(I), float[H, W]), the larger of
  the two |NCC| (a block ranks well only if it is far from both). References are [H, W] or per candidate
  [M, H, W]."""
  gray = denoise.rgb2gray(jnp.asarray(images_u8, jnp.float32))
  out = {}
  for b in sorted(set(block_sizes)):
    ncc = metrics.block_ncc(residual, gray * jnp.asarray(k_ref, jnp.float32), block_size=b)
    if k_self is not None:
      own = metrics.block_ncc(residual, gray * jnp.asarray(k_self, jnp.float32), block_size=b)
      ncc = jnp.maximum(jnp.abs(ncc), jnp.abs(own))
    out[b] = ncc
  return out


@flax.struct.dataclass
class Fallback:
  """The candidates whose PSNR equals the running maximum, stored whole in arrival order (one image).

  A strictly higher PSNR empties the store first; NaN PSNRs never enter. Only the first `capacity` ties are
  kept: with more exact ties at the maximum than the largest L, later ones are dropped (the reference would rank
  all of them and keep the best L; ties at the maximum are rare, and none beyond L were seen).

  Attributes:
    pixels: uint8[L, H, W, 3]; iteration: int32[L] (NO_ITERATION when empty); count: int32[] ties seen;
    best_psnr: float32[] the running maximum (-inf at start).
  """
  pixels: jax.Array
  iteration: jax.Array
  count: jax.Array
  best_psnr: jax.Array


def _fallback_init(height: int, width: int, capacity: int) -> Fallback:
  return Fallback(pixels=jnp.zeros((capacity, height, width, 3), jnp.uint8),
                  iteration=jnp.full((capacity,), assembly.NO_ITERATION, jnp.int32),
                  count=jnp.zeros((), jnp.int32), best_psnr=jnp.full((), -jnp.inf, jnp.float32))


def _fallback_update(fb: Fallback, image_u8, psnr, step) -> Fallback:
  higher = psnr > fb.best_psnr
  enter = higher | (psnr == fb.best_psnr)
  count = jnp.where(higher, 0, fb.count)
  capacity = fb.iteration.shape[0]
  index = jnp.where(enter & (count < capacity), count, capacity)  # capacity = out of range: no write
  iteration = jnp.where(higher, assembly.NO_ITERATION, fb.iteration)
  return Fallback(pixels=fb.pixels.at[index].set(image_u8, mode="drop"),
                  iteration=iteration.at[index].set(step, mode="drop"),
                  count=count + enter.astype(jnp.int32), best_psnr=jnp.where(higher, psnr, fb.best_psnr))


@flax.struct.dataclass
class Candidates:
  """Per-image candidate state carried by the DIP runner (leading axis N when batched).

  Attributes:
    k_ref: float32[H, W] the NCC reference (device K in aware mode, K̃ = W(I) in blind mode).
    k_self: float32[H, W] the photo's own residual W(I), the second ranking reference (`rank_own_residual`;
      zeros otherwise).
    accumulators: one `topl.TopL` per (B, τ), in the order of `keys`.
    fallback: the max-PSNR candidates (`Fallback`).
    ncc_trace: float32[T] whole-image NCC of x̂ at iterations 0, e, 2e, ... (e = trace_every), NaN elsewhere.
    keys: static ((B, τ), ...).
  """
  k_ref: jax.Array
  k_self: jax.Array
  accumulators: tuple[topl.TopL, ...]
  fallback: Fallback
  ncc_trace: jax.Array
  keys: tuple[tuple[int, float], ...] = flax.struct.field(pytree_node=False)


def accumulator_specs(settings) -> tuple[tuple[int, float, int], ...]:
  """(B, τ, capacity) per accumulator: the L values sharing (B, τ) share one, of the largest L."""
  capacity: dict[tuple[int, float], int] = {}
  for b, l, tau in assembly.normalize_settings(settings):
    capacity[(b, tau)] = max(capacity.get((b, tau), 0), l)
  return tuple((b, tau, l) for (b, tau), l in sorted(capacity.items()))


@dataclasses.dataclass(frozen=True)
class AssemblyHook:
  """The DIP runner's hook of DIPPAS (see `runner.CandidateHook`): a hashable value, so equal hooks share one
  compiled runner.

  Attributes:
    settings: (B, L, τ) triples (normalised by `make`).
    height, width: H, W of the images.
    sigma: the residual σ of the ranking (3 in DIPPAS).
    key: the ranking key ('paper' or 'abs', see `assembly`); rounding: of the block mean ('floor' or 'nearest').
    trace_every: record the whole-image NCC every this many iterations (0 = never); trace_length: entries.
    stop_at_pool: an image is done as soon as every (B, τ) pool has this many candidates (`finished`; e.g. L:
      the assembly has what it needs, whatever τ_stop says; 2L leaves it a choice); 0 = off.
    rank_own_residual: rank blocks against the photo's own residual W(I) too (`rank_scores`): what is left of
      the photo's noise, the true fingerprint included, not only of the fingerprint estimate K_ref.
  """
  settings: tuple[tuple[int, int, float], ...]
  height: int
  width: int
  sigma: float = 3.0
  key: str = "paper"
  rounding: str = "floor"
  trace_every: int = 0
  trace_length: int = 1
  stop_at_pool: int = 0
  rank_own_residual: bool = False

  @classmethod
  def make(cls, settings, *, height: int, width: int, **kwargs) -> "AssemblyHook":
    """Validated hook: settings normalised, every B dividing H and W, a known key."""
    settings = assembly.normalize_settings(settings)
    for b, _, _ in settings:
      assembly.check_block_size(height, width, b)
    assembly.check_key(kwargs.get("key", "paper"))
    if kwargs.get("rounding", "floor") not in assembly.ROUNDINGS:
      raise ValueError(f"Unsupported rounding {kwargs['rounding']!r}; expected one of {assembly.ROUNDINGS}")
    return cls(settings=settings, height=height, width=width, **kwargs)

  @property
  def block_sizes(self) -> tuple[int, ...]:
    return tuple(sorted({b for b, _, _ in self.settings}))

  def init(self, image, fingerprint) -> Candidates:
    """Empty state of one image (`image` float32[H, W, 3] in [0, 1]); `fingerprint` float[H, W] is K_ref."""
    specs = accumulator_specs(self.settings)
    k_self = jnp.zeros(jnp.shape(fingerprint), jnp.float32)
    if self.rank_own_residual:
      k_self = denoise.extract_residual(runner.quantize_u8(image)[None], sigma=self.sigma)[0]
    accs = tuple(topl.topl_init(self.height, self.width, block_size=b, num_blocks=l, key=self.key)
                 for b, _, l in specs)
    return Candidates(k_ref=jnp.asarray(fingerprint, jnp.float32), k_self=k_self, accumulators=accs,
                      fallback=_fallback_init(self.height, self.width, max(l for _, _, l in specs)),
                      ncc_trace=jnp.full((self.trace_length,), jnp.nan, jnp.float32),
                      keys=tuple((b, tau) for b, tau, _ in specs))

  def finished(self, candidates: Candidates) -> jax.Array:
    """bool[N]: every (B, τ) pool of the image has `stop_at_pool` candidates (all False when it is 0)."""
    full = [acc.count >= self.stop_at_pool for acc in candidates.accumulators]
    return jnp.all(jnp.stack(full), axis=0) & (self.stop_at_pool > 0)

  def _scores(self, image_u8, k_ref, k_self):
    """(ranking scores {B: float32[N, nb]}, whole-image NCC float32[N]) of a batch, from one residual per image."""
    residual = denoise.extract_residual(image_u8, sigma=self.sigma)
    blocks = rank_scores(residual, image_u8, k_ref, k_self if self.rank_own_residual else None,
                         block_sizes=self.block_sizes)
    return blocks, metrics.ncc_eq2(residual, image_u8, k_ref)

  def _no_scores(self, image_u8):
    n = image_u8.shape[0]
    nan = lambda size: jnp.full((n,) + size, jnp.nan, jnp.float32)  # noqa: E731
    return {b: nan(((self.height // b) * (self.width // b),)) for b in self.block_sizes}, nan(())

  def update(self, candidates: Candidates, image_u8, psnr, step, active) -> Candidates:
    """Merges a batch of candidates (uint8[N, H, W, 3], psnr/step/active [N]); see the module docstring."""
    psnr = jnp.where(active, jnp.asarray(psnr, jnp.float32), jnp.nan)  # inactive: enters nothing
    step = jnp.asarray(step, jnp.int32)
    rank = jnp.any(psnr >= min(tau for _, _, tau in self.settings))
    due = active & (step % max(self.trace_every, 1) == 0) & (self.trace_every > 0)
    blocks, whole = jax.lax.cond(rank | jnp.any(due),
                                 lambda: self._scores(image_u8, candidates.k_ref, candidates.k_self),
                                 lambda: self._no_scores(image_u8))
    accs = tuple(jax.vmap(functools.partial(topl.topl_update, tau=tau))(acc, image_u8, blocks[b], psnr, step)
                 for (b, tau), acc in zip(candidates.keys, candidates.accumulators))
    slot = jnp.where(due, step // max(self.trace_every, 1), self.trace_length)  # trace_length: no write
    trace = jax.vmap(lambda t, i, v: t.at[i].set(v, mode="drop"))(candidates.ncc_trace, slot, whole)
    return candidates.replace(accumulators=accs, ncc_trace=trace,
                              fallback=jax.vmap(_fallback_update)(candidates.fallback, image_u8, psnr, step))


def _fallback_images(fallback: Fallback, k_ref, k_self, *, block_sizes: Sequence[int], num_blocks: Sequence[int],
                     sigma: float, key: str, rounding: str, own: bool) -> dict[tuple[int, int], jax.Array]:
  """{(B, L): uint8[H, W, 3]}: `assembly.assemble` on the stored max-PSNR candidates of one image."""
  residual = denoise.extract_residual(fallback.pixels, sigma=sigma)
  scores = rank_scores(residual, fallback.pixels, k_ref, k_self if own else None, block_sizes=block_sizes)
  pool = jnp.arange(fallback.iteration.shape[0]) < fallback.count
  return {(b, l): assembly.assemble(fallback.pixels, scores[b], pool, block_size=b, num_blocks=l, key=key,
                                    rounding=rounding)[0]
          for b in block_sizes for l in num_blocks}


def finalize_candidates(candidates: Candidates, hook: AssemblyHook,
                        num_blocks_list: Optional[Sequence[int]] = None) -> dict[tuple[int, int, float], jax.Array]:
  """The anonymized image of every setting: {(B, L, τ): uint8[..., H, W, 3]} (leading batch axes kept).

  An accumulator that no candidate reached τ of gives the assembly of the fallback pool. num_blocks_list: L
  values to finalise for every (B, τ) (each ≤ that accumulator's capacity); default: the hook's own triples.
  """
  specs = accumulator_specs(hook.settings)
  if candidates.keys != tuple((b, tau) for b, tau, _ in specs):
    raise ValueError(f"candidates hold (B, tau) {candidates.keys}, the hook's settings give "
                     f"{tuple((b, tau) for b, tau, _ in specs)}")
  if num_blocks_list is None:
    wanted = hook.settings
  else:
    ls = sorted({assembly.static_int(l, "num_blocks") for l in num_blocks_list})
    wanted = tuple((b, l, tau) for b, tau, _ in specs for l in ls)
  index = {(b, tau): i for i, (b, tau, _) in enumerate(specs)}
  main = {(b, l, tau): topl.topl_finalize(candidates.accumulators[index[(b, tau)]], num_blocks=l,
                                          rounding=hook.rounding)
          for b, l, tau in wanted}
  batch = candidates.k_ref.shape[:-2]
  fallback_fn = functools.partial(_fallback_images, block_sizes=sorted({b for b, _, _ in wanted}),
                                  num_blocks=sorted({l for _, l, _ in wanted}), sigma=hook.sigma, key=hook.key,
                                  rounding=hook.rounding, own=hook.rank_own_residual)
  for _ in batch:
    fallback_fn = jax.vmap(fallback_fn)
  needed = jnp.any(jnp.stack([jnp.any(acc.count == 0) for acc in candidates.accumulators]))
  fallback = jax.lax.cond(needed, fallback_fn, lambda fb, k, s: jax.tree.map(jnp.zeros_like, jax.eval_shape(
      fallback_fn, fb, k, s)), candidates.fallback, candidates.k_ref, candidates.k_self)  # residuals only if needed
  out = {}
  for b, l, tau in wanted:
    reached = candidates.accumulators[index[(b, tau)]].count > 0
    out[(b, l, tau)] = jnp.where(reached[..., None, None, None], main[(b, l, tau)], fallback[(b, l)])
  return out


def pool_sizes(candidates: Candidates) -> dict[tuple[int, float], jax.Array]:
  """{(B, τ): int32[...]} candidates that reached τ (0: the result is the fallback's, the quality target missed)."""
  return {key: acc.count for key, acc in zip(candidates.keys, candidates.accumulators)}
