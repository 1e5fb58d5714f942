"""`dippas-anonymize` as a user runs it: output names, resume rules, the quality target, bad input, kill -9."""

import dataclasses
import json
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from dippas_jax import io
from dippas_jax import synthetic
from dippas_jax.configs import anonymize as anonymize_config
from dippas_jax.dippas import anonymize
from dippas_jax.jobs import anonymize as anonymize_job
from dippas_jax.jobs import anonymize_report
from dippas_jax.jobs import common
from dippas_jax.prnu import denoise
from dippas_jax.prnu import metrics

# One xdist worker runs this module (`--dist loadgroup`): the `first_run` fixture and the compiled runner of
# `_config()` are then made once, and every in-process run below reuses them.
pytestmark = pytest.mark.xdist_group("anonymize_job")


# The tiny DIP for 64² crops, 20 iterations, two photos per batch: one compiled runner for the module, which the
# commands below (given the same fields as flags) load from the persistent compilation cache. τ = 12 dB is reached
# within 20 iterations of the tiny net.
_FIELDS = {"dip.max_steps": 20, "dip.runner.chunk_size": 10, "batch_size": 2, "trace_every": 5, "tau": 12.0}
_FLAGS = [f"--config={anonymize_config.__file__}:tiny"] + [f"--config.{k}={v}" for k, v in _FIELDS.items()]


def _config(**fields):
  config = anonymize_config.get_config("tiny")
  for key, value in {**_FIELDS, **fields}.items():
    anonymize_config.arguments.set_field(config, key, value)
  return config


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """a/IMG_0001.jpg, b/IMG_0001.jpg (same name, other photo), b/IMG_0002.png, c/grey.png (grey), 80×96; k.npy."""
  root = tmp_path_factory.mktemp("photos")
  data = synthetic.make_dataset(seed=1, num_devices=1, num_flatfield=0, num_natural=4, height=80, width=96)
  exif = Image.Exif()
  exif[0x010F] = "SyntheticCam"  # Make: the output must not carry it.
  (root / "a").mkdir()
  (root / "b").mkdir()
  (root / "c").mkdir()
  Image.fromarray(data.natural[0]).save(root / "a" / "IMG_0001.jpg", quality=95, exif=exif)
  Image.fromarray(data.natural[1]).save(root / "b" / "IMG_0001.jpg", quality=95, exif=exif)
  io.write_png(root / "b" / "IMG_0002.png", data.natural[2])
  io.write_png(root / "c" / "grey.png", data.natural[3][..., 1])
  np.save(root.parent / "k.npy", data.prnu[0])
  return root


def _run_job(inputs, workdir, config=None, **kwargs):
  fingerprint = str(pathlib.Path(str(inputs).split(",")[0].split("*")[0]).parents[0] / "k.npy")
  return anonymize_job.anonymize_job(inputs=str(inputs), workdir=str(workdir), config=config or _config(),
                                     fingerprint=kwargs.pop("fingerprint", fingerprint), **kwargs)


def _all(photos) -> str:
  return f"{photos}/**/*"


