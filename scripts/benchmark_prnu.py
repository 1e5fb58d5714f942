"""Benchmark of the PRNU core: images/s for residual extraction and fingerprint accumulation, peak memory.

  python scripts/benchmark_prnu.py                       # 512×512, batches 1, 8, 32, current backend
  python scripts/benchmark_prnu.py --size=256 --batches=1,8 --reference_images=4

Prints one table; ratios are measured in the same run: `vs reference` divides the per-image time of the numpy
re-implementation of prnu-python's `extract_single` (pywt + scipy, one process, `tests/prnu/prnu_reference.py`) by
ours. Peak memory: device `memory_stats()['peak_bytes_in_use']` where the backend reports it (GPU), else the
process's peak RSS.
"""

import json
import pathlib
import resource
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np

from dippas_jax.prnu import denoise
from dippas_jax.prnu import fingerprint
from dippas_jax import synthetic

_SIZE = flags.DEFINE_integer("size", 512, "Image size (square).")
_BATCHES = flags.DEFINE_list("batches", ["1", "8", "32"], "Batch sizes.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed calls per batch size (after one warm-up call).")
_REFERENCE_IMAGES = flags.DEFINE_integer("reference_images", 4, "Images timed with the numpy reference "
                                         "(0 = skip).")
_SIGMA = flags.DEFINE_float("sigma", 5.0, "Denoiser sigma.")
_OUT = flags.DEFINE_string("out", "", "Also append one JSON record per row to this file.")


def _record(**row) -> None:
  if _OUT.value:
    with open(_OUT.value, "a") as f:
      f.write(json.dumps({"backend": jax.default_backend(), "size": _SIZE.value, **row}) + "\n")


def _peak_memory_mb() -> float:
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return stats["peak_bytes_in_use"] / 2**20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time(fn, *args) -> float:
  jax.block_until_ready(fn(*args))  # Compile and warm up.
  t0 = time.perf_counter()
  for _ in range(_REPEATS.value):
    jax.block_until_ready(fn(*args))
  return (time.perf_counter() - t0) / _REPEATS.value


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  size, sigma = _SIZE.value, _SIGMA.value
  data = synthetic.make_dataset(seed=0, num_devices=1, num_flatfield=0, num_natural=1, height=size, width=size)
  photo = data.natural[0]
  ref_s = None
  if _REFERENCE_IMAGES.value:
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "prnu"))
    import prnu_reference  # pylint: disable=g-import-not-at-top
    t0 = time.perf_counter()
    for _ in range(_REFERENCE_IMAGES.value):
      prnu_reference.np_extract_single(photo, sigma=sigma)
    ref_s = (time.perf_counter() - t0) / _REFERENCE_IMAGES.value
  print(f"backend {jax.default_backend()} ({jax.devices()[0].device_kind}), {size}×{size}×3, jax {jax.__version__}")
  if ref_s:
    print(f"numpy reference extract_single: {ref_s * 1e3:.1f} ms/image ({1 / ref_s:.1f} images/s)")
  print(f"{'task':<22}{'batch':>6}{'ms/image':>10}{'images/s':>10}{'vs reference':>14}{'peak MB':>10}")
  for b in [int(x) for x in _BATCHES.value]:
    images = np.repeat(photo[None], b, axis=0)
    extract = jax.jit(lambda x: denoise.extract_residual(x, sigma=sigma))
    t = _time(extract, images) / b
    ratio = f"{ref_s / t:.1f}×" if ref_s else "-"
    print(f"{'extract_residual':<22}{b:>6}{t * 1e3:>10.1f}{1 / t:>10.1f}{ratio:>14}{_peak_memory_mb():>10.0f}")
    _record(task="extract_residual", batch=b, ms_per_image=t * 1e3, images_per_s=1 / t,
            vs_reference=ref_s / t if ref_s else None, peak_mb=_peak_memory_mb())
    sums = fingerprint.init_sums(size, size)
    t = _time(lambda s, x: fingerprint.accumulate(s, x, sigma=sigma), sums, images) / b
    print(f"{'fingerprint.accumulate':<22}{b:>6}{t * 1e3:>10.1f}{1 / t:>10.1f}{'-':>14}{_peak_memory_mb():>10.0f}")
    _record(task="fingerprint.accumulate", batch=b, ms_per_image=t * 1e3, images_per_s=1 / t,
            peak_mb=_peak_memory_mb())


if __name__ == "__main__":
  app.run(main)
