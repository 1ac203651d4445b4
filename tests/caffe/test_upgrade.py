"""bnconvert.caffe.upgrade: malformed legacy declarations are ParseErrors, never tracebacks."""
from __future__ import annotations

import pytest

from bnconvert.caffe import load_net
from bnconvert.caffe.io import pb2
from bnconvert.caffe.upgrade import upgrade_net
from bnconvert.errors import ParseError

from ._nets import write

V1 = """name: "v1"
input: "data"
input_dim: 1
input_dim: 3
input_dim: 8
input_dim: 8
layers { name: "conv" type: CONVOLUTION bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 3 } }
layers { name: "relu" type: RELU bottom: "conv" top: "conv" }
"""


def test_v1_with_crlf_upgrades(tmp_path):
    net = load_net(write(tmp_path, V1.replace("\n", "\r\n").encode()))
    assert [(L.name, L.type) for L in net.layers] == [("input", "Input"), ("conv", "Convolution"), ("relu", "ReLU")]
    assert net.shapes[net.outputs[0]] == (1, 2, 6, 6)


@pytest.mark.parametrize("text, match", [
    ('input: "data"\ninput_dim: 1\ninput_dim: 3\n', "need 8|need 4"),
    ('input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\ninput_shape { dim: 1 }\n',
     "both input_shape and input_dim"),
    ('input: "data"\n', "without input_dim or input_shape"),
    ('input_dim: 1\n', "without any 'input:' name"),
    ('input: "a"\ninput: "b"\ninput_shape { dim: 1 }\n', "2 inputs but 1 input_shape"),
    (V1 + 'layer { name: "x" type: "ReLU" bottom: "conv" top: "x" }\n', "mixes V1 'layers' and V2 'layer'"),
    ('layers { name: "old" layer { name: "old" } }\n', "V0-format"),
])
def test_malformed_declarations(tmp_path, text, match):
    p = write(tmp_path, text)
    with pytest.raises(ParseError, match=match) as ei:
        load_net(p)
    assert ei.value.file == p


def test_v1_type_number_in_a_binary_net_upgrades():
    net = pb2().NetParameter()
    net.layers.add(name="x").type = 3  # a valid number: CONCAT
    upgrade_net(net)
    assert net.layer[0].type == "Concat"


def test_upgrade_is_idempotent(tmp_path):
    net = pb2().NetParameter()
    from bnconvert.caffe.io import read_prototxt

    net = read_prototxt(write(tmp_path, V1))
    first = upgrade_net(net)
    snapshot = net.SerializeToString()
    second = upgrade_net(net)
    assert first["v1_layers"] and first["input_layer"] and not any(second.values())
    assert net.SerializeToString() == snapshot
