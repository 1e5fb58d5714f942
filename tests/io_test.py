"""Tests for the file boundary: decoding, conversions, crops, fingerprints, atomic writes, clear errors."""

import json

import numpy as np
import pytest
from PIL import Image

from dippas_jax import io


def _rgb(h=20, w=30, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_png_round_trip_and_no_metadata(tmp_path):
  im = _rgb()
  io.write_png(tmp_path / "a.png", im)
  np.testing.assert_array_equal(io.read_image(tmp_path / "a.png"), im)
  with Image.open(tmp_path / "a.png") as pil:
    assert pil.info == {}, pil.info
    assert dict(pil.getexif()) == {}
  raw = (tmp_path / "a.png").read_bytes()
  for chunk in (b"eXIf", b"iTXt", b"tEXt", b"zTXt", b"iCCP", b"tIME"):
    assert chunk not in raw
  assert not list(tmp_path.glob(".*partial")), "temporary file left behind"


def test_jpeg_decodes_like_pillow_without_exif_rotation(tmp_path):
  im = _rgb(32, 48)
  exif = Image.Exif()
  exif[0x0112] = 6  # Orientation: rotate 90° — must NOT be applied.
  Image.fromarray(im).save(tmp_path / "a.jpg", quality=95, exif=exif)
  out = io.read_image(tmp_path / "a.jpg")
  assert out.shape == (32, 48, 3) and out.dtype == np.uint8
  np.testing.assert_array_equal(out, np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB")))


def test_grey_and_opaque_rgba_are_converted_with_a_warning(tmp_path):
  g = _rgb()[..., 0]
  Image.fromarray(g).save(tmp_path / "g.png")
  with pytest.warns(UserWarning, match="grey"):
    out = io.read_image(tmp_path / "g.png")
  np.testing.assert_array_equal(out, np.repeat(g[..., None], 3, -1))
  rgba = np.concatenate([_rgb(), np.full((20, 30, 1), 255, np.uint8)], -1)
  Image.fromarray(rgba).save(tmp_path / "o.png")
  with pytest.warns(UserWarning, match="alpha"):
    np.testing.assert_array_equal(io.read_image(tmp_path / "o.png"), rgba[..., :3])


def test_translucent_rgba_is_an_error(tmp_path):
  rgba = np.concatenate([_rgb(), np.full((20, 30, 1), 128, np.uint8)], -1)
  Image.fromarray(rgba).save(tmp_path / "t.png")
  with pytest.raises(io.InputError, match=r"t\.png.*transparent"):
    io.read_image(tmp_path / "t.png")


def test_16bit_grey_png_and_rgb_tiff_scale_to_255(tmp_path):
  import tifffile
  g16 = np.array([[0, 257, 65535]], np.uint16)
  Image.fromarray(g16).save(tmp_path / "g16.png")
  with pytest.warns(UserWarning):
    out = io.read_image(tmp_path / "g16.png")
  assert out.dtype == np.float32
  np.testing.assert_allclose(out[0, :, 0], [0.0, 1.0, 255.0], rtol=1e-6)
  rgb16 = np.random.default_rng(1).integers(0, 65536, (6, 7, 3)).astype(np.uint16)
  tifffile.imwrite(tmp_path / "c16.tif", rgb16)
  np.testing.assert_allclose(io.read_image(tmp_path / "c16.tif"), rgb16 / 257.0, rtol=1e-6)


def test_truncated_and_corrupt_jpeg_name_the_file(tmp_path):
  Image.fromarray(_rgb(64, 64)).save(tmp_path / "ok.jpg")
  data = (tmp_path / "ok.jpg").read_bytes()
  (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
  (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
  for name in ("trunc.jpg", "junk.jpg"):
    with pytest.raises(io.InputError, match=name.replace(".", r"\.") + ".*(corrupt|truncated)"):
      io.read_image(tmp_path / name)
  with pytest.raises(io.InputError, match="no such file"):
    io.read_image(tmp_path / "missing.jpg")


def test_center_crop_matches_reference_rule():
  a = np.arange(7 * 10).reshape(7, 10)
  np.testing.assert_array_equal(io.center_crop(a, 3, 4), a[2:5, 3:7])  # (7−3)//2, (10−4)//2.
  np.testing.assert_array_equal(io.center_crop(a, 4, 5), a[1:5, 2:7])
  # Dresden D70 geometry (SPEC §1.10): 2000×3008, 512 crop starts at (744, 1248).
  big = np.zeros((2000, 3008), np.uint8)
  big[744, 1248] = 1
  assert io.center_crop(big, 512, 512)[0, 0] == 1
  with pytest.raises(io.InputError, match=r"photo\.jpg: image is 7×10, smaller than the 8×8 crop"):
    io.center_crop(a, 8, 8, name="photo.jpg")


def test_list_images_folder_glob_manifest_and_empty(tmp_path):
  for name in ("Cam_A_1.png", "Cam_A_2.png", "Cam_B_1.png"):
    io.write_png(tmp_path / name, _rgb())
  (tmp_path / "notes.txt").write_text("x")
  recs = io.list_images(str(tmp_path))
  assert [r.path.name for r in recs] == ["Cam_A_1.png", "Cam_A_2.png", "Cam_B_1.png"]
  assert [r.device for r in recs] == ["Cam_A", "Cam_A", "Cam_B"]
  assert len(io.list_images(str(tmp_path / "Cam_A_*.png"))) == 2
  (tmp_path / "manifest.csv").write_text("file,device,kind\nCam_A_1.png,A,flatfield\nCam_B_1.png,B,natural\n")
  recs = io.list_images(str(tmp_path / "manifest.csv"), kind="natural")
  assert [(r.path.name, r.device) for r in recs] == [("Cam_B_1.png", "B")]
  (tmp_path / "empty").mkdir()
  with pytest.raises(io.InputError, match="empty: no images"):
    io.list_images(str(tmp_path / "empty"))


def test_every_part_of_a_list_must_name_something(tmp_path):
  io.write_png(tmp_path / "a.png", _rgb())
  assert len(io.list_images(f"{tmp_path / 'a.png'},{tmp_path}")) == 2
  with pytest.raises(io.InputError, match=r"missing\.png: no such file or folder"):
    io.list_images(f"{tmp_path / 'a.png'},{tmp_path / 'missing.png'}")  # not silently dropped
  with pytest.raises(io.InputError, match=r"\*\.jpg: no images there"):
    io.list_images(f"{tmp_path / 'a.png'},{tmp_path / '*.jpg'}")
  (tmp_path / "manifest.csv").write_text("file,device\na.png,A\ngone.png,A\n")
  with pytest.raises(io.InputError, match="1 listed file.*gone.png"):
    io.list_images(str(tmp_path / "manifest.csv"))
  with pytest.raises(io.InputError, match="missing.npz: no such file"):
    io.resolve_spec(str(tmp_path / "missing.npz"), io.FINGERPRINT_EXTENSIONS)


def test_fingerprint_formats_round_trip(tmp_path):
  from scipy import io as sio
  k = np.random.default_rng(0).standard_normal((16, 12)).astype(np.float32)
  io.save_fingerprint(tmp_path / "cam.npz", k, metadata={"device": "cam", "sigma": 3.0})
  k2, meta = io.load_fingerprint(tmp_path / "cam.npz")
  np.testing.assert_array_equal(k2, k)
  assert meta == {"device": "cam", "sigma": 3.0}
  np.save(tmp_path / "prnu.npy", k.astype(np.float64))
  k3, meta = io.load_fingerprint(tmp_path / "prnu.npy")
  assert k3.dtype == np.float32 and meta == {}  # A .npy file names no device: none is invented from its stem.
  np.testing.assert_allclose(k3, k)
  sio.savemat(tmp_path / "fp.mat", {"Fingerprint": k.astype(np.float64)})
  np.testing.assert_allclose(io.load_fingerprint(tmp_path / "fp.mat")[0], k)


def test_fingerprint_errors(tmp_path):
  bad = np.ones((4, 4), np.float32)
  bad[1, 1] = np.nan
  np.save(tmp_path / "nan.npy", bad)
  with pytest.raises(io.InputError, match=r"nan\.npy: fingerprint contains 1 NaN"):
    io.load_fingerprint(tmp_path / "nan.npy")
  np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
  with pytest.raises(io.InputError, match="obj.npy: cannot read"):
    io.load_fingerprint(tmp_path / "obj.npy")  # Never unpickled.
  with pytest.raises(io.InputError, match=r"K: fingerprint is 4×4 but the images are 8×8"):
    io.check_fingerprint(np.zeros((4, 4)), (8, 8), name="K")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
  target = tmp_path / "out.json"
  with pytest.raises(RuntimeError):
    with io.atomic_path(target) as tmp:
      tmp.write_text("half")
      raise RuntimeError("crash")
  assert not target.exists() and list(tmp_path.iterdir()) == []
  io.write_json(target, {"a": np.float32(1.5), "b": np.arange(2)})
  assert json.loads(target.read_text()) == {"a": 1.5, "b": [0, 1]}


def test_json_is_strict_by_construction(tmp_path):
  io.write_json(tmp_path / "s.json", {"ilb_bpp": float("nan"), "psnr": np.inf, "x": [np.float32(np.nan), -np.inf]})
  text = (tmp_path / "s.json").read_text()
  strict = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON token {c}"))
  assert strict == {"ilb_bpp": None, "psnr": "inf", "x": [None, "-inf"]}


def test_partial_files_of_a_killed_writer_are_removed(tmp_path):
  (tmp_path / ".anonymized.png.12345.partial").write_bytes(b"")  # what a kill -9 leaves
  io.write_png(tmp_path / "anonymized.png", _rgb())
  assert io.remove_partials(tmp_path) == 1
  assert sorted(p.name for p in tmp_path.iterdir()) == ["anonymized.png"]


def test_grey_png(tmp_path):
  g = _rgb()[..., 0]
  io.write_png(tmp_path / "g.png", g)
  with Image.open(tmp_path / "g.png") as pil:
    assert pil.mode == "L"
  with pytest.raises(ValueError, match="uint8"):
    io.write_png(tmp_path / "x.png", g.astype(np.float32))


def test_read_usable_images_skips_and_reports(tmp_path, capsys):
  rng = np.random.default_rng(0)
  for name, size in (("a.png", 40), ("b.png", 40), ("small.png", 20)):
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp_path / name)
  (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
  records = io.list_images(str(tmp_path))
  images, kept, skipped = io.read_usable_images(records, crop=(32, 32))
  assert [r.path.name for r in kept] == ["a.png", "b.png"] and len(skipped) == 2
  np.testing.assert_array_equal(images[0], np.asarray(Image.open(tmp_path / "a.png"))[4:36, 4:36])
  assert "broken.jpg" in capsys.readouterr().err
  # Without a crop the first usable size wins; the odd one out is skipped, not a crash.
  _, kept, skipped = io.read_usable_images(records, crop=None, convert=lambda im: im.astype(np.float32))
  assert [r.path.name for r in kept] == ["a.png", "b.png"] and "small.png" in skipped[-1]
  with pytest.raises(io.InputError, match="none of the 1 images"):
    io.read_usable_images(records[1:2], crop=(64, 64))
