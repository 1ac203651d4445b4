"""What real BVLC Caffe's `caffe time` accepts or refuses in a prototxt, bnconvert accepts or refuses too:
a non-repeated field given twice (scalar or message), duplicate layer names without weights,
include and exclude on one layer."""
from __future__ import annotations

import os
import subprocess

import pytest

from bnconvert.caffe import load_net
from bnconvert.errors import ConversionError

from .runtime import _unavailable, caffe_prefix

INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
CONV = 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 2 kernel_size: 1 } }\n'
RELU = 'layer {{ name: "{n}" type: "ReLU" bottom: "{b}" top: "{t}" }}\n'

CASES = {
    "plain": (INPUT + CONV, True),
    "scalar_twice": (INPUT + CONV.replace("num_output: 2", "num_output: 2 num_output: 3"), False),
    "message_twice": (INPUT + CONV.replace("kernel_size: 1 }", "kernel_size: 1 } convolution_param { bias_term: false }"),
                      False),
    "type_twice": (INPUT + CONV.replace('type: "Convolution"', 'type: "Convolution" type: "Convolution"'), False),
    "duplicate_names": (INPUT + RELU.format(n="r", b="data", t="a") + RELU.format(n="r", b="a", t="b"), True),
    "include_and_exclude": (INPUT + CONV.replace("} }\n", "} include { phase: TEST } exclude { stage: 'x' } }\n"),
                            False),
}


def _caffe_accepts(path):
    exe = caffe_prefix() / "bin" / "caffe.bin"
    if not exe.exists():
        _unavailable(f"{exe} not found (build BVLC Caffe with ../shared/caffe/build-caffe.sh)")
    env = {**os.environ, "LD_LIBRARY_PATH": str(caffe_prefix() / "lib"), "GLOG_minloglevel": "2"}
    r = subprocess.run([str(exe), "time", "-model", str(path), "-iterations", "1"], env=env,
                       capture_output=True, text=True, timeout=120)
    return r.returncode == 0, r.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_bnconvert_agrees_with_caffe(tmp_path, case):
    text, expected = CASES[case]
    p = tmp_path / f"{case}.prototxt"
    p.write_text('name: "t"\n' + text)
    accepted, log = _caffe_accepts(p)
    assert accepted == expected, log
    try:
        load_net(str(p))
        ours = True
    except ConversionError:
        ours = False
    assert ours == accepted
