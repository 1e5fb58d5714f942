"""The pieces of a stream of photos, in the order the DIP queue takes them, and each photo put back when done.

A photo is one piece (a centre crop) or, in full-resolution mode, the tiles of `tiling` (cut lazily: only the
photos in flight are in memory). `PhotoStream.jobs()` hands the queue (`dip.scheduler`) the next piece that can
start, `piece_done` files a finished one, and a photo whose pieces are all done is put back by a `TileCanvas` and
handed to `on_photo`.

Warm starts (`warm_start_roots` = n > 0): per photo, n root tiles spread evenly over the grid are optimised first
from the random initialisation; every other tile starts from the final weights of its nearest root (a fresh
optimizer state; the config's warm-up), as soon as that root is done. Neighbouring tiles share the camera, the
light and much of their texture, so a root's weights are a better start than random ones (BUILD_NOTES "Whole
photos": ~35 % fewer iterations). While no tile of the open photos can start, the next photo is opened and its
roots go first, so slots do not wait; `next_job` returns None only when every piece left waits for a root in
flight. Which tile warm-starts from which root is a function of the grid alone, so results stay deterministic.
"""

from __future__ import annotations

import dataclasses
import math
import time
import zlib
from collections.abc import Callable, Hashable, Iterable, Iterator

import numpy as np

from dippas_jax.dippas import kept_image
from dippas_jax.dippas import tiling
from dippas_jax.dippas.dip import scheduler


def piece_id(name: str, piece: int = 0) -> int:
  """The DIP id of piece `piece` (0 for a crop, the tile index of a whole photo) of the photo `name` (its file
  name): crc32 of `<name>#<piece>` (31 bits). With the seed it keys every random draw of the piece, so a result
  never depends on which pieces shared the device with it."""
  return zlib.crc32(f"{name}#{piece}".encode()) & 0x7FFFFFFF


@dataclasses.dataclass
class PieceResult:
  """One optimised piece (a crop, or a tile of a whole photo), numpy.

  outputs: {(B, L, τ): uint8[h, w, 3]} the assembled piece of every setting; history: {step, loss, psnr, gamma:
  [T]} of its iterations; ncc_trace: float32[T'] whole-piece NCC every `trace_every` iterations (NaN where not
  computed); num_steps, stopped (PSNR crossed τ_stop), gamma, best_psnr; pools: {(B, τ): candidates that reached τ
  (0: the fallback, below the target)}; seconds: its share of the queue's time (`scheduler.JobResult.seconds`);
  params: its final flat weights float32[P] when other pieces warm-start from it (else None).
  """
  outputs: dict
  history: dict
  ncc_trace: np.ndarray
  num_steps: int
  stopped: bool
  gamma: float
  best_psnr: float
  pools: dict
  seconds: float
  params: np.ndarray | None = None

  def to_arrays(self) -> dict[str, np.ndarray]:
    """Flat {name: array} of every field (for an `.npz`; `from_arrays` reads it back, bit for bit)."""
    arrays = {f"out_{b}_{l}_{t:g}": v for (b, l, t), v in self.outputs.items()}
    arrays.update({f"hist_{k}": v for k, v in self.history.items()})
    arrays.update({f"pool_{b}_{t:g}": np.asarray(v) for (b, t), v in self.pools.items()})
    arrays.update(ncc_trace=self.ncc_trace, num_steps=np.asarray(self.num_steps), stopped=np.asarray(self.stopped),
                  gamma=np.asarray(self.gamma), best_psnr=np.asarray(self.best_psnr),
                  seconds=np.asarray(self.seconds))
    if self.params is not None:  # a warm-start root: the tiles that start from it need its weights
      arrays["params"] = self.params
    return arrays

  @classmethod
  def from_arrays(cls, d) -> "PieceResult":
    """The inverse of `to_arrays` (KeyError / ValueError on a mapping that is not one)."""
    outputs = {(int(b), int(l), float(t)): d[k] for k in d if k.startswith("out_") for b, l, t in [k[4:].split("_")]}
    pools = {(int(b), float(t)): int(d[k]) for k in d if k.startswith("pool_") for b, t in [k[5:].split("_")]}
    return cls(outputs=outputs, history={k[5:]: d[k] for k in d if k.startswith("hist_")}, ncc_trace=d["ncc_trace"],
               num_steps=int(d["num_steps"]), stopped=bool(d["stopped"]), gamma=float(d["gamma"]),
               best_psnr=float(d["best_psnr"]), pools=pools, seconds=float(d["seconds"]), params=d.get("params"))


