"""dippas-fingerprint: flat-field images → one fingerprint `.npz` per device.

  dippas-fingerprint --images=../shared/data/dresden/manifest.csv --workdir=runs/fp
  dippas-fingerprint --images='photos/flat/*.jpg' --device=my_camera --workdir=runs/fp --config.sigma=3

Images are used as stored, in the sensor's orientation: an EXIF orientation tag is ignored (a fingerprint is a
sensor pattern; turning a portrait upright would misalign it). HEIC/HEIF needs `pip install -e '.[heif]'`.
Exit code 0: all done; 1: some flat-fields skipped (listed); 2: bad input.
"""

from absl import flags

from dippas_jax.apps import common
from dippas_jax.jobs import fingerprint as fingerprint_job

_CONFIG = common.define_config("config", common.config_path("prnu"), "PRNU config.")
_IMAGES = flags.DEFINE_string("images", None, "Folder, glob, comma list or manifest.csv of flat-fields.",
                              required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)
_DEVICE = flags.DEFINE_string("device", None, "Only this manifest device, or the name of all given images.")


def _job():
  return fingerprint_job.fingerprint_job(images=_IMAGES.value, workdir=_WORKDIR.value, config=_CONFIG.value,
                                         device=_DEVICE.value)


run = common.command(_job, __name__, [_CONFIG])


if __name__ == "__main__":
  run()
