r"""prnu-python's example protocol (its example.py) through the drop-in, on the shared Dresden photos.

  python scripts/prnu_python_example.py
  PYTHONPATH=<prnu-python checkout> python scripts/prnu_python_example.py   # and the reference, timed beside

Fingerprints of every device from its flat-fields (centre 512², `extract_multiple_aligned`), residuals of the
natural photos (`extract_single`), `aligned_cc`, `crosscorr_2d` + `pce`, `gt`, `stats`: the example's code with
`import prnu` replaced by `from dippas_jax import prnu_python as prnu`. Prints the AUCs beside the reference's
(`../shared/reference/prnu_python/results.json`: cc 0.971, ncc 0.961, pce 0.801) and the wall time; when the real
`prnu` package is importable, runs it the same way in a process without JAX (its pool forks) and prints the speed
ratio (its own numpy, its pool of cpu_count() processes).
"""

from __future__ import annotations

import importlib
import json
import pathlib
import subprocess
import sys
import time
from multiprocessing import Pool, cpu_count

import numpy as np
from absl import app
from absl import flags
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[1]
_SHARED = flags.DEFINE_string("shared", str(REPO.parent / "shared"), "The shared folder (data, reference).")
_REFERENCE_ONLY = flags.DEFINE_bool("reference_only", False, "Internal: run the real `prnu` package in this "
                                    "process (no JAX loaded, so its process pool can fork) and print JSON.")


def protocol(prnu, data: pathlib.Path, *, pool: bool) -> dict:
  """The example's steps with the module `prnu`; {'auc': {cc, ncc, pce}, 'seconds'}."""
  t0 = time.perf_counter()
  ff = sorted((data / "flatfield").glob("*.JPG"))
  nat = sorted((data / "natural").glob("*.JPG"))
  ff_device = np.array([p.name.rsplit("_", 1)[0] for p in ff])
  nat_device = np.array([p.name.rsplit("_", 1)[0] for p in nat])
  devices = sorted(np.unique(ff_device))
  k = []
  for device in devices:
    imgs = [prnu.cut_ctr(np.asarray(Image.open(p)), (512, 512, 3)) for p, d in zip(ff, ff_device) if d == device]
    k += [prnu.extract_multiple_aligned(imgs, processes=cpu_count())]
  k = np.stack(k, 0)
  imgs = [prnu.cut_ctr(np.asarray(Image.open(p)), (512, 512, 3)) for p in nat]
  if pool:
    with Pool(cpu_count()) as p:
      w = np.stack(p.map(prnu.extract_single, imgs), 0)
  else:
    w = np.stack([prnu.extract_single(im) for im in imgs], 0)
  gt = prnu.gt(devices, nat_device)
  scores = prnu.aligned_cc(k, w)
  pce = np.zeros((len(devices), len(nat_device)))
  for i, fk in enumerate(k):
    for j, nw in enumerate(w):
      pce[i, j] = prnu.pce(prnu.crosscorr_2d(fk, nw))["pce"]
  auc = {"cc": prnu.stats(scores["cc"], gt)["auc"], "ncc": prnu.stats(scores["ncc"], gt)["auc"],
         "pce": prnu.stats(pce, gt)["auc"]}
  return {"auc": auc, "seconds": time.perf_counter() - t0}


def _reference(data: pathlib.Path) -> dict:
  """The real `prnu` package (its numpy, its process pool) in this process; {'error': ...} if it fails."""
  try:
    reference = importlib.import_module("prnu")
  except ImportError:
    return {"error": "the reference package `prnu` is not importable (PYTHONPATH=<prnu-python checkout>)"}
  note = ""
  if int(np.__version__.split(".")[0]) >= 2:  # its inten_scale computes -1 * uint8: OverflowError on numpy 2
    def inten_scale(im):  # the reference's own formula, as numpy 1 evaluated it
      out = np.exp(-1 * (im.astype(np.int16) - 252) ** 2 / 6)
      out[im < 252] = im[im < 252] / 252
      return out
    reference.functions.inten_scale = inten_scale
    note = "numpy 2: its inten_scale (an OverflowError here) evaluated in int16, as numpy 1 did"
  try:
    return {**protocol(reference, data, pool=True), "note": note}
  except Exception as e:  # pylint: disable=broad-except
    return {"error": f"the reference failed: {type(e).__name__}: {e}"}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  shared = pathlib.Path(_SHARED.value)
  data = shared / "data" / "dresden"
  if _REFERENCE_ONLY.value:
    print(json.dumps(_reference(data)))
    return
  from dippas_jax import prnu_python  # pylint: disable=g-import-not-at-top  (JAX only in this process)
  want = json.loads((shared / "reference" / "prnu_python" / "results.json").read_text())["auc"]
  cold = protocol(prnu_python, data, pool=False)
  ours = protocol(prnu_python, data, pool=False)  # again, compiled: what a longer script pays per image
  print("AUC      drop-in  reference (results.json)")
  for name in ("cc", "ncc", "pce"):
    print(f"{name:<8s} {ours['auc'][name]:.3f}    {want[name]:.3f}")
  print(f"drop-in: {cold['seconds']:.1f} s with compilation, {ours['seconds']:.1f} s compiled (one process, device "
        "batches)", flush=True)
  child = subprocess.run([sys.executable, __file__, "--reference_only", f"--shared={shared}"], capture_output=True,
                         text=True, check=False)
  lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
  theirs = json.loads(lines[-1]) if lines else {"error": child.stderr[-300:]}
  if "error" in theirs:
    print(theirs["error"])
    return
  print(f"reference: {theirs['seconds']:.1f} s ({cpu_count()} processes); AUCs "
        + ", ".join(f"{k} {v:.3f}" for k, v in theirs["auc"].items())
 + f"; the drop-in {theirs['seconds'] / ours['seconds']:.1f}× faster compiled, "
        + f"{theirs['seconds'] / cold['seconds']:.1f}× with its compilation" + (f" ({theirs['note']})"
                                                                                 if theirs["note"] else ""))


if __name__ == "__main__":
  app.run(main)
