"""dippas_jax: camera-fingerprint (PRNU) forensics and DIPPAS anonymization in JAX."""

__version__ = "0.1.0"
