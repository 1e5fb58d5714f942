"""DIPPAS anonymization config (`dippas-anonymize`, `dippas-demo`).

  dippas-anonymize --inputs=photos/ --fingerprint=cam.npz --workdir=runs/anon        # whole photos, this backend
  dippas-anonymize --inputs=photos/ --blind --workdir=runs/anon --config=configs/anonymize.py:cpu   # 128² crop
  dippas-anonymize ... --config.block_size=32 --config.num_blocks=10 --config.tau=38

Arg of `get_config` (configs/arguments.py): a base and field overrides, e.g. 'cpu,rank_key=abs'. Bases: ''
(this backend's whole-photo default, `default_base()`: 'photo' on a CPU, 'photo_gpu' on a GPU), 'photo' / 'photo_gpu'
(every pixel, in 128² tiles: PHOTO_RECIPE below, 8 or 64 tiles in flight), 'paper' (the paper's protocol: 512²
centre crop, full U-Net, τ_stop 39 dB, ≤ 10,001 iterations; hours per photo on a CPU, minutes on a GPU), 'cpu'
(128² crop, the CPU recipe below: ~1 min per photo on 2 CPU cores, ≥ 38 dB), 'paper_cpu' (the paper's
optimization at the same crop, ≤ 2,000 iterations), 'tiny' (tests: 64² crop, a small U-Net, ≤ 500 iterations,
τ 27 < τ_stop 30), 'demo' (README command 1: the whole-photo recipe on the demo's synthetic 248² photo, 4 slots).
"""

from ml_collections import config_dict

from dippas_jax.configs import arguments
from dippas_jax.configs import dip as dip_config
from dippas_jax.dippas import anonymize as anonymize_lib
from dippas_jax.dippas import assembly
from dippas_jax.dippas import kept_image

OUTPUT_FORMATS = ("png", "jpeg")
# The CPU recipe (BUILD_NOTES "DIPPAS on real photos"): the paper's U-Net with a 32-deep input, a 20× larger
# learning rate with a 30-step warm-up (γ at a tenth of it), no input perturbation, a floor on the output sigmoid's
# gradient (clipped highlights keep learning), stop at 40 dB, B = 32, L = 10, τ = 38 with unbiased rounding of the
# candidates and of the block mean (floor, the reference's, shifts every pixel by −0.5 grey level: BUILD_NOTES
# "Clean flat areas"), and no pixel changed by more than 10 grey levels.
CPU_RECIPE = {"dip.model.input_depth": 32, "dip.optimizer.learning_rate": 2e-2, "dip.optimizer.warmup_steps": 30,
              "dip.optimizer.gamma_lr_factor": 0.1, "dip.noise.reg_std": 0.0, "dip.model.sigmoid_grad_floor": 0.05,
              "dip.tau_stop": 40.0, "dip.max_steps": 500, "block_size": 32, "num_blocks": 10, "tau": 38.0,
              "rounding": "nearest", "dip.rounding": "nearest", "max_change": 10}
# The paper's optimization at the CPU crop (the comparison point of the recipe): lr 1e-3, perturbation 0.1,
# τ_stop 39, B = 32, L = 10, τ = 37, floor rounding, ≤ 2,000 iterations.
PAPER_CPU = {"dip.model.input_depth": 32, "dip.max_steps": 2000, "block_size": 32, "num_blocks": 10}
_CPU_CROP = {"crop": (128, 128), "tile_size": 128, "tile_overlap": 16}
# The whole-photo recipe (BUILD_NOTES "Whole photos", RESULTS.md "Cost per megapixel"): the CPU recipe on 128²
# tiles with an 8-pixel overlap, streamed through 8 slots refilled every 10 steps; the photo's own low frequencies
# under the DIP's detail (σ 4 px; the loss weighs the raw and the corrected output half and half: no colour
# blotches, the candidates reach τ sooner); where the photo is flat (local std ≤ 3 grey levels, blended up to 5)
# the photo denoised instead of the DIP's output (the flat path: no DIP spots in skies; BUILD_NOTES "Clean flat
# areas"); each tile stopped as soon as its pool holds 2L candidates above τ (the ranking keeps the best L; τ_stop
# 42 only caps it); 8 roots per photo fit cold, every other tile warm-started from its nearest root.
PHOTO_RECIPE = {**CPU_RECIPE, "full_resolution": True, "tile_size": 128, "tile_overlap": 8, "batch_size": 8,
                "dip.runner.chunk_size": 10, "kept.lowpass_sigma": 4.0, "kept.detail_loss": 0.5,
                "kept.flat_path": True, "stop_at_pool": 20, "dip.tau_stop": 42.0, "warm_start_roots": 8}
