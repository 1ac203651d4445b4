"""keras2caffe exports the suite makes, run in real BVLC Caffe: the keras.applications models of
tests/k2c/test_applications.py (reduced sizes, default target) and the round trips of
tests/k2c/test_roundtrip.py. Real Caffe's outputs match Keras (and Caffe's own ref.npz) within 1e-4."""
import keras
import numpy as np
import pytest

from bnconvert import layout as lay
from bnconvert.caffe.io import write_caffemodel, write_prototxt

from helpers import assert_close, need_shared
from k2c.test_applications import APPS, randomize_batchnorm
from k2c.test_roundtrip import CASES as ROUNDTRIP_CASES
from k2c.test_roundtrip import _caffe_files, _keras_model


def export(model, tmp_path, input_shape=None):
    """keras2caffe with the default target; returns (prototxt, caffemodel, report)."""
    from bnconvert.k2c import convert

    deploy, weights, report = convert(model, input_shape=input_shape)
    write_prototxt(deploy, tmp_path / "net.prototxt")
    write_caffemodel(weights, tmp_path / "net.caffemodel")
    return tmp_path / "net.prototxt", tmp_path / "net.caffemodel", report


def keras_outputs(model, xs):
    """The Keras model on NCHW inputs; its outputs in Caffe layout."""
    kx = [lay.to_keras_array(a, lay.default_layout(a.ndim)) for a in xs]
    outs = model(kx if len(kx) > 1 else kx[0], training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [lay.to_caffe_array(np.asarray(o), lay.default_layout(np.asarray(o).ndim)) for o in outs]


def check_export_in_real_caffe(pycaffe, model, tmp_path, seed=0, nonzero=True):
    proto, weights, report = export(model, tmp_path)
    rng = np.random.default_rng(seed)
    xs = {n: rng.standard_normal(s).astype(np.float32) for n, s in report["inputs"].items()}
    blobs = pycaffe.forward(proto, weights, xs, tmp_path)
    names = list(report["outputs"])
    assert names
    for name, want in zip(names, keras_outputs(model, list(xs.values()))):
        if nonzero:
            assert np.abs(want).max() > 0, f"{name}: Keras output is all zeros, the comparison would be vacuous"
        assert_close(blobs[name], want, name)
    return report


@pytest.mark.parametrize("name", list(APPS))
def test_application_runs_in_real_caffe(pycaffe, tmp_path, name):
    """The export as a user makes it, then the model with every layer's output exposed, so every
    Keras layer's value is compared with the blob real Caffe computes for it."""
    ctor, size = APPS[name]
    model = randomize_batchnorm(ctor(weights=None, input_shape=(size, size, 3), classes=10,
                                     classifier_activation=None))
    check_export_in_real_caffe(pycaffe, model, tmp_path, seed=1)
    every = keras.Model(model.inputs, [layer.output for layer in model.layers[1:]])
    (tmp_path / "every").mkdir()
    report = check_export_in_real_caffe(pycaffe, every, tmp_path / "every", seed=1, nonzero=False)
    assert len(report["outputs"]) == len(model.layers) - 1


def test_keras_caffe_keras_model_runs_in_real_caffe(pycaffe, tmp_path):
    check_export_in_real_caffe(pycaffe, _keras_model(), tmp_path)


@pytest.mark.parametrize("case", ROUNDTRIP_CASES)
def test_caffe_keras_caffe_runs_in_real_caffe(pycaffe, tmp_path, case):
    """The caffe-ref net converted to Keras and back: real Caffe on the exported files reproduces what
    real Caffe computed on the original files (ref.npz), for every output the round trip compares."""
    from bnconvert.c2k import convert_caffe

    d, proto, weights, meta = _caffe_files(case)
    outs = ROUNDTRIP_CASES[case] or [o for o in meta["outputs"] if meta["outputs"][o]]
    image_inputs = {k: v for k, v in meta["inputs"].items() if len(v) == 4}
    model, _ = convert_caffe(str(proto), str(weights), input_shapes=image_inputs, outputs=outs)
    rt_proto, rt_weights, report = export(model, tmp_path)
    inputs, ref = np.load(d / "input.npz"), np.load(d / "ref.npz")
    (in_name,) = report["inputs"]
    (src,) = image_inputs
    blobs = pycaffe.forward(rt_proto, rt_weights, {in_name: inputs[src]}, tmp_path)
    names = [t._keras_history.operation.name for t in model.outputs]
    assert list(report["outputs"]) == names
    for o, n in zip(outs, names):
        assert_close(blobs[n], ref[o], f"{case}:{o}")
