"""Small prototxts and caffemodel helpers shared by the tests of bnconvert.caffe."""
from __future__ import annotations

from pathlib import Path

from bnconvert.caffe.io import pb2, read_caffemodel, write_caffemodel

TINY = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "conv1" }
layer { name: "sc1" type: "Scale" bottom: "conv1" top: "conv1" scale_param { bias_term: true } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 5 } }
"""


def write(tmp_path, text, name="net.prototxt"):
    p = Path(tmp_path) / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return str(p)


def net_with(tmp_path, layers, name="net.prototxt", shape=(1, 3, 8, 8)):
    """A prototxt: an Input layer 'data' of ``shape`` followed by ``layers`` (prototxt text)."""
    dims = " ".join(f"dim: {d}" for d in shape)
    text = (f'name: "t"\nlayer {{ name: "data" type: "Input" top: "data" input_param {{ shape {{ {dims} }} }} }}\n'
            + layers)
    return write(tmp_path, text, name)


def tiny_with_weights(tmp_path, seed=0):
    """TINY and a matching random caffemodel. Returns (prototxt, caffemodel)."""
    from bnconvert.testing import random_caffemodel

    proto = write(tmp_path, TINY, "tiny.prototxt")
    model = str(Path(tmp_path) / "tiny.caffemodel")
    random_caffemodel(proto, model, seed=seed)
    return proto, model


def edit_caffemodel(src, dst, fn):
    """Read ``src``, let ``fn(net_param)`` change it, write ``dst``."""
    net = read_caffemodel(src)
    fn(net)
    write_caffemodel(net, dst)
    return str(dst)


def add_layer(net, name, type_, *shapes):
    from bnconvert.caffe.io import array_to_blob
    import numpy as np

    lp = net.layer.add(name=name, type=type_)
    for s in shapes:
        array_to_blob(np.ones(s, np.float32), lp.blobs.add())
    return lp


__all__ = ["TINY", "write", "net_with", "tiny_with_weights", "edit_caffemodel", "add_layer", "pb2"]
