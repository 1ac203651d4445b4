"""Public nets written for Caffe forks (tests/nets/forks, see SOURCES.md there) convert with random weights
and realistic BN statistics at small input sizes, and match each fork's semantics.

References: OpenCV dnn for DeepLab v2 LargeFOV, where it implements every layer (its Interp agrees with
the fork for zoom_factor and height/width), and for PSPNet-50 and the YOLOv3 port with their BN /
Upsample written as the BVLC layers they compute (BatchNorm + Scale; a nearest Deconvolution). OpenCV has
neither BN nor Upsample nor the mask Pooling, so in every net each fork layer is also checked on its own: the converted model's tensors at the layer's bottoms go through numpy
written from the fork's source (tests/c2k/_forks_ref.py), and the result must match the converted
model's tensor at the layer's top. The small input sizes need the fixed sizes in a few prototxts
(PSPNet's pyramid pooling, SegNet's upsample_h/w) scaled down with the input; the tests do that.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bnconvert import layout as lay
from bnconvert.c2k import convert_net
from bnconvert.caffe.graph import load_net
from bnconvert.testing import random_caffemodel, random_inputs, run_opencv

from helpers import assert_close

from . import _forks_ref as ref

FORKS = Path(__file__).resolve().parents[1] / "nets" / "forks"


def _prototxt(tmp_path, name, edit=None):
    src = FORKS / name
    if not src.exists():
        pytest.skip(f"{src} is not present")
    text = src.read_text()
    path = tmp_path / name
    path.write_text(edit(text) if edit else text)
    return path


def _convert(path, input_shapes=None, seed=0):
    cm = path.with_suffix(".caffemodel")
    random_caffemodel(str(path), str(cm), seed=seed, input_shapes=input_shapes)
    net = load_net(str(path), str(cm), input_shapes=input_shapes)
    model, report, eng = convert_net(net)
    return net, cm, model, report, eng


FORK_TYPES = ("BN", "Interp", "Upsample")


def _fork_layers(net):
    return [L for L in net.layers if L.type in FORK_TYPES or (L.type == "Pooling" and len(L.tops) == 2)]


def _reference(L, bottoms):
    """The fork's output for layer L from numpy bottoms (NCHW), by its source."""
    x = bottoms[0]
    if L.type == "BN":
        blobs = [b.reshape(-1) for b in L.blobs]
        if len(blobs) == 2:
            return [ref.bn_inference(x, *blobs)]
        return [ref.bn_pspnet(x, *blobs, eps=L.param.bn_param.eps)]
    if L.type == "Interp":
        p = L.param.interp_param
        return [ref.interp(x, *L.top_shapes[0][2:], p.pad_beg, p.pad_end)]
    if L.type == "Upsample":
        if len(bottoms) == 1:
            return [ref.upsample_nearest(x, L.top_shapes[0][2] // x.shape[2])]
        return [ref.unpool(x, bottoms[1], *L.top_shapes[0][2:])]
    p = L.param.pooling_param
    k = (p.kernel_h, p.kernel_w) if p.HasField("kernel_h") else (p.kernel_size, p.kernel_size)
    s = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride, p.stride)
    pd = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad, p.pad)
    return list(ref.max_pool_with_mask(x, k, s, pd, L.top_shapes[0][2:]))


def check_fork_layers(net, model, eng, inputs, expect_types):
    """Every fork layer's Keras output equals numpy-from-source applied to its Keras inputs."""
    import keras

    layers = _fork_layers(net)
    assert {L.type for L in layers} >= set(expect_types), sorted({L.type for L in layers})
    bids = sorted({b for L in layers for b in L.bottoms + L.tops})
    probe = keras.Model(model.inputs, [eng.tensors[b] for b in bids])
    feeds = [lay.to_keras_array(inputs[net.caffe_name[b]], lay.NHWC) for b in net.inputs]
    outs = probe(feeds if len(feeds) > 1 else feeds[0], training=False)
    value = {b: lay.to_caffe_array(np.asarray(o), eng.layouts[b]) for b, o in zip(bids, outs)}
    for L in layers:
        want = _reference(L, [value[b] for b in L.bottoms])
        for top, w in zip(L.tops, want):
            if L.type == "Pooling" and top == L.tops[1]:
                np.testing.assert_array_equal(value[top], w, err_msg=f"{L.name} mask")
            else:
                assert_close(value[top], w, f"{L.name} ({L.type}) -> {net.caffe_name[top]}")
    return len(layers)


