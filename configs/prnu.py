"""PRNU pipeline config: residual extraction, fingerprint estimation, scoring.

Used by `dippas-fingerprint`, `dippas-attribute` and `dippas-demo`:

    dippas-attribute --config=configs/prnu.py --config.sigma=3 ...
    dippas-attribute --config=configs/prnu.py:reference ...   # prnu-python's example protocol (σ 5, legacy)

Arg of `get_config` (configs/arguments.py): a base and field overrides. Bases: '' (defaults), 'reference'
(legacy saturation and legacy PCE, bit-compatible with prnu-python) or 'dippas' (σ = 3 as in the DIPPAS code).
"""

from ml_collections import config_dict

from dippas_jax.configs import arguments

BASES = {"": {}, "reference": {"saturation": "legacy", "pce_mode": "legacy"}, "dippas": {"sigma": 3.0}}


def get_config(arg: str = "") -> config_dict.ConfigDict:
  base, overrides = arguments.parse(arg, tuple(BASES))
  config = config_dict.ConfigDict()
  # Wavelet denoiser noise std in grey levels (a standard deviation, despite prnu-python's "noise power").
  # prnu-python's default is 5; the DIPPAS code always uses 3.
  config.sigma = 5.0
  # Number of wavelet decomposition levels of the Mihcak denoiser.
  config.levels = 4
  # Orthogonal Daubechies wavelet of the denoiser (prnu-python: 'db4', an 8-tap filter).
  config.wavelet = "db4"
  # Centre crop (rows, cols) applied to every image and fingerprint; (0, 0) = use images uncropped.
  config.crop = (512, 512)
  # Saturation map in the ML fingerprint: 'corrected' (unsaturated channels all ones) or 'legacy' (prnu-python).
  config.saturation = "corrected"
  # PCE exclusion: 'standard' ((2r+1)² neighbourhood, wrap-around, reduced count) or 'legacy' (prnu-python).
  config.pce_mode = "standard"
  # PCE exclusion radius r in pixels (prnu-python's neigh_radius).
  config.pce_radius = 2
  # Peak search range in pixels around zero lag; -1 = search every circular shift (prnu-python).
  config.pce_shift_range = -1
  # Images per jitted call (residual extraction and fingerprint accumulation); memory grows with it.
  config.batch_size = 8

  arguments.apply(config, BASES[base])
  arguments.apply(config, overrides)
  config.lock()
  return config
