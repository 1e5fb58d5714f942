"""The PRNU core (the Binghamton / prnu-python method): wavelet transform (`wavelets`), the residual
denoiser (`denoise`), the maximum-likelihood fingerprint (`fingerprint`), NCC, PCE and PSNR (`metrics`), ROC/AUC
(`roc`) and source attribution (`attribution`)."""