@dataclasses.dataclass
class PhotoTask:
  """A photo to anonymize: name (its file name; keys the pieces' random streams, `piece_id`); image uint8[H, W,
  3] (a centre crop, or the whole photo in full-resolution mode); fingerprint float[H, W] (PRNU-aware; None in
  blind mode); done: {piece index: PieceResult} kept from an interrupted run (not recomputed; a root needs its
  params); key: the caller's identifier of the task."""
  name: str
  image: np.ndarray
  fingerprint: np.ndarray | None = None
  done: dict = dataclasses.field(default_factory=dict)
  key: Hashable = None


@dataclasses.dataclass
class PhotoResult:
  """A finished photo: outputs {(B, L, τ): uint8[H, W, 3]} (its pieces put back); pieces: [PieceResult] by piece
  index; layout: the `tiling.TileLayout` (None: one piece, the image); seconds: the photo's cost, the sum of its
  pieces' shares of the queue's time; span_s: wall time from its first piece's start to its end (photos in flight
  together overlap)."""
  task: PhotoTask
  outputs: dict
  pieces: list
  layout: tiling.TileLayout | None
  seconds: float
  span_s: float


def photo_layout(config, height: int, width: int) -> tiling.TileLayout | None:
  """The tiles of an H×W image in full-resolution mode (None: the image is one piece)."""
  if not config.full_resolution:
    return None
  return tiling.make_layout(height, width, tile_size=int(config.tile_size), overlap=int(config.tile_overlap))


