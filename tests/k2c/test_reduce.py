"""keras2caffe of bnconvert's CaffeReduce: Reduction/ArgMax in real Caffe (default target), an
InnerProduct-of-ones sum in OpenCV dnn (--target opencv), ArgMax refused there."""
import keras
import numpy as np
import pytest

from bnconvert import layout as lay
from bnconvert.caffe.io import write_caffemodel, write_prototxt
from bnconvert.errors import ConversionError
from bnconvert.k2c import convert
from bnconvert.keras_layers import CaffeReduce

from helpers import assert_close

# (op, Keras axes, coeff, top_k) on an NHWC (2, 3, 4, 5) input
REDUCTIONS = [("sum", (1, 2, 3), 1.0, 1), ("mean", (1, 2, 3), 0.5, 1), ("asum", (3,), 2.0, 1),
              ("sumsq", (1, 2), 1.0, 1), ("mean", (-1,), 1.0, 1)]
NEEDS_PERMUTE = ("sum", (1, 3), -1.5, 1)  # H and C of NHWC: not trailing in the NCHW blob
ARGMAX = [("argmax", (3,), 1.0, 1), ("maxval", (3,), 1.0, 2), ("argmax", (1,), 1.0, 3)]


def _model(op, axes, coeff, top_k):
    x = keras.Input((3, 4, 5), batch_size=2)
    return keras.Model(x, CaffeReduce(op, axes, coeff, top_k, name="red")(x))


def _expected(model, x_nchw):
    y = np.asarray(model(lay.to_keras_array(x_nchw, lay.NHWC)))
    return lay.to_caffe_array(y, lay.default_layout(y.ndim))


def _x(seed=0):
    return np.random.default_rng(seed).standard_normal((2, 5, 3, 4)).astype(np.float32)


@pytest.mark.parametrize("case", REDUCTIONS + ARGMAX, ids=lambda c: f"{c[0]}{c[1]}k{c[3]}")
def test_caffe_reduce_in_real_caffe(pycaffe, tmp_path, case):
    model = _model(*case)
    deploy, weights, report = convert(model)
    write_prototxt(deploy, tmp_path / "n.prototxt")
    write_caffemodel(weights, tmp_path / "n.caffemodel")
    assert not {"Permute"} & {L.type for L in deploy.layer}
    x = _x()
    blobs = pycaffe.forward(tmp_path / "n.prototxt", tmp_path / "n.caffemodel", {next(iter(report["inputs"])): x},
                            tmp_path)
    (name,) = report["outputs"]
    assert_close(blobs[name], _expected(model, x), name)


@pytest.mark.parametrize("case", REDUCTIONS, ids=lambda c: f"{c[0]}{c[1]}")
def test_caffe_reduce_in_opencv(check, case):
    report = check(_model(*case), x=_x(), target="opencv")
    assert report["target"] == "opencv"


def test_axes_that_need_a_permute_run_in_opencv_and_are_refused_for_bvlc(check):
    check(_model(*NEEDS_PERMUTE), x=_x(), target="opencv")
    with pytest.raises(ConversionError, match="BVLC Caffe has no Permute layer.*--target opencv"):
        convert(_model(*NEEDS_PERMUTE))


def test_argmax_is_refused_for_opencv_with_the_reason():
    with pytest.raises(ConversionError, match="OpenCV dnn has no Caffe ArgMax layer.*--target caffe"):
        convert(_model(*ARGMAX[0]), target="opencv")


def test_reducing_the_batch_axis_is_refused():
    x = keras.Input((3,), batch_size=2)
    with pytest.raises(ConversionError, match="batch axis"):
        convert(keras.Model(x, CaffeReduce("sum", (0,))(x)))
