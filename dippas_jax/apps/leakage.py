"""dippas-leakage: information leakage of a camera's fingerprint estimate (bound, membership inference,
mitigations) → ilb.csv, membership.csv, mitigation.csv, roc.csv, leakage.json, plots.

  dippas-leakage --images=../shared/data/dresden/manifest.csv --device=Nikon_D70s_1 --workdir=runs/leak
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from dippas_jax.jobs import pipeline
from dippas_jax.apps import common

_CONFIG = config_flags.DEFINE_config_file("config", common.config_path("leakage"), "Leakage config.",
                                          lock_config=True)
_IMAGES = flags.DEFINE_string("images", None, "Folder, glob, comma list or manifest.csv.", required=True)
_DEVICE = flags.DEFINE_string("device", None, "The camera whose fingerprint is analysed.", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)


def _job():
  pipeline.leakage_job(images=_IMAGES.value, device=_DEVICE.value, workdir=_WORKDIR.value, config=_CONFIG.value)


def run():
  app.run(common.main_wrapper(_job))


if __name__ == "__main__":
  run()