@pytest.fixture(scope="module")
def first_run(photos, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("out")
  summary = _run_job(_all(photos), workdir, fingerprint=str(photos.parent / "k.npy"))
  return workdir, summary, {p.relative_to(workdir): p.read_bytes() for p in workdir.rglob("anonymized.png")}


def test_same_file_names_in_two_folders_get_two_results(photos, first_run):
  workdir, summary, pngs = first_run
  assert sorted(str(p.parent) for p in pngs) == ["a/IMG_0001_jpg", "b/IMG_0001_jpg", "b/IMG_0002_png",
                                                 "c/grey_png"]
  assert summary["anonymized"] == 4 and summary["photos"] == 4 and not summary["skipped"]
  first = io.read_image(workdir / "a/IMG_0001_jpg/anonymized.png")
  second = io.read_image(workdir / "b/IMG_0001_jpg/anonymized.png")
  assert not np.array_equal(first, second)  # two photos, two results: nothing overwritten
  for name, source in (("a/IMG_0001_jpg", "a/IMG_0001.jpg"), ("b/IMG_0002_png", "b/IMG_0002.png")):
    report = json.loads((workdir / name / "report.json").read_text())
    original = io.center_crop(io.read_image(photos / source), 64, 64)
    saved = io.read_image(workdir / name / "anonymized.png")
    assert abs(report["psnr"] - float(metrics.psnr(saved, original))) < 1e-6
    assert report["source_sha256"] == common.file_sha256(photos / source)
    assert report["pieces"]["iterations_total"] == 20 and report["quality_target_met"]
    assert report["pieces"]["candidates_above_tau_min"]["B16_tau12"] > 0 and report["region"]["mode"] == "centre_crop"
    history = [json.loads(line) for line in (workdir / name / "history.jsonl").read_text().splitlines()]
    assert [h["iteration"] for h in history] == list(range(20)) and history[5]["ncc"] is not None
    assert {h["piece"] for h in history} == {0}
  with Image.open(workdir / "a/IMG_0001_jpg/anonymized.png") as im:
    assert im.mode == "RGB" and im.info == {} and dict(im.getexif()) == {}
  assert b"SyntheticCam" not in (workdir / "a/IMG_0001_jpg/anonymized.png").read_bytes()


def test_a_grey_photo_stays_grey(first_run):
  workdir, _, _ = first_run
  with Image.open(workdir / "c/grey_png/anonymized.png") as im:
    assert im.mode == "L" and im.size == (64, 64)
  assert json.loads((workdir / "c/grey_png/report.json").read_text())["grey"]


def test_resume_computes_exactly_what_an_uninterrupted_run_did(photos, first_run, tmp_path):
  """A piece's result depends only on the piece and the seed (not on what shared the queue): with two photos
  missing, a rerun recomputes them alone, bit for bit."""
  workdir, _, pngs = first_run
  resumed = tmp_path / "resumed"
  for rel, data in pngs.items():  # a copy of the finished run, then two photos lost
    for name in ("anonymized.png", "report.json", "history.jsonl"):
      target = resumed / rel.parent / name
      target.parent.mkdir(parents=True, exist_ok=True)
      target.write_bytes((workdir / rel.parent / name).read_bytes())
  for lost in ("b/IMG_0001_jpg", "c/grey_png"):
    for f in (resumed / lost).iterdir():
      f.unlink()
  summary = _run_job(_all(photos), resumed, fingerprint=str(photos.parent / "k.npy"))
  assert summary["done_before"] == 2 and summary["anonymized"] == 2
  for rel, data in pngs.items():
    assert (resumed / rel).read_bytes() == data, rel


def test_changed_settings_or_source_are_recomputed_not_reported_done(photos, first_run, tmp_path, capsys):
  workdir, _, _ = first_run
  report = json.loads((workdir / "a/IMG_0001_jpg/report.json").read_text())
  status = anonymize_job.photo_status(workdir / "a/IMG_0001_jpg", source_sha=report["source_sha256"],
                                      settings_sha=report["settings_sha256"])
  assert status == "done"
  assert anonymize_job.photo_status(workdir / "a/IMG_0001_jpg", source_sha="other",
                                    settings_sha=report["settings_sha256"]) == "stale"
  assert anonymize_job.photo_status(tmp_path, source_sha="x", settings_sha="y") == "new"
  digest = lambda config: anonymize_job.settings_digest(config, seed=0, fingerprint_sha="k", eval_sha=None)  # noqa
  assert digest(_config()) == digest(_config(batch_size=1))  # batching does not change a photo's result
  assert digest(_config()) != digest(_config(tau=13.0))
  one = tmp_path / "one"  # two photos: one batch of the module's runner (batch size 2)
  one.mkdir()
  (one / "x.png").write_bytes((photos / "b" / "IMG_0002.png").read_bytes())
  (one / "y.png").write_bytes((photos / "c" / "grey.png").read_bytes())
  k = str(photos.parent / "k.npy")
  _run_job(one, tmp_path / "w", fingerprint=k)
  before = json.loads((tmp_path / "w/x_png/report.json").read_text())
  # Another seed (like another τ above, but without compiling another runner): the stored result is stale.
  summary = _run_job(one, tmp_path / "w", fingerprint=k, seed=1)
  assert summary["recomputed"] == 2 and summary["done_before"] == 0
  after = json.loads((tmp_path / "w/x_png/report.json").read_text())
  assert after["settings_sha256"] != before["settings_sha256"] and after["psnr"] != before["psnr"]
  assert "recomputing" in capsys.readouterr().out


def test_missing_the_quality_target_is_reported(photos, tmp_path, capsys):
  # A one-pixel checkerboard of 0 and 255: no image the DIP can fit in 20 iterations is near it (the best
  # constant image is 6 dB away), so no candidate reaches τ = 12 dB.
  checker = (np.indices((64, 64)).sum(0) % 2 * 255).astype(np.uint8)
  io.write_png(tmp_path / "checker.png", np.repeat(checker[..., None], 3, axis=-1))
  summary = _run_job(f"{tmp_path / 'checker.png'},{photos / 'b' / 'IMG_0002.png'}", tmp_path / "out",
                     fingerprint=str(photos.parent / "k.npy"))
  assert [name.rsplit("/", 1)[-1] for name in summary["below_target"]] == ["checker_png"]
  assert common.exit_code(summary) == 1
  report = json.loads(next((tmp_path / "out").rglob("checker_png/report.json")).read_text())
  assert not report["quality_target_met"] and report["pieces"]["candidates_above_tau_min"]["B16_tau12"] == 0
  assert "below the quality target" in capsys.readouterr().err


def test_bad_input_is_an_input_error(photos, tmp_path):
  with pytest.raises(io.InputError, match="missing.jpg: no such file"):
    _run_job(f"{photos / 'a' / 'IMG_0001.jpg'},{photos / 'missing.jpg'}", tmp_path,
             fingerprint=str(photos.parent / "k.npy"))
  with pytest.raises(io.InputError, match="--blind uses each photo's own residual"):
    anonymize_job.anonymize_job(inputs=_all(photos), workdir=str(tmp_path), config=_config(mode="blind"),
                                fingerprint=str(photos.parent / "nothing.npy"))
  np.save(tmp_path / "small.npy", np.zeros((32, 32), np.float32))
  summary = anonymize_job.anonymize_job(inputs=str(photos / "a"), workdir=str(tmp_path / "w"), config=_config(),
                                        fingerprint=str(tmp_path / "small.npy"))
  assert len(summary["skipped"]) == 1 and "IMG_0001.jpg: the fingerprint is 32×32, smaller than the crop" in summary["skipped"][0]
  with pytest.raises(io.InputError, match=r"42x42 is not a multiple of 4 .*crop to 40x40 or pad to 44x44 \(config field"):
    _run_job(_all(photos), tmp_path, _config(crop=(42, 42)), fingerprint=str(photos.parent / "k.npy"))
  with pytest.raises(io.InputError, match=r"40x40 is not a multiple of 16 .*tile_size in full-resolution mode"):
    _run_job(_all(photos), tmp_path, anonymize_config.get_config("full_resolution=true,tile_size=40"))


def test_jpeg_output_is_scored_as_written(photos, tmp_path):
  summary = _run_job(photos / "b" / "IMG_0002.png", tmp_path, _config(output_format="jpeg", jpeg_quality=85),
                     fingerprint=str(photos.parent / "k.npy"))
  assert summary["anonymized"] == 1
  out = tmp_path / "IMG_0002_png"
  report = json.loads((out / "report.json").read_text())
  assert report["output"] == "anonymized.jpg" and not (out / "anonymized.png").exists()
  with Image.open(out / "anonymized.jpg") as im:
    assert im.format == "JPEG" and dict(im.getexif()) == {} and "icc_profile" not in im.info
  written = io.read_image(out / "anonymized.jpg")
  original = io.center_crop(io.read_image(photos / "b" / "IMG_0002.png"), 64, 64)
  assert report["psnr"] == pytest.approx(float(metrics.psnr(written, original)), abs=1e-6)
  k = io.center_crop(np.load(photos.parent / "k.npy"), 64, 64)
  assert report["reference"]["ncc_after"] == pytest.approx(anonymize_report.scores(written, k, sigma=3.0)["ncc"],
                                                           abs=1e-6)
  assert anonymize_job.photo_status(out, source_sha=report["source_sha256"],
                                    settings_sha=report["settings_sha256"]) == "done"


# Whole photos: 32² tiles with an 8-pixel overlap (the 80×96 photos are 3 × 4 tiles), 20 iterations each; 2 roots
# per photo fit cold, the other tiles warm-started from them (as the recipe), so the kill-and-resume test below
# also resumes warm-started tiles from the roots' weights kept in the tile files.
_WHOLE = {"full_resolution": True, "tile_size": 32, "tile_overlap": 8, "batch_size": 4, "kept.lowpass_sigma": 2.0,
          "warm_start_roots": 2}


@pytest.fixture(scope="module")
def whole_run(photos, tmp_path_factory):
  workdir = tmp_path_factory.mktemp("whole")
  inputs = f"{photos / 'a' / 'IMG_0001.jpg'},{photos / 'b' / 'IMG_0002.png'}"
  summary = _run_job(inputs, workdir, _config(**_WHOLE), fingerprint=str(photos.parent / "k.npy"))
  return inputs, workdir, summary


def test_a_whole_photo_comes_back_whole_with_its_report(photos, whole_run):
  _, workdir, summary = whole_run
  assert summary["anonymized"] == 2
  report = json.loads((workdir / "a/IMG_0001_jpg/report.json").read_text())
  original = io.read_image(photos / "a" / "IMG_0001.jpg")
  saved = io.read_image(workdir / "a/IMG_0001_jpg/anonymized.png")
  assert saved.shape == original.shape == (80, 96, 3)
  assert report["region"]["mode"] == "whole_photo" and report["pieces"]["count"] == 12
  assert abs(report["psnr"] - float(metrics.psnr(saved, original))) < 1e-6
  k = np.load(photos.parent / "k.npy")
  after = anonymize_report.scores(saved, k, sigma=3.0)
  assert report["reference"]["ncc_after"] == pytest.approx(after["ncc"], abs=1e-6)
  assert report["reference"]["pce_after"] == pytest.approx(after["pce"], rel=1e-4)
  # The photo is anonymized: Eq. 2 NCC recomputed through the PRNU core from the written PNG and the original
  # file (not by the report's own function) equals the report's and is a fraction of the photo's own.
  pair = np.stack([original, saved])
  before_ncc, after_ncc = np.asarray(metrics.ncc_eq2(denoise.extract_residual(pair, sigma=3.0), pair, k))
  assert report["reference"]["ncc_before"] == pytest.approx(before_ncc, abs=1e-6)
  assert report["reference"]["ncc_after"] == pytest.approx(after_ncc, abs=1e-6)
  assert abs(after_ncc) < 0.5 * before_ncc
  assert report["ncc_null_band"] == pytest.approx(2.5758 / np.sqrt(80 * 96), rel=1e-4)
  assert report["colour_shift"]["worst"] >= report["colour_shift"]["p999"] > 0
  # The tiles do not show: the seam limit of the whole-photo benchmark. At this size (a tiny net at τ 12 dB) butted
  # tiles stay under it too (tried: a hard switch in the overlap passes): tiling_test holds the cross-fade itself.
  assert report["seam_score"] <= 1.10 and report["timings_s"]["photo"] > 0
  assert not (workdir / "a/IMG_0001_jpg/.tiles").exists()  # the finished tiles are dropped with the photo


def test_a_killed_whole_photo_resumes_from_its_finished_tiles(photos, whole_run, tmp_path, monkeypatch):
  inputs, workdir, _ = whole_run
  saves = []
  real_save = anonymize_job.TileCache.save

  def save_then_die(cache, index, piece):
    real_save(cache, index, piece)
    saves.append(index)
    if len(saves) == 8:
      raise KeyboardInterrupt  # killed after 8 finished tiles (both photos' roots first, then warm tiles)
  monkeypatch.setattr(anonymize_job.TileCache, "save", save_then_die)
  work = tmp_path / "w"
  with pytest.raises(KeyboardInterrupt):
    _run_job(inputs, work, _config(**_WHOLE), fingerprint=str(photos.parent / "k.npy"))
  kept = sorted(work.glob("*/*/.tiles/piece_*.npz"))
  assert len(kept) == 8 and not (work / "a/IMG_0001_jpg/anonymized.png").exists()
  roots = [p for p in kept if "params" in np.load(p).files]
  assert len(roots) == 4  # both photos' roots were done: the rerun warm-starts from the weights in their files
  # Two tile files damaged as a crash or a full disk leaves them: one cut in half, one empty. They are recomputed
  # (TileCache.load's promise), not a crash of the resume.
  damaged = [p for p in kept if p not in roots][:2]
  data = damaged[0].read_bytes()
  damaged[0].write_bytes(data[:len(data) // 2])
  damaged[1].write_bytes(b"")
  monkeypatch.setattr(anonymize_job.TileCache, "save", real_save)
  computed = []
  real_piece = anonymize.piece_result
  monkeypatch.setattr(anonymize, "piece_result", lambda *a, **k: computed.append(1) or real_piece(*a, **k))
  _run_job(inputs, work, _config(**_WHOLE), fingerprint=str(photos.parent / "k.npy"))
  assert len(computed) == 24 - 6  # the 6 intact kept tiles were not recomputed, the 2 damaged ones were
  for name in ("a/IMG_0001_jpg", "b/IMG_0002_png"):  # ... and the photos are bit for bit the uninterrupted ones
    assert (work / name / "anonymized.png").read_bytes() == (workdir / name / "anonymized.png").read_bytes()
  assert not (work / "a/IMG_0001_jpg/.tiles").exists()


def _command(*args):
  return subprocess.Popen([sys.executable, "-m", "dippas_jax.apps.anonymize", *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def test_command_kill_and_resume(photos, tmp_path):
  (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
  work = tmp_path / "out"
  args = [f"--inputs={photos / 'a'},{photos / 'b'},{photos / 'broken.jpg'}", f"--fingerprint={photos.parent / 'k.npy'}",
          f"--workdir={work}", *_FLAGS]
  try:
    proc = _command(*args)
    deadline = time.time() + 240
    while not (work / "a/IMG_0001_jpg/report.json").exists() and proc.poll() is None and time.time() < deadline:
      time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # Killed mid-run: the first photo done, the last one not.
    proc.wait()
    done = len(list(work.rglob("report.json")))
    assert 1 <= done < 3, "the kill did not land mid-run"
    (work / "b/IMG_0002_png").mkdir(parents=True, exist_ok=True)
    (work / "b/IMG_0002_png/.anonymized.png.999.partial").write_bytes(b"")  # what a kill -9 mid-write leaves
    first = (work / "a/IMG_0001_jpg/report.json").stat().st_mtime_ns
    proc = _command(*args)
    out, err = proc.communicate(timeout=300)
  finally:
    (photos / "broken.jpg").unlink()
  assert proc.returncode == 1, err  # broken.jpg is reported and skipped; the others are done.
  assert "broken.jpg" in err and "Traceback" not in err and "UserWarning" not in err
  assert "4 photos (4 for this process)" in out and f"already done {done}" in out
  assert (work / "a/IMG_0001_jpg/report.json").stat().st_mtime_ns == first  # Not recomputed.
  assert not list(work.rglob("*.partial")), "temporary files left behind"
  summary = json.loads((work / "summary.json").read_text())
  assert summary["anonymized"] == 3 - done and summary["done_before"] == done and len(summary["skipped"]) == 1


def test_two_processes_share_the_photos_exactly_once(photos, tmp_path):
  """Two local CPU processes in JAX's multi-process runtime: each takes its batches; together every photo is
  anonymized exactly once."""
  import socket  # pylint: disable=g-import-not-at-top
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  work = tmp_path / "out"
  common_args = [f"--inputs={photos}/**/*", f"--fingerprint={photos.parent / 'k.npy'}", f"--workdir={work}",
                 *_FLAGS, f"--coordinator_address=localhost:{port}", "--num_processes=2"]
  procs = [_command(*common_args, f"--process_id={i}") for i in range(2)]
  outputs = [p.communicate(timeout=300) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err
  shares = [json.loads((work / f"summary_{i}.json").read_text()) for i in range(2)]
  assert [s["anonymized"] for s in shares] == [2, 2]
  reports = sorted(str(p.parent.relative_to(work)) for p in work.rglob("report.json"))
  assert reports == ["a/IMG_0001_jpg", "b/IMG_0001_jpg", "b/IMG_0002_png", "c/grey_png"]


def test_tile_cache_of_other_settings_is_emptied_not_mixed(tmp_path):
  """Killed under settings X, rerun (and killed) under Y, then X again: the X run must not read Y's tiles as its
  own. Pieces are only ever reused under the meta they were written with."""
  piece = anonymize.PieceResult(outputs={(16, 10, 14.0): np.full((8, 8, 3), 7, np.uint8)}, history={},
                                ncc_trace=np.zeros(0, np.float32), num_steps=3, stopped=True, gamma=0.0,
                                best_psnr=30.0, pools={(16, 14.0): 2}, seconds=1.0, params=None)
  x = dict(source_sha="s", settings_sha="x", trace_every=10)
  anonymize_job.TileCache(tmp_path, **x).save(0, piece)
  assert list(anonymize_job.TileCache(tmp_path, **x).load()) == [0]
  y = anonymize_job.TileCache(tmp_path, **{**x, "settings_sha": "y"})
  assert y.load() == {}
  y.save(1, piece)  # Y's tile, under Y's meta
  assert list(anonymize_job.TileCache(tmp_path, **x).load()) == []  # X finds none of Y's
  assert list(anonymize_job.TileCache(tmp_path, **{**x, "trace_every": 5}).load()) == []
  again = anonymize_job.TileCache(tmp_path, **x)
  again.save(2, piece)
  loaded = anonymize_job.TileCache(tmp_path, **x).load()
  assert list(loaded) == [2]
  np.testing.assert_array_equal(loaded[2].outputs[(16, 10, 14.0)], piece.outputs[(16, 10, 14.0)])


def test_a_learned_initialisation_is_used_checked_and_hashed(photos, first_run, tmp_path, capsys):
  """`dip.model.init_weights`: every cold piece starts from the file (the output differs from the random start of
  the first run), a file of the same name with other contents makes the photo be recomputed (its contents are in
  the settings digest), a missing file or one made for another network is bad input naming the field."""
  from dippas_jax.dippas import dip  # pylint: disable=g-import-not-at-top
  from dippas_jax.dippas.dip import parameters  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  workdir, _, outputs = first_run
  settings = dip.DipSettings.from_config(_config().dip)
  weights = tmp_path / "init.npz"
  parameters.save_params(weights, settings, np.array(dip.init_flat(settings, jax.random.key(9))[0]), metadata={})
  config = _config(**{"dip.model.init_weights": str(weights)})
  photo, k = photos / "b" / "IMG_0002.png", str(photos.parent / "k.npy")
  _run_job(photo, tmp_path / "w", config, fingerprint=k)
  first = (tmp_path / "w" / "IMG_0002_png" / "anonymized.png").read_bytes()
  assert first != outputs[pathlib.Path("b/IMG_0002_png/anonymized.png")]
  parameters.save_params(weights, settings, np.array(dip.init_flat(settings, jax.random.key(10))[0]), metadata={})
  capsys.readouterr()
  summary = _run_job(photo, tmp_path / "w", config, fingerprint=k)
  assert summary["recomputed"] == 1 and "recomputing" in capsys.readouterr().out
  assert (tmp_path / "w" / "IMG_0002_png" / "anonymized.png").read_bytes() != first
  with pytest.raises(io.InputError, match="dip.model.init_weights: .*missing.npz: no such weights file"):
    _run_job(photo, tmp_path / "x", _config(**{"dip.model.init_weights": str(tmp_path / "missing.npz")}),
             fingerprint=k)
  other = dataclasses.replace(settings, input_depth=settings.input_depth + 1)
  parameters.save_params(tmp_path / "other.npz", other, np.array(dip.init_flat(other, jax.random.key(0))[0]),
                         metadata={})
  with pytest.raises(io.InputError, match="these weights are for the network"):
    _run_job(photo, tmp_path / "x", _config(**{"dip.model.init_weights": str(tmp_path / "other.npz")}),
             fingerprint=k)
