"""Tests for the kept-image transform (low-pass correction, flat path) and its use by the DIP runner."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dippas_jax import synthetic
from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.configs import dip as dip_config
from dippas_jax.dippas import anonymize
from dippas_jax.dippas import dip
from dippas_jax.dippas import kept_image
from dippas_jax.dippas import lowpass
from dippas_jax.evaluation import visual
from dippas_jax.prnu import denoise



def _half_flat(seed=0, h=48, w=64):
  """Left half: grey 120 with noise of std 1 (flat); right half: std 12 (texture)."""
  rng = np.random.default_rng(seed)
  std = np.where(np.arange(w) < w // 2, 1.0, 12.0)[None, :, None]
  return np.clip(120 + std * rng.standard_normal((h, w, 3)), 0, 255).astype(np.float32)


def test_local_std_equals_scipy():
  """The flatness measure = sqrt(G * g² − (G * g)²) of the channel mean g, scipy's gaussian_filter (reflect,
  truncate 3) as reference; float32 sums of squares up to 255² agree to ~1e-2 grey levels of std."""
  image = _half_flat()
  g = image.astype(np.float64).mean(-1)
  f = lambda v: ndimage.gaussian_filter(v, 4.0, mode="reflect", truncate=3.0)
  want = np.sqrt(np.maximum(f(g * g) - f(g) ** 2, 0))
  np.testing.assert_allclose(np.asarray(kept_image.local_std(image))[..., 0], want, atol=2e-2)


def test_mask_is_one_where_flat_zero_where_textured_and_has_no_step():
  image = _half_flat()
  m = np.asarray(kept_image.flatness_mask(image, flat_std=3.0, textured_std=5.0))[..., 0]
  assert m.min() >= 0 and m.max() <= 1
  np.testing.assert_array_equal(m[:, :16], 1.0)  # 16 px (4 window σ) from the edge: the flat path alone
  np.testing.assert_array_equal(m[:, -16:], 0.0)  # ... the DIP alone
  # No step: the std is a Gaussian-windowed (σ 4) statistic, so the mask goes from 1 to 0 over several pixels;
  # a hard threshold would jump by 1 between two neighbours.
  assert np.abs(np.diff(m, axis=1)).max() < 0.5
  ramp = (m > 0.01) & (m < 0.99)
  assert ramp.sum(axis=1).min() >= 2
  with pytest.raises(ValueError, match="flat_std < textured_std"):
    kept_image.flatness_mask(image, flat_std=5.0, textured_std=5.0)


def test_apply_blends_and_off_is_the_identity():
  image = _half_flat() / 255.0
  x = np.random.default_rng(1).uniform(0, 1, image.shape).astype(np.float32)
  on = kept_image.KeptImage(flat_std=3 / 255, textured_std=5 / 255, flat_noise=3 / 255)
  prepared = on.prepare(image)
  got = np.asarray(on.apply(x, image, prepared))
  # flat: the photo through the PRNU core's wavelet denoiser (0..255 scale, σ 3 grey levels)
  denoised = np.asarray(denoise.denoise(image[None] * 255, sigma=3.0))[0] / 255
  np.testing.assert_allclose(got[:, :16], denoised[:, :16], atol=1e-6)
  np.testing.assert_array_equal(got[:, -16:], x[:, -16:])  # textured: the DIP's output, bit for bit
  off = kept_image.KeptImage()
  assert off.prepare(image) == ()
  np.testing.assert_array_equal(np.asarray(off.apply(x, image, ())), x)
  assert off.loss(jnp.float32(0.25), x, image, ()) == np.float32(0.25)
  config = anonymize_config.get_config("photo,kept.flat_path=false")
  assert not kept_image.KeptImage.from_config(config.kept).flat_path
  assert kept_image.KeptImage.from_config(anonymize_config.get_config("photo").kept).flat_path


def test_a_photo_is_prepared_in_blocks_as_a_whole(monkeypatch):
  """`prepare_photo` in blocks (here of 64² with the module's 128-px margin: 5 × 5 blocks of 320²) equals `prepare`
  of the whole 320² photo (the same compiled program: one compile): the mask to float rounding everywhere (its
  window is far inside the margin; the std's E[g²] − E[g]² cancels ~1e-6 of error that the ramp's slope,
  1.5 / (2/255), amplifies to ~3e-4), R to a quarter of a grey level 64 px in from the photo's borders (the reach
  of the border handling, where the two pad differently: 0.03 on a 1104² Dresden photo in 512² blocks) and to 3
  grey levels at them."""
  monkeypatch.setattr(kept_image, "_BLOCK", 64)
  rng = np.random.default_rng(3)
  yy, xx = np.mgrid[0:320, 0:320]
  photo = (120 + 40 * np.sin(yy / 13.0) * np.cos(xx / 17.0))[..., None] * np.array([1.0, 0.9, 0.7])
  photo = np.clip(np.where(xx[..., None] < 160, photo, photo + 12 * rng.standard_normal(photo.shape))
                  + rng.standard_normal(photo.shape), 0, 255).astype(np.float32) / 255
  kept = kept_image.KeptImage(flat_std=3 / 255, textured_std=5 / 255, flat_noise=3 / 255)
  blocks, whole = kept.prepare_photo(photo), kept_image._jitted_prepare(kept)(photo)
  np.testing.assert_allclose(blocks.mask, whole.mask, atol=1e-3)
  err = np.abs(blocks.reconstruction - np.asarray(whole.reconstruction)) * 255
  assert err[64:-64, 64:-64].max() < 0.25
  assert err.max() < 3
  assert kept_image.KeptImage().prepare_photo(photo) == ()


def _first_kept_image(settings, photo, k, kept=None):
  """q(kept image) of iteration 0, captured by a hook."""
  hook = dip.CandidateHook(
      init=lambda image, fingerprint: jnp.zeros(image.shape, jnp.uint8),
      update=lambda cands, image_u8, psnr, step, active: jnp.where((step == 0)[:, None, None, None], image_u8,
                                                                   cands))
  result = dip.optimize(photo, k, settings=settings, seed=0, hook=hook, kept=kept)
  return np.asarray(result.state.candidates)[0], result


def _one_step_case():
  """(settings of the tiny net stopping after its first forward, a smooth 32² photo uint8[1, 32, 32, 3], K = 0)."""
  settings = dataclasses.replace(dip.DipSettings.from_config(dip_config.get_config("tiny")), chunk_size=1,
                                 max_steps=1)
  yy, xx = np.mgrid[0:32, 0:32]
  photo = (120 + 40 * np.sin(yy / 6.0)[..., None] * np.cos(xx / 9.0)[..., None] * np.array([1.0, 0.7, 0.4]))
  return settings, photo.astype(np.uint8)[None], np.zeros((1, 32, 32), np.float32)


def test_the_dip_keeps_the_corrected_image():
  """With a low-pass correction the kept image (its PSNR, hence candidates and the stop rule) is x̂ + G * (I − x̂),
  with the same network, the same first output x̂ and (detail_loss 0) the same loss (the flat path's blend:
  test_apply_blends_and_off_is_the_identity)."""
  settings, photo, k = _one_step_case()
  plain, plain_run = _first_kept_image(settings, photo, k)
  kept, run = _first_kept_image(settings, photo, k, kept_image.KeptImage(lowpass_sigma=2.0))
  # q() floors x̂ to whole grey levels before we can blur it: the corrected image is known to within 1 level.
  want = np.asarray(lowpass.replace_lowpass(plain.astype(np.float32) + 0.5, photo[0], sigma=2.0))
  np.testing.assert_allclose(kept.astype(np.float32), np.clip(np.floor(want), 0, 255), atol=1.0)
  assert run.history["psnr"][0, 0] > plain_run.history["psnr"][0, 0]
  np.testing.assert_allclose(run.history["loss"][0, 0], plain_run.history["loss"][0, 0])


def test_nearest_rounding_rounds_the_same_output():
  """dip.rounding 'nearest': the captured q(kept) of the first iteration (the same network output: same seed) is
  the floor one or one level above, about half the pixels each (what removes the floor's −0.5 bias)."""
  settings, photo, k = _one_step_case()
  floor, _ = _first_kept_image(settings, photo, k)
  nearest, _ = _first_kept_image(dataclasses.replace(settings, rounding="nearest"), photo, k)
  step = nearest.astype(int) - floor.astype(int)
  assert set(np.unique(step)) <= {0, 1}
  assert 0.3 < step.mean() < 0.7


def test_the_detail_loss_weighs_the_kept_image():
  """detail_loss a = 0.5 (the recipe's): the first loss is (1 − a)·MSE(y, I) + a·MSE(kept(y), I), from the same
  first output (K = 0: y = x̂) as a = 0, whose loss is MSE(y, I); MSE(kept(y), I) is recomputed from the captured
  q(kept) at the middle of its quantisation step (error ≪ 1 % of an MSE of this size)."""
  settings, photo, k = _one_step_case()
  kept, plain = _first_kept_image(settings, photo, k, kept_image.KeptImage(lowpass_sigma=2.0))
  _, mixed = _first_kept_image(settings, photo, k, kept_image.KeptImage(lowpass_sigma=2.0, detail_loss=0.5))
  target = photo[0].astype(np.float64) / 255
  mse_kept = np.mean(((kept.astype(np.float64) + 0.5) / 255 - target) ** 2)
  want = 0.5 * plain.history["loss"][0, 0] + 0.5 * mse_kept
  np.testing.assert_allclose(mixed.history["loss"][0, 0], want, rtol=1e-2)
  assert abs(mse_kept - plain.history["loss"][0, 0]) > 0.05 * plain.history["loss"][0, 0]  # the terms differ


def test_a_flat_photo_loses_its_fingerprint_without_spots():
  """A flat synthetic photo (a vignetted grey field, noise std ~2, K of std 0.006: ~0.9 grey levels, a camera's
  strength; a K as strong as the noise would survive the denoiser) anonymized whole with the flat path: its NCC
  with K falls from far outside into the band of 12 other cameras' flat photos,
  and its spot shift stays at the denoiser's own level (the noise it removes, σ 1.5-smoothed), where a DIP left on
  its own leaves spots of 5–7 grey levels in real skies (BUILD_NOTES "Clean flat areas")."""
  rng = np.random.default_rng(5)
  k = synthetic.device_prnu(3, 0, height=64, width=64, prnu_std=0.006)
  capture = lambda r, kk: synthetic.capture(r, synthetic.flat_scene(r, height=64, width=64, brightness=150.0), kk,
                                            shot_gain=0.02)
  photo = capture(rng, k)
  others = [capture(np.random.default_rng(100 + i), synthetic.device_prnu(3, 1 + i % 3, height=64, width=64,
                                                                         prnu_std=0.006)) for i in range(12)]
  band = np.percentile(np.abs(anonymize.ncc_scores(np.stack(others), k, sigma=3.0)), 99)
  config = anonymize_config.get_config(
      "tiny,full_resolution=true,tile_size=32,tile_overlap=8,batch_size=4,dip.max_steps=60,tau=14,block_size=16,"
      "trace_every=0,kept.lowpass_sigma=2,kept.flat_path=true,dip.optimizer.learning_rate=0.01,rounding=nearest,"
      "dip.rounding=nearest")
  done = {}
  anonymize.anonymize_photos([anonymize.PhotoTask(name="flat.png", image=photo, fingerprint=k)], config=config,
                             on_photo=lambda r: done.__setitem__(r.task.name, r))
  out = done["flat.png"].outputs[(16, 10, 14.0)]
  before, after = anonymize.ncc_scores(np.stack([photo, out]), k, sigma=3.0)
  assert before > 5 * band
  assert abs(after) < band
  # No blob beyond what removing the noise itself changes: the whole photo denoised (R alone, rounded) measures
  # 2.10 here, the output 1.72 (R of the whole photo, candidates rounded to nearest; floor rounding: 1.96; per-tile
  # R, kept.photo_context=false: 2.23).
  alone = np.clip(np.rint(np.asarray(denoise.denoise(photo[None].astype(np.float32), sigma=3.0))[0]), 0, 255)
  assert visual.spot_shift(out, photo)["worst"] <= visual.spot_shift(alone, photo)["worst"]
  # Unbiased: floor quantisation of the candidates (the reference's) would shift every pixel by −0.5 on average;
  # R and round-to-nearest keep the mean (its standard error over 64²·3 values of a ~1.5 std change: ~0.015).
  assert abs(np.mean(out.astype(np.float64) - photo)) < 0.1
