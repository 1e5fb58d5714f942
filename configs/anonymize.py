"""DIPPAS anonymization config (`dippas-anonymize`, `dippas-demo`).

  dippas-anonymize --inputs=photos/ --fingerprint=cam.npz --workdir=runs/anon                # paper defaults
  dippas-anonymize --inputs=photos/ --blind --workdir=runs/anon --config=configs/anonymize.py:cpu
  dippas-anonymize ... --config.block_size=32 --config.num_blocks=10 --config.tau=38

Args of `get_config`: '' (the paper: 512² centre crop, full U-Net, τ_stop 39 dB, ≤ 10,001 iterations; hours per
photo on a CPU, minutes on a GPU), 'cpu' (128² crop, paper U-Net with input depth 32, ≤ 2,000 iterations: a
CPU-feasible protocol), 'tiny' (tests: 64² crop, a small U-Net, ≤ 500 iterations, τ 27 < τ_stop 30), 'demo'
(README command 1: 'tiny' with lr 1e-2, τ 22, ≤ 300 iterations).
"""

from ml_collections import config_dict

from dippas_jax.configs import dip as dip_config


def get_config(arg: str = "") -> config_dict.ConfigDict:
  config = config_dict.ConfigDict()
  # 'aware' (rank and inject with the device fingerprint, --fingerprint) or 'blind' (K̃ = W(I) of the photo).
  config.mode = "aware"
  # Residual σ (grey levels) of the candidate ranking and of K̃ in blind mode (DIPPAS uses 3).
  config.sigma = 3.0
  # Block size B of the assembly (divides the crop; B = crop size = whole image, i.e. no block assembly).
  config.block_size = 64
  # Blocks averaged per position, L (README example of the authors: 50).
  config.num_blocks = 50
  # PSNR threshold τ (dB) of the candidate pool (fallback: the best-PSNR iterations when none reach it).
  config.tau = 37.0
  # Extra (B, L, τ) outputs from the same optimization (research sweeps); written to <photo>/settings/.
  config.sweep = config_dict.ConfigDict()
  # Block sizes of the sweep (the paper: 32, 64, 128, 256, 512). Empty = no sweep.
  config.sweep.block_sizes = ()
  # L values of the sweep.
  config.sweep.num_blocks = ()
  # τ values of the sweep (the paper: 37, 38, 39, 40).
  config.sweep.taus = ()
  # Centre crop (rows, cols) of each photo: the paper's protocol; multiples of 16 at the paper's 5 scales.
  config.crop = (512, 512)
  # Anonymize the whole photo by tiling instead of the centre crop.
  config.full_resolution = False
  # Tile size (multiple of 16) and overlap (pixels, cross-faded) in full-resolution mode.
  config.tile_size = 512
  config.tile_overlap = 32
  # Photos optimized together (vmapped over one network per photo); memory grows with it.
  config.batch_size = 4
  # Record the whole-image NCC of the kept image every this many iterations for the history plot (0 = never).
  config.trace_every = 10
  # The DIP engine (configs/dip.py): network, noise, optimizer, stop rule, runner.
  config.dip = dip_config.get_config("")

  if arg == "cpu":
    config.crop = (128, 128)
    config.tile_size = 128
    config.tile_overlap = 16
    config.block_size = 32
    config.num_blocks = 10
    config.dip.model.input_depth = 32
    config.dip.max_steps = 2000
  elif arg == "tiny":
    config.crop = (64, 64)
    config.tile_size = 64
    config.tile_overlap = 16
    config.block_size = 16
    config.num_blocks = 10
    config.tau = 27.0
    config.dip = dip_config.get_config("tiny")
  elif arg == "demo":  # README command 1: the tiny net on a 64² crop of a synthetic photo, ~1–2 min on a CPU.
    config.crop = (64, 64)
    config.block_size = 16
    config.num_blocks = 10
    config.tau = 22.0
    config.trace_every = 0
    config.dip = dip_config.get_config("tiny")
    config.dip.optimizer.learning_rate = 0.01  # The tiny net needs a larger step to reach τ quickly.
    config.dip.max_steps = 300
  elif arg:
    raise ValueError(f"Unsupported config arg {arg!r}; expected '', 'cpu', 'tiny' or 'demo'")
  config.lock()
  return config
