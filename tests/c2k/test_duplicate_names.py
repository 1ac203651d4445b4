"""Duplicate Caffe layer names convert as Caffe runs them (HED's five Crop layers named 'crop'), with
unique Keras names; same-named layers that both hold weights are refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bnconvert.c2k import convert_caffe
from bnconvert.caffe.graph import load_net
from bnconvert.caffe.io import read_prototxt, write_prototxt
from bnconvert.errors import GraphError
from bnconvert.testing import random_caffemodel, random_inputs, run_keras

from helpers import assert_close

HED = Path(__file__).resolve().parents[1] / "nets" / "forks" / "hed_deploy.prototxt"
SHAPE = (1, 3, 64, 64)  # HED's own is 1x3x500x500; its pad-35 first convolution works at any size
# Caffe blob -> the OpenCV layer that produces it (OpenCV, too, names the five crops 'crop', 'crop_1', ...
# in file order, and names the fusing convolution after its top).
COMPARED = {"upscore-dsn1": "crop", "upscore-dsn2": "crop_1", "upscore-dsn3": "crop_2", "upscore-dsn4": "crop_3",
            "upscore-dsn5": "crop_4", "upscore-fuse": "upscore-fuse", "sigmoid-dsn1": "sigmoid-dsn1"}


def test_hed_converts_with_unique_keras_names_and_matches_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2")
    cm = tmp_path / "hed.caffemodel"
    net = random_caffemodel(str(HED), cm, input_shapes={"data": SHAPE})
    assert [L.name for L in net.layers].count("crop") == 5
    names = list(COMPARED)
    model, report = convert_caffe(str(HED), str(cm), input_shapes={"data": SHAPE}, outputs=names)
    crops = [layer.name for layer in model.layers if "crop" in type(layer).__name__.lower()]
    assert len(crops) == 5 and len(set(crops)) == 5, crops
    assert len({layer.name for layer in model.layers}) == len(model.layers)
    assert any("5 layers are named 'crop'" in w for w in report["warnings"])
    x = random_inputs(net, seed=3)
    got = dict(zip(names, run_keras(model, x, list(report["inputs"]))))

    cv_net = read_prototxt(HED)  # OpenCV reads the input size from the header
    del cv_net.input_dim[:]
    cv_net.input_dim.extend(SHAPE)
    write_prototxt(cv_net, tmp_path / "cv.prototxt")
    cvnet = cv2.dnn.readNetFromCaffe(str(tmp_path / "cv.prototxt"), str(cm))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setInput(x["data"], "data")
    ref = dict(zip(names, cvnet.forward(list(COMPARED.values()))))
    for n in names:
        assert got[n].shape[-2:] == SHAPE[-2:]
        assert 0 < np.abs(ref[n]).max() and not np.allclose(ref[n], ref[n].flat[0]), n
        assert_close(got[n], np.asarray(ref[n]), n)


def test_same_named_layers_with_weights_are_refused(tmp_path):
    text = read_prototxt(HED)
    assert [lp.name for lp in text.layer[:3:2]] == ["conv1_1", "conv1_2"]
    text.layer[2].name = "conv1_1"  # two Convolutions (with blobs) named conv1_1
    write_prototxt(text, tmp_path / "bad.prototxt")
    with pytest.raises(GraphError) as ei:
        load_net(str(tmp_path / "bad.prototxt"), input_shapes={"data": SHAPE})
    assert ei.value.layer == "conv1_1" and "2 layers with weights are named 'conv1_1'" in str(ei.value)