def warm_roots(layout: tiling.TileLayout | None, count: int) -> dict[int, int]:
  """{tile: its root} for up to `count` roots spread over the grid: a × b roots (the most ≤ count, then the shape
  closest to the grid's) at the centres of a equal row bands and b equal column bands; a root maps to itself,
  every other tile to its nearest root (ties: the lower root index). {} when count is 0 or the photo is one piece."""
  if count <= 0 or layout is None:
    return {}
  rows, cols = layout.rows, layout.cols
  shapes = [(a, min(cols, count // a)) for a in range(1, min(rows, count) + 1)]
  a, b = max(shapes, key=lambda s: (s[0] * s[1], -abs(math.log(s[0] * cols / (s[1] * rows))), -s[0]))
  roots = sorted({int((i + 0.5) * rows / a) * cols + int((j + 0.5) * cols / b) for i in range(a) for j in range(b)})
  at = np.asarray([divmod(r, cols) for r in roots], np.float64)
  out = {}
  for t in range(layout.num_tiles):
    d = np.sum((at - np.asarray(divmod(t, cols))) ** 2, axis=1)
    out[t] = roots[int(np.argmin(d))]
  return out


class _Photo:
  """An open photo: its pieces' sources, the pieces still to start, those done."""

  def __init__(self, number: int, task: PhotoTask, config, kept):
    image = np.asarray(task.image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
      raise ValueError(f"{task.name}: images must be uint8[H, W, 3], got {image.dtype}{list(image.shape)}")
    self.number, self.task = number, task
    self.layout = photo_layout(config, *image.shape[:2])
    self.count = 1 if self.layout is None else self.layout.num_tiles
    self.padded = image if self.layout is None else tiling.pad_to_layout(image, self.layout)
    k = task.fingerprint
    self.k_padded = (None if k is None else np.asarray(k, np.float32) if self.layout is None
                     else tiling.pad_to_layout(np.asarray(k, np.float32), self.layout))
    self.root_of = warm_roots(self.layout, int(config.warm_start_roots))
    self.done = dict(task.done)
    self.waiting = [t for t in range(self.count) if t not in self.done]
    # A photo resumed whole needs no flat-path inputs: computed only when a tile is still to run.
    self.kept_padded = (kept.prepare_photo(self.padded.astype(np.float32) / np.float32(255.0))
                        if self.layout is not None and kept is not None and kept.flat_path and self.waiting
                        else None)
    self.waiting.sort(key=lambda t: self.root_of.get(t, t) != t)  # roots first
    self.start = time.perf_counter()

  def cut(self, array, t: int):
    return array if self.layout is None else tiling.cut(array, self.layout, t)

  def job(self, t: int, params0) -> scheduler.Job:
    k = None if self.k_padded is None else self.cut(self.k_padded, t)
    is_root = self.root_of.get(t) == t and any(r == t and s != t for s, r in self.root_of.items())
    kept = (None if self.kept_padded is None
            else self.kept_padded.cut(*tiling.tile_origin(self.layout, t), self.layout.tile_size))
    return scheduler.Job(key=(self.number, t), image=np.ascontiguousarray(self.cut(self.padded, t)), fingerprint=k,
                         image_id=piece_id(self.task.name, t), params0=params0, keep_params=is_root,
                         kept_inputs=kept)

  def next_ready(self) -> tuple[int, np.ndarray | None] | None:
    """(tile, params0) of the first waiting tile whose root is done (or that needs none), removed from waiting."""
    for i, t in enumerate(self.waiting):
      root = self.root_of.get(t, t)
      if root == t:
        return self.waiting.pop(i), None
      if root in self.done:
        if self.done[root].params is None:
          raise ValueError(f"{self.task.name}: tile {root} was resumed without its weights; tile {t} cannot "
                           "warm-start from it (recompute the photo)")
        return self.waiting.pop(i), self.done[root].params
    return None


class PhotoStream:
  """The job stream of `anonymize.anonymize_photos` (module docstring)."""

  def __init__(self, tasks: Iterable[PhotoTask], config, on_photo: Callable[[PhotoResult], None], *,
               kept: kept_image.KeptImage | None = None):
    """kept: the kept-image transform whose inputs (`prepare_photo`) a tiled photo's jobs carry, computed on the
    whole photo and cut like the tiles; None: the runner prepares each tile's from the tile alone."""
    self.tasks: Iterator[PhotoTask] = iter(tasks)
    self.config, self.on_photo, self.kept = config, on_photo, kept
    self.open: dict[int, _Photo] = {}
    self.opened = 0

  def jobs(self) -> Iterator[scheduler.Job | None]:
    """The pieces in the order they can start; None while every piece left waits for a root in flight (the
    queue asks again after its next chunk)."""
    while True:
      job = self._ready_job()
      if job is not None:
        yield job
        continue
      task = next(self.tasks, None)
      if task is not None:
        photo = _Photo(self.opened, task, self.config, self.kept)
        self.opened += 1
        self.open[photo.number] = photo
        self._maybe_finish(photo)  # a photo resumed whole
        continue
      if not any(photo.waiting for photo in self.open.values()):
        return
      yield None

  def _ready_job(self) -> scheduler.Job | None:
    for photo in self.open.values():
      ready = photo.next_ready()
      if ready is not None:
        return photo.job(*ready)
    return None

  def task(self, number: int) -> PhotoTask:
    return self.open[number].task

  def piece_done(self, number: int, index: int, piece: PieceResult) -> None:
    photo = self.open[number]
    photo.done[index] = piece
    self._maybe_finish(photo)

  def _maybe_finish(self, photo: _Photo) -> None:
    if len(photo.done) < photo.count:
      return
    del self.open[photo.number]
    pieces = [photo.done[t] for t in range(photo.count)]
    outputs = {}
    for key in pieces[0].outputs:
      if photo.layout is None:
        outputs[key] = pieces[0].outputs[key]
        continue
      canvas = tiling.TileCanvas(photo.layout, (3,))
      for t, piece in enumerate(pieces):
        canvas.add(t, piece.outputs[key])
      outputs[key] = canvas.result(np.uint8)
    self.on_photo(PhotoResult(task=photo.task, outputs=outputs, pieces=pieces, layout=photo.layout,
                              seconds=float(sum(p.seconds for p in pieces)), span_s=time.perf_counter() - photo.start))
