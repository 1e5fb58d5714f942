"""Fingerprint leakage analysis config (`dippas-leakage`, Fernández-Menduiña & Pérez-González).

  dippas-leakage --images=../shared/data/dresden/manifest.csv --device=all --workdir=runs/leakage   # ~4 min, 2 CPUs
  dippas-leakage ... --device=Nikon_D70s_1,Nikon_D200_0                  # a list of cameras
  dippas-leakage ... --device=Nikon_D70s_1 --config=configs/leakage.py:fig1   # only the Fig. 1 picture
  dippas-leakage ... --config=configs/leakage.py:tiny      # CPU-sized: 128² crops, 2 trials

Arg of `get_config` (configs/arguments.py): a base ('', 'tiny' or 'fig1') and field overrides.
"""

from ml_collections import config_dict

from dippas_jax.configs import arguments

BASES = {
    "": {},
    "tiny": {"crop": (128, 128), "n_trials": 2, "n_splits": 4, "synthetic_size": 64,
             "synthetic_l_values": (8, 16)},
    "fig1": {"experiments": ("fig1",)},
}


def get_config(arg: str = "") -> config_dict.ConfigDict:
  base, overrides = arguments.parse(arg, tuple(BASES))
  config = config_dict.ConfigDict()
  # What to run: 'sweep' (per camera: bound per L, membership per L, mitigations), 'table2' (flat-fields split by
  # brightness, one natural photo swapped in), 'synthetic' (Tables 1-2 on the synthetic camera at the paper's L),
  # 'fig1' (an image's content showing through K̂: fig1.png).
  config.experiments = ("sweep", "table2", "synthetic", "fig1")
  # Bound: estimation-set sizes L drawn from the pool; those above a camera's pool size are skipped.
  config.l_values = (2, 3, 4, 5, 6, 7, 8, 9, 10)
  # Membership: set sizes L; each must leave a non-member (L < pool size), the others are skipped.
  config.membership_l_values = (2, 4, 6, 8, 10)
  # Random half-splits per estimation set, for P̂ = <K̂_A, K̂_B> and the 'split' γ².
  config.n_splits = 10
  # Random estimation sets (trials) per L; AUCs and bounds are averaged over them (one set when L = pool size).
  config.n_trials = 5
  # γ² estimators, the first is the default (the table's ilb_bpp): 'loo' (noise only, leave one out: unbiased for
  # images of different brightness, L ≥ 3; the split's D² at L = 2), 'split' (noise only, from (K̂_A − K̂_B): biased
  # low on sets of mixed brightness) and 'moment' (local second moment of K̂, which also holds the PRNU's power).
  config.gamma2_estimators = ("loo", "split", "moment")
  # Local-variance windows γ² of the bound, reported for sensitivity.
  config.window_sizes = (3, 5, 7, 9)
  # Window of the NP detector, of whitening, of the mitigation table's bound and of the other experiments.
  config.window = 3
  # Membership tiles (pixels per side; 0 = the whole crop, where every detector has AUC 1 at these L).
  config.tile = 16
  # Mitigations measured on both sides (membership AUC, attribution cost): 'none', 'binarize', 'whiten'.
  config.mitigations = ("none", "binarize", "whiten")
  # Bound pool: which of a camera's images form the estimation sets: 'flatfield', 'natural' or 'all' (manifest
  # kinds); natural_pool adds a second bound table on the natural photos (cameras with ≥ 2 of them).
  config.pool = "flatfield"
  config.natural_pool = True
  # Membership pool: members and non-members are drawn from the same images, so no detector can tell them apart
  # by image kind ('all': flat-fields and natural photos together).
  config.membership_pool = "all"
  # Synthetic camera: image size and the paper's L values (Table 1: 26, 50; Table 2 at the largest).
  config.synthetic_size = 128
  config.synthetic_l_values = (26, 50)
  # Fig. 1: the camera ('' = the one with the most dark natural photos) and the mean gray below which a natural
  # photo counts as dark.
  config.fig1_device = ""
  config.fig1_dark_level = 60.0
  # Wavelet denoiser noise std (grey levels) and levels for W and X̂.
  config.sigma = 5.0
  config.levels = 4
  # Centre crop (rows, cols) of every image; (0, 0) = uncropped.
  config.crop = (512, 512)
  # Images per denoiser call.
  config.batch_size = 8
  # Resolution of the written plots.
  config.plot_dpi = 100
  # Random seed of the member draws and splits.
  config.seed = 0
  arguments.apply(config, BASES[base])
  arguments.apply(config, overrides)
  config.lock()
  return config
