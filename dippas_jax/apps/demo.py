"""dippas-demo: the embedded default job on the built-in synthetic camera (no external data): fingerprints,
attribution (AUC, ROC plot), then DIPPAS on one photo (PSNR and NCC before/after).

  dippas-demo --workdir=runs/demo
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from dippas_jax.jobs import pipeline
from dippas_jax.apps import common

_CONFIG = config_flags.DEFINE_config_file("config", common.config_path("prnu"), "PRNU config.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Output folder.")
_SIZE = flags.DEFINE_integer("size", 256, "Synthetic photo size (pixels, square).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic camera.")
_ANONYMIZE = config_flags.DEFINE_config_file("anonymize", common.config_path("anonymize") + ":demo",
                                             "Anonymization config of the demo photo.", lock_config=True)
_SKIP_ANONYMIZE = flags.DEFINE_boolean("skip_anonymize", False, "Only the fingerprint/attribution part.")


def _job():
  pipeline.demo_job(workdir=_WORKDIR.value, config=_CONFIG.value, size=_SIZE.value, seed=_SEED.value,
                    anonymize_config=None if _SKIP_ANONYMIZE.value else _ANONYMIZE.value)


def run():
  app.run(common.main_wrapper(_job))


if __name__ == "__main__":
  run()
