"""Real Caffe's outputs (../shared/caffe-ref): every case converts, every Keras output matches, and
every blob Caffe recorded matches layer by layer (each layer fed Caffe's own bottoms), so a wrong
BatchNorm factor, eps or pairing shows at the layer that has it."""
import json

import keras
import numpy as np
import pytest

from bnconvert import layout as lay
from bnconvert.c2k import convert_caffe, convert_net
from bnconvert.caffe.graph import load_net
from bnconvert.testing import run_keras

from helpers import CAFFE_REF, ZOO, assert_close, need_shared

CIFAR_ZOO = "bvlc_cifar10_full_sigmoid_bn/cifar10_full_sigmoid_train_test_bn.prototxt"
CASES = {
    "bn_factor": ("deploy.prototxt", None),
    "bn_factor_zero": ("deploy.prototxt", None),
    "pool_ceil": ("deploy.prototxt", None),
    "fc_flatten": ("deploy.prototxt", None),
    "resnet50_slim": ("deploy.prototxt", None),
    "cifar10_bn_trained": ("train_test_input.prototxt", None),
    "cifar10_bn_trained_zoo": (None, {"data": (16, 3, 32, 32)}),  # the original, with Data layers and lr_mult
}


def _case(key):
    folder = need_shared("caffe-ref") / key.replace("_zoo", "")
    proto, shapes = CASES[key]
    proto = need_shared("zoo") / CIFAR_ZOO if proto is None else folder / proto
    inputs = dict(np.load(folder / "input.npz"))
    return proto, folder / "weights.caffemodel", shapes, inputs, np.load(folder / "ref.npz")


@pytest.fixture(scope="module", params=sorted(CASES))
def converted(request):
    proto, weights, shapes, inputs, ref = _case(request.param)
    net = load_net(str(proto), str(weights), input_shapes=shapes)
    model, report, engine = convert_net(net)
    return request.param, net, model, report, engine, inputs, ref


def test_every_case_is_tested():
    folders = {p.name for p in need_shared("caffe-ref").iterdir() if p.is_dir()}
    assert folders == {k.replace("_zoo", "") for k in CASES}


def test_outputs_match_caffe(converted):
    key, net, model, report, engine, inputs, ref = converted
    names = list(report["outputs"])
    assert names, key
    got = run_keras(model, {n: inputs[n] for n in report["inputs"]}, list(report["inputs"]))
    for n, g in zip(names, got):
        assert_close(g, ref[n], f"{key}:{n}")
    meta = json.loads((CAFFE_REF / key.replace("_zoo", "") / "meta.json").read_text())
    if "bn_factors" in meta:
        for bn, f in meta["bn_factors"].items():
            assert report["batchnorm_factors"][bn] == pytest.approx(f, rel=1e-6)


def test_every_blob_matches_caffe_layer_by_layer(converted):
    key, net, model, report, engine, inputs, ref = converted
    check_every_blob_layer_by_layer(key, net, engine, inputs, ref)


def check_every_blob_layer_by_layer(key, net, engine, inputs, ref):
    """For each blob of ``ref`` (Caffe's values by blob name: ref.npz, or real pycaffe's): run the Keras
    ops from its first writer's bottoms (fed Caffe's values) to its final version, and compare."""
    values = {**ref, **inputs}
    checked = 0
    for name in list(ref):
        if name not in net.caffe_name.values() or name in net.inputs:
            continue  # loss/accuracy blobs are not part of the inference graph
        final = net.final_blob(name)
        first = net.producer[name]
        bottoms = first.bottoms
        if final not in engine.tensors:  # a BatchNorm top merged into its Scale's BatchNormalization
            _check_merged_batchnorm(net, engine, values, name, final, key)
            checked += 1
            continue
        if bottoms[0] not in engine.tensors:  # a Scale merged with its BatchNorm: start at the BatchNorm's bottom
            bottoms = net.producer[bottoms[0]].bottoms
        assert all(net.final_blob(net.caffe_name[b]) == b for b in bottoms), f"{name}: bottoms {bottoms}"
        sub = keras.Model([engine.tensors[b] for b in bottoms], engine.tensors[final])
        feeds = [lay.to_keras_array(values[net.caffe_name[b]], engine.layouts[b]) for b in bottoms]
        out = np.asarray(sub(feeds if len(feeds) > 1 else feeds[0], training=False))
        assert_close(lay.to_caffe_array(out, engine.layouts[final]), ref[name], f"{key}:{name}")
        checked += 1
    assert checked == len([n for n in ref if n in net.caffe_name.values() and n not in net.inputs])
    assert checked >= 2


def _check_merged_batchnorm(net, engine, values, name, bid, key):
    """Caffe's BatchNorm output alone equals the merged layer's normalization without gamma/beta."""
    (scale,) = net.consumers[bid]
    assert scale.type == "Scale" and net.producer[bid].type == "BatchNorm", name
    bn = engine.tensors[scale.tops[0]]._keras_history.operation
    assert isinstance(bn, keras.layers.BatchNormalization), type(bn)
    x = values[net.caffe_name[net.producer[bid].bottoms[0]]].astype(np.float64)
    shp = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = bn.moving_mean.numpy().reshape(shp), bn.moving_variance.numpy().reshape(shp)
    assert_close((x - mean) / np.sqrt(var + bn.epsilon), values[name], f"{key}:{name} (merged)")


def test_all_blobs_as_outputs_match_end_to_end(tmp_path):
    """convert_caffe(outputs=...) exposes intermediate blobs (final versions) by their Caffe names."""
    proto, weights, shapes, inputs, ref = _case("bn_factor")
    model, report = convert_caffe(str(proto), str(weights), outputs=list(ref.files))
    assert list(report["outputs"]) == list(ref.files)
    got = run_keras(model, inputs, list(report["inputs"]))
    for n, g in zip(ref.files, got):
        assert_close(g, ref[n], n)


def test_trained_cifar10_zoo_prototxt_ip1(tmp_path):
    """The original cifar10 BN train_test prototxt (Data layers, lr_mult blocks) with Caffe's trained weights."""
    proto, weights, shapes, inputs, ref = _case("cifar10_bn_trained_zoo")
    model, report = convert_caffe(str(proto), str(weights), input_shapes={"data": (16, 3, 32, 32)}, outputs=["ip1"])
    assert list(report["inputs"]) == ["data"]
    assert report["batchnorm_without_scale"] == ["bn1", "bn2", "bn3"]
    got = run_keras(model, {"data": inputs["data"]}, ["data"])[0]
    assert_close(got, ref["ip1"], "ip1")
