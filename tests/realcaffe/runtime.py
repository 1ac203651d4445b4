"""Finding real BVLC pycaffe and running nets in it (in a worker process, see worker.py), for the
tests/conftest.py ``pycaffe`` fixture.

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
WORKER = Path(__file__).with_name("worker.py")
REPLY = "pycaffe-worker: "  # worker.REPLY (worker.py imports numpy only, but is a script, not a module)


def caffe_prefix() -> Path:
    return Path(os.environ.get("BNCONVERT_CAFFE_PREFIX") or DEFAULT_PREFIX)


def _unavailable(reason):
    if os.environ.get("BNCONVERT_REQUIRE_CAFFE") == "1":
        pytest.fail(f"BNCONVERT_REQUIRE_CAFFE=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class PyCaffe:
    """Real pycaffe at ``prefix``, run in one worker process (worker.py), restarted after a Caffe
    abort. ``layer_types`` is the registry of the Caffe build; ``file`` is where 'import caffe' went."""

    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.python_path = prefix / "python"
        self.file = None
        self.layer_types = ()
        self._worker = None
        self._log = None

    def env(self) -> dict:
        """This process's environment with pycaffe importable (for subprocesses)."""
        path = os.pathsep.join(p for p in (str(self.python_path), os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "PYTHONPATH": path, "GLOG_minloglevel": os.environ.get("GLOG_minloglevel", "2")}

    def start(self) -> dict:
        """Start the worker if it is not running; its greeting: {"ok", "file", "layer_types"} or {"ok", "error"}."""
        if self._worker is not None and self._worker.poll() is None:
            return {"ok": True}
        if self._log is None:
            self._log = tempfile.TemporaryFile("w+")
        self._log.seek(0, os.SEEK_END)
        start = self._log.tell()
        self._worker = subprocess.Popen([sys.executable, str(WORKER)], env=self.env(), text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log)
        hello = self._reply(start, "starting pycaffe")
        if hello["ok"]:
            self.file, self.layer_types = hello["file"], tuple(hello["layer_types"])
        return hello

    def forward(self, prototxt, caffemodel, inputs: dict, workdir) -> dict:
        """Every blob (float32, by Caffe name, in Caffe's order) after a TEST forward of the net."""
        workdir = Path(workdir)
        feeds, out = workdir / "pycaffe_inputs.npz", workdir / "pycaffe_blobs.npz"
        np.savez(feeds, **{k: np.ascontiguousarray(v, np.float32) for k, v in inputs.items()})
        self._request({"op": "forward", "prototxt": str(prototxt), "caffemodel": str(caffemodel) if caffemodel else None,
                       "inputs": str(feeds), "out": str(out)}, f"real Caffe on {prototxt}")
        with np.load(out) as blobs:
            return {k: blobs[k] for k in blobs.files}

    def parse_error(self, prototxt):
        """BVLC's own schema (pycaffe's caffe_pb2) parsing the text file: None, or the parse error."""
        reply = self._request({"op": "parse", "prototxt": str(prototxt)}, None)
        return None if reply["ok"] else reply["error"]

    def _request(self, request, what):
        hello = self.start()
        if not hello["ok"]:
            pytest.fail(f"pycaffe does not start: {hello['error']}", pytrace=False)
        start = self._log.tell()
        self._worker.stdin.write(json.dumps(request) + "\n")
        self._worker.stdin.flush()
        reply = self._reply(start, what or request["op"])
        if what and not reply["ok"]:
            pytest.fail(f"{what} failed: {reply['error']}", pytrace=False)
        return reply

    def _reply(self, log_start, what):
        for line in self._worker.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        code = self._worker.wait()  # the worker died: a Caffe CHECK failure (glog's message is in the log)
        self._worker = None
        self._log.seek(log_start)
        pytest.fail(f"{what}: the pycaffe process aborted (exit {code}):\n{self._log.read()[-3000:]}", pytrace=False)

    def close(self):
        if self._worker is not None and self._worker.poll() is None:
            self._worker.stdin.close()
            self._worker.wait(timeout=60)
        self._worker = None


def find_pycaffe(prefix: Path | None = None) -> PyCaffe:
    """pycaffe from ``prefix`` (default :func:`caffe_prefix`), started in its worker, or skip with the reason."""
    prefix = Path(prefix or caffe_prefix())
    so = prefix / "python" / "caffe" / "_caffe.so"
    if not so.exists():
        _unavailable(f"BVLC Caffe is not built at {prefix} (no {so}); build it with "
                     f"'bash ../shared/caffe/build-caffe.sh {prefix}' or set BNCONVERT_CAFFE_PREFIX")
    caffe = PyCaffe(prefix)
    try:
        hello = caffe.start()
    except pytest.fail.Exception as e:  # the process aborted while importing pycaffe
        hello = {"ok": False, "error": str(e)}
    if not hello["ok"]:
        caffe.close()
        _unavailable(f"pycaffe at {prefix / 'python'} does not import in {sys.executable}: {hello['error']}")
    if Path(caffe.file).resolve().parent != (prefix / "python" / "caffe").resolve():
        caffe.close()
        _unavailable(f"'import caffe' found {caffe.file}, not the pycaffe at {prefix}")
    return caffe
