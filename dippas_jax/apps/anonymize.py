"""dippas-anonymize: remove the camera fingerprint from photos (DIPPAS).

  dippas-anonymize --inputs=photos/ --fingerprint=cam.npz --workdir=runs/anon
  dippas-anonymize --inputs='photos/*.jpg' --blind --workdir=runs/anon --config=configs/anonymize.py:cpu

Per photo, in --workdir/<photo stem>/: anonymized.png (pixels only, no metadata), report.json (PSNR, NCC before
and after, γ, iterations, settings, timings, config), history.jsonl and history.png. Reruns skip finished photos.
Exit code 0: all done; 1: some photos were skipped (reported); 2: bad input.
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from dippas_jax.jobs import pipeline
from dippas_jax.apps import common

_CONFIG = config_flags.DEFINE_config_file("config", common.config_path("anonymize"), "Anonymization config.",
                                          lock_config=True)
_INPUTS = flags.DEFINE_string("inputs", None, "Photo, folder, glob or comma list.", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
_FINGERPRINT = flags.DEFINE_string("fingerprint", None, "Device fingerprint (.npz/.npy/.mat): PRNU-aware mode.")
_BLIND = flags.DEFINE_boolean("blind", False, "PRNU-blind mode: K̃ = W(I) of each photo, no fingerprint needed.")
_EVAL_FINGERPRINT = flags.DEFINE_string("eval_fingerprint", None, "A second fingerprint reported before/after.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the per-photo random streams.")


def _job():
  config = _CONFIG.value
  if _BLIND.value:
    config.mode = "blind"
  summary = pipeline.anonymize_job(inputs=_INPUTS.value, workdir=_WORKDIR.value, config=config,
                                   fingerprint=_FINGERPRINT.value, eval_fingerprint=_EVAL_FINGERPRINT.value,
                                   seed=_SEED.value)
  return 1 if summary["skipped"] else 0


def run():
  app.run(common.main_wrapper(_job))


if __name__ == "__main__":
  run()