# Bases: (DIP config argument, overrides of the anonymize fields).
BASES = {
    "": ("", {}),
    "photo": ("", PHOTO_RECIPE),
    # On a GPU: the same recipe with 64 tiles in flight (a documented choice until `scripts/gpu_check.sh` measures
    # the best batch there; BUILD_NOTES).
    "photo_gpu": ("", {**PHOTO_RECIPE, "batch_size": 64}),
    "paper": ("", {}),
    "cpu": ("", {**_CPU_CROP, **CPU_RECIPE}),
    "paper_cpu": ("", {**_CPU_CROP, **PAPER_CPU}),
    "tiny": ("tiny", {"crop": (64, 64), "tile_size": 64, "tile_overlap": 16, "block_size": 16, "num_blocks": 10,
                      "tau": 27.0}),
    # The demo's synthetic photo: L candidates per pool (2L measured no better there, and ≤ 3 minutes matter).
    "demo": ("", {**PHOTO_RECIPE, "batch_size": 4, "trace_every": 10, "stop_at_pool": 10}),
}


def _kept() -> config_dict.ConfigDict:
  """The kept-image transform (dippas/kept_image.py): kept = m·denoise(I) + (1 − m)·(x̂ + G_σ * (I − x̂))."""
  kept = config_dict.ConfigDict()
  # Std σ (px) of the low-pass correction x̂ + G_σ * (I − x̂): the photo's own low frequencies under the DIP's
  # detail (no colour drift); 0 = off (the paper).
  kept.lowpass_sigma = 0.0
  # Weight a of the kept image in the loss: (1 − a)·MSE(y, I) + a·MSE(kept(y), I). 0: the paper's loss; 1: the
  # DIP fits only what is kept (fewer iterations, but blotches leak through the low-pass's transition band).
  kept.detail_loss = 0.0
  # The flat path: where the photo is flat, keep the photo denoised (wavelet, noise std flat_noise) instead of the
  # DIP's output (no DIP spots in skies and walls); False = the paper's kept image (ablations).
  kept.flat_path = False
  # Local grey-level std (grey levels, Gaussian window of window_sigma px) at or below which the flat path takes
  # over fully.
  kept.flat_std = 3.0
  # Local std at or above which the DIP's output is kept; a smoothstep of the std in between (no mask edge).
  kept.textured_std = 5.0
  # Noise std (grey levels) of the flat path's wavelet denoiser (larger: less fingerprint left, more faint texture
  # lost; scripts/screen_flat_path.py).
  kept.flat_noise = 3.0
  # Std (px) of the Gaussian window of the local std (the flatness measure of visual.spot_shift too).
  kept.window_sigma = 4.0
  # Whole photos (full_resolution): the flat path's denoised photo and mask are computed on the whole photo and cut
  # like the tiles; False = per tile, on the tile alone (border effects of the denoiser on 128² tiles: spots).
  kept.photo_context = True
  return kept


def _sweep() -> config_dict.ConfigDict:
  sweep = config_dict.ConfigDict()
  # Block sizes of the sweep (the paper: 32, 64, 128, 256, 512). Empty = no sweep.
  sweep.block_sizes = ()
  # L values of the sweep.
  sweep.num_blocks = ()
  # τ values of the sweep (the paper: 37, 38, 39, 40).
  sweep.taus = ()
  return sweep


def default_base() -> str:
  """The base of a plain `dippas-anonymize`: 'photo' on a CPU, 'photo_gpu' when JAX's default backend is an
  accelerator."""
  import jax  # pylint: disable=g-import-not-at-top
  return "photo" if jax.default_backend() == "cpu" else "photo_gpu"


