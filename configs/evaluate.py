"""Evaluation config (`dippas-evaluate`): methods, their option sweeps, the crop and the embedded DIPPAS config.

  dippas-evaluate --images=../shared/data/dresden/manifest.csv --workdir=runs/ev  # K split from its flat-fields
  dippas-evaluate --images=../shared/data/dresden/manifest.csv --fingerprints='fp/*_sigma3.npy' --workdir=runs/ev
  dippas-evaluate ... --config=configs/evaluate.py:cpu                      # the CPU protocol of RESULTS.md
  dippas-evaluate ... --config=configs/evaluate.py:cpu,ablation=block_size  # one DIPPAS ablation
  dippas-evaluate ... --config.baselines.inpainting.block='(3,)' --config.dippas.dip.max_steps=500

Arg of `get_config` (configs/arguments.py): a base, optionally `ablation=NAME`, and field overrides.

Bases:
  ''/'paper'  the paper's protocol: 512² centre crops, the paper DIP (anonymize config ''), the B/τ sweep of the
              paper's Figs. 10–13 (B ∈ {32, 64, 128, 256, 512} × L = 50 × τ ∈ {37, 38, 39, 40}); a GPU job.
  'cpu'       a CPU-feasible protocol for the 16 shared Dresden photos: 128² crops, the anonymize config 'cpu'
              (the CPU recipe), the DIPPAS sweep B ∈ {32, 64, 128} × L ∈ {1, 10} × τ ∈ {37, 38, 39}.
  'cpu256'    the same at 256² crops (B ∈ {32, 64, 256}).
  'cpu512'    the paper's 512² crops: the baselines and DIPPAS with the whole-photo recipe (anonymize 'photo':
              each crop tiled in 128² tiles, as `dippas-anonymize` does a whole photo); the paper's own DIPPAS at
              512² (anonymize 'paper') wants a GPU.
  'tiny'      tests: 64² crops, one option per baseline, the anonymize 'tiny' DIP with 40 iterations, one resize,
              a CPU-fast detector (32² tiles, 2 folds, 2 epochs).

Ablations (`ablation=NAME`; methods become 'original', 'dippas' and the variants named):
  block_size  B ∈ {32, 64, 128, 256, 512} (those that divide the crop) at the base's L and τ.
  num_blocks  L ∈ {1, 5, 10, 25, 50, 100} at the base's B and τ.
  tau         τ ∈ {37, 38, 39, 40} at the base's B and L.
  mode        'dippas' (PRNU-aware) against 'dippas_blind' (K̃ = W(I)).
  injection   'dippas' (injection 'paper') against 'dippas_injection_none' and 'dippas_injection_legacy'.
  optimizer   'dippas' (torch-style AMSGrad) against 'dippas_adam', 'dippas_adamw' and 'dippas_sgd'.
  rank_key    'dippas' (the paper's key) against 'dippas_abs' (|NCC| first).
  recipe      'dippas' (the CPU recipe) against 'dippas_paper_cold' (the paper's optimization: lr 1e-3, input
              perturbation 0.1, τ_stop 39, ≤ 2,000 iterations, floor rounding, τ 37) and 'dippas_lr_only' (that
              with only the recipe's learning rate and warm-up).
The B/L/τ ablations are one optimization per image (every point of the sweep comes from the same run); the others
are one optimization per variant.

Method names: 'original' (the photos unchanged), a name of `baselines.BASELINES`, 'dippas' (the anonymize config
`dippas` with every (B, L, τ) of `anonymize.settings_of(dippas)`), or a key of `dippas_variants` (the same config
with that variant's field overrides, `arguments.apply` syntax). Baseline options: every field of
`baselines.<name>` is passed to the baseline function as a keyword; a tuple-valued field is swept (the product of
all tuple fields gives the configs).
"""

from __future__ import annotations

from ml_collections import config_dict

from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.configs import arguments

BASES = ("", "paper", "cpu", "cpu256", "cpu512", "tiny")
ABLATIONS = ("block_size", "num_blocks", "tau", "mode", "injection", "optimizer", "rank_key", "recipe")
_VARIANTS = {
    "mode": {"dippas_blind": "mode=blind"},
    "injection": {"dippas_injection_none": "dip.injection=none",
                  "dippas_injection_legacy": "dip.injection=legacy_transposed"},
    "optimizer": {"dippas_adam": "dip.optimizer.name=adam", "dippas_adamw": "dip.optimizer.name=adamw",
                  "dippas_sgd": "dip.optimizer.name=sgd"},
    "rank_key": {"dippas_abs": "rank_key=abs"},
}


