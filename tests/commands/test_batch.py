"""Batch mode (`caffe2keras DIR -o OUTDIR`): every net is converted even when some fail, each net's
status is listed at the end, and the exit status says whether any failed."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from helpers import ROOT

SAMPLE = ROOT / "sample_models" / "mini_resnet"

# Injected into the CLI process and its --jobs workers (spawned with the same environment): the net
# named boom fails with an exception bnconvert does not expect, the net named die kills its process.
SITECUSTOMIZE = textwrap.dedent('''
    import os
    from pathlib import Path

    import bnconvert.commands.caffe_to_keras as c2k

    _real = c2k.convert_one

    def convert_one(prototxt, *args, **kwargs):
        stem = Path(prototxt).stem
        if stem == "boom":
            raise RuntimeError("injected unexpected failure")
        if stem == "die":
            os._exit(3)
        return _real(prototxt, *args, **kwargs)

    c2k.convert_one = convert_one
''')


@pytest.fixture
def batch(tmp_path):
    src, out, hook = tmp_path / "models", tmp_path / "out", tmp_path / "hook"
    for d in (src, out, hook):
        d.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return src, out, hook


def _add(src, *names):
    for n in names:
        shutil.copy(SAMPLE / "deploy.prototxt", src / f"{n}.prototxt")
        shutil.copy(SAMPLE / "weights.caffemodel", src / f"{n}.caffemodel")


def run_batch(src, out, hook, *extra):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "bnconvert", "caffe2keras", src, "-o", out, *map(str, extra)],
                          capture_output=True, text=True, timeout=600, env=env)


def test_one_job_keeps_going_after_an_unexpected_error(batch):
    src, out, hook = batch
    _add(src, "a", "boom", "c")
    (src / "bad.prototxt").write_text("layer { name: 'x' type: 'Convolution' bottom: 'nope' top: 'y' }\n")
    shutil.copy(SAMPLE / "weights.caffemodel", src / "bad.caffemodel")
    r = run_batch(src, out, hook, "--report", out.parent / "batch.json")
    assert r.returncode == 2, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.keras", "c.keras"]  # the nets after the failures too
    assert "injected unexpected failure" in r.stderr and "internal error: RuntimeError" in r.stderr
    assert "bad.prototxt" in r.stderr and "Traceback" not in r.stderr
    status = {line.split()[1]: line.split()[0] for line in r.stdout.splitlines() if line.startswith("  ")}
    assert status == {"a.prototxt": "ok", "bad.prototxt": "FAILED", "boom.prototxt": "FAILED", "c.prototxt": "ok"}
    assert "2/4 converted" in r.stdout and "2 failed: bad.prototxt, boom.prototxt" in r.stdout
    rep = json.loads((out.parent / "batch.json").read_text())
    assert rep["failed"] == 2 and [n["status"] for n in rep["nets"]] == ["converted", "failed", "failed", "converted"]


def test_jobs_keep_going_after_an_error_and_a_dead_worker(batch):
    src, out, hook = batch
    _add(src, "a", "boom", "die", "d")
    r = run_batch(src, out, hook, "--jobs", "2")
    assert r.returncode == 2, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.keras", "d.keras"], (r.stdout, r.stderr)
    assert "injected unexpected failure" in r.stderr and "the conversion process died" in r.stderr
    assert "2/4 converted" in r.stdout and "2 failed: boom.prototxt, die.prototxt" in r.stdout


def test_all_good_exits_zero(batch):
    src, out, hook = batch
    _add(src, "a")
    r = run_batch(src, out, hook, "-q")
    assert r.returncode == 0 and r.stdout == "", (r.stdout, r.stderr)
    assert [p.name for p in out.iterdir()] == ["a.keras"]