def _outputs(net, model, report, inputs):
    from bnconvert.testing import run_keras

    return dict(zip(report["outputs"], run_keras(model, inputs, list(report["inputs"]))))


def test_pspnet50(tmp_path):
    # 41x41 input: the 6x6 feature map takes pyramid bins 1, 2, 3 and 6 as 473 does with 60x60.
    def small(text):
        text = text.replace("input_dim: 473", "input_dim: 41")
        for big, little in ((60, 6), (30, 3), (20, 2), (10, 1)):
            text = re.sub(rf"(kernel_size|stride): {big}\b", rf"\1: {little}", text)
        return re.sub(r"(height|width): 60\b", r"\1: 6", text)

    path = _prototxt(tmp_path, "pspnet50_ADE20K_473.prototxt", small)
    net, _, model, report, eng = _convert(path)
    x = random_inputs(net, seed=1)
    n = check_fork_layers(net, model, eng, x, ["BN", "Interp"])
    assert n == 65  # 60 BN, 5 Interp
    assert report["outputs"] == {"conv6_interp": [1, 150, 41, 41]}
    assert sum(type(la).__name__ == "BatchNormalization" for la in model.layers) == 60
    # the whole net in OpenCV, with each BN written as the BatchNorm + Scale it computes
    cv = run_opencv(*_opencv_equivalent(path, net, tmp_path), x, ["conv6_interp"])
    assert np.abs(cv["conv6_interp"]).max() > 0
    assert_close(_outputs(net, model, report, x)["conv6_interp"], cv["conv6_interp"], "conv6_interp vs OpenCV")


def _segnet_small(text):
    # 40x48 input: the pooling inputs are 40x48, 20x24, 10x12, 5x6 and 3x3 (360x480: ... 45x60, 23x30).
    sizes = {"h": {45: 5, 23: 3}, "w": {60: 6, 30: 3}}
    return re.sub(r"upsample_([hw]): (\d+)", lambda m: f"upsample_{m[1]}: {sizes[m[1]][int(m[2])]}", text)


@pytest.mark.parametrize("name", ["segnet_inference.prototxt", "segnet_basic_inference.prototxt"])
def test_segnet(tmp_path, name):
    path = _prototxt(tmp_path, name, _segnet_small)
    net, _, model, report, eng = _convert(path, {"data": (1, 3, 40, 48)})
    x = random_inputs(net, seed=1)
    n = check_fork_layers(net, model, eng, x, ["BN", "Upsample", "Pooling"])
    assert n == (35 if name == "segnet_inference.prototxt" else 16)
    assert report["outputs"] == {"prob": [1, 11, 40, 48]}
    assert any("DenseImageData" in str(d) for d in report["dropped"])


def test_enet(tmp_path):
    path = _prototxt(tmp_path, "enet_deploy_final.prototxt")
    net, _, model, report, eng = _convert(path, {"data": (1, 3, 32, 64)})
    x = random_inputs(net, seed=1)
    n = check_fork_layers(net, model, eng, x, ["BN", "Upsample", "Pooling"])
    assert n == 3 + 2 + 2
    assert report["outputs"] == {"deconv6_0_0": [1, 19, 32, 64]}


def test_deeplab_v2_largefov_matches_opencv(tmp_path):
    path = _prototxt(tmp_path, "deeplab_v2_vgg16_test_voc12.prototxt")
    net, cm, model, report, eng = _convert(path, {"data": (1, 3, 49, 49)})
    x = random_inputs(net, seed=1)
    assert check_fork_layers(net, model, eng, x, ["Interp"]) == 1
    got = _outputs(net, model, report, x)
    assert list(got) == ["fc8_interp"] and got["fc8_interp"].shape == (1, 21, 49, 49)
    # OpenCV runs the deploy part of the net: the same layers, fed by an Input of the same shape
    deploy = tmp_path / "deploy.prototxt"
    text = path.read_text()
    start = text.index("layer {", text.index('type: "ImageSegData"') - 200)
    end = text.index("}\n", text.index("image_data_param")) + 2
    end = text.index("}\n", end) + 2
    stop = text.index("layer {", text.index('type: "MatWrite"') - 40)  # MatWrite, Silence: not inference
    deploy.write_text(text[:start] + 'layer { name: "data" type: "Input" top: "data" input_param { shape { '
                      'dim: 1 dim: 3 dim: 49 dim: 49 } } }\n' + text[end:stop])
    cv = run_opencv(deploy, cm, x, ["fc8_interp"])
    assert_close(got["fc8_interp"], cv["fc8_interp"], "fc8_interp vs OpenCV")