def _recipe_variants() -> dict[str, str]:
  """'dippas_paper_cold': the fields of the CPU recipe back at the paper's values (anonymize 'paper_cpu');
  'dippas_lr_only': the same with only the recipe's learning rate and warm-up."""
  paper = anonymize_config.get_config("paper_cpu")
  def value(field):
    v = paper
    for part in field.split("."):
      v = v[part]
    return "/".join(map(str, v)) if isinstance(v, tuple) else str(v)
  lr = ("dip.optimizer.learning_rate", "dip.optimizer.warmup_steps")
  cold = {f: value(f) for f in anonymize_config.CPU_RECIPE}
  lr_only = {**cold, **{f: str(anonymize_config.CPU_RECIPE[f]) for f in lr}}
  return {name: ",".join(f"{f}={v}" for f, v in fields.items())
          for name, fields in (("dippas_paper_cold", cold), ("dippas_lr_only", lr_only))}


_VARIANTS["recipe"] = _recipe_variants()
# Per base: the crop, the anonymize config of DIPPAS and its overrides, other field overrides.
_BASE_FIELDS = {
    "": {},
    "cpu": {"crop": (128, 128), "dippas.batch_size": 8, "dippas.trace_every": 0,
            "dippas.sweep.block_sizes": (32, 64, 128), "dippas.sweep.num_blocks": (1, 10),
            "dippas.sweep.taus": (37.0, 38.0, 39.0)},
    "cpu256": {"crop": (256, 256), "batch_size": 4, "dippas.batch_size": 4, "dippas.trace_every": 0,
               "dippas.sweep.block_sizes": (32, 64, 256), "dippas.sweep.num_blocks": (1, 10),
               "dippas.sweep.taus": (37.0, 38.0, 39.0)},
    "cpu512": {"crop": (512, 512), "batch_size": 4, "dippas.trace_every": 0, "dippas.sweep.block_sizes": (),
               "dippas.sweep.num_blocks": (), "dippas.sweep.taus": (),
               "methods": ("original", "adaptive_prnu_removal", "fingerprint_subtraction", "wavelet_denoising",
                           "inpainting", "patch_desync", "dippas")},
    "tiny": {"crop": (64, 64), "batch_size": 4, "baselines.wavelet_denoising.passes": (1,),
             "baselines.inpainting.block": (3,), "baselines.inpainting.iterations": 4,
             "baselines.inpainting.edge_restoration": (True,), "baselines.inpainting.denoiser": "wavelet",
             "baselines.patch_desync.window": 6, "baselines.patch_desync.patch": (5,),
             "baselines.adaptive_prnu_removal.iterations": 6, "baselines.fingerprint_subtraction.iterations": 6,
             "dippas.dip.max_steps": 40, "dippas.dip.runner.chunk_size": 20, "dippas.batch_size": 2,
             "dippas.num_blocks": 5, "dippas.tau": 20.0, "dippas.sweep.block_sizes": (16, 64),
             "dippas.sweep.num_blocks": (1, 5), "dippas.sweep.taus": (20.0,), "flatfield_crop": (64, 64),
             "resize_scales": (0.5,),
             "detector.tile": 32, "detector.max_tiles": 9, "detector.folds": 2, "detector.widths": (8, 16, 32),
             "detector.stem_stride": 1, "detector.epochs": 2, "detector.batch_size": 8,
             "detector.logistic_steps": 200},
}


def _edges() -> config_dict.ConfigDict:
  edges = config_dict.ConfigDict()
  # Dilation disk radius in pixels (the paper: 3).
  edges.radius = 3
  # Gaussian σ of skimage's Canny.
  edges.canny_sigma = 2.0
  # σ of the wavelet denoiser applied before Canny (noise must not make edges).
  edges.denoiser_sigma = 3.0
  # Canny hysteresis thresholds on the gradient magnitude of the [0, 1] grey image.
  edges.low_threshold = 0.05
  edges.high_threshold = 0.1
  return edges


