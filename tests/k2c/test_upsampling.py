"""keras2caffe of bilinear UpSampling2D and of Conv2DTranspose with output_padding: exact in OpenCV dnn
(both targets) and in real BVLC Caffe."""
import keras
import numpy as np
import pytest

from bnconvert.caffe.io import write_caffemodel, write_prototxt
from bnconvert.k2c import convert

from helpers import assert_close

L = keras.layers
UPSAMPLE = [(2, 2), (3, 3), (4, 4), (2, 3), (1, 2)]
# (filters, kernel, strides, padding, output_padding, dilation)
TRANSPOSE = [(4, 3, 2, "same", 1, 1), (4, 3, 2, "valid", 1, 1), (3, 4, 2, "same", None, 1), (3, 3, 3, "same", 2, 1),
             (2, 5, 3, "valid", 2, 1), (2, 1, 2, "valid", 1, 1), (3, 3, 2, "same", None, 1), (2, (3, 2), (2, 3),
                                                                                              "valid", (1, 2), 1)]


def _upsampling(size, hw=(5, 6), c=3):
    x = keras.Input((*hw, c), batch_size=1)
    y = L.UpSampling2D(size, interpolation="bilinear", name="up")(L.Conv2D(c, 1, name="pre")(x))
    return keras.Model(x, y)


def _transpose(filters, kernel, strides, padding, output_padding, dilation, hw=(5, 4), c=3):
    x = keras.Input((*hw, c), batch_size=1)
    layer = L.Conv2DTranspose(filters, kernel, strides, padding=padding, output_padding=output_padding,
                              dilation_rate=dilation, name="deconv", bias_initializer="random_normal")
    m = keras.Model(x, layer(x))
    m.get_layer("deconv").set_weights([np.random.default_rng(1).standard_normal(w.shape).astype("float32")
                                       for w in m.get_layer("deconv").weights])
    return m


@pytest.mark.parametrize("size", UPSAMPLE, ids=str)
@pytest.mark.parametrize("target", ["caffe", "opencv"])
def test_bilinear_upsampling_in_opencv(check, size, target):
    check(_upsampling(size), target=target)


@pytest.mark.parametrize("case", TRANSPOSE, ids=str)
@pytest.mark.parametrize("target", ["caffe", "opencv"])
def test_conv2d_transpose_output_padding_in_opencv(check, case, target):
    check(_transpose(*case), target=target)


def _real_caffe(pycaffe, model, tmp_path):
    deploy, weights, report = convert(model)
    write_prototxt(deploy, tmp_path / "n.prototxt")
    write_caffemodel(weights, tmp_path / "n.caffemodel")
    x = np.random.default_rng(3).standard_normal(next(iter(report["inputs"].values()))).astype(np.float32)
    blobs = pycaffe.forward(tmp_path / "n.prototxt", tmp_path / "n.caffemodel", {next(iter(report["inputs"])): x},
                            tmp_path)
    want = np.asarray(model(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    (name,) = report["outputs"]
    assert_close(blobs[name], want, name)


@pytest.mark.parametrize("size", UPSAMPLE[:4], ids=str)
def test_bilinear_upsampling_in_real_caffe(pycaffe, tmp_path, size):
    _real_caffe(pycaffe, _upsampling(size), tmp_path)


@pytest.mark.parametrize("case", TRANSPOSE[:3] + TRANSPOSE[-1:], ids=str)
def test_conv2d_transpose_output_padding_in_real_caffe(pycaffe, tmp_path, case):
    _real_caffe(pycaffe, _transpose(*case), tmp_path)
