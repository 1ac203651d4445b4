"""bnconvert upgrade: V1 -> V2, input fields -> Input layer, BatchNorm param blocks dropped, shaped blobs.

Every zoo net upgrades to the same graph and is idempotent (byte-identical on a second upgrade);
representative nets with random weights give identical outputs in OpenCV dnn before and after.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from bnconvert.caffe.graph import INPUT_TYPES, is_loss_type, layer_included, load_net
from bnconvert.caffe.io import array_to_blob, blob_shape, parse_prototxt_text, pb2, read_caffemodel, \
    read_prototxt, write_caffemodel, write_prototxt
from bnconvert.caffe.upgrade import upgrade_net
from bnconvert.cli import main
from bnconvert.errors import ConversionError
from bnconvert.upgrade import upgrade_files

from test_inspect import ZOO_PARAMS, zoo, zoo_args  # noqa: F401 (zoo is a fixture)

cv2 = pytest.importorskip("cv2")


def _graph_summary(net):
    cn = net.caffe_name
    return [(L.name, L.type, [cn[b] for b in L.bottoms], [cn[t] for t in L.tops], [net.shapes.get(t) for t in L.tops],
             getattr(L, "param_shapes", None)) for L in net.layers]


@pytest.mark.parametrize("rel", ZOO_PARAMS)
def test_upgrade_zoo(rel, zoo, tmp_path):
    src = zoo / rel
    out1, out2 = tmp_path / "up1.prototxt", tmp_path / "up2.prototxt"
    report = upgrade_files(src, out1)
    expected = read_prototxt(src)
    upgrade_net(expected)
    assert read_prototxt(out1) == expected  # both phases kept, nothing else changed
    assert report["layers"] == len(expected.layer)
    again = upgrade_files(out1, out2)
    assert out1.read_bytes() == out2.read_bytes() and not again["changed"]
    kw = zoo_args(rel)
    phases = ["TEST"] + (["TRAIN"] if "train" in rel else [])
    for phase in phases:
        assert _graph_summary(load_net(out1, phase=phase, **kw)) == _graph_summary(load_net(src, phase=phase, **kw))


# --- a small V1 net with a V1 caffemodel of legacy 4-d blobs ------------------------------------

V1_NET = """
name: "tiny_v1"
input: "data"
input_dim: 2 input_dim: 3 input_dim: 16 input_dim: 16
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" blobs_lr: 1 blobs_lr: 2
         weight_decay: 1 weight_decay: 0 convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layers { name: "relu1" type: RELU bottom: "conv1" top: "conv1" }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layers { name: "norm1" type: LRN bottom: "pool1" top: "norm1" lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }
