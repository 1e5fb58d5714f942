"""dippas-leakage: information leakage of camera fingerprint estimates (Fernández-Menduiña & Pérez-González) for
one camera, a list or all of them: the bound per L with two γ² estimators, membership inference on tiles, the
mitigations, Table 2 on real flat-fields, Tables 1–2 on the synthetic camera and the Fig. 1 picture
→ CSV tables, leakage.json, leakage.md, plots.

  dippas-leakage --images=../shared/data/dresden/manifest.csv --device=all --workdir=runs/leakage
  dippas-leakage --images=../shared/data/dresden/manifest.csv --device=Nikon_D70s_1 --workdir=runs/fig1 \\
      --config=configs/leakage.py:fig1

Exit code 0: done; 2: bad input.
"""

from absl import flags

from dippas_jax.apps import common
from dippas_jax.jobs import leakage as leakage_job

_CONFIG = common.define_config("config", common.config_path("leakage"), "Leakage config.")
_IMAGES = flags.DEFINE_string("images", None, "Folder, glob, comma list or manifest.csv.", required=True)
_DEVICE = flags.DEFINE_string("device", None, "The cameras analysed: a name, a comma-separated list, or 'all'.",
                              required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder.", required=True)


def _job():
  return leakage_job.leakage_job(images=_IMAGES.value, device=_DEVICE.value, workdir=_WORKDIR.value,
                                 config=_CONFIG.value)


run = common.command(_job, __name__, [_CONFIG])


if __name__ == "__main__":
  run()
