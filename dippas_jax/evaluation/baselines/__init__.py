"""Competing PRNU anonymizers (baselines), batched and jitted, selectable by name.

Every baseline maps photos `uint8 | float[N, H, W, 3]` in [0, 255] (grey-level scale, like the PRNU core) to a
NamedTuple whose `image` is float32[N, H, W, 3] clipped to [0, 255] and whose other fields are the parameters it
chose (per image where it searches). `imaging.to_uint8` quantises an output for saving/evaluation.

Quantisation (decided here, and different from the DIPPAS reference on purpose): the DIPPAS reference *floors*
its averaged output (`astype(uint8)`, SPEC §2.11), which biases every pixel by −0.5 grey levels on average
(quantisation MSE 1/3 instead of 1/12 grey level²). The baselines round half to even (`numpy.rint` /
`jnp.round`) after clipping to [0, 255], the unbiased choice; the DIPPAS anonymizer keeps its own floor rule.
The two PRNU-aware baselines search α on the rounded image by default (`quantize=True`), because on real
photos the change that cancels the NCC is smaller than one grey level and rounding would undo it.

| name | PRNU-aware | method |
|---|---|---|
| `adaptive_prnu_removal` | yes (K) | Karaküçük & Dirik style: `J = I − α·F(I)·K`, α ≥ 0 by Illinois regula falsi |
| `fingerprint_subtraction` | yes (K) | Zeng et al. (ICIP 2015): `J = I − α·I·K`, α by a bracketed secant search |
| `wavelet_denoising` | no | n passes of `J ← denoise.denoise(J)` (the Mihcak wavelet denoiser) |
| `inpainting` | no | Mandelli et al. (ICIP 2017), L2: lattice of B×B holes, lag-3 least-squares fill (CG), then the original's edges restored from a denoised copy (BM3D if installed) |
| `patch_desync` | no | Entrieri & Kirchner (EI 2016): every patch replaced by its most similar patch elsewhere (exhaustive search, exclusion zone) |

`dippas_naive` (main_4: the single DIP iterate of smallest |NCC| with PSNR ≥ τ) and `dippas` (block assembly with
(B, L, τ)) are produced by `dippas_jax.dippas.anonymize`, not here; an evaluation command adds them next to
`BASELINES` under those names.

The α searches have a fixed iteration count and are vectorised over the batch (each image has its own
bracket); each step is jitted, and the wavelet denoiser / residual extractor are called as the shared jitted
`denoise` functions (compiled once per shape for the process) rather than re-traced inside our own jits.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from dippas_jax.evaluation.baselines.denoising import DenoisingResult as DenoisingResult
from dippas_jax.evaluation.baselines.denoising import wavelet_denoising as wavelet_denoising
from dippas_jax.evaluation.baselines.inpaint import InpaintingResult as InpaintingResult
from dippas_jax.evaluation.baselines.inpaint import inpaint_l2 as inpaint_l2
from dippas_jax.evaluation.baselines.inpaint import inpaint_lattice as inpaint_lattice
from dippas_jax.evaluation.baselines.inpaint import inpainting as inpainting
from dippas_jax.evaluation.baselines.inpaint import lattice_masks as lattice_masks
from dippas_jax.evaluation.baselines.desync import DesyncResult as DesyncResult
from dippas_jax.evaluation.baselines.desync import patch_desync as patch_desync
from dippas_jax.evaluation.baselines.subtraction import AdaptiveRemovalResult as AdaptiveRemovalResult
from dippas_jax.evaluation.baselines.subtraction import SubtractionResult as SubtractionResult
from dippas_jax.evaluation.baselines.subtraction import adaptive_prnu_removal as adaptive_prnu_removal
from dippas_jax.evaluation.baselines.subtraction import fingerprint_subtraction as fingerprint_subtraction

BASELINES: dict[str, Callable[..., NamedTuple]] = {
    "adaptive_prnu_removal": adaptive_prnu_removal,
    "fingerprint_subtraction": fingerprint_subtraction,
    "wavelet_denoising": wavelet_denoising,
    "inpainting": inpainting,
    "patch_desync": patch_desync,
}
"""Baselines by name. Each is `fn(images, *, fingerprint=None | K, **options) -> NamedTuple` with a float32
`image` field in [0, 255]. PRNU-aware ones require `fingerprint`. `dippas_naive` and `dippas` live in
`dippas_jax.dippas.anonymize`."""


def get_baseline(name: str) -> Callable[..., NamedTuple]:
  """The baseline function registered as `name` (see `BASELINES`)."""
  if name not in BASELINES:
    raise ValueError(f"Unsupported baseline {name!r}; expected one of {sorted(BASELINES)} "
                     "('dippas' and 'dippas_naive' come from dippas_jax.dippas.anonymize)")
  return BASELINES[name]
