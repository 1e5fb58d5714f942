"""Fingerprint leakage analysis config (`dippas-leakage`, Fernández-Menduiña & Pérez-González).

  dippas-leakage --images=../shared/data/dresden/manifest.csv --device=Nikon_D70s_1 --workdir=runs/leak
  dippas-leakage ... --config=configs/leakage.py:tiny      # CPU-sized: 128² crops, 2 trials

Arg of `get_config` (configs/arguments.py): a base ('' or 'tiny') and field overrides.
"""

from ml_collections import config_dict

from dippas_jax.configs import arguments

BASES = {"": {}, "tiny": {"crop": (128, 128), "n_trials": 2, "n_splits": 4}}


def get_config(arg: str = "") -> config_dict.ConfigDict:
  base, overrides = arguments.parse(arg, tuple(BASES))
  config = config_dict.ConfigDict()
  # Estimation-set sizes L (number of member images behind the fingerprint); each must leave a non-member.
  config.l_values = (2, 4, 6, 8)
  # Random half-splits of the members averaged in the power estimate P̂ = <K̂₁, K̂₂>.
  config.n_splits = 10
  # Random estimation sets (trials) per L; AUCs and bounds are averaged over them.
  config.n_trials = 5
  # Local-variance windows γ² of the bound, reported for sensitivity.
  config.window_sizes = (3, 5, 7, 9)
  # Window of the NP detector, of whitening and of the mitigation table's bound.
  config.window = 3
  # Mitigations measured on both sides (leakage and attribution cost): 'none', 'binarize', 'whiten'.
  config.mitigations = ("none", "binarize", "whiten")
  # Which of the device's images form the member pool: 'flatfield', 'natural' or 'all' (manifest kinds).
  config.pool = "flatfield"
  # Wavelet denoiser noise std (grey levels) and levels for W and X̂.
  config.sigma = 5.0
  config.levels = 4
  # Centre crop (rows, cols) of every image; (0, 0) = uncropped.
  config.crop = (512, 512)
  # Images per denoiser call.
  config.batch_size = 8
  # Random seed of the member draws and splits.
  config.seed = 0
  arguments.apply(config, BASES[base])
  arguments.apply(config, overrides)
  config.lock()
  return config
