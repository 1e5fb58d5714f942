"""dippas-anonymize: remove the camera fingerprint from photos (DIPPAS).

  dippas-anonymize --inputs=photos/ --fingerprint=cam.npz --workdir=runs/anon
  dippas-anonymize --inputs='photos/*.jpg' --blind --workdir=runs/anon --config=configs/anonymize.py:cpu

Per photo, in --workdir/<photo's path relative to the inputs' common folder>/: anonymized.png (pixels, turned by
the input's EXIF orientation so that it shows as the input did, and the input's ICC colour profile; no EXIF or
other metadata), report.json (PSNR, NCC before and after, γ, iterations, whether the quality target was met, settings,
timings, the orientation applied; scored in the sensor's orientation), history.jsonl and history.png. Reruns skip
finished photos (same source, same settings) and redo the others. Exit code 0: all done; 1: some photos skipped or below the quality target (listed); 2: bad input.

Many photos over several processes or hosts (JAX's multi-process runtime; each process its own GPU(s) or CPU):
  dippas-anonymize --inputs=photos/ ... --workdir=shared/out --coordinator_address=host0:12345 \
      --num_processes=2 --process_id=0        # on host0 (and --process_id=1 on host1, same flags otherwise)
"""

from absl import flags

from dippas_jax.apps import common
from dippas_jax.jobs import anonymize as anonymize_job

_CONFIG = common.define_config("config", common.config_path("anonymize"), "Anonymization config.")
_INPUTS = flags.DEFINE_string("inputs", None, "Photo, folder, glob, comma list or manifest.csv.", required=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (reruns resume there).", required=True)
_FINGERPRINT = flags.DEFINE_string("fingerprint", None, "Device fingerprint (.npz/.npy/.mat): PRNU-aware mode.")
_BLIND = flags.DEFINE_boolean("blind", False, "PRNU-blind mode: K̃ = W(I) of each photo, no fingerprint needed.")
_EVAL_FINGERPRINT = flags.DEFINE_string("eval_fingerprint", None, "A fingerprint whose NCC is reported before and "
                                        "after (e.g. the device's, in blind mode).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the per-photo random streams.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "Several processes/hosts: host:port of process 0 "
                                   "(jax.distributed); each process takes its share of the photo batches.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Number of processes sharing the photos.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index, 0 .. num_processes - 1.")


def _job():
  config = _CONFIG.value
  if _BLIND.value:
    config.mode = "blind"
  index, count = common.join_processes(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
  return anonymize_job.anonymize_job(inputs=_INPUTS.value, workdir=_WORKDIR.value, config=config,
                                     fingerprint=_FINGERPRINT.value, eval_fingerprint=_EVAL_FINGERPRINT.value,
                                     seed=_SEED.value, process_index=index, process_count=count)


run = common.command(_job, __name__, [_CONFIG])


if __name__ == "__main__":
  run()
