"""bnconvert.fold: BatchNorm (+ Scale) folded into the preceding Convolution / InnerProduct."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import CAFFE_REF, assert_close, need_shared

from bnconvert.caffe.graph import load_net
from bnconvert.fold import fold_batchnorm
from bnconvert.testing import random_caffemodel, random_inputs, run_keras


def _convert(net):
    from bnconvert.c2k import convert_net

    model, report, _ = convert_net(net)
    return model, report


def _outputs(net, inputs):
    model, report = _convert(net)
    outs = run_keras(model, inputs, list(report["inputs"]))
    return dict(zip(report["outputs"], outs)), model


def _layer_types(model):
    return [type(layer).__name__ for layer in model.layers]


def _check_consistent(net):
    """The graph tables agree with the layer list after folding."""
    produced = {t for L in net.layers for t in L.tops}
    assert set(net.producer) == produced
    assert set(net.caffe_name) == produced
    for L in net.layers:
        for b in L.bottoms:
            assert b in produced, f"{L.name} reads a removed blob {b}"
            assert any(c is L for c in net.consumers[b])
    for b, users in net.consumers.items():
        assert b in produced and all(u in net.layers for u in users)
    assert all(o in produced for o in net.outputs)
    assert [L.index for L in net.layers] == list(range(len(net.layers)))


def test_resnet50_slim_folded_matches_caffe_and_unfolded():
    ref_dir = need_shared("caffe-ref/resnet50_slim")
    proto, weights = ref_dir / "deploy.prototxt", ref_dir / "weights.caffemodel"
    inputs = dict(np.load(ref_dir / "input.npz"))
    ref = np.load(ref_dir / "ref.npz")
    outs = ["fc1000", "prob"]
    plain = load_net(proto, weights, outputs=outs)
    folded_net = load_net(proto, weights, outputs=outs)
    folded = fold_batchnorm(folded_net)
    n_bn = sum(L.type == "BatchNorm" for L in plain.layers)
    assert n_bn == 53 and len(folded) == n_bn
    assert all(s is not None for _, s, _ in folded)
    assert not any(L.type in ("BatchNorm", "Scale") for L in folded_net.layers)
    _check_consistent(folded_net)
    assert [folded_net.caffe_name[o] for o in folded_net.outputs] == outs

    got, model = _outputs(folded_net, inputs)
    want, _ = _outputs(plain, inputs)
    assert "BatchNormalization" not in _layer_types(model)
    for name in outs:
        assert_close(got[name], ref[name], f"folded {name} vs Caffe")
        assert_close(got[name], want[name], f"folded {name} vs unfolded")


def test_bn_factor_chain_folds_in_place_and_consecutive_batchnorms():
    ref_dir = need_shared("caffe-ref/bn_factor")
    proto, weights = ref_dir / "deploy.prototxt", ref_dir / "weights.caffemodel"
    inputs = dict(np.load(ref_dir / "input.npz"))
    ref = np.load(ref_dir / "ref.npz")
    net = load_net(proto, weights)
    folded = fold_batchnorm(net)
    # bn3 follows scale2; once bn2/scale2 are folded into conv2, bn3 reads conv2 and folds too.
    assert folded == [("bn1", "scale1", "conv1"), ("bn2", "scale2", "conv2"), ("bn3", None, "conv2")]
    _check_consistent(net)
    relu = net.layer("relu1")
    assert relu.bottoms == ["conv1"] and relu.tops == ["conv1#3"]  # conv1 -> bn -> scale -> relu, in place
    assert net.layer("conv1").param.convolution_param.bias_term  # conv1 had no bias: it gets one
    assert not net.param.layer[1].convolution_param.bias_term  # the parsed NetParameter is unchanged
    got, _ = _outputs(net, inputs)
    assert_close(got["sig"], ref["sig"], "folded sig vs Caffe")


TWO_CONSUMERS = """
name: "two_consumers"
input: "data"
input_shape { dim: 1 dim: 4 dim: 9 dim: 11 }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "conv1" top: "bn1" }
layer { name: "scale1" type: "Scale" bottom: "bn1" top: "scale1" scale_param { bias_term: true } }
layer { name: "side" type: "ReLU" bottom: "conv1" top: "side" }
layer { name: "sum" type: "Eltwise" bottom: "scale1" bottom: "side" top: "sum" }
"""

OUTPUT_NAMES = """
name: "output_names"
input: "data"
input_shape { dim: 2 dim: 6 }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 5 } }
layer { name: "bn" type: "BatchNorm" bottom: "ip" top: "bn" batch_norm_param { eps: 0.01 } }
layer { name: "sc" type: "Scale" bottom: "bn" top: "sc" scale_param { bias_term: false } }
layer { name: "ipt" type: "InnerProduct" bottom: "data" top: "ipt"
  inner_product_param { num_output: 3 bias_term: false transpose: true } }
layer { name: "bnt" type: "BatchNorm" bottom: "ipt" top: "ipt" }
"""


def _write_net(tmp_path, text, seed=3):
    proto = tmp_path / "net.prototxt"
    proto.write_text(text)
    weights = tmp_path / "net.caffemodel"
    random_caffemodel(proto, weights, seed=seed)
    return proto, weights


def test_conv_output_with_two_consumers_is_not_folded(tmp_path):
    proto, weights = _write_net(tmp_path, TWO_CONSUMERS)
    net = load_net(proto, weights)
    before = [(L.name, list(L.bottoms), list(L.tops)) for L in net.layers]
    kernel = net.layer("conv1").blobs[0].copy()
    assert fold_batchnorm(net) == []
    assert [(L.name, L.bottoms, L.tops) for L in net.layers] == before
    np.testing.assert_array_equal(net.layer("conv1").blobs[0], kernel)
    _, model = _outputs(net, random_inputs(net))
    assert "BatchNormalization" in _layer_types(model)


def test_batch_statistics_are_not_folded(tmp_path):
    proto, weights = _write_net(tmp_path, TWO_CONSUMERS.replace('bottom: "conv1" top: "side"',
                                                                'bottom: "data" top: "side"'))
    net = load_net(proto, weights, phase="TRAIN")  # no use_global_stats: batch statistics in TRAIN
    assert fold_batchnorm(net) == []
    net = load_net(proto, weights)  # one consumer now, stored statistics in TEST
    assert fold_batchnorm(net) == [("bn1", "scale1", "conv1")]


@pytest.mark.parametrize("seed", [0, 5])
def test_inner_product_outputs_keep_their_caffe_names(tmp_path, seed):
    proto, weights = _write_net(tmp_path, OUTPUT_NAMES, seed=seed)
    plain = load_net(proto, weights)
    net = load_net(proto, weights)
    assert fold_batchnorm(net) == [("bn", "sc", "ip"), ("bnt", None, "ipt")]
    _check_consistent(net)
    assert [net.caffe_name[o] for o in net.outputs] == [plain.caffe_name[o] for o in plain.outputs]
    assert net.outputs == ["ipt", "ip"] and net.caffe_name["ip"] == "sc"  # sorted by Caffe name: ipt, sc
    inputs = random_inputs(plain, seed=seed)
    got, model = _outputs(net, inputs)
    want, _ = _outputs(plain, inputs)
    assert set(got) == {"sc", "ipt"} and "sc" in [layer.name for layer in model.layers]
    for name in want:
        assert_close(got[name], want[name], f"folded {name} vs unfolded")
