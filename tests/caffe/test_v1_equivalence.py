"""A V1 prototxt + V1 caffemodel (legacy 4-d blobs) read to the same graph and weights as V2."""
import numpy as np

from bnconvert.caffe import load_net
from bnconvert.caffe.io import pb2, write_caffemodel

V1 = """name: "tiny"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 8 input_dim: 8
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
  blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "fc" type: INNER_PRODUCT bottom: "pool1" top: "fc" inner_product_param { num_output: 5 } }
layers { name: "prob" type: SOFTMAX bottom: "fc" top: "prob" }
"""

V2 = """name: "tiny"
layer { name: "input" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool1" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def _weights(rng):
    return {"conv1": [rng.normal(size=(4, 3, 3, 3)), rng.normal(size=(4,))],
            "fc": [rng.normal(size=(5, 64)), rng.normal(size=(5,))]}


def _write_v1_model(path, weights):
    net = pb2().NetParameter(name="tiny")
    for name, blobs in weights.items():
        lp = net.layers.add(name=name, type=pb2().V1LayerParameter.CONVOLUTION if name == "conv1"
                            else pb2().V1LayerParameter.INNER_PRODUCT)
        for b in blobs:
            legacy = (1,) * (4 - b.ndim) + b.shape  # V1 blobs are always 4-d num/channels/height/width
            bp = lp.blobs.add(num=legacy[0], channels=legacy[1], height=legacy[2], width=legacy[3])
            bp.data.extend(b.astype(np.float32).ravel().tolist())
    write_caffemodel(net, path)


def _write_v2_model(path, weights):
    net = pb2().NetParameter(name="tiny")
    for name, blobs in weights.items():
        lp = net.layer.add(name=name, type="Convolution" if name == "conv1" else "InnerProduct")
        for b in blobs:
            bp = lp.blobs.add()
            bp.shape.dim.extend(b.shape)
            bp.data.extend(b.astype(np.float32).ravel().tolist())
    write_caffemodel(net, path)


def test_v1_and_v2_read_to_the_same_graph_and_weights(tmp_path):
    w = _weights(np.random.default_rng(0))
    (tmp_path / "v1.prototxt").write_text(V1)
    (tmp_path / "v2.prototxt").write_text(V2)
    _write_v1_model(tmp_path / "v1.caffemodel", w)
    _write_v2_model(tmp_path / "v2.caffemodel", w)
    a = load_net(tmp_path / "v1.prototxt", tmp_path / "v1.caffemodel")
    b = load_net(tmp_path / "v2.prototxt", tmp_path / "v2.caffemodel")
    assert a.upgrades["v1_layers"] and a.upgrades["input_layer"]
    assert [(L.name, L.type, L.bottoms, L.tops) for L in a.layers] == \
        [(L.name, L.type, L.bottoms, L.tops) for L in b.layers]
    assert a.shapes == b.shapes and a.outputs == b.outputs == ["prob"]
    for La, Lb in zip(a.layers, b.layers):
        assert La.param.SerializeToString() == Lb.param.SerializeToString(), La.name
        assert len(La.blobs) == len(Lb.blobs)
        for x, y in zip(La.blobs, Lb.blobs):
            assert x.shape == y.shape  # the legacy 1x1x5x64 InnerProduct blob becomes 5x64
            np.testing.assert_array_equal(x, y)
