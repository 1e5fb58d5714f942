"""Evaluation config (`dippas-evaluate`): methods, their option sweeps, the crop and the embedded DIPPAS config.

  dippas-evaluate --images=../shared/data/dresden/manifest.csv --fingerprints='fp/*_sigma3.npy' --workdir=runs/ev
  dippas-evaluate ... --config=configs/evaluate.py:cpu                      # the CPU protocol of RESULTS.md
  dippas-evaluate ... --config=configs/evaluate.py:cpu,ablation=block_size  # one DIPPAS ablation
  dippas-evaluate ... --config.baselines.inpainting.block='(3,)' --config.dippas.dip.max_steps=500

Arg of `get_config`: comma-separated tokens, a base and optionally `ablation=NAME`.

Bases:
  ''/'paper'  the paper's protocol: 512² centre crops, the paper DIP (anonymize config ''), the B/τ sweep of the
              paper's Figs. 10–13 (B ∈ {32, 64, 128, 256, 512} × L = 50 × τ ∈ {37, 38, 39, 40}); a GPU job.
  'cpu'       a CPU-feasible protocol for the 16 shared Dresden photos (~20 min on 2 cores): 128² crops; the DIP
              is a 3-scale MultiRes U-Net (filters 8, 16, 32; input depth 16), learning rate 3e-3 (the paper:
              1e-3), ≤ 400 iterations, τ_stop 32 dB (the photos reach ≈ 25–32 dB, not the paper's 37–40); the
              DIPPAS sweep is B ∈ {32, 64, 128} × L ∈ {1, 10} × τ ∈ {26, 29} (B = 128, L = 1: the single best
              whole-image iterate, the closest point to the "naive" DIPPAS without block assembly).
  'tiny'      tests: 64² crops, one option per baseline, the anonymize 'tiny' DIP with 40 iterations.

Ablations (`ablation=NAME`; methods become 'original', 'dippas' and the variants named):
  block_size  B ∈ {32, 64, 128, 256, 512} (those that divide the crop) at the base's L and τ.
  num_blocks  L ∈ {1, 5, 10, 25, 50, 100} at the base's B and τ.
  tau         τ ∈ {37, 38, 39, 40} at the base's B and L (the 'cpu' base: τ ∈ {24, 26, 28, 30}, what its DIP
              reaches).
  mode        'dippas' (PRNU-aware) against 'dippas_blind' (K̃ = W(I)).
  injection   'dippas' (injection 'paper') against 'dippas_injection_none' and 'dippas_injection_legacy'.
  optimizer   'dippas' (torch-style AMSGrad) against 'dippas_adam', 'dippas_adamw' and 'dippas_sgd'.
The B/L/τ ablations are one optimization per image (every point of the sweep comes from the same run); the others
are one optimization per variant.

Method names: 'original' (the photos unchanged), a name of `baselines.BASELINES`, 'dippas' (the anonymize config
`dippas` with every (B, L, τ) of `anonymize.settings_of(dippas)`), or a key of `dippas_variants` (the same config
with that variant's overrides). Baseline options: every field of `baselines.<name>` is passed to the baseline
function as a keyword; a tuple-valued field is swept (the product of all tuple fields gives the configs).
"""

from __future__ import annotations

from ml_collections import config_dict

from dippas_jax.configs import anonymize as anonymize_config

BASES = ("", "paper", "cpu", "tiny")
ABLATIONS = ("block_size", "num_blocks", "tau", "mode", "injection", "optimizer")
_VARIANTS = {
    "mode": {"dippas_blind": "mode=blind"},
    "injection": {"dippas_injection_none": "injection=none",
                  "dippas_injection_legacy": "injection=legacy_transposed"},
    "optimizer": {"dippas_adam": "optimizer=adam", "dippas_adamw": "optimizer=adamw",
                  "dippas_sgd": "optimizer=sgd"},
}