def _detector() -> config_dict.ConfigDict:
  d = config_dict.ConfigDict()
  # The (method, config) points it runs on: 'best' = per method the config of lowest pooled NCC AUC (the ROC
  # plots' choice), 'all', or 'none'.
  d.scope = "best"
  # Seed of the folds, the tile subset, the initialisation and the batch order (recorded in summary.json).
  d.seed = 0
  # Detectors: 'resnet' (handcrafted residual features → a small ResNet), 'logistic' (residual statistics → a
  # logistic classifier).
  d.detectors = ("resnet", "logistic")
  # Handcrafted features: 'spectrum' (the authors' 'wv_fft_wiener2') or 'residual' (Wiener-DFT residual).
  d.features = "spectrum"
  # σ (grey levels) of the wavelet denoiser, the first handcrafted layer.
  d.sigma = 3.0
  # Tile side and grid step (pixels).
  d.tile = 64
  d.stride = 16
  # At most this many grid positions per photo (a seeded random subset when the grid is larger).
  d.max_tiles = 64
  # Photo-disjoint cross-validation folds (a photo and its anonymized version are in the same fold).
  d.folds = 4
  # ResNet: channels per stage (one basic block each, stride 2 from the second) and the stem's stride.
  d.widths = (16, 32, 64)
  d.stem_stride = 2
  # ResNet training: epochs, tiles per step, AdamW learning rate (the authors' Adam lr; cosine decay to 0),
  # weight decay.
  d.epochs = 4
  d.batch_size = 32
  d.learning_rate = 1e-2
  d.weight_decay = 1e-4
  # Logistic classifier: L2 penalty on the weights and full-batch Adam steps.
  d.logistic_l2 = 1e-3
  d.logistic_steps = 500
  return d


def _baselines() -> config_dict.ConfigDict:
  b = config_dict.ConfigDict()
  # Karaküçük–Dirik style J = I − α·F(I)·K (PRNU-aware; α searched per image to NCC ≈ 0): NCC residual σ of
  # the search, σ of the denoiser F, upper end of the relative strength β = α·std(K), Illinois steps.
  b.adaptive_prnu_removal = config_dict.ConfigDict(
      {"sigma": 3.0, "denoiser_sigma": 3.0, "beta_max": 0.2, "iterations": 12})
  # Zeng et al. J = I − α·I·K (PRNU-aware; α by a bracketed secant search to NCC = 0): NCC residual σ,
  # half-width of the β range searched, Illinois steps.
  b.fingerprint_subtraction = config_dict.ConfigDict({"sigma": 3.0, "beta_max": 0.2, "iterations": 12})
  # Repeated wavelet denoising (PRNU-blind): number of passes (swept), denoiser σ in grey levels.
  b.wavelet_denoising = config_dict.ConfigDict({"passes": (1, 3), "sigma": 3.0})
  # Mandelli et al. inpainting, L2 variant (PRNU-blind): hole size B of the pixel-selector lattice (swept),
  # finite-difference lag of the least-squares fill, conjugate-gradient iterations per selector, the edge
  # restoration of the published pipeline (swept: with, and without as an ablation), its denoiser ('auto' =
  # BM3D where the optional `bm3d` package is installed, else 'wavelet') and that denoiser's σ (grey levels).
  b.inpainting = config_dict.ConfigDict({"block": (3, 5), "lag": 3, "iterations": 16,
                                         "edge_restoration": (True, False), "denoiser": "auto",
                                         "denoiser_sigma": 7.0})
  # Entrieri & Kirchner patch-based desynchronization (PRNU-blind): patch side (swept), search radius and the
  # exclusion radius around each patch (pixels), σ of the denoised guide the similarity is measured on.
  b.patch_desync = config_dict.ConfigDict({"patch": (3, 5), "window": 8, "exclusion": 2, "guide_sigma": 3.0})
  return b


# The anonymize config of DIPPAS per evaluation base: at 512² the whole-photo recipe tiles the crop (128² tiles).
_DIPPAS_BASE = {"cpu": "cpu", "cpu256": "cpu", "cpu512": "photo", "tiny": "tiny"}


def _dippas(base: str) -> config_dict.ConfigDict:
  dippas = anonymize_config.get_config(_DIPPAS_BASE.get(base, "paper"))
  dippas.unlock()
  # The paper's B/τ grid at L = 50 (Figs. 10–13).
  dippas.sweep.block_sizes = (32, 64, 128, 256, 512)
  dippas.sweep.num_blocks = (50,)
  dippas.sweep.taus = (37.0, 38.0, 39.0, 40.0)
  return dippas


