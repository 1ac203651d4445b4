"""Every net of ../shared/zoo either converts (random weights, realistic BatchNorm statistics with a
factor != 1) and matches OpenCV dnn on the same caffemodel, or fails with one UnsupportedLayerError
that lists all its unsupported layers. Input sizes are reduced where the net allows it."""
import time

import numpy as np
import pytest

from bnconvert.c2k import convert_caffe
from bnconvert.caffe.graph import INPUT_TYPES, load_net
from bnconvert.caffe.io import pb2, write_prototxt
from bnconvert.errors import UnsupportedLayerError
from bnconvert.testing import random_inputs, run_keras

from helpers import ZOO, assert_close, need_shared

from ._util import Case
from .test_detection import SSD_NETS  # the SSD detectors: compared with OpenCV there, detections included

# (prototxt under zoo/, input_shapes, extra convert kwargs). Sizes: the smallest that keeps every
# spatial layer valid (global-style 7x7 pools need 224 px) and keeps flattened features > 1x1.
CONVERTS = [
    ("bvlc_alexnet/deploy.prototxt", {"data": (2, 3, 99, 99)}, {}),
    ("bvlc_caffenet_full_conv/bvlc_caffenet_full_conv.prototxt", {"data": (1, 3, 227, 227)}, {}),
    ("bvlc_cifar10_full/cifar10_full.prototxt", {"data": (2, 3, 32, 32)}, {}),
    ("bvlc_cifar10_full_sigmoid_bn/cifar10_full_sigmoid_train_test_bn.prototxt", {"data": (2, 3, 32, 32)}, {}),
    ("bvlc_cifar10_full_sigmoid_bn/cifar10_full_sigmoid_train_test.prototxt", {"data": (2, 3, 32, 32)}, {}),
    ("bvlc_cifar10_quick/cifar10_quick.prototxt", None, {}),
    ("bvlc_googlenet/deploy.prototxt", {"data": (1, 3, 224, 224)}, {}),
    ("bvlc_lenet/lenet.prototxt", None, {}),
    ("bvlc_mnist_autoencoder/mnist_autoencoder.prototxt", {"data": (2, 1, 28, 28)}, {"stages": ["test-on-test"]}),
    ("bvlc_mnist_siamese/mnist_siamese.prototxt", {"data": (3, 1, 28, 28)}, {}),
    ("bvlc_rcnn_ilsvrc13/deploy.prototxt", {"data": (2, 3, 99, 99)}, {}),
    ("bvlc_reference_caffenet/deploy.prototxt", {"data": (1, 3, 115, 131)}, {}),
    ("fcn8s_voc/deploy.prototxt", {"data": (1, 3, 64, 80)}, {}),
    ("inception_v3/deploy_inception-v3.prototxt", {"data": (1, 3, 139, 139)}, {}),
    ("mobilenet_v1/mobilenet_deploy.prototxt", {"data": (2, 3, 96, 96)}, {}),
    ("mobilenet_v2/mobilenet_v2_deploy.prototxt", {"data": (1, 3, 96, 128)}, {}),
    ("mtcnn_v1/det1.prototxt", {"data": (2, 3, 30, 36)}, {}),
    ("resnet50/ResNet-50-deploy.prototxt", {"data": (1, 3, 224, 224)}, {}),
    ("resnet101/ResNet-101-deploy.prototxt", {"data": (1, 3, 224, 224)}, {}),
    ("resnet152/ResNet-152-deploy.prototxt", {"data": (1, 3, 224, 224)}, {}),
    ("resnext50_32x4d/deploy_resnext50-32x4d.prototxt", {"data": (1, 3, 224, 224)}, {}),
    ("se_bn_inception/SE-BN-Inception.prototxt", {"data": (1, 3, 224, 224)}, {}),
    ("se_resnet50/SE-ResNet-50.prototxt", {"data": (1, 3, 224, 224)}, {}),
    ("squeezenet_v1.0/deploy.prototxt", {"data": (2, 3, 64, 64)}, {}),
    ("squeezenet_v1.1/deploy.prototxt", {"data": (2, 3, 64, 64)}, {}),
    ("vgg19_v1/VGG_ILSVRC_19_layers_deploy.prototxt", {"data": (1, 3, 64, 64)}, {}),
]

UNSUPPORTED = {
    "faster_rcnn_vgg16_voc/test.prototxt": [("proposal", "Python"), ("roi_pool5", "ROIPooling")],
}
# Solver files and the train_val twins of converted deploy nets are not separate nets.
SKIPPED = {"bvlc_alexnet/train_val.prototxt", "bvlc_googlenet/train_val.prototxt",
           "bvlc_lenet/lenet_train_test.prototxt", "bvlc_cifar10_quick/cifar10_quick_train_test.prototxt",
           "bvlc_reference_caffenet/train_val.prototxt", "squeezenet_v1.0/train_val.prototxt",
           "squeezenet_v1.1/train_val.prototxt"}


