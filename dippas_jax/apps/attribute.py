"""dippas-attribute: fingerprints × query images → scores.csv, summary.json (AUC/EER), roc.png.

  dippas-attribute --fingerprints=runs/fp --images=../shared/data/dresden/manifest.csv --workdir=runs/attr
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from dippas_jax.jobs import pipeline
from dippas_jax.apps import common

_CONFIG = config_flags.DEFINE_config_file("config", common.config_path("prnu"), "PRNU config.",
                                          lock_config=True)
_FINGERPRINTS = flags.DEFINE_string("fingerprints", None, "Folder, glob or comma list of .npz/.npy/.mat "
                                    "fingerprints.", required=True)
_IMAGES = flags.DEFINE_string("images", None, "Folder, glob, comma list or manifest.csv of query images "
                              "(manifest rows of kind 'natural').", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)


def _job():
  summary = pipeline.attribute_job(fingerprints=_FINGERPRINTS.value, images=_IMAGES.value,
                                   workdir=_WORKDIR.value, config=_CONFIG.value)
  return 1 if summary["skipped"] else 0


def run():
  app.run(common.main_wrapper(_job))


if __name__ == "__main__":
  run()
