"""dippas-fingerprint: flat-field images → one fingerprint `.npz` per device.

  dippas-fingerprint --images=../shared/data/dresden/manifest.csv --workdir=runs/fp
  dippas-fingerprint --images='photos/flat/*.jpg' --device=my_camera --workdir=runs/fp --config.sigma=3
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from dippas_jax.jobs import pipeline
from dippas_jax.apps import common

_CONFIG = config_flags.DEFINE_config_file("config", common.config_path("prnu"), "PRNU config.",
                                          lock_config=True)
_IMAGES = flags.DEFINE_string("images", None, "Folder, glob, comma list or manifest.csv of flat-fields.",
                              required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
_DEVICE = flags.DEFINE_string("device", None, "Only this manifest device, or the name of all given images.")


def _job():
  pipeline.fingerprint_job(images=_IMAGES.value, workdir=_WORKDIR.value, config=_CONFIG.value,
                           device=_DEVICE.value)


def run():
  app.run(common.main_wrapper(_job))


if __name__ == "__main__":
  run()
