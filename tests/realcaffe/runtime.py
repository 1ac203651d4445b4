"""Finding real BVLC pycaffe and running nets in it, for the tests/conftest.py ``pycaffe`` fixture.

The prefix is $BNCONVERT_CAFFE_PREFIX (default /opt/bvlc-caffe), as built by
``bash ../shared/caffe/build-caffe.sh PREFIX``. Without it the tests that use the fixture skip with
the reason; with BNCONVERT_REQUIRE_CAFFE=1 (set by .ci/run, which builds Caffe) they fail instead.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

DEFAULT_PREFIX = "/opt/bvlc-caffe"
FORWARD = Path(__file__).with_name("forward.py")
REPLY = "pycaffe-forward: "  # forward.REPLY (forward.py imports caffe, so it is not imported here)


def caffe_prefix() -> Path:
    return Path(os.environ.get("BNCONVERT_CAFFE_PREFIX") or DEFAULT_PREFIX)


def _unavailable(reason):
    if os.environ.get("BNCONVERT_REQUIRE_CAFFE") == "1":
        pytest.fail(f"BNCONVERT_REQUIRE_CAFFE=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class PyCaffe:
    """Real pycaffe at ``prefix``; ``module`` is ``caffe``, imported into this process. Nets run in
    one worker process (forward.py), restarted after a Caffe abort."""

    def __init__(self, prefix: Path, module):
        self.prefix = prefix
        self.module = module
        self.python_path = prefix / "python"
        self._worker = None
        self._log = None

    def env(self) -> dict:
        """This process's environment with pycaffe importable (for subprocesses)."""
        path = os.pathsep.join(p for p in (str(self.python_path), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "PYTHONPATH": path, "GLOG_minloglevel": os.environ.get("GLOG_minloglevel", "2")}

    def forward(self, prototxt, caffemodel, inputs: dict, workdir) -> dict:
        """Every blob (float32, by Caffe name, in Caffe's order) after a TEST forward of the net."""
        workdir = Path(workdir)
        feeds, out = workdir / "pycaffe_inputs.npz", workdir / "pycaffe_blobs.npz"
        np.savez(feeds, **{k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()})
        request = {"prototxt": str(prototxt), "caffemodel": str(caffemodel) if caffemodel else None,
                   "inputs": str(feeds), "out": str(out)}
        worker = self._start()
        log_start = self._log.tell()
        worker.stdin.write(json.dumps(request) + "\n")
        worker.stdin.flush()
        for line in worker.stdout:
            if line.startswith(REPLY):
                reply = json.loads(line[len(REPLY):])
                break
        else:  # the worker died: a Caffe CHECK failure (glog's message is in the log)
            code = worker.wait()
            self._worker = None
            self._log.seek(log_start)
            pytest.fail(f"real Caffe aborted on {prototxt} (exit {code}):\n{self._log.read()[-3000:]}", pytrace=False)
        if not reply["ok"]:
            pytest.fail(f"real Caffe failed on {prototxt}: {reply['error']}", pytrace=False)
        with np.load(out) as blobs:
            return {k: blobs[k] for k in blobs.files}

    def _start(self):
        if self._worker is None or self._worker.poll() is not None:
            if self._log is None:
                self._log = tempfile.TemporaryFile("w+")
            self._log.seek(0, os.SEEK_END)
            self._worker = subprocess.Popen([sys.executable, str(FORWARD)], env=self.env(), text=True,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        return self._worker

    def close(self):
        if self._worker is not None and self._worker.poll() is None:
            self._worker.stdin.close()
            self._worker.wait(timeout=60)
        self._worker = None


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
