"""Finding real BVLC pycaffe and running nets in it, for the tests/conftest.py ``pycaffe`` fixture.

The prefix is $BNCONVERT_CAFFE_PREFIX (default /opt/bvlc-caffe), as built by
``bash ../shared/caffe/build-caffe.sh PREFIX``. Without it the tests that use the fixture skip with
the reason; with BNCONVERT_REQUIRE_CAFFE=1 (set by .ci/run, which builds Caffe) they fail instead.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DEFAULT_PREFIX = "/opt/bvlc-caffe"
FORWARD = Path(__file__).with_name("forward.py")


def caffe_prefix() -> Path:
    return Path(os.environ.get("BNCONVERT_CAFFE_PREFIX") or DEFAULT_PREFIX)


def _unavailable(reason):
    if os.environ.get("BNCONVERT_REQUIRE_CAFFE") == "1":
        pytest.fail(f"BNCONVERT_REQUIRE_CAFFE=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class PyCaffe:
    """Real pycaffe at ``prefix``; ``module`` is ``caffe``, imported into this process."""

    def __init__(self, prefix: Path, module):
        self.prefix = prefix
        self.module = module
        self.python_path = prefix / "python"

    def env(self) -> dict:
        path = os.pathsep.join(p for p in (str(self.python_path), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "PYTHONPATH": path, "GLOG_minloglevel": os.environ.get("GLOG_minloglevel", "2")}

    def forward(self, prototxt, caffemodel, inputs: dict, workdir) -> dict:
        """Every blob (NCHW float32, by Caffe name, in Caffe's order) after a TEST forward of the net."""
        workdir = Path(workdir)
        feeds, out = workdir / "pycaffe_inputs.npz", workdir / "pycaffe_blobs.npz"
        np.savez(feeds, **{k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()})
        cmd = [sys.executable, str(FORWARD), str(prototxt), str(caffemodel) if caffemodel else "-", str(feeds), str(out)]
        res = subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=600)
        if res.returncode != 0:
            pytest.fail(f"real Caffe failed on {prototxt} (exit {res.returncode}):\n{res.stderr[-3000:]}", pytrace=False)
        with np.load(out) as blobs:
            return {k: blobs[k] for k in blobs.files}


def find_pycaffe(prefix: Path | None = None) -> PyCaffe:
    """Import pycaffe from ``prefix`` (default :func:`caffe_prefix`), or skip with the reason."""
    prefix = Path(prefix or caffe_prefix())
    so = prefix / "python" / "caffe" / "_caffe.so"
    if not so.exists():
        _unavailable(f"BVLC Caffe is not built at {prefix} (no {so}); build it with "
                     f"'bash ../shared/caffe/build-caffe.sh {prefix}' or set BNCONVERT_CAFFE_PREFIX")
    os.environ.setdefault("GLOG_minloglevel", "2")  # read by glog when _caffe.so loads
    if str(prefix / "python") not in sys.path:
        sys.path.insert(0, str(prefix / "python"))
    try:
        import caffe
    except Exception as e:  # ImportError, or protobuf's TypeError from a clashing schema
        _unavailable(f"pycaffe at {prefix / 'python'} does not import in {sys.executable}: "
                     f"{type(e).__name__}: {str(e)[:300]}")
    if Path(caffe.__file__).resolve().parent != (prefix / "python" / "caffe").resolve():
        _unavailable(f"'import caffe' found {caffe.__file__}, not the pycaffe at {prefix}")
    return PyCaffe(prefix, caffe)
