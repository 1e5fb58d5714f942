"""dippas-demo: the embedded default job on the built-in synthetic camera (no external data): fingerprints,
attribution (AUC, ROC plot), then DIPPAS on one photo (PSNR and NCC before/after).

  dippas-demo --workdir=runs/demo
"""

from absl import flags

from dippas_jax.apps import common
from dippas_jax.jobs import demo as demo_job

_CONFIG = common.define_config("config", common.config_path("prnu"), "PRNU config.")
_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Output folder.")
_SIZE = flags.DEFINE_integer("size", 248, "Synthetic photo size (pixels, square; 248 = 2 × 2 tiles of 128² with an "
                            "8-pixel overlap).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic camera.")
_PRNU_STD = flags.DEFINE_float("prnu_std", demo_job.PRNU_STD, "Std of the synthetic fingerprints (0.003 = 0.3 %, "
                               "as real cameras; larger = easier attribution).", lower_bound=0.0)
_ANONYMIZE = common.define_config("anonymize", common.config_path("anonymize") + ":demo",
                                  "Anonymization config of the demo photo.")
_SKIP_ANONYMIZE = flags.DEFINE_boolean("skip_anonymize", False, "Only the fingerprint/attribution part.")


def _job():
  anonymize_config = None if _SKIP_ANONYMIZE.value else _ANONYMIZE.value
  return demo_job.demo_job(workdir=_WORKDIR.value, config=_CONFIG.value, size=_SIZE.value, seed=_SEED.value,
                           prnu_std=_PRNU_STD.value, anonymize_config=anonymize_config)


run = common.command(_job, __name__, [_CONFIG, _ANONYMIZE])


if __name__ == "__main__":
  run()
