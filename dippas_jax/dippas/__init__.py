"""The DIPPAS anonymizer: the MultiRes U-Net (`unet`, `layers`) with the fingerprint injection (`injection`),
the optimizers (`optim`), the DIP engine (`dip`), the block assembly (`assembly`, streaming `topl`, the runner
hook `candidates`), `anonymize` (arrays in, anonymized arrays out) and full-resolution `tiling`."""