def _apply_ablation(config, ablation: str) -> None:
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
    sweep.taus = (37.0, 38.0, 39.0, 40.0)
  else:
    config.methods = ("original", "dippas") + tuple(_VARIANTS[ablation])


def get_config(arg: str = "") -> config_dict.ConfigDict:
  """The evaluation config for `arg` (see the module docstring); locked."""
  base, overrides = arguments.parse(arg, BASES)
  base = "" if base == "paper" else base
  ablation = dict(overrides).pop("ablation", None)
  if ablation is not None and ablation not in ABLATIONS:
    raise ValueError(f"Unsupported ablation {ablation!r}; expected one of {ABLATIONS}")
  config = config_dict.ConfigDict()
  # Methods evaluated, in order: 'original', baseline names (dippas_jax.evaluation.baselines.BASELINES),
  # 'dippas' and keys of `dippas_variants`. The command's --methods overrides this list.
  config.methods = ("original", "adaptive_prnu_removal", "fingerprint_subtraction", "wavelet_denoising",
                    "inpainting", "patch_desync", "dippas")
  # Centre crop (rows, cols) of every photo and fingerprint (DIPPAS needs multiples of 16 with the paper's net).
  config.crop = (512, 512)
  # Residual denoiser σ (grey levels) of every NCC of the evaluation (Eq. 2; DIPPAS uses 3).
  config.sigma = 3.0
  # Operating point of the reported TPR (false-positive rate).
  config.fpr_target = 0.01
  # Images per jitted call of the baselines and of the metrics (the last batch is padded: one compilation).
  config.batch_size = 8
  # Edge mask of the edge-only NCC (evaluation.edges.edge_mask): Canny on the wavelet-denoised grey photo, dilated.
  config.edges = _edges()
  # Fingerprints when --fingerprints is not given (issue 21). 'alternate': each device's flat-fields (the --images
  # manifest's rows of kind 'flatfield'), sorted by path, split into two disjoint halves: positions 0, 2, … → the
  # fingerprint every method is given and the paper's protocol, PCE, JPEG and resize columns score with;
  # 1, 3, … → the attacker's fingerprint (the attacker columns). 'none': no split and no attacker columns.
  config.fingerprint_split = "alternate"
  # Centre crop of the flat-fields the split fingerprints are estimated on (the larger of it and `crop`), then
  # centre-cropped to `crop` (the reference fingerprints are estimated on 512² crops).
  config.flatfield_crop = (512, 512)
  # PCE adversary (evaluation.adversaries): exclusion radius r of the (2r+1)² neighbourhood (Binghamton 11×11),
  # peak search range in pixels of shift (0 = the aligned peak, the Binghamton toolbox's default for uncropped
  # photos; −1 = every circular shift, as prnu-python), attribution threshold (Goljan, Fridrich & Filler 2009).
  config.pce = config_dict.ConfigDict({"radius": 5, "shift_range": 0, "threshold": 60.0})
  # Re-compression adversary: Pillow JPEG qualities of the copies of every saved photo.
  config.jpeg_qualities = (95, 85, 75)
  # Resize adversary: scale factors of the photos (the fingerprints resized alike).
  config.resize_scales = (0.5, 0.75)
  # The anonymization detector (evaluation.detector, Bonettini et al. 2019), trained here on tiles.
  config.detector = _detector()
  # Options of each baseline, passed as keywords; tuple-valued fields are swept (product = the configs).
  config.baselines = _baselines()
  # DIPPAS: the anonymize config (configs/anonymize.py); every (B, L, τ) of its primary setting and sweep is a
  # config of the 'dippas' method, all from one optimization per image. Its `crop` is set to the evaluation's
  # crop (the evaluation crops the photos itself); `batch_size` = photos optimized together.
  config.dippas = _dippas(base)
  # DIPPAS variant methods: name → comma-separated field overrides of a copy of `dippas` (e.g. 'mode=blind').
  config.dippas_variants = config_dict.ConfigDict(
      {name: spec for group in _VARIANTS.values() for name, spec in group.items()})
  arguments.apply(config, _BASE_FIELDS[base])
  if ablation is not None:
    _apply_ablation(config, ablation)
  arguments.apply(config, [(k, v) for k, v in overrides if k != "ablation"])
  config.dippas.crop = config.crop
  if not config.dippas.full_resolution:  # the crop is one piece; else the crop is tiled like a whole photo
    config.dippas.tile_size = config.crop[0]
  config.lock()
  return config