layers { name: "fc1" type: INNER_PRODUCT bottom: "norm1" top: "fc1" inner_product_param { num_output: 10 } }
layers { name: "relu2" type: RELU bottom: "fc1" top: "fc1" }
layers { name: "drop" type: DROPOUT bottom: "fc1" top: "fc1" dropout_param { dropout_ratio: 0.5 } }
layers { name: "fc2" type: INNER_PRODUCT bottom: "fc1" top: "fc2" inner_product_param { num_output: 5 } }
layers { name: "prob" type: SOFTMAX bottom: "fc2" top: "prob" }
"""
V1_BLOBS = {"conv1": [(4, 3, 3, 3), (1, 1, 1, 4)], "fc1": [(1, 1, 10, 256), (1, 1, 1, 10)],
            "fc2": [(1, 1, 5, 10), (1, 1, 1, 5)]}
V1_SHAPES = {"conv1": [[4, 3, 3, 3], [4]], "fc1": [[10, 256], [10]], "fc2": [[5, 10], [5]]}


def legacy_blob(arr, blob):
    """Fill ``blob`` the pre-2015 way: num/channels/height/width, no ``shape``."""
    a = np.asarray(arr, np.float32)
    n, c, h, w = (1,) * (4 - a.ndim) + a.shape
    blob.num, blob.channels, blob.height, blob.width = n, c, h, w
    blob.data.extend(a.ravel().tolist())
    return blob


def write_v1(tmp_path, rng):
    proto = tmp_path / "v1.prototxt"
    proto.write_text(V1_NET)
    model = pb2().NetParameter(name="tiny_v1")
    for v1 in parse_prototxt_text(V1_NET).layers:
        layer = model.layers.add()
        layer.CopyFrom(v1)
        for shape in V1_BLOBS.get(v1.name, []):
            legacy_blob(rng.normal(0, 0.3, shape), layer.blobs.add())
    weights = tmp_path / "v1.caffemodel"
    write_caffemodel(model, weights)
    return proto, weights


def cv_forward(proto, weights, inputs, outputs):
    net = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, arr in inputs.items():
        net.setInput(arr, name)
    return [np.array(o) for o in net.forward(list(outputs))]


def assert_identical(a, b):
    for x, y in zip(a, b):
        assert np.isfinite(x).all() and x.std() > 0
        assert np.array_equal(x, y)


def test_v1_net_and_weights(tmp_path):
    rng = np.random.default_rng(0)
    proto, weights = write_v1(tmp_path, rng)
    up_p, up_w = tmp_path / "up.prototxt", tmp_path / "up.caffemodel"
    rep = upgrade_files(proto, up_p, weights, up_w)
    assert rep["v1_layers"] and rep["input_layer"] and rep["caffemodel"]["v1_layers"]
    assert not rep["caffemodel"]["kept_legacy"]
    model = read_caffemodel(up_w)
    assert not model.layers
    got = {lp.name: [list(b.shape.dim) for b in lp.blobs] for lp in model.layer if len(lp.blobs)}
    assert got == V1_SHAPES
    assert all(not b.HasField("num") for lp in model.layer for b in lp.blobs)
    conv1 = next(lp for lp in read_prototxt(up_p).layer if lp.name == "conv1")
    assert [(p.lr_mult, p.decay_mult) for p in conv1.param] == [(1, 1), (2, 0)]
    x = {"data": rng.standard_normal((2, 3, 16, 16)).astype(np.float32)}
    assert_identical(cv_forward(proto, weights, x, ["prob", "fc1"]), cv_forward(up_p, up_w, x, ["prob", "fc1"]))
    # Idempotent, weights included.
    up2_p, up2_w = tmp_path / "up2.prototxt", tmp_path / "up2.caffemodel"
    again = upgrade_files(up_p, up2_p, up_w, up2_w)
    assert not again["changed"]
    assert up_p.read_bytes() == up2_p.read_bytes() and up_w.read_bytes() == up2_w.read_bytes()


def test_blob_shapes_by_type_when_the_net_has_no_shapes(tmp_path):
    """A V1 net with a Data layer: no input shape, so blob ranks come from the layer types."""
    rng = np.random.default_rng(1)
    proto, weights = write_v1(tmp_path, rng)
    text = V1_NET.replace('input: "data"\ninput_dim: 2 input_dim: 3 input_dim: 16 input_dim: 16',
                          'layers { name: "data" type: DATA top: "data" data_param { source: "x" batch_size: 2 } }')
    proto.write_text(text)
    rep = upgrade_files(proto, tmp_path / "a.prototxt", weights, tmp_path / "a.caffemodel")
    assert {r["by"] for r in rep["caffemodel"]["reshaped"]} == {"type"}
    by_type = read_caffemodel(tmp_path / "a.caffemodel")
    rep = upgrade_files(proto, tmp_path / "b.prototxt", weights, tmp_path / "b.caffemodel",
                        input_shapes={"data": (2, 3, 16, 16)})
    assert {r["by"] for r in rep["caffemodel"]["reshaped"]} == {"net"}
    assert read_caffemodel(tmp_path / "b.caffemodel") == by_type
    got = {lp.name: [list(blob_shape(b)) for b in lp.blobs] for lp in by_type.layer if len(lp.blobs)}
    assert got == V1_SHAPES


def test_misfit_blob_is_kept_legacy_and_reported(tmp_path):
    rng = np.random.default_rng(2)
    proto, weights = write_v1(tmp_path, rng)
    model = read_caffemodel(weights)
    fc2 = next(v1 for v1 in model.layers if v1.name == "fc2")
    fc2.blobs[0].height = 6  # 1x1x6x10 does not fit fc2's 5x10
    fc2.blobs[0].data.extend([0.0] * 10)  # (a blob whose data is short is refused, as caffe2keras refuses it)
    write_caffemodel(model, weights)
    rep = upgrade_files(proto, tmp_path / "o.prototxt", weights, tmp_path / "o.caffemodel")
    (kept,) = rep["caffemodel"]["kept_legacy"]
    assert (kept["layer"], kept["blob"]) == ("fc2", 0) and "does not fit" in kept["reason"]


# --- BatchNorm nets with random weights ----------------------------------------------------------


def random_model(prototxt, path, rng, input_shapes=None, legacy=True):
    """Random weights for the TEST graph, saved as Caffe saves them: full layer params (BatchNorm
    param blocks included) and, with ``legacy``, 4-d num/channels/height/width blobs."""
    net = load_net(prototxt, input_shapes=input_shapes)
    params = {lp.name: lp for lp in reversed(read_prototxt(prototxt).layer)}
    model = pb2().NetParameter(name=net.name)
    for L in net.layers:
        shapes = getattr(L, "param_shapes", None)
        if not shapes:
            continue
        layer = model.layer.add()
        layer.CopyFrom(params[L.name])
        for i, shape in enumerate(shapes):
            arr = _random_blob(L.type, i, shape, rng)
            if legacy and arr.ndim <= 4:
                legacy_blob(arr, layer.blobs.add())
            else:
                array_to_blob(arr, layer.blobs.add())
    write_caffemodel(model, path)


def _random_blob(type_, i, shape, rng):
    if type_ == "BatchNorm":
        s = 7.5
        return {0: rng.normal(0, 0.3, shape) * s, 1: rng.uniform(0.5, 2.0, shape) * s, 2: np.full(shape, s)}[i]
    if type_ == "Scale" and i == 0:
        return rng.uniform(0.7, 1.3, shape)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return rng.normal(0, np.sqrt(1.0 / max(fan_in, 1)), shape)


def deploy_variant(prototxt, out, input_shapes):
    """The TEST-phase net with Input layers instead of Data layers and no loss layers (what OpenCV reads)."""
    src = read_prototxt(prototxt)
    net = pb2().NetParameter(name=src.name)
    for lp in src.layer:
        if not layer_included(lp, "TEST", 0, set()) or is_loss_type(lp.type):
            continue
        if lp.type in INPUT_TYPES:
            new = net.layer.add(name=lp.name, type="Input")
            for t in lp.top:
                if t in input_shapes:
                    new.top.append(t)
                    new.input_param.shape.add().dim.extend(input_shapes[t])
            continue
        net.layer.add().CopyFrom(lp)
    write_prototxt(net, out)
    return out


def test_cifar10_bn_train_test_round_trip(zoo, tmp_path):
    src = zoo / "bvlc_cifar10_full_sigmoid_bn" / "cifar10_full_sigmoid_train_test_bn.prototxt"
    shapes = {"data": (2, 3, 32, 32)}
    rng = np.random.default_rng(3)
    weights = tmp_path / "w.caffemodel"
    random_model(src, weights, rng, input_shapes=shapes)
    up_p, up_w = tmp_path / "up.prototxt", tmp_path / "up.caffemodel"
    rep = upgrade_files(src, up_p, weights, up_w, input_shapes=shapes)
    assert rep["batchnorm_params_dropped"] == ["bn1", "bn2", "bn3"]
    assert rep["caffemodel"]["batchnorm_params_dropped"] == ["bn1", "bn2", "bn3"]
    assert {lp.name for lp in read_prototxt(up_p).layer if lp.type == "Data"} == {"cifar"}
    assert len(read_prototxt(up_p).layer) == len(read_prototxt(src).layer)  # TRAIN and TEST layers kept
    ip1 = next(lp for lp in read_caffemodel(up_w).layer if lp.name == "ip1")
    assert list(ip1.blobs[0].shape.dim) == [10, 1024]
    x = {"data": rng.standard_normal(shapes["data"]).astype(np.float32)}
    a = cv_forward(deploy_variant(src, tmp_path / "a.prototxt", shapes), weights, x, ["ip1"])
    b = cv_forward(deploy_variant(up_p, tmp_path / "b.prototxt", shapes), up_w, x, ["ip1"])
    assert_identical(a, b)
    upgrade_files(up_p, tmp_path / "c.prototxt", up_w, tmp_path / "c.caffemodel", input_shapes=shapes)
    assert (tmp_path / "c.caffemodel").read_bytes() == up_w.read_bytes()
    assert (tmp_path / "c.prototxt").read_bytes() == up_p.read_bytes()


@pytest.mark.parametrize("rel, output", [
    ("mobilenet_v1/mobilenet_deploy.prototxt", "fc7"),  # input_dim, BatchNorm param blocks, Scale fillers
    ("squeezenet_v1.0/deploy.prototxt", "prob"),  # input + input_shape
])
def test_deploy_round_trip_in_opencv(rel, output, zoo, tmp_path):
    src = zoo / rel
    rng = np.random.default_rng(4)
    weights = tmp_path / "w.caffemodel"
    random_model(src, weights, rng)
    up_p, up_w = tmp_path / "up.prototxt", tmp_path / "up.caffemodel"
    rep = upgrade_files(src, up_p, weights, up_w)
    assert rep["input_layer"] and rep["caffemodel"]["reshaped"] and not rep["caffemodel"]["kept_legacy"]
    shape = load_net(src).shapes["data"]
    x = {"data": rng.standard_normal((1,) + tuple(shape[1:])).astype(np.float32)}
    assert_identical(cv_forward(src, weights, x, [output]), cv_forward(up_p, up_w, x, [output]))


# --- CLI and errors ---------------------------------------------------------------------------


def test_cli(tmp_path, capsys):
    rng = np.random.default_rng(5)
    proto, weights = write_v1(tmp_path, rng)
    out = tmp_path / "out.prototxt"
    assert main(["upgrade", str(proto), str(weights), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "V1 layers -> V2 layer" in text and "legacy shape" in text
    assert (tmp_path / "out.caffemodel").exists()  # named after the output prototxt
    assert main(["upgrade", str(out), str(tmp_path / "out.caffemodel"), "-o", str(tmp_path / "x.prototxt"),
                 str(tmp_path / "x.caffemodel"), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["changed"] is False and rep["caffemodel_out"].endswith("x.caffemodel")
    assert main(["upgrade", str(proto), "-o", str(out), str(tmp_path / "y.caffemodel")]) == 2
    assert main(["upgrade", str(proto), "-o", str(tmp_path / "no" / "dir.prototxt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_api_needs_both_caffemodels(tmp_path):
    proto, weights = write_v1(tmp_path, np.random.default_rng(6))
    with pytest.raises(ConversionError):
        upgrade_files(proto, tmp_path / "o.prototxt", weights)
