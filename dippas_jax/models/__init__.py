"""The learned parts of DIPPAS: the MultiRes U-Net and the PRNU injection gain (re-exports only)."""

from dippas_jax.models.injection import INJECTION_MODES as INJECTION_MODES
from dippas_jax.models.injection import InjectedUNet as InjectedUNet
from dippas_jax.models.injection import PrnuInjection as PrnuInjection
from dippas_jax.models.injection import get_gamma as get_gamma
from dippas_jax.models.injection import inject as inject
from dippas_jax.models.injection import oriented_fingerprint as oriented_fingerprint
from dippas_jax.models.injection import project_gamma as project_gamma
from dippas_jax.models.multires_unet import CONV_IMPLS as CONV_IMPLS
from dippas_jax.models.multires_unet import MultiResUNet as MultiResUNet
from dippas_jax.models.multires_unet import NetworkInput as NetworkInput
from dippas_jax.models.multires_unet import conv2d as conv2d
from dippas_jax.models.multires_unet import multires_out as multires_out
from dippas_jax.models.multires_unet import multires_widths as multires_widths

__all__ = [
    "CONV_IMPLS", "INJECTION_MODES", "InjectedUNet", "MultiResUNet", "NetworkInput", "PrnuInjection", "conv2d",
    "get_gamma", "inject", "multires_out", "multires_widths", "oriented_fingerprint", "project_gamma",
]