def test_yolov3_port(tmp_path):
    path = _prototxt(tmp_path, "yolov3_416x416.prototxt")
    net, cm, model, report, eng = _convert(path, {"data": (1, 3, 32, 32)})
    x = random_inputs(net, seed=1)
    assert check_fork_layers(net, model, eng, x, ["Upsample"]) == 2
    assert sorted(report["outputs"].values()) == [[1, 255, 1, 1], [1, 255, 2, 2], [1, 255, 4, 4]]
    assert sum(type(la).__name__ == "UpSampling2D" for la in model.layers) == 2
    # the whole net in OpenCV, with each Upsample written as the nearest Deconvolution it computes
    got = _outputs(net, model, report, x)
    cv = run_opencv(*_opencv_equivalent(path, net, tmp_path), x, list(got))
    for name in got:
        assert np.abs(cv[name]).max() > 0
        assert_close(got[name], cv[name], f"{name} vs OpenCV")


def test_deeplab_v2_aspp_multiscale(tmp_path):
    # ResNet-101 ASPP over three scales: Interp with shrink_factor 2, shrink 4 + zoom 3, zoom 2,
    # shrink 3 + zoom 4 and zoom 8. At 65x65 all branches meet at 9x9, as they do at 513x513 (65x65).
    path = _prototxt(tmp_path, "deeplab_v2_resnet101_test_voc12.prototxt")
    net, cm, model, report, eng = _convert(path, {"data": (1, 3, 65, 65)})
    x = random_inputs(net, seed=1)
    assert check_fork_layers(net, model, eng, x, ["Interp"]) == 5
    assert list(report["outputs"].values()) == [[1, 21, 65, 65]]


def _opencv_equivalent(path, net, tmp_path):
    """The net with PSPNet's BN as BVLC BatchNorm + Scale (same eps) and the YOLOv3 port's Upsample as a
    Deconvolution with a kernel of ones and group C (nearest, exact): layers OpenCV dnn runs. Returns the
    paths of that prototxt and of a caffemodel holding the converted net's weights."""
    from bnconvert.caffe.io import array_to_blob, pb2, read_prototxt, write_caffemodel, write_prototxt

    text, weights = read_prototxt(str(path)), pb2().NetParameter()
    deploy = pb2().NetParameter(name=text.name)
    deploy.input.extend(text.input)
    deploy.input_dim.extend(text.input_dim)
    for lp in text.layer:
        blobs = list(net.layer(lp.name).blobs) if lp.type not in ("Input",) else []
        if lp.type == "BN":
            c = blobs[0].size
            bn = deploy.layer.add(name=lp.name, type="BatchNorm", bottom=lp.bottom, top=lp.top)
            bn.batch_norm_param.eps = lp.bn_param.eps
            sc = deploy.layer.add(name=lp.name + "/scale", type="Scale", bottom=lp.top, top=lp.top)
            sc.scale_param.bias_term = True
            pairs = [(bn, [blobs[2].reshape(c), blobs[3].reshape(c), np.ones(1, np.float32)]),
                     (sc, [blobs[0].reshape(c), blobs[1].reshape(c)])]
        elif lp.type == "Upsample":
            c, s = net.layer(lp.name).top_shapes[0][1], lp.upsample_param.scale
            up = deploy.layer.add(name=lp.name, type="Deconvolution", bottom=lp.bottom, top=lp.top)
            up.convolution_param.MergeFrom(pb2().ConvolutionParameter(
                num_output=c, group=c, bias_term=False, kernel_size=[s], stride=[s]))
            pairs = [(up, [np.ones((c, 1, s, s), np.float32)])]
        else:
            deploy.layer.add().CopyFrom(lp)
            pairs = [(deploy.layer[-1], blobs)]
        for layer, arrays in pairs:
            if len(arrays):
                w = weights.layer.add(name=layer.name, type=layer.type)
                for a in arrays:
                    array_to_blob(np.asarray(a, np.float32), w.blobs.add())
    write_prototxt(deploy, tmp_path / "cv.prototxt")
    write_caffemodel(weights, tmp_path / "cv.caffemodel")
    return tmp_path / "cv.prototxt", tmp_path / "cv.caffemodel"
