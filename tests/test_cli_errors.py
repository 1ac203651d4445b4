"""The command line on bad input: one line on stderr naming file, layer and problem; exit code 2;
no traceback unless --debug; no output file left behind."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT

GOOD = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
        'layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" '
        'convolution_param { num_output: 4 kernel_size: 3 } }\n')


# TensorFlow's C++ runtime logs these through absl before Python can silence it (reported to the lead).
TF_NOISE = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IWE]\d{4} \d\d:\d\d:\d\d)")


def bnconvert(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "bnconvert", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def one_line_error(r, command, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr)
    err = "\n".join(line for line in r.stderr.strip().splitlines() if not TF_NOISE.match(line))
    assert "Traceback" not in err and "\n" not in err, err
    assert err.startswith(f"bnconvert {command}: error: "), err
    for n in needles:
        assert str(n) in err, (n, err)
    return err


@pytest.fixture
def pair(tmp_path):
    from bnconvert.testing import random_caffemodel

    proto = tmp_path / "net.prototxt"
    proto.write_text(GOOD)
    model = tmp_path / "net.caffemodel"
    random_caffemodel(str(proto), str(model))
    return proto, model


def test_syntax_error(tmp_path, pair):
    proto, model = pair
    proto.write_text(GOOD.replace("kernel_size: 3", "kernel_size 3"))
    out = tmp_path / "o.keras"
    r = bnconvert("caffe2keras", proto, model, "-o", out)
    one_line_error(r, "caffe2keras", proto, "line 2, column", "layer 'conv1' (type Convolution)", "Fix:")
    assert not out.exists()


def test_unknown_enum_via_inspect(tmp_path, pair):
    proto, _ = pair
    proto.write_text(GOOD + 'layer { name: "p" type: "Pooling" bottom: "conv1" top: "p" pooling_param { pool: MEDIAN } }\n')
    one_line_error(bnconvert("inspect", proto), "inspect", proto, "layer 'p' (type Pooling)", "MEDIAN")


def test_non_utf8_prototxt(tmp_path, pair):
    proto, model = pair
    proto.write_bytes(GOOD.encode().replace(b'"conv1" type', b'"conv\xb9" type'))
    one_line_error(bnconvert("caffe2keras", proto, model, "-o", tmp_path / "o.keras"), "caffe2keras",
                   proto, "not UTF-8", "line 2")


@pytest.mark.parametrize("cut", [0, 7, -5])
def test_empty_or_truncated_caffemodel(tmp_path, pair, cut):
    proto, model = pair
    data = model.read_bytes()
    model.write_bytes(data[:cut] if cut else b"")
    out = tmp_path / "o.keras"
    one_line_error(bnconvert("caffe2keras", proto, model, "-o", out), "caffe2keras", model)
    assert not out.exists()


def test_weights_from_another_net(tmp_path, pair):
    proto, model = pair
    proto.write_text(GOOD.replace("num_output: 4", "num_output: 8"))
    one_line_error(bnconvert("caffe2keras", proto, model, "-o", tmp_path / "o.keras"), "caffe2keras",
                   model, "layer 'conv1' (type Convolution)", "(4, 3, 3, 3)", "(8, 3, 3, 3)")


def test_absurd_dimension(tmp_path, pair):
    proto, model = pair
    proto.write_text(GOOD.replace("num_output: 4", "num_output: 2000000000"))
    one_line_error(bnconvert("caffe2keras", proto, model, "-o", tmp_path / "o.keras"), "caffe2keras",
                   proto, "layer 'conv1' (type Convolution)", "over the limit")


def test_output_in_missing_directory(tmp_path, pair):
    proto, model = pair
    out = tmp_path / "missing" / "o.keras"
    r = bnconvert("caffe2keras", proto, model, "-o", out)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "missing" in r.stderr and not out.parent.exists()


def test_debug_shows_the_traceback(tmp_path, pair):
    proto, model = pair
    model.write_bytes(b"")
    r = bnconvert("caffe2keras", "--debug", proto, model, "-o", tmp_path / "o.keras")
    assert r.returncode != 0 and "Traceback" in r.stderr and "ParseError" in r.stderr


def test_keras_lambda_refused_by_keras2caffe(tmp_path):
    import keras

    inp = keras.Input((4, 4, 3))
    path = tmp_path / "lambda.keras"
    keras.Model(inp, keras.layers.Lambda(lambda x: x + 1.0)(inp)).save(path)
    out_p, out_m = tmp_path / "o.prototxt", tmp_path / "o.caffemodel"
    r = bnconvert("keras2caffe", path, "-o", out_p, out_m)
    one_line_error(r, "keras2caffe", path, "Lambda")
    assert not out_p.exists() and not out_m.exists()
