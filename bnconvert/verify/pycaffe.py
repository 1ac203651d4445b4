"""The pycaffe reference: BVLC Caffe (or a fork's pycaffe) run in a process of its own.

Caffe aborts its process on a failed CHECK, so the net runs in a child Python process
(``pycaffe_worker.py``); its failure becomes one line naming pycaffe and Caffe's own reason.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..caffe.graph import INPUT_TYPES
from .refnet import caffe_net
from .references import ReferenceRun, ReferenceUnavailable

RUNTIME = "pycaffe"
WORKER = Path(__file__).with_name("pycaffe_worker.py")


_PROBE = ("import importlib.util, pathlib\n"
          "s = importlib.util.find_spec('caffe')\n"
          "locs = (s.submodule_search_locations or []) if s else []\n"
          "print(any(p.name.startswith('_caffe.') for l in locs for p in pathlib.Path(l).glob('_caffe.*')))\n")


def pycaffe_importable():
    """Whether the worker process will find pycaffe: a package named ``caffe`` holding Caffe's
    ``_caffe`` extension, not just any module of that name. Asked in a child process with the
    worker's environment (this process's own ``sys.path`` is not what the worker sees), without
    importing Caffe anywhere."""
    with tempfile.TemporaryDirectory(prefix="bnconvert-verify-") as tmp:
        try:
            proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, cwd=tmp,
                                  timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return proc.returncode == 0 and proc.stdout.strip() == "True"


def run_pycaffe(net, caffemodel, feeds):
    """Every blob version from pycaffe, by stepping the forward pass one layer at a time."""
    shapes = {k: v.shape for k, v in feeds.items()}
    with tempfile.TemporaryDirectory(prefix="bnconvert-verify-") as tmp:
        d = Path(tmp)
        text = caffe_net(net, shapes)
        (d / "net.prototxt").write_text(text)
        np.savez(d / "inputs.npz", **feeds)
        env = dict(os.environ)
        env.setdefault("GLOG_minloglevel", "2")
        cmd = [sys.executable, str(WORKER), str(d / "net.prototxt"), str(Path(caffemodel).resolve()), net.phase,
               str(d / "inputs.npz"), str(d / "out.npz")]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp)
        except OSError as e:
            raise ReferenceUnavailable(RUNTIME, f"cannot start Python: {e.strerror or e}") from None
        info = _last_json(proc.stdout)
        if proc.returncode != 0 or info is None or "error" in info:
            raise ReferenceUnavailable(RUNTIME, failure_reason(proc, info, text))
        with np.load(d / "out.npz", allow_pickle=False) as z:
            raw = {k: np.asarray(z[k]) for k in z.files}
    ours = {L.name: L for L in net.layers if L.type not in INPUT_TYPES}
    values = {}
    for i, (lname, tops) in enumerate(zip(info["layers"], info["tops"])):
        L = ours.get(lname)
        if L is None or len(tops) != len(L.tops):
            continue  # an input, or a split layer Caffe inserted itself
        for j, bid in enumerate(L.tops):
            values[bid] = raw[f"{i}:{j}"]
    return ReferenceRun(values, "caffe (pycaffe)", f"Caffe {info.get('version', 'unknown version')}")


def _layer_at(text, line):
    """The name of the layer whose block holds 1-based ``line`` of a prototxt we wrote, or None."""
    name = None
    for ln in text.splitlines()[:line]:
        if ln.startswith("  name: "):
            name = ln[len("  name: "):].strip().strip('"')
        elif ln == "layer {":
            name = None
    return name


def _last_json(stdout):
    for line in reversed((stdout or "").strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    return None


_PARSE = re.compile(r"Error parsing text-format [\w.]+: (\d+):\d+: (.*)")


def failure_reason(proc, info, text=""):
    """Caffe's reason for a failed run, as one line: the failed CHECK, or the Python error; a field
    its schema does not know is named with its layer (a fork's field BVLC Caffe cannot read)."""
    if info is not None and info.get("error") == "import":
        return f"'import caffe' failed ({info.get('message')})"
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() if ln.strip()]
    for ln in lines:
        m = _PARSE.search(ln)
        if m:
            layer = _layer_at(text, int(m.group(1)))
            return f"its schema cannot read the net: {m.group(2).rstrip('.')}" + (f" (layer '{layer}')" if layer else "")
    fatal = [ln for ln in lines if ln[:1] == "F" and "] " in ln]  # glog: F<mmdd> <time> <tid> file:line] msg
    if fatal:
        msg = fatal[-1].split("] ", 1)[1]
    else:
        tail = [ln for ln in lines if not ln.startswith(("***", "@", "File ", "Traceback", "^"))]
        msg = tail[-1] if tail else f"the process ended with status {proc.returncode}"
    if " (known types:" in msg:
        msg = msg.split(" (known types:")[0]
    return msg.replace("Check failed: registry.count(type) == 1 (0 vs. 1) ", "")
