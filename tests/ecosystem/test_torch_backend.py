"""bnconvert on the Keras PyTorch backend (CPU), in a cached venv with keras + torch and no
TensorFlow (tests/ecosystem/venvs.py, spec "torch").

The CLI converts under torch, a converted model loads in a fresh torch process and matches real
Caffe's output, and every bnconvert custom layer (fork and SSD layers included) computes on torch
what it computes on TensorFlow in this process.
"""
import textwrap

import numpy as np
import pytest

from bnconvert.testing import random_caffemodel, random_inputs
from helpers import ROOT, assert_close, need_shared

from . import venvs

CUSTOM_NET = ROOT / "tests" / "nets" / "c2k" / "all_custom_layers.prototxt"

# load a .keras file in a fresh process, run it on an NHWC .npy input, save every output
LOAD_AND_RUN = textwrap.dedent("""
    import sys, numpy as np, bnconvert, keras
    model = keras.saving.load_model(sys.argv[1], safe_mode=True)
    outs = model(np.load(sys.argv[2]), training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    np.savez(sys.argv[3], *[keras.ops.convert_to_numpy(o) for o in outs])
    print("BACKEND", keras.config.backend())
""")


@pytest.fixture(scope="module")
def torch_env():
    return venvs.venv("torch")


def _convert_and_run(env, prototxt, caffemodel, x_nhwc, tmp_path, **backend):
    """caffe2keras, then load + run in a fresh process, both with the environment settings ``backend``
    (none: bnconvert picks torch, the only backend installed); the outputs."""
    out = tmp_path / "m.keras"
    r = venvs.run(env, ["bnconvert", "caffe2keras", str(prototxt), str(caffemodel), "-o", str(out)], **backend)
    assert r.returncode == 0, r.stderr[-3000:]
    np.save(tmp_path / "x.npy", x_nhwc)
    r = venvs.run(env, ["python", "-c", LOAD_AND_RUN, str(out), str(tmp_path / "x.npy"), str(tmp_path / "y.npz")],
                  **backend)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "BACKEND torch" in r.stdout, r.stdout
    y = np.load(tmp_path / "y.npz")
    return [y[f"arr_{i}"] for i in range(len(y.files))]


def test_the_torch_env_has_torch_and_no_tensorflow(torch_env):
    r = venvs.run(torch_env, ["python", "-c", "import importlib.util as u; "
                                              "print(u.find_spec('tensorflow') is None, u.find_spec('torch') is not None)"])
    assert r.stdout.split() == ["True", "True"], r.stdout + r.stderr


def test_resnet50_slim_converts_saves_loads_and_matches_caffe_on_torch(torch_env, tmp_path):
    case = need_shared("caffe-ref/resnet50_slim")
    x = np.load(case / "input.npz")["data"].transpose(0, 2, 3, 1)
    (y,) = _convert_and_run(torch_env, case / "deploy.prototxt", case / "weights.caffemodel", x, tmp_path,
                            KERAS_BACKEND="torch")
    assert_close(y, np.load(case / "ref.npz")["prob"], "prob")


def test_every_custom_layer_computes_on_torch_what_it_computes_on_tensorflow(torch_env, tmp_path):
    import keras

    from bnconvert.c2k import convert_caffe

    if keras.config.backend() != "tensorflow":
        pytest.skip(f"the reference run needs the TensorFlow backend in this process, not {keras.config.backend()}")
    cm = tmp_path / "w.caffemodel"
    net = random_caffemodel(str(CUSTOM_NET), str(cm), seed=4)
    x = random_inputs(net, seed=7)["data"].transpose(0, 2, 3, 1)
    model, _ = convert_caffe(str(CUSTOM_NET), str(cm))
    expected = model(x, training=False)
    expected = [np.asarray(e) for e in (expected if isinstance(expected, (list, tuple)) else [expected])]
    got = _convert_and_run(torch_env, CUSTOM_NET, cm, x, tmp_path)  # no KERAS_BACKEND: picked
    assert len(got) == len(expected)
    for name, g, e in zip(model.output_names, got, expected):
        assert_close(g, e, name)
