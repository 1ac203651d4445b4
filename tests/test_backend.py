"""Backend choice before Keras is imported (bnconvert/backend.py), in fresh processes.

Blocking an import with ``sys.modules[name] = None`` stands in for a package that is not installed.
"""
import subprocess
import sys
import textwrap

from helpers import ROOT

MINI = ROOT / "sample_models" / "mini_resnet"


def _cli(blocked, args, tmp_path, **env):
    code = textwrap.dedent(f"""
        import sys
        for name in {blocked!r}:
            sys.modules[name] = None
        from bnconvert.cli import main
        rc = main({args!r})
        import os
        print("BACKEND", os.environ.get("KERAS_BACKEND"), "KERAS" if "keras" in sys.modules else "NOKERAS")
        sys.exit(rc)
    """)
    base = {k: v for k, v in __import__("os").environ.items() if k != "KERAS_BACKEND"}
    base["KERAS_HOME"] = str(tmp_path / "keras-home")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**base, **env})


def _convert_args(tmp_path):
    return ["caffe2keras", str(MINI / "deploy.prototxt"), str(MINI / "weights.caffemodel"),
            "-o", str(tmp_path / "m.keras"), "-q"]


def test_no_backend_at_all_is_one_line_saying_what_to_install(tmp_path):
    r = _cli(["tensorflow", "jax", "torch"], _convert_args(tmp_path), tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert "no Keras backend is installed" in lines[0] and "pip install 'bnconvert[tensorflow]'" in lines[0]
    assert "NOKERAS" in r.stdout and not (tmp_path / "m.keras").exists()


def test_explicit_backend_that_is_missing_is_named(tmp_path):
    r = _cli(["torch"], _convert_args(tmp_path), tmp_path, KERAS_BACKEND="torch")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "KERAS_BACKEND=torch, but torch is not installed" in r.stderr


def test_unknown_backend_name(tmp_path):
    r = _cli([], _convert_args(tmp_path), tmp_path, KERAS_BACKEND="theano")
    assert r.returncode == 2 and "KERAS_BACKEND=theano is not a Keras backend" in r.stderr, r.stderr


def test_inspect_needs_no_backend(tmp_path):
    r = _cli(["tensorflow", "jax", "torch"], ["inspect", str(MINI / "deploy.prototxt")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "BACKEND None NOKERAS" in r.stdout
