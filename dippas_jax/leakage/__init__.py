"""Fingerprint leakage analysis (Fernández-Menduiña & Pérez-González): the model and K̂ (`model`), the
information-leakage bound (`bound`), membership inference (`membership`) and the per-camera analysis
(`analysis`). This namespace re-exports their public names."""

from dippas_jax.leakage.analysis import DETECTORS as DETECTORS
from dippas_jax.leakage.analysis import ILB_MITIGATIONS as ILB_MITIGATIONS
from dippas_jax.leakage.analysis import run_leakage_analysis as run_leakage_analysis
from dippas_jax.leakage.bound import LeakageBound as LeakageBound
from dippas_jax.leakage.bound import bound_at_allocation as bound_at_allocation
from dippas_jax.leakage.bound import information_leakage_bound as information_leakage_bound
from dippas_jax.leakage.bound import optimal_allocation as optimal_allocation
from dippas_jax.leakage.bound import solve_mu as solve_mu
from dippas_jax.leakage.membership import match_scores as match_scores
from dippas_jax.leakage.membership import membership_auc as membership_auc
from dippas_jax.leakage.membership import ncc_membership_scores as ncc_membership_scores
from dippas_jax.leakage.membership import np_membership_scores as np_membership_scores
from dippas_jax.leakage.model import MITIGATIONS as MITIGATIONS
from dippas_jax.leakage.model import LeakageModel as LeakageModel
from dippas_jax.leakage.model import binarize as binarize
from dippas_jax.leakage.model import leakage_model as leakage_model
from dippas_jax.leakage.model import local_variance as local_variance
from dippas_jax.leakage.model import mitigate as mitigate
from dippas_jax.leakage.model import power_estimate as power_estimate
from dippas_jax.leakage.model import residuals_and_denoised as residuals_and_denoised
from dippas_jax.leakage.model import whiten as whiten
