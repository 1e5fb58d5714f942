"""The demo job's anonymization part (README command 1) on a tiny network: its figures are the files'."""

import json

import numpy as np

from dippas_jax import io
from dippas_jax import synthetic
from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.configs import prnu as prnu_config
from dippas_jax.dippas import anonymize
from dippas_jax.jobs import demo
from dippas_jax.evaluation import visual
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics


def test_demo_reports_the_written_photos_against_both_fingerprints(tmp_path):
  config = anonymize_config.get_config("tiny,dip.max_steps=60,dip.runner.chunk_size=30,tau=20,trace_every=0,"
                                       "full_resolution=true,tile_size=48,tile_overlap=16")
  summary = demo.demo_job(workdir=str(tmp_path), config=prnu_config.get_config(), size=80, num_flatfield=4,
                          num_natural=2, anonymize_config=config)
  a = summary["anonymization"]
  photo, out = (io.read_image(tmp_path / name) for name in ("photo.png", "anonymized.png"))
  assert photo.shape == out.shape == (80, 80, 3)  # the whole photo: 2 × 2 tiles of 48² at stride 32
  assert a["psnr"] == float(metrics.psnr(out[None], photo[None])[0]) and a["iterations_per_tile"] == 60
  assert a["seam_score"] > 0 and a["colour_shift"] > 0  # a 48² tile's seam says little: the job test checks it
  data = synthetic.make_dataset(seed=0, num_devices=3, num_flatfield=4, num_natural=2, height=80, width=80,
                                jpeg_quality=90, prnu_std=demo.PRNU_STD, shot_gain=demo.SHOT_GAIN, scenes="photos")
  np.testing.assert_array_equal(photo, data.natural[0])  # the first photo of device 0, uncropped
  before = float(anonymize.ncc_scores(photo[None], data.prnu[0], sigma=config.sigma)[0])
  np.testing.assert_allclose(a["true_fingerprint"]["ncc_before"], before, rtol=1e-6)
  assert a["estimated_fingerprint"]["non_matching_p99"] > 0
  # The photo is anonymized: the NCC with the true K, recomputed from the written PNG through the PRNU core
  # (residual, Eq. 2), is the reported one and under half the unaltered photo's.
  residual = denoise.extract_residual(out[None], sigma=config.sigma)
  after = float(metrics.ncc_eq2(residual, out[None], data.prnu[0])[0])
  np.testing.assert_allclose(a["true_fingerprint"]["ncc_after"], after, rtol=1e-5, atol=1e-7)
  assert after < 0.5 * before
  assert a["spot_shift"] == visual.spot_shift(out, photo)["worst"] and a["flat_path_share"] is None  # tiny: off
  assert (tmp_path / "report.png").stat().st_size > 10_000
  assert json.loads((tmp_path / "summary.json").read_text())["anonymization"]["iterations_per_tile"] == 60
