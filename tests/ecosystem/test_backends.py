"""bnconvert in an environment with keras + JAX and no TensorFlow (a second, cached venv).

The CLI must pick the installed backend by itself, a converted model must load in a fresh process
and match real Caffe's output, and what needs TensorFlow must say so in one line.
"""
import textwrap

import numpy as np
import pytest

from helpers import assert_close, need_shared

from . import venvs

LOAD_AND_RUN = textwrap.dedent("""
    import sys, numpy as np, bnconvert, keras
    model = keras.saving.load_model(sys.argv[1])
    x = np.load(sys.argv[2])["data"].transpose(0, 2, 3, 1)
    np.save(sys.argv[3], np.asarray(model(x)))
    print("BACKEND", keras.config.backend())
""")


@pytest.fixture(scope="module")
def jax_env():
    return venvs.venv("jax")


def _one_line_error(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert len(lines) == 1 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    return lines[0]


def test_the_jax_extra_brings_no_tensorflow(jax_env):
    r = venvs.run(jax_env, ["python", "-c", "import importlib.util as u; "
                                            "print(u.find_spec('tensorflow') is None, u.find_spec('jax') is not None)"])
    assert r.stdout.split() == ["True", "True"], r.stdout + r.stderr


def test_resnet50_slim_converts_saves_loads_and_matches_caffe_on_jax(jax_env, tmp_path):
    case = need_shared("caffe-ref/resnet50_slim")
    out = tmp_path / "m.keras"
    r = venvs.run(jax_env, ["bnconvert", "caffe2keras", str(case / "deploy.prototxt"),
                            str(case / "weights.caffemodel"), "-o", str(out)])  # no KERAS_BACKEND set
    assert r.returncode == 0, r.stderr
    r = venvs.run(jax_env, ["python", "-c", LOAD_AND_RUN, str(out), str(case / "input.npz"), str(tmp_path / "y.npy")])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "BACKEND jax" in r.stdout
    assert_close(np.load(tmp_path / "y.npy"), np.load(case / "ref.npz")["prob"], "prob")


def test_savedmodel_without_tensorflow_is_one_clear_line(jax_env, tmp_path):
    src = venvs.ROOT / "sample_models" / "mini_resnet"
    out = tmp_path / "saved"
    r = venvs.run(jax_env, ["bnconvert", "caffe2keras", str(src / "deploy.prototxt"), str(src / "weights.caffemodel"),
                            "-o", str(out) + "/"], KERAS_BACKEND="jax")
    line = _one_line_error(r)
    assert "SavedModel" in line and "TensorFlow" in line and "pip install" in line, line
    assert not out.exists()


def test_a_missing_explicit_backend_is_one_clear_line(jax_env, tmp_path):
    src = venvs.ROOT / "sample_models" / "mini_resnet"
    r = venvs.run(jax_env, ["bnconvert", "caffe2keras", str(src / "deploy.prototxt"), str(src / "weights.caffemodel"),
                            "-o", str(tmp_path / "m.keras")], KERAS_BACKEND="tensorflow")
    line = _one_line_error(r)
    assert "KERAS_BACKEND=tensorflow" in line and "not installed" in line, line


def test_tflite_without_tensorflow_is_one_clear_line(jax_env, tmp_path):
    src = venvs.ROOT / "sample_models" / "mini_resnet"
    out = tmp_path / "m.tflite"
    r = venvs.run(jax_env, ["bnconvert", "caffe2keras", str(src / "deploy.prototxt"), str(src / "weights.caffemodel"),
                            "-o", str(out)])
    line = _one_line_error(r)
    assert "TFLite output needs TensorFlow" in line, line
    assert not out.exists()
