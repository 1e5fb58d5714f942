"""Evaluation of anonymizers: the attribution protocol and per-image metrics (`protocol`), edge-only scores
(`edges`) and the competing anonymizers (`baselines`)."""
