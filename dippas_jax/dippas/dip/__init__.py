"""The DIP engine of DIPPAS: one MultiRes U-Net + γ + optimizer per image, optimised to reproduce the image.

settings      `DipSettings` (hashable; `from_config` reads configs/dip.py), `resolve`
parameters    the model, PyTorch-style initialisation, flat parameter vectors (`FlatSpec`)
perturbation  the network input z + σ·n_t ('full' or 'projected' draws), `standard_normal`
runner        state, one step, the jitted chunk runner over a batch, sharding (`build_runner`)
driver        `optimize`: the single-process driver

This package's namespace re-exports the public names of those modules.
"""

from dippas_jax.dippas.dip.driver import ChunkInfo as ChunkInfo
from dippas_jax.dippas.dip.driver import DipResult as DipResult
from dippas_jax.dippas.dip.driver import optimize as optimize
from dippas_jax.dippas.dip.driver import validate_inputs as validate_inputs
from dippas_jax.dippas.dip.parameters import FlatSpec as FlatSpec
from dippas_jax.dippas.dip.parameters import flat_specs as flat_specs
from dippas_jax.dippas.dip.parameters import init_flat as init_flat
from dippas_jax.dippas.dip.parameters import init_variables as init_variables
from dippas_jax.dippas.dip.parameters import load_params as load_params
from dippas_jax.dippas.dip.parameters import make_model as make_model
from dippas_jax.dippas.dip.parameters import variable_shapes as variable_shapes
from dippas_jax.dippas.dip.parameters import weights_path as weights_path
from dippas_jax.dippas.dip.perturbation import PlanarInput as PlanarInput
from dippas_jax.dippas.dip.perturbation import draws_projected as draws_projected
from dippas_jax.dippas.dip.perturbation import first_layer_columns as first_layer_columns
from dippas_jax.dippas.dip.perturbation import projected_perturbed_product as projected_perturbed_product
from dippas_jax.dippas.dip.perturbation import standard_normal as standard_normal
from dippas_jax.dippas.dip.runner import NO_HOOK as NO_HOOK
from dippas_jax.dippas.dip.runner import CandidateHook as CandidateHook
from dippas_jax.dippas.dip.runner import DipHistory as DipHistory
from dippas_jax.dippas.dip.runner import DipInputs as DipInputs
from dippas_jax.dippas.dip.runner import DipRunner as DipRunner
from dippas_jax.dippas.dip.runner import DipState as DipState
from dippas_jax.dippas.dip.runner import build_runner as build_runner
from dippas_jax.dippas.dip.runner import compiler_options as compiler_options
from dippas_jax.dippas.dip.runner import make_mesh as make_mesh
from dippas_jax.dippas.dip.runner import quantize_u8 as quantize_u8
from dippas_jax.dippas.dip.settings import BATCHINGS as BATCHINGS
from dippas_jax.dippas.dip.settings import PERTURBATIONS as PERTURBATIONS
from dippas_jax.dippas.dip.settings import PROJECTED_MIN_SIZE as PROJECTED_MIN_SIZE
from dippas_jax.dippas.dip.settings import DipSettings as DipSettings
from dippas_jax.dippas.dip.settings import OptimizerSettings as OptimizerSettings
from dippas_jax.dippas.dip.settings import PlateauSettings as PlateauSettings
from dippas_jax.dippas.dip.settings import resolve as resolve
