"""dippas-evaluate: anonymizers × config sweeps × photos → PSNR, NCC, attribution ROC/AUC, edge-only AUC, and
the stronger adversaries (PCE, an attacker's own fingerprint, JPEG re-compression, resizing, an anonymization
detector), tables and plots.

  dippas-evaluate --images=../shared/data/dresden/manifest.csv --workdir=runs/eval --config=configs/evaluate.py:cpu
  dippas-evaluate ... --methods=original,wavelet_denoising,dippas --config.baselines.wavelet_denoising.passes='(1,2,3)'
  dippas-evaluate ... --config=configs/evaluate.py:cpu,ablation=block_size
  dippas-evaluate ... --fingerprints='../shared/reference/prnu_python/fingerprints/*_sigma3.npy'  # no attacker

--images: a manifest.csv (rows of kind 'natural'; its rows of kind 'flatfield' give the fingerprints, split per
device into the anonymizer's and the attacker's halves, when --fingerprints is left out), a folder of device
folders (each with its photos and optionally its fingerprint file; then --fingerprints may be left out), or a
folder/glob/list of photos named <device>_<id>.<ext>. In --workdir: images/<method>/<config>/<image>.png (reused
by reruns), fingerprints/ (the split), adversaries/jpeg<q>/ (the re-compressed copies), results.csv,
summary.json, auc_vs_psnr_<variant>.png, roc_<variant>.png, ncc_hist.png. Exit code 0: all done; 1: some photos
were skipped (listed); 2: bad input.
"""

from absl import flags

from dippas_jax.apps import common
from dippas_jax.jobs import evaluate as evaluate_job

_CONFIG = common.define_config("config", common.config_path("evaluate"), "Evaluation config.")
_IMAGES = flags.DEFINE_string("images", None, "manifest.csv, folder of device folders, or folder/glob/list of "
                              "photos.", required=True)
_FINGERPRINTS = flags.DEFINE_string("fingerprints", None, "Folder, glob or comma list of .npz/.npy/.mat device "
                                    "fingerprints. Leave it out to split a manifest's flat-fields into the "
                                    "anonymizer's and the attacker's fingerprints (or for a folder of device "
                                    "folders holding fingerprint files).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (reruns reuse its images).", required=True)
_METHODS = flags.DEFINE_list("methods", None, "Comma list of methods overriding config.methods: original, "
                             "adaptive_prnu_removal, fingerprint_subtraction, wavelet_denoising, inpainting, "
                             "dippas, or a key of config.dippas_variants.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the DIP random streams.")


def _job():
  return evaluate_job.evaluate_job(images=_IMAGES.value, fingerprints=_FINGERPRINTS.value,
                                   workdir=_WORKDIR.value, config=_CONFIG.value, methods=_METHODS.value,
                                   seed=_SEED.value)


run = common.command(_job, __name__, [_CONFIG])


if __name__ == "__main__":
  run()
