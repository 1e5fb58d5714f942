"""dippas-leakage: information leakage of a camera's fingerprint estimate (bound, membership inference,
mitigations) → ilb.csv, membership.csv, mitigation.csv, roc.csv, leakage.json, plots.

  dippas-leakage --images=../shared/data/dresden/manifest.csv --device=Nikon_D70s_1 --workdir=runs/leak

Exit code 0: done; 2: bad input.
"""

from absl import flags

from dippas_jax.apps import common
from dippas_jax.jobs import leakage as leakage_job

_CONFIG = common.define_config("config", common.config_path("leakage"), "Leakage config.")
_IMAGES = flags.DEFINE_string("images", None, "Folder, glob, comma list or manifest.csv.", required=True)
_DEVICE = flags.DEFINE_string("device", None, "The camera whose fingerprint is analysed.", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)


def _job():
  return leakage_job.leakage_job(images=_IMAGES.value, device=_DEVICE.value, workdir=_WORKDIR.value, config=_CONFIG.value)


run = common.command(_job, __name__, [_CONFIG])


if __name__ == "__main__":
  run()
