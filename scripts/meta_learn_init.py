r"""Meta-learn the DIP U-Net's initial weights with Reptile (as MetaDIP, arXiv 2209.08452) on natural photos that
ship with scikit-image — never on the shared Dresden photos, the evaluation set.

  python scripts/meta_learn_init.py --config=configs/anonymize.py:cpu --minutes=60 \
      --out=dippas_jax/dippas/weights/meta_cpu.npz

Task: fit one random crop (random flips and 90° rotations) of a sample photo (astronaut, chelsea, coffee, rocket,
hubble_deep_field, immunohistochemistry, retina, motorcycle left/right) with the DIP engine's own step — the
config's network, optimizer, schedule and perturbation, a fresh random input z per task, no fingerprint
(injection 'none') — for `--inner_steps` steps from θ0. Reptile update: θ0 ← θ0 + ε·mean over `--tasks` tasks of
(θ_k − θ0), ε annealed linearly from `--eps_start` to `--eps_end` over the time budget. The tasks of one meta-step
run as one vmapped batch. Writes an `.npz` of named leaves with the architecture and this recipe as metadata
(`dip.parameters.save_params`); `config.dip.model.init_weights` loads it.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time

from absl import app
from absl import flags
import jax
import numpy as np
from ml_collections import config_flags

from dippas_jax.dippas import dip
from dippas_jax.dippas import optim
from dippas_jax.dippas.dip import parameters

_CONFIG = config_flags.DEFINE_config_file("config", None, "Anonymize config whose DIP is meta-trained.",
                                          lock_config=True)
_OUT = flags.DEFINE_string("out", None, "Output .npz.", required=True)
_SIZE = flags.DEFINE_integer("size", 64, "Crop size of the tasks (the network is convolutional).")
_TASKS = flags.DEFINE_integer("tasks", 4, "Tasks (crops) per meta-step, run as one batch.")
_INNER = flags.DEFINE_integer("inner_steps", 40, "DIP steps per task.")
_EPS = flags.DEFINE_list("eps", ["0.5", "0.05"], "Reptile step size at the start and at the end.")
_MINUTES = flags.DEFINE_float("minutes", 60.0, "Time budget.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the crops and of the random inputs.")
SAMPLES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def _pool() -> list[np.ndarray]:
  from skimage import data  # pylint: disable=g-import-not-at-top
  left, right, _ = data.stereo_motorcycle()
  return [np.ascontiguousarray(getattr(data, name)()[..., :3]) for name in SAMPLES] + [left, right]


def _crop(rng, pool, size: int) -> np.ndarray:
  image = pool[rng.integers(len(pool))]
  top, left = rng.integers(0, image.shape[0] - size + 1), rng.integers(0, image.shape[1] - size + 1)
  crop = image[top:top + size, left:left + size]
  crop = crop[:, ::-1] if rng.random() < 0.5 else crop
  crop = crop[::-1] if rng.random() < 0.5 else crop
  return np.ascontiguousarray(np.rot90(crop, rng.integers(4)))


def meta_learn(settings: dip.DipSettings, *, size: int, tasks: int, inner_steps: int, eps: tuple[float, float],
               seconds: float, seed: int, log=print) -> tuple[np.ndarray, dict]:
  """Reptile (module docstring); returns (θ0 float32[P], training record)."""
  settings = dataclasses.replace(settings, injection="none", tau_stop=float("inf"), max_steps=inner_steps,
                                 chunk_size=inner_steps, init_weights="")
  runner = dip.build_runner(settings)
  gamma = runner.param_spec.index(("injection", "gamma"))
  tx = optim.make_optimizer(settings.optimizer, gamma_index=gamma)
  rng, pool = np.random.default_rng(seed), _pool()
  zeros = np.zeros((tasks, size, size), np.float32)

  def batch(step):
    images = np.stack([_crop(rng, pool, size) for _ in range(tasks)])
    return (seed * 7919 + step, np.arange(tasks, dtype=np.int32), images.astype(np.float32) / 255, images, zeros,
            np.ones(tasks, bool))

  theta = np.array(runner.init(*batch(0))[0].params[0])
  theta[gamma] = 0.0
  t0, step, history = time.perf_counter(), 0, []
  while time.perf_counter() - t0 < seconds:
    step += 1
    state, inputs = runner.init(*batch(step), params0=np.broadcast_to(theta, (tasks, theta.size)))
    state = state.replace(opt_state=jax.vmap(tx.init)(state.params))
    state, hist = runner.run_chunk(state, inputs)
    delta = np.asarray(state.params).mean(0) - theta
    delta[gamma] = 0.0
    frac = min(1.0, (time.perf_counter() - t0) / seconds)
    theta = theta + (eps[0] + (eps[1] - eps[0]) * frac) * delta
    psnr = np.asarray(hist.psnr)
    history.append({"step": step, "seconds": round(time.perf_counter() - t0, 1),
                    "psnr_first": float(psnr[:, 0].mean()), "psnr_last": float(psnr[:, -1].mean())})
    if step % 10 == 0:
      log(json.dumps(history[-1]))
  return theta.astype(np.float32), {"meta_steps": step, "seconds": time.perf_counter() - t0, "history": history}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  settings = dip.DipSettings.from_config(_CONFIG.value.dip)
  eps = tuple(float(e) for e in _EPS.value)
  theta, record = meta_learn(settings, size=_SIZE.value, tasks=_TASKS.value, inner_steps=_INNER.value, eps=eps,
                             seconds=60 * _MINUTES.value, seed=_SEED.value)
  recipe = {"method": "Reptile", "samples": list(SAMPLES) + ["motorcycle_left", "motorcycle_right"],
            "size": _SIZE.value, "tasks": _TASKS.value, "inner_steps": _INNER.value, "eps": list(eps),
            "seed": _SEED.value, "command": " ".join(sys.argv), "meta_steps": record["meta_steps"],
            "seconds": round(record["seconds"]), "psnr_first_last": record["history"][-1:]}
  parameters.save_params(_OUT.value, settings, theta, metadata={"recipe": recipe})
  print(f"{record['meta_steps']} meta-steps in {record['seconds']:.0f} s -> {_OUT.value}")


if __name__ == "__main__":
  app.run(main)
