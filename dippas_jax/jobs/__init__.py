"""The file-level job of each command (`fingerprint`, `attribute`, `anonymize`, `evaluate`, `leakage`, `demo`),
their report writers (`*_report`) and what they share (`common`)."""
