"""The file boundary as a phone user meets it: `dippas-anonymize` (in process) on photos carrying an EXIF orientation,
a wide-gamut colour profile, and HEIC input (issue 31). Its own module, so that xdist runs it beside the other job
tests (it reuses their compiled whole-photo runner through the persistent cache)."""

import json
import pathlib
import sys

import numpy as np
from PIL import Image
from PIL import ImageOps
import pytest

from dippas_jax import display
from dippas_jax import io
from dippas_jax import plotting
from dippas_jax import synthetic
from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.jobs import anonymize as anonymize_job
from dippas_jax.prnu import metrics

# The whole-photo setting of anonymize_job_test (the same compiled runner): the tiny DIP, 32² tiles, overlap 8.
_FIELDS = {"dip.max_steps": 20, "dip.runner.chunk_size": 10, "batch_size": 4, "trace_every": 5, "tau": 12.0,
           "full_resolution": True, "tile_size": 32, "tile_overlap": 8, "kept.lowpass_sigma": 2.0,
           "warm_start_roots": 2, "mode": "blind"}


def _config():
  config = anonymize_config.get_config("tiny")
  for key, value in _FIELDS.items():
    anonymize_config.arguments.set_field(config, key, value)
  return config


def _wide_gamut_profile() -> bytes:
  """A minimal ICC v2 display profile (matrix/TRC) with the Adobe RGB (1998) primaries (D50-adapted) and gamma
  2.2: a non-sRGB colour space, as phones (Display P3) and cameras (Adobe RGB) embed; no profile file ships here."""
  def s15(v):
    return int(round(v * 65536)).to_bytes(4, "big", signed=True)

  def xyz(x, y, z):
    return b"XYZ " + bytes(4) + s15(x) + s15(y) + s15(z)
  text = b"Adobe-like RGB test profile"
  desc = b"desc" + bytes(4) + (len(text) + 1).to_bytes(4, "big") + text + b"\0" + bytes(8) + bytes(3) + bytes(67)
  curve = b"curv" + bytes(4) + (1).to_bytes(4, "big") + (563).to_bytes(2, "big") + bytes(2)  # u8Fixed8 2.2
  tags = [(b"desc", desc), (b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", xyz(0.6097559, 0.3111145, 0.0194702)),
          (b"gXYZ", xyz(0.2052401, 0.6256714, 0.0608902)), (b"bXYZ", xyz(0.1492240, 0.0632141, 0.7445396)),
          (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve), (b"cprt", b"text" + bytes(4) + b"none\0\0\0\0")]
  offset = 128 + 4 + 12 * len(tags)
  table, data = b"", b""
  for sig, body in tags:
    body += bytes(-len(body) % 4)
    table += sig + (offset + len(data)).to_bytes(4, "big") + len(body).to_bytes(4, "big")
    data += body
  size = offset + len(data)
  header = (size.to_bytes(4, "big") + bytes(4) + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + bytes(12) + b"acsp"
            + bytes(24) + bytes(4) + s15(0.9642) + s15(1.0) + s15(0.8249) + bytes(4) + bytes(16) + bytes(28))
  return header + len(tags).to_bytes(4, "big") + table + data


@pytest.fixture(scope="module")
def phone_run(tmp_path_factory):
  """Eight 32×48 JPEGs (two 32² tiles each) carrying EXIF orientations 1-8 and a PNG with a wide-gamut colour
  profile, anonymized whole (PRNU-blind) in one run."""
  root = tmp_path_factory.mktemp("phone")
  data = synthetic.make_dataset(seed=4, num_devices=1, num_flatfield=0, num_natural=2, height=32, width=48)
  stored = data.natural[0]
  for orientation in range(1, 9):
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SyntheticPhone"
    Image.fromarray(stored).save(root / f"o{orientation}.jpg", quality=95, exif=exif)
  profile = _wide_gamut_profile()
  Image.fromarray(data.natural[1]).save(root / "wide.png", icc_profile=profile)
  workdir = tmp_path_factory.mktemp("phone_out")
  drawn = {}  # report.png's panels: what the figure shows as original and anonymized, per photo folder
  draw = plotting.plot_photo_report

  def record(path, original, anonymized, *args, **kwargs):
    drawn[pathlib.Path(path).parent.name] = (original, anonymized)
    return draw(path, original, anonymized, *args, **kwargs)
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(plotting, "plot_photo_report", record)
    summary = anonymize_job.anonymize_job(inputs=f"{root}/*", workdir=str(workdir), config=_config())
  return root, workdir, summary, profile, drawn


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_phone_photo_comes_back_as_it_was_shown(phone_run, orientation):
  """Written as the input displays (ImageOps.exif_transpose of the input), with no EXIF block; the report says
  which orientation was applied and scores the photo in the sensor's orientation."""
  root, workdir, summary, _, drawn = phone_run
  assert summary["anonymized"] == 9
  source = Image.open(root / f"o{orientation}.jpg")
  shown = np.asarray(ImageOps.exif_transpose(source)).astype(np.float64)
  stored = np.asarray(source).astype(np.float64)
  out_file = Image.open(workdir / f"o{orientation}_jpg" / "anonymized.png")
  assert len(out_file.getexif()) == 0 and "exif" not in out_file.info
  out = np.asarray(out_file).astype(np.float64)
  assert out.shape == shown.shape
  # Of the eight ways to show the stored pixels, the output is closest to the input's own (τ 12 dB on the tiny
  # net changes the photo by ~12 grey levels on average; another turn of it, by ~40).
  errors = {o: np.abs(out - display.to_display(stored, display.Display(orientation=o))).mean()
            for o in range(1, 9) if display.to_display(stored, display.Display(orientation=o)).shape == out.shape}
  assert min(errors, key=errors.get) == orientation
  np.testing.assert_array_equal(display.to_display(stored, display.Display(orientation=orientation)), shown)
  report = json.loads((workdir / f"o{orientation}_jpg" / "report.json").read_text())
  assert report["display"] == {"orientation_applied": orientation, "icc_profile": None}
  # report.png shows the photo upright too: its panels are the input as shown and the written output.
  original, anonymized = drawn[f"o{orientation}_jpg"]
  np.testing.assert_array_equal(original, shown)
  np.testing.assert_array_equal(anonymized, out)
  assert report["psnr"] == pytest.approx(float(metrics.psnr(out, shown)), abs=1e-4)


def test_a_colour_profile_is_kept_so_the_photo_looks_the_same(phone_run):
  """A colour-managed viewer (ImageCms to sRGB with the file's own profile) shows the output within 1 grey level
  of the input on average per channel: the profile is written unchanged, no pixel converted."""
  root, workdir, _, profile, _ = phone_run
  out_file = Image.open(workdir / "wide_png" / "anonymized.png")
  assert out_file.info.get("icc_profile") == profile
  source = Image.open(root / "wide.png")
  shown_in = display.to_srgb(np.asarray(source), source.info["icc_profile"]).astype(np.float64)
  shown_out = display.to_srgb(np.asarray(out_file), out_file.info["icc_profile"]).astype(np.float64)
  assert np.abs((shown_out - shown_in).mean(axis=(0, 1))).max() <= 1.0
  # The profile matters: read as sRGB (a viewer without colour management) the input looks different.
  assert np.abs(np.asarray(source).astype(np.float64) - shown_in).mean() > 3.0
  report = json.loads((workdir / "wide_png" / "report.json").read_text())
  assert report["display"]["icc_profile"] == "Adobe-like RGB test profile"


def test_heic_is_read_through_the_optional_extra(tmp_path, monkeypatch):
  image = synthetic.make_dataset(seed=5, num_devices=1, num_flatfield=0, num_natural=1, height=32,
                                 width=48).natural[0]
  pillow_heif = pytest.importorskip("pillow_heif")
  pillow_heif.register_heif_opener()
  Image.fromarray(image).save(tmp_path / "phone.heic", quality=95)
  got = io.read_image(tmp_path / "phone.heic")
  # Lossy HEVC with 4:2:0 chroma: the same picture (correlation) and colour (channel means), not the same pixels.
  assert got.shape == image.shape and np.corrcoef(got.ravel(), image.ravel())[0, 1] > 0.95
  np.testing.assert_allclose(got.mean(axis=(0, 1)), image.mean(axis=(0, 1)), atol=2.0)
  assert display.read_display(tmp_path / "phone.heic").orientation == 1
  monkeypatch.setitem(sys.modules, "pillow_heif", None)  # the extra not installed
  with pytest.raises(io.InputError, match=r"pip install -e '\.\[heif\]'"):
    io.read_image(tmp_path / "phone.heic")
