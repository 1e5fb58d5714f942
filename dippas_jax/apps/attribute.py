"""dippas-attribute: fingerprints × query images → scores.csv, summary.json (AUC/EER), roc.png.

  dippas-attribute --fingerprints=runs/fp --images=../shared/data/dresden/manifest.csv --workdir=runs/attr

Images are scored as stored, in the sensor's orientation (an EXIF orientation tag is ignored, as the fingerprints
are sensor patterns). Exit code 0: all done; 1: some images skipped (listed); 2: bad input.
"""

from absl import flags

from dippas_jax.apps import common
from dippas_jax.jobs import attribute as attribute_job

_CONFIG = common.define_config("config", common.config_path("prnu"), "PRNU config.")
_FINGERPRINTS = flags.DEFINE_string("fingerprints", None, "Folder, glob or comma list of .npz/.npy/.mat "
                                    "fingerprints.", required=True)
_IMAGES = flags.DEFINE_string("images", None, "Folder, glob, comma list or manifest.csv of query images.",
                              required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)


def _job():
  return attribute_job.attribute_job(fingerprints=_FINGERPRINTS.value, images=_IMAGES.value,
                                     workdir=_WORKDIR.value, config=_CONFIG.value)


run = common.command(_job, __name__, [_CONFIG])


if __name__ == "__main__":
  run()