def _parse(arg: str) -> tuple[str, str | None]:
  base, ablation = "", None
  for token in filter(None, (t.strip() for t in (arg or "").split(","))):
    if "=" in token:
      key, value = (s.strip() for s in token.split("=", 1))
      if key != "ablation":
        raise ValueError(f"Unknown config option {key!r} in {arg!r}; expected 'ablation=NAME'")
      if value not in ABLATIONS:
        raise ValueError(f"Unsupported ablation {value!r}; expected one of {ABLATIONS}")
      ablation = value
    elif token in BASES:
      base = token
    else:
      raise ValueError(f"Unsupported config base {token!r}; expected one of {BASES[1:]} (or nothing)")
  return ("" if base == "paper" else base), ablation


def get_config(arg: str = "") -> config_dict.ConfigDict:
  """The evaluation config for `arg` (see the module docstring); locked."""
  base, ablation = _parse(arg)
  config = config_dict.ConfigDict()
  # Methods evaluated, in order: 'original', baseline names (dippas_jax.baselines.BASELINES), 'dippas' and keys
  # of `dippas_variants`. The command's --methods overrides this list.
  config.methods = ("original", "adaptive_prnu_removal", "fingerprint_subtraction", "wavelet_denoising",
                    "inpainting", "dippas")
  # Centre crop (rows, cols) of every photo and fingerprint (DIPPAS needs multiples of 16 with the paper's net).
  config.crop = (512, 512)
  # Residual denoiser σ (grey levels) of every NCC of the evaluation (Eq. 2; DIPPAS uses 3).
  config.sigma = 3.0
  # Operating point of the reported TPR (false-positive rate).
  config.fpr_target = 0.01
  # Images per jitted call of the baselines and of the metrics (the last batch is padded: one compilation).
  config.batch_size = 8

  # Edge mask of the edge-only NCC (evaluation.edge_mask): Canny on the wavelet-denoised grey photo, dilated.
  config.edges = config_dict.ConfigDict()
  # Dilation disk radius in pixels (the paper: 3).
  config.edges.radius = 3
  # Gaussian σ of skimage's Canny.
  config.edges.canny_sigma = 2.0
  # σ of the wavelet denoiser applied before Canny (noise must not make edges).
  config.edges.denoiser_sigma = 3.0
  # Canny hysteresis thresholds on the gradient magnitude of the [0, 1] grey image.
  config.edges.low_threshold = 0.05
  config.edges.high_threshold = 0.1

  # Options of each baseline, passed as keywords; tuple-valued fields are swept (product = the configs).
  config.baselines = config_dict.ConfigDict()
  # Karaküçük–Dirik style J = I − α·F(I)·K (PRNU-aware; α searched per image to NCC ≈ 0).
  config.baselines.adaptive_prnu_removal = config_dict.ConfigDict()
  # NCC residual σ of the α search (the evaluation's σ).
  config.baselines.adaptive_prnu_removal.sigma = 3.0
  # σ of the denoiser F.
  config.baselines.adaptive_prnu_removal.denoiser_sigma = 3.0
  # Upper end of the relative strength β = α·std(K) searched.
  config.baselines.adaptive_prnu_removal.beta_max = 0.2
  # Illinois regula-falsi steps.
  config.baselines.adaptive_prnu_removal.iterations = 12
  # Zeng et al. J = I − α·I·K (PRNU-aware; α by a bracketed secant search to NCC = 0).
  config.baselines.fingerprint_subtraction = config_dict.ConfigDict()
  # NCC residual σ of the α search.
  config.baselines.fingerprint_subtraction.sigma = 3.0
  # Half-width of the β range searched.
  config.baselines.fingerprint_subtraction.beta_max = 0.2
  # Illinois steps.
  config.baselines.fingerprint_subtraction.iterations = 12
  # Repeated wavelet denoising (PRNU-blind).
  config.baselines.wavelet_denoising = config_dict.ConfigDict()
  # Number of passes (swept).
  config.baselines.wavelet_denoising.passes = (1, 3)
  # Denoiser noise σ in grey levels.
  config.baselines.wavelet_denoising.sigma = 3.0
  # Mandelli et al. inpainting, L2 variant (PRNU-blind).
  config.baselines.inpainting = config_dict.ConfigDict()
  # Hole size B of the pixel-selector lattice (swept).
  config.baselines.inpainting.block = (3, 5)
  # Finite-difference lag of the least-squares fill.
  config.baselines.inpainting.lag = 3
  # Conjugate-gradient iterations per selector.
  config.baselines.inpainting.iterations = 16

  # DIPPAS: the anonymize config (configs/anonymize.py); every (B, L, τ) of its primary setting and sweep is a
  # config of the 'dippas' method, all from one optimization per image. Its `crop` is set to the evaluation's
  # crop (the evaluation crops the photos itself); `batch_size` = photos optimized together.
  config.dippas = anonymize_config.get_config("cpu" if base == "cpu" else base)
  config.dippas.unlock()
  # The paper's B/τ grid at L = 50 (Figs. 10–13).
  config.dippas.sweep.block_sizes = (32, 64, 128, 256, 512)
  config.dippas.sweep.num_blocks = (50,)
  config.dippas.sweep.taus = (37.0, 38.0, 39.0, 40.0)
  # DIPPAS variant methods: name → overrides 'mode=aware|blind', 'injection=paper|none|legacy_transposed',
  # 'optimizer=amsgrad_torch|adam|amsgrad_optax|adamw|sgd' (comma-separated) applied to a copy of `dippas`.
  config.dippas_variants = config_dict.ConfigDict(
      {name: spec for group in _VARIANTS.values() for name, spec in group.items()})

  if base == "cpu":
    config.crop = (128, 128)
    dip = config.dippas.dip
    dip.model.filters = (8, 16, 32)
    dip.model.skips = (8, 16)
    dip.model.input_depth = 16
    dip.optimizer.learning_rate = 3e-3
    dip.max_steps = 400
    dip.tau_stop = 32.0
    dip.runner.chunk_size = 50
    config.dippas.trace_every = 0
    config.dippas.batch_size = 8
    config.dippas.block_size = 32
    config.dippas.num_blocks = 10
    config.dippas.tau = 29.0
    config.dippas.sweep.block_sizes = (32, 64, 128)
    config.dippas.sweep.num_blocks = (1, 10)
    config.dippas.sweep.taus = (26.0, 29.0)
  elif base == "tiny":
    config.crop = (64, 64)
    config.batch_size = 4
    config.baselines.wavelet_denoising.passes = (1,)
    config.baselines.inpainting.block = (3,)
    config.baselines.inpainting.iterations = 4
    config.baselines.adaptive_prnu_removal.iterations = 6
    config.baselines.fingerprint_subtraction.iterations = 6
    config.dippas.dip.max_steps = 40
    config.dippas.dip.runner.chunk_size = 20
    config.dippas.batch_size = 2
    config.dippas.num_blocks = 5
    config.dippas.tau = 20.0
    config.dippas.sweep.block_sizes = (16, 64)
    config.dippas.sweep.num_blocks = (1, 5)
    config.dippas.sweep.taus = (20.0,)
  config.dippas.crop = config.crop
  config.dippas.tile_size = config.crop[0]

  if ablation is not None:
    crop = min(config.crop)
    sweep = config.dippas.sweep
    sweep.block_sizes, sweep.num_blocks, sweep.taus = ((config.dippas.block_size,), (config.dippas.num_blocks,),
                                                       (config.dippas.tau,))
    config.methods = ("original", "dippas")
    if ablation == "block_size":
      sweep.block_sizes = tuple(b for b in (32, 64, 128, 256, 512) if b <= crop and crop % b == 0)
    elif ablation == "num_blocks":
      sweep.num_blocks = (1, 5, 10, 25, 50, 100)
    elif ablation == "tau":
      sweep.taus = (24.0, 26.0, 28.0, 30.0) if base == "cpu" else (37.0, 38.0, 39.0, 40.0)
    else:
      config.methods = ("original", "dippas") + tuple(_VARIANTS[ablation])
  config.lock()
  return config
