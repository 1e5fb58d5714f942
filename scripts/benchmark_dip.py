r"""Benchmark the DIP engine: seconds per step, iterations/s and peak memory per (size, N, batching, precision).

    python scripts/benchmark_dip.py                                   # 128², 512²; N = 1, 4, 8; all formulations
    python scripts/benchmark_dip.py --sizes=64,128,256 --batch=1 --formulations=vmap --precisions=highest \
        --steps=5 --chunks=2                                          # a CPU run (minutes)
    python scripts/benchmark_dip.py --config=tiny --sizes=32 --batch=2 --steps=3 --chunks=1   # smoke test

Each case runs in a fresh subprocess (`--isolate`, default) so that the peak memory is its own: host RSS from
`resource.getrusage` on CPU, the device's `memory_stats()['peak_bytes_in_use']` on GPU. Columns: compile_s (first
chunk minus one chunk), init_s (jitted init incl. its compile / warm), s/step (one step of all N images, best of
--chunks), it/s (N·steps/s), cpu_s/step (process CPU time per step: the cost when other processes share the cores).
The fingerprint injection and the PSNR stop are active but τ_stop = inf, so no image stops.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import subprocess
import sys
import time

from absl import app, flags

try:
  import dippas_jax  # noqa: F401
except ImportError:  # a checkout that is not pip-installed
  import pathlib
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["128", "512"], "Square image sizes.")
flags.DEFINE_list("batch", ["1", "4", "8"], "Numbers of images N optimised together.")
flags.DEFINE_list("formulations", ["vmap", "loop", "map"], "Batching over images: vmap, loop, map.")
flags.DEFINE_list("precisions", ["highest", "default"], "Convolution precisions.")
flags.DEFINE_string("config", "paper", "Argument of configs/dip.py:get_config (e.g. 'paper', 'tiny').")
flags.DEFINE_enum("perturbation", "auto", ["auto", "full", "projected"], "How the input perturbation is drawn.")
flags.DEFINE_list("conv_impl", ["auto"], "Convolution implementations to time (auto, xla, xla_gemm_grad, gemm; "
                  "several: one case each, for ratios in one run).")
flags.DEFINE_enum("prng_impl", "threefry2x32", ["threefry2x32", "rbg", "unsafe_rbg"], "jax.random implementation.")
flags.DEFINE_integer("steps", 10, "Steps per chunk (one jitted call).")
flags.DEFINE_integer("chunks", 2, "Timed chunks after the compiling one (the fastest is reported).")
flags.DEFINE_bool("isolate", True, "Run every case in its own subprocess (clean peak memory).")
flags.DEFINE_string("case", "", "Internal: run one case 'size,N,formulation,precision' and print its JSON.")
flags.DEFINE_string("out", "", "Also append the JSON records to this file.")
flags.DEFINE_enum("kept", "none", ["none", "photo"], "Kept-image transform: 'none' (the paper's x̂) or 'photo' (the "
                  "whole-photo recipe's low-pass correction, detail loss and flat path, configs/anonymize.py).")
flags.DEFINE_list("hook", ["none"], "Step variants: 'none' (the bare DIP step), 'assembly' (the anonymization step: "
                  "block NCC ranking into top-L accumulators at every step, the worst case, plus the NCC trace "
                  "every 10 steps). Both in one run give the hook's cost as a ratio.")


def _load_config(arg: str):
  try:
    from dippas_jax.configs import dip as dip_config
  except ImportError:  # a checkout that is not pip-installed: configs/ is a top-level package there
    from configs import dip as dip_config
  return dip_config.get_config(arg)


def _kept(name: str):
  """None (the paper's x̂) or the whole-photo recipe's `KeptImage`."""
  if name == "none":
    return None
  from dippas_jax.configs import anonymize as anonymize_config
  from dippas_jax.dippas import kept_image
  return kept_image.KeptImage.from_config(anonymize_config.get_config(name).kept)


def _hook(name: str, size: int):
  """None (the bare step) or the anonymization hook with every candidate entering (τ = 0: the worst case)."""
  from dippas_jax.dippas import candidates
  if name == "none":
    return None
  block = max(b for b in (16, 32, 64) if size % b == 0 and b <= size // 2)
  return candidates.AssemblyHook.make([(block, 10, 0.0)], height=size, width=size, trace_every=10,
                                      trace_length=10**6 // 10)


def measure(settings, *, size: int, n: int, steps: int, chunks: int, hook: str = "none") -> dict:
  """Time one case in this process; returns a JSON-able record."""
  import jax
  import numpy as np
  from dippas_jax.dippas import dip

  settings = dataclasses.replace(settings, tau_stop=float("inf"), max_steps=10**9, chunk_size=steps)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
  fingerprints = (0.01 * rng.standard_normal((n, size, size))).astype(np.float32)
  images_f, images_u8, fps = dip.validate_inputs(images, fingerprints, downsampling=settings.downsampling)
  runner = dip.build_runner(settings, hook=_hook(hook, size), kept=_kept(FLAGS.kept))
  pad = (-n) % runner.mesh.devices.size
  ids = np.arange(n + pad, dtype=np.int32)
  take = np.minimum(ids, n - 1)
  args = (0, ids, images_f[take], images_u8[take], fps[take], ids < n, float("inf"), 2**30)
  t0 = time.perf_counter()
  state, inputs = runner.init(*args)
  jax.block_until_ready(state)
  init_first = time.perf_counter() - t0
  t0 = time.perf_counter()
  jax.block_until_ready(runner.init(*args))
  init_warm = time.perf_counter() - t0
  t0 = time.perf_counter()
  state, hist = runner.run_chunk(state, inputs)
  jax.block_until_ready(hist)
  first = time.perf_counter() - t0
  timings = []  # (wall, cpu) per chunk; the fastest chunk is reported (other processes may share the cores)
  for _ in range(chunks):
    ru0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    state, hist = runner.run_chunk(state, inputs)
    jax.block_until_ready(hist)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    timings.append((time.perf_counter() - t0, ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime))
  wall, cpu = min(timings)
  device = jax.devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  peak_mb = (stats["peak_bytes_in_use"] / 2**20 if stats and "peak_bytes_in_use" in stats
             else ru1.ru_maxrss / 1024.0)
  psnr = np.asarray(hist.psnr)
  resolved = dip.resolve(runner.settings, device.platform)
  return dict(size=size, n=n, batching=settings.batching, precision=settings.precision, hook=hook,
              backend=device.platform, devices=runner.mesh.devices.size,
              conv_impl=resolved.conv_impl, perturbation=_perturbation(resolved, size),
              prng_impl=settings.prng_impl, steps=steps, compile_s=max(first - wall, 0.0), init_s=init_first,
              init_warm_s=init_warm, s_per_step=wall / steps, it_per_s=n * steps / wall, cpu_s_per_step=cpu / steps,
              peak_mb=peak_mb, psnr_last=float(np.nanmean(psnr[:n, -1])))


def _perturbation(settings, size: int) -> str:
  """The scheme that actually draws the noise ('projected' falls back to 'full' where that is cheaper)."""
  from dippas_jax.dippas import dip
  d = settings.input_depth
  projected = dip.draws_projected(settings.perturbation, depth=d, num_kernels=dip.first_layer_columns(settings),
                                  num_values=d * size * size, min_size=settings.projected_min_size)
  return "projected" if projected else "full"


def _settings(conv_impl: str):
  from dippas_jax.dippas import dip
  settings = dip.DipSettings.from_config(_load_config(FLAGS.config))
  return dataclasses.replace(settings, perturbation=FLAGS.perturbation, conv_impl=conv_impl,
                             prng_impl=FLAGS.prng_impl)


def _run_case(case: str) -> dict:
  size, n, batching, precision, hook, conv_impl = case.split(",")
  if not FLAGS.isolate:
    settings = dataclasses.replace(_settings(conv_impl), batching=batching, precision=precision)
    return measure(settings, size=int(size), n=int(n), steps=FLAGS.steps, chunks=FLAGS.chunks, hook=hook)
  argv = [sys.executable, __file__, f"--case={case}", f"--config={FLAGS.config}", f"--steps={FLAGS.steps}",
          f"--chunks={FLAGS.chunks}", f"--perturbation={FLAGS.perturbation}",
          f"--prng_impl={FLAGS.prng_impl}", f"--kept={FLAGS.kept}"]
  proc = subprocess.run(argv, capture_output=True, text=True)
  lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
  if proc.returncode or not lines:
    return dict(case=case, error=(proc.stderr or proc.stdout)[-500:])
  return json.loads(lines[-1])


COLUMNS = ("size", "n", "batching", "precision", "hook", "conv_impl", "perturbation", "compile_s", "init_s", "init_warm_s",
           "s_per_step", "it_per_s", "cpu_s_per_step", "peak_mb")


def format_row(rec: dict) -> str:
  if "error" in rec:
    return f"| {rec['case']} | error: {rec['error'].splitlines()[-1] if rec['error'] else '?'} |"
  cells = [f"{rec[c]:.3f}" if isinstance(rec[c], float) else str(rec[c]) for c in COLUMNS]
  return "| " + " | ".join(cells) + " |"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if FLAGS.case:
    size, n, batching, precision, hook, conv_impl = FLAGS.case.split(",")
    settings = dataclasses.replace(_settings(conv_impl), batching=batching, precision=precision)
    print(json.dumps(measure(settings, size=int(size), n=int(n), steps=FLAGS.steps, chunks=FLAGS.chunks,
                             hook=hook)), flush=True)
    return
  print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS), flush=True)
  for size in FLAGS.sizes:
    for n in FLAGS.batch:
      for batching in FLAGS.formulations:
        for precision in FLAGS.precisions:
          for hook in FLAGS.hook:
            for conv_impl in FLAGS.conv_impl:
              rec = _run_case(f"{size},{n},{batching},{precision},{hook},{conv_impl}")
              print(format_row(rec), flush=True)
              if FLAGS.out:
                with open(FLAGS.out, "a") as f:
                  f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
  app.run(main)