def test_every_zoo_net_is_covered():
    zoo = need_shared("zoo")
    nets = {str(p.relative_to(zoo)) for p in zoo.rglob("*.prototxt") if "solver" not in p.name}
    covered = {c[0] for c in CONVERTS} | set(UNSUPPORTED) | SKIPPED | set(SSD_NETS)
    assert nets == covered, f"not covered: {sorted(nets - covered)}; missing: {sorted(covered - nets)}"


def opencv_prototxt(net, path):
    """The inference net as a deploy prototxt OpenCV reads: Input layers for the data layers, only
    the layers of the converted phase, and Axpy (which OpenCV gets wrong) as Scale + Eltwise."""
    out = pb2().NetParameter(name=net.name or "net")
    for L in net.layers:
        if L.type in INPUT_TYPES:
            for t in L.tops:
                lp = out.layer.add(name=t, type="Input", top=[net.caffe_name[t]])
                lp.input_param.shape.add(dim=list(net.shapes[t]))
        elif L.type == "Axpy":
            a, x, y = L.param.bottom
            top = L.param.top[0]
            out.layer.add(name=L.name + "_a", type="Flatten", bottom=[a], top=[L.name + "_a"])
            sc = out.layer.add(name=L.name + "_ax", type="Scale", bottom=[x, L.name + "_a"], top=[L.name + "_ax"])
            sc.scale_param.axis = 0
            out.layer.add(name=L.name, type="Eltwise", bottom=[L.name + "_ax", y], top=[top])
        else:
            lp = out.layer.add()
            lp.CopyFrom(L.param)
            del lp.include[:]
            del lp.exclude[:]
    write_prototxt(out, str(path))
    return path


def _compared_blobs(net):
    """The net outputs, plus the input of a final Softmax (random weights often saturate it)."""
    names = [net.caffe_name[b] for b in net.outputs]
    for b in net.outputs:
        L = net.producer[b]
        if L.type == "Softmax":
            names.append(net.caffe_name[L.bottoms[0]])
    return names


@pytest.mark.parametrize("rel,shapes,kwargs", CONVERTS, ids=[c[0].split("/")[0] for c in CONVERTS])
def test_zoo_net_matches_opencv(tmp_path, rel, shapes, kwargs):
    proto = need_shared("zoo") / rel
    cm = tmp_path / "w.caffemodel"
    # random_caffemodel's weights, for the graph of the stages in kwargs (random_caffemodel has no stages)
    phase_net = load_net(str(proto), input_shapes=shapes, **kwargs)
    _random_weights_for(phase_net, cm)
    names = _compared_blobs(phase_net)
    t0 = time.time()
    model, report = convert_caffe(str(proto), str(cm), input_shapes=shapes, outputs=names, **kwargs)
    assert list(report["outputs"]) == names
    if any(L.type == "BatchNorm" for L in phase_net.layers):
        factors = report["batchnorm_factors"]
        assert factors and all(f != 1.0 for f in factors.values())
    net = load_net(str(proto), str(cm), input_shapes=shapes, outputs=names, **kwargs)
    x = random_inputs(net, seed=2)
    got = dict(zip(names, run_keras(model, x, list(report["inputs"]))))
    ref = Case(opencv_prototxt(net, tmp_path / "cv.prototxt"), cm, net, model, report).opencv(x, names)
    for n in names:
        assert np.abs(ref[n]).max() > 0, f"{n}: the reference is all zeros, the comparison would be vacuous"
        assert_close(got[n], ref[n], n)
    assert time.time() - t0 < 120


def _random_weights_for(net, cm):
    from bnconvert.caffe.io import array_to_blob, write_caffemodel
    from bnconvert.testing import random_blobs

    rng = np.random.default_rng(1)
    model = pb2().NetParameter(name=net.name)
    for L in net.layers:
        if L.type in INPUT_TYPES or not getattr(L, "param_shapes", None):
            continue
        lp = model.layer.add(name=L.name, type=L.type)
        for b in random_blobs(L, L.param_shapes, rng):
            array_to_blob(b, lp.blobs.add())
    write_caffemodel(model, str(cm))


@pytest.mark.parametrize("rel", sorted(UNSUPPORTED), ids=[r.split("/")[0] for r in sorted(UNSUPPORTED)])
def test_zoo_net_with_unsupported_layers_lists_them_all(tmp_path, rel):
    proto = need_shared("zoo") / rel
    out = tmp_path / "never.keras"
    with pytest.raises(UnsupportedLayerError) as info:
        convert_caffe(str(proto), None)
    assert sorted(info.value.layers) == sorted(UNSUPPORTED[rel])
    text = str(info.value)
    assert all(f"{n} (type {t})" in text for n, t in UNSUPPORTED[rel])
    assert not out.exists()
