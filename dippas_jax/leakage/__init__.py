"""Fingerprint leakage analysis (Fernández-Menduiña & Pérez-González): the model and K̂ (`model`), P̂ and the
estimation-noise variance γ² from half-splits (`noise`), the information-leakage bound (`bound`), membership
inference (`membership`), the per-camera analysis (`analysis`) and the paper's experiments (`experiments`). This
namespace re-exports their public names."""

from dippas_jax.leakage.analysis import BOUND_STATUS as BOUND_STATUS
from dippas_jax.leakage.analysis import ILB_MITIGATIONS as ILB_MITIGATIONS
from dippas_jax.leakage.analysis import ilb_sweep as ilb_sweep
from dippas_jax.leakage.analysis import mitigation_rows as mitigation_rows
from dippas_jax.leakage.analysis import run_leakage_analysis as run_leakage_analysis
from dippas_jax.leakage.analysis import set_bounds as set_bounds
from dippas_jax.leakage.bound import LeakageBound as LeakageBound
from dippas_jax.leakage.bound import bound_at_allocation as bound_at_allocation
from dippas_jax.leakage.bound import information_leakage_bound as information_leakage_bound
from dippas_jax.leakage.bound import optimal_allocation as optimal_allocation
from dippas_jax.leakage.bound import solve_mu as solve_mu
from dippas_jax.leakage.membership import DETECTORS as DETECTORS
from dippas_jax.leakage.membership import detector_scores as detector_scores
from dippas_jax.leakage.membership import match_scores as match_scores
from dippas_jax.leakage.membership import membership_auc as membership_auc
from dippas_jax.leakage.membership import membership_sweep as membership_sweep
from dippas_jax.leakage.membership import np_llr as np_llr
from dippas_jax.leakage.membership import tile_aucs as tile_aucs
from dippas_jax.leakage.membership import to_tiles as to_tiles
from dippas_jax.leakage.model import MITIGATIONS as MITIGATIONS
from dippas_jax.leakage.model import LeakageModel as LeakageModel
from dippas_jax.leakage.model import binarize as binarize
from dippas_jax.leakage.model import box_mean as box_mean
from dippas_jax.leakage.model import leakage_model as leakage_model
from dippas_jax.leakage.model import local_variance as local_variance
from dippas_jax.leakage.model import mitigate as mitigate
from dippas_jax.leakage.model import residuals_and_denoised as residuals_and_denoised
from dippas_jax.leakage.model import whiten as whiten
from dippas_jax.leakage.noise import GAMMA2_ESTIMATORS as GAMMA2_ESTIMATORS
from dippas_jax.leakage.noise import loo_variance as loo_variance
from dippas_jax.leakage.noise import noise_variance as noise_variance
from dippas_jax.leakage.noise import power_estimate as power_estimate
from dippas_jax.leakage.noise import split_masks as split_masks
from dippas_jax.leakage.noise import split_statistics as split_statistics
