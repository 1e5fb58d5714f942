"""The absl commands (console scripts `dippas-<name>`): flags, one job call, the error policy of `common`."""