def get_config(arg: str = "") -> config_dict.ConfigDict:
  """The anonymize config for `arg` (module docstring); locked and validated."""
  base, overrides = arguments.parse(arg, tuple(BASES))
  base = base or default_base()
  dip_arg, base_overrides = BASES[base]
  config = config_dict.ConfigDict()
  # The base this config was made from (reported by the command and in report.json; not a setting).
  config.recipe = base
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
  # Ranking of a block's candidates: 'paper' (negative NCCs closest to 0 first, then non-negative ones) or 'abs'
  # (|NCC| closest to 0 first: aims at NCC ≈ 0 instead of a negative NCC).
  config.rank_key = "paper"
  # PRNU-aware: rank every block against the photo's own residual W(I) too (the larger of the two |NCC| is the
  # key): removes what is left of the photo's noise, the true fingerprint included, not only of the estimate.
  config.rank_own_residual = False
  # Quantisation of the averaged blocks: 'floor' (the reference's astype(uint8), −0.5 grey level on average) or
  # 'nearest' (unbiased).
  config.rounding = "floor"
  # Channel values of the photo at or above this level (e.g. 255: clipped highlights, which carry no PRNU) are
  # copied into the result unchanged; 0 = off (the paper).
  config.saturated_level = 0
  # Pixels with a channel changed by more than this many grey levels are copied from the original (a DIP output
  # stuck at black or white leaves a visible dot); 0 = off (the paper).
  config.max_change = 0
  # Stop a piece as soon as every (B, τ) pool has this many candidates above τ (the assembly has what it needs:
  # L of them, or a few L to choose from), instead of only at dip.tau_stop or dip.max_steps; 0 = off (the paper).
  config.stop_at_pool = 0
  # File format of the anonymized photo: 'png' (lossless) or 'jpeg' (Pillow, at jpeg_quality); either way the pixels
  # turned by the input's EXIF orientation and the input's colour profile, no other metadata. The report scores the
  # file as written (decoded back, turned back to the sensor's orientation).
  config.output_format = "png"
  # JPEG quality (1-95) of output_format 'jpeg'.
  config.jpeg_quality = 95
  # Extra (B, L, τ) outputs from the same optimization (research sweeps); written to <photo>/settings/.
  config.sweep = _sweep()
  # What of the DIP's output a candidate keeps (low-pass correction, flat path) and what the loss compares.
  config.kept = _kept()
  _add_piece_fields(config)
  # The DIP engine (configs/dip.py): network, noise, optimizer, stop rule, runner.
  config.dip = dip_config.get_config(dip_arg)
  arguments.apply(config, base_overrides)
  arguments.apply(config, overrides)
  check(config)
  config.lock()
  return config


def _add_piece_fields(config: config_dict.ConfigDict) -> None:
  """The fields of what is optimised: a crop or tiles, and how the pieces go through the queue."""
  # Centre crop (rows, cols) of each photo: the paper's protocol; multiples of 16 at the paper's 5 scales.
  config.crop = (512, 512)
  # Anonymize the whole photo by tiling instead of the centre crop.
  config.full_resolution = False
  # Warm starts of a whole photo's tiles: this many root tiles, spread over the grid, are optimised first from the
  # random initialisation, every other tile from the final weights of its nearest root (dippas/photo_stream.py);
  # 0 = every tile cold.
  config.warm_start_roots = 0
  # Tile size (multiple of 16) and overlap (pixels, cross-faded) in full-resolution mode.
  config.tile_size = 512
  config.tile_overlap = 32
  # Pieces (crops or tiles) optimized together, one network each, vmapped: the slots of the queue, each refilled
  # with the next piece as soon as its piece is done; memory grows with it, not with the number of pieces.
  config.batch_size = 4
  # Refill a finished piece's slot at once with the next piece (no idle slots); False: batches of batch_size
  # pieces that wait for their slowest one (the behaviour before the queue; for comparisons).
  config.refill = True
  # Record the whole-image NCC of the kept image every this many iterations for the history plot (0 = never).
  config.trace_every = 10


def check(config) -> None:
  """ValueError unless the anonymize fields hold supported values."""
  if config.mode not in anonymize_lib.MODES:
    raise ValueError(f"Unsupported mode {config.mode!r}; expected one of {anonymize_lib.MODES}")
  assembly.check_key(config.rank_key)
  if config.output_format not in OUTPUT_FORMATS:
    raise ValueError(f"Unsupported output_format {config.output_format!r}; expected one of {OUTPUT_FORMATS}")
  if not 1 <= config.jpeg_quality <= 95:
    raise ValueError(f"jpeg_quality must be in [1, 95], got {config.jpeg_quality}")
  kept_image.KeptImage.from_config(config.kept)  # ValueError on inconsistent fields
  if config.rounding not in assembly.ROUNDINGS:
    raise ValueError(f"Unsupported rounding {config.rounding!r}; expected one of {assembly.ROUNDINGS}")
