"""Peak memory of DIPPAS anonymization against the iteration count (streaming top-L: it must not grow).

  python scripts/benchmark_anonymize_memory.py --steps=500,5000 --size=64

Each run is a fresh subprocess (the tiny U-Net, τ_stop never reached, so every run does exactly `steps`
iterations and feeds every candidate to the accumulators); prints steps, wall time, peak RSS of that process and,
on a GPU, the device's peak bytes in use.
"""

import json
import resource
import subprocess
import sys

from absl import app
from absl import flags

_STEPS = flags.DEFINE_list("steps", ["500", "5000"], "Iteration counts to compare.")
_SIZE = flags.DEFINE_integer("size", 64, "Crop size (square).")
_CHILD = flags.DEFINE_integer("child", 0, "Internal: run one measurement with this many steps.")


def _child(steps: int, size: int) -> None:
  import time  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from dippas_jax import synthetic  # pylint: disable=g-import-not-at-top
  from dippas_jax.dippas import anonymize  # pylint: disable=g-import-not-at-top
  from dippas_jax.configs import anonymize as anonymize_config  # pylint: disable=g-import-not-at-top
  config = anonymize_config.get_config("tiny")
  config.crop = (size, size)
  config.dip.max_steps = steps
  config.dip.tau_stop = 99.0  # Never stop early: exactly `steps` candidates.
  config.tau = 0.0  # Every candidate enters the pool: the accumulators see the whole stream.
  config.trace_every = 0
  data = synthetic.make_dataset(seed=0, num_devices=1, num_flatfield=0, num_natural=1, height=size, width=size)
  t0 = time.perf_counter()
  result = anonymize.anonymize(data.natural, data.prnu[0], config=config)
  stats = jax.devices()[0].memory_stats() or {}
  print(json.dumps({"steps": int(result.num_steps[0]), "seconds": time.perf_counter() - t0,
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                    "device_peak_mb": stats.get("peak_bytes_in_use", 0) / 2**20,
                    "pool": int(next(iter(result.pool_sizes.values()))[0])}))


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _CHILD.value:
    _child(_CHILD.value, _SIZE.value)
    return
  print(f"{'steps':>7}{'candidates':>12}{'seconds':>10}{'peak RSS MB':>13}{'device peak MB':>16}")
  for steps in _STEPS.value:
    out = subprocess.run([sys.executable, __file__, f"--child={steps}", f"--size={_SIZE.value}"],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    print(f"{r['steps']:>7}{r['pool']:>12}{r['seconds']:>10.1f}{r['peak_rss_mb']:>13.0f}{r['device_peak_mb']:>16.0f}")


if __name__ == "__main__":
  app.run(main)
