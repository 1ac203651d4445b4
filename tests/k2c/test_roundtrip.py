"""Round trips: caffe -> keras -> caffe (same outputs, same blobs, BatchNorm factor normalised to 1) and
keras -> caffe -> keras (identical weights and outputs)."""
import json

import keras
import numpy as np
import pytest

from helpers import assert_close, need_shared

# case -> the outputs compared with real Caffe (None: every blob meta.json lists). resnet50_slim's deep
# intermediate blobs differ from Caffe by ~3e-4 relative in any other runtime (OpenCV on the original net
# included: float summation order over 50 random layers), so only its final output is compared.
CASES = {"bn_factor": None, "bn_factor_zero": None, "pool_ceil": None, "fc_flatten": None,
         "resnet50_slim": ["prob"], "cifar10_bn_trained": ["ip1"]}


def _caffe_files(case):
    d = need_shared(f"caffe-ref/{case}")
    proto = d / "deploy.prototxt" if (d / "deploy.prototxt").exists() else d / "train_test_input.prototxt"
    return d, proto, d / "weights.caffemodel", json.loads((d / "meta.json").read_text())


def _arrays(layer):
    from bnconvert.caffe.io import blob_to_array

    return [blob_to_array(b) for b in layer.blobs]


@pytest.mark.parametrize("case", CASES)
def test_caffe_keras_caffe(case, tmp_path):
    import cv2

    from bnconvert.c2k import convert_caffe
    from bnconvert.caffe.bnpair import batchnorm_stats
    from bnconvert.caffe.graph import load_net
    from bnconvert.caffe.io import write_caffemodel, write_prototxt
    from bnconvert.k2c import convert
    from bnconvert.naming import keras_name

    d, proto, weights, meta = _caffe_files(case)
    outs = CASES[case] or [o for o in meta["outputs"] if meta["outputs"][o]]
    image_inputs = {k: v for k, v in meta["inputs"].items() if len(v) == 4}
    model, _ = convert_caffe(str(proto), str(weights), input_shapes=image_inputs, outputs=outs)
    (shape,) = image_inputs.values()
    deploy, caffemodel, report = convert(model, input_shape=tuple(shape))
    write_prototxt(deploy, tmp_path / "rt.prototxt")
    write_caffemodel(caffemodel, tmp_path / "rt.caffemodel")

    # the same outputs as real Caffe
    inputs = np.load(d / "input.npz")
    ref = np.load(d / "ref.npz")
    cv = cv2.dnn.readNetFromCaffe(str(tmp_path / "rt.prototxt"), str(tmp_path / "rt.caffemodel"))
    for name in image_inputs:
        cv.setInput(inputs[name], keras_name(name))
    writer = {t: layer.name for layer in deploy.layer for t in layer.top}
    names = [t._keras_history.operation.name for t in model.outputs]
    for o, got in zip(outs, cv.forward([writer[n] for n in names])):
        assert_close(np.asarray(got).reshape(ref[o].shape), ref[o], o)

    # the same blobs, with BatchNorm statistics divided by the factor and the factor 1
    orig = load_net(str(proto), str(weights), input_shapes=image_inputs, outputs=outs)
    ours = [(layer.type, _arrays(layer), layer) for layer in caffemodel.layer if layer.blobs]
    for layer in orig.layers:
        if not layer.blobs:
            continue
        if layer.type == "BatchNorm":
            mean, var, _ = batchnorm_stats(layer)
            want = [mean, var, np.ones(1, np.float32)]
        else:
            want = [np.asarray(b) for b in layer.blobs]
        if layer.type == "InnerProduct" and layer.param.inner_product_param.transpose:
            want[0] = want[0].T  # written back in the default (O, K) storage
        match = [i for i, (t, got, _) in enumerate(ours) if t == layer.type and _same(got, want)]
        assert match, f"no converted layer holds the blobs of {layer.name} ({layer.type})"
        t, _, ours_layer = ours.pop(match[0])
        if t == "BatchNorm":
            assert ours_layer.batch_norm_param.use_global_stats and not ours_layer.param
    assert [t for t, _, _ in ours] == []  # every blob came from the original net


def _same(got, want):
    return len(got) == len(want) and all(
        g.size == w.size and np.allclose(g.reshape(w.shape), w, rtol=1e-6, atol=1e-7) for g, w in zip(got, want))


def _keras_model():
    L = keras.layers
    x = keras.Input((12, 12, 3), name="image")
    y = L.Conv2D(8, 3, padding="same", name="conv1")(x)
    y = L.BatchNormalization(name="bn1")(y)
    y = L.ReLU(name="relu1")(y)
    y = L.MaxPooling2D(3, 3, name="pool1")(y)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(y)
    y = L.BatchNormalization(center=False, name="bn2")(y)
    b = L.Conv2D(8, 1, name="proj")(y)
    y = L.Add(name="add")([y, b])
    y = L.Flatten(name="flat")(y)
    y = L.Dense(6, name="fc")(y)
    y = L.Softmax(name="prob")(y)
    m = keras.Model(x, y)
    rng = np.random.default_rng(3)
    for layer in m.layers:
        ws = layer.get_weights()
        if isinstance(layer, L.BatchNormalization):
            ws = [rng.uniform(0.5, 1.5, w.shape) for w in ws]
        else:
            ws = [rng.normal(0, 0.4, w.shape) for w in ws]
        layer.set_weights([w.astype("float32") for w in ws])
    return m


def test_keras_caffe_keras(tmp_path):
    from bnconvert.c2k import convert_caffe
    from bnconvert.k2c import keras_to_caffe

    m = _keras_model()
    keras_to_caffe(m, tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    back, _ = convert_caffe(str(tmp_path / "n.prototxt"), str(tmp_path / "n.caffemodel"))
    for layer in m.layers:
        if not layer.get_weights():
            continue
        twin = back.get_layer(layer.name)
        assert type(twin) is type(layer), layer.name
        for a, b in zip(layer.get_weights(), twin.get_weights()):
            np.testing.assert_array_equal(a, b, err_msg=layer.name)
    x = np.random.default_rng(0).standard_normal((1, 12, 12, 3)).astype("float32")
    assert_close(np.asarray(back(x)), np.asarray(m(x)), "prob")
