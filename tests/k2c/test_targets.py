"""keras2caffe --target: what each runtime gets. The opencv export runs in OpenCV dnn exactly as
written (no rewriting in the test), the caffe export keeps BVLC's own layers (Clip, Bias, Tile)."""
import keras
import numpy as np
import pytest

from bnconvert.errors import ConversionError
from bnconvert.k2c import convert
from bnconvert.keras_layers import CaffeScale, CaffeTile, CaffeUnary

from .test_applications import randomize_batchnorm

A, L = keras.applications, keras.layers
OPENCV_APPS = {"MobileNet": A.MobileNet, "MobileNetV2": A.MobileNetV2, "EfficientNetB0": A.EfficientNetB0}


def _app(name):
    return randomize_batchnorm(OPENCV_APPS[name](weights=None, input_shape=(64, 64, 3), classes=10,
                                                 classifier_activation=None))


def _types(model, target):
    return {L_.type for L_ in convert(model, target=target)[0].layer}


@pytest.mark.parametrize("name", list(OPENCV_APPS))
def test_application_exported_for_opencv_runs_in_opencv(check, name):
    model = _app(name)
    report = check(model, seed=1, target="opencv")
    assert report["target"] == "opencv"


def test_relu6_is_opencv_relu6_and_bvlc_clip():
    model = _app("MobileNetV2")
    assert "ReLU6" in _types(model, "opencv") and "Clip" not in _types(model, "opencv")
    assert "Clip" in _types(model, "caffe") and "ReLU6" not in _types(model, "caffe")


def _one(layer, shape=(5, 6, 4)):
    x = keras.Input(shape, batch_size=2)
    m = keras.Model(x, layer(L.Conv2D(shape[-1], 1, name="pre")(x)))
    for w in m.layers[-1].weights:
        w.assign(np.random.default_rng(2).uniform(0.5, 1.5, w.shape).astype("float32"))
    return m


OPENCV_REWRITES = {  # construct -> (Keras layer, BVLC type that OpenCV lacks)
    "relu_max_3.5": (lambda: L.ReLU(max_value=3.5), "Clip"),
    "leaky_relu_max_6": (lambda: L.ReLU(max_value=6.0, negative_slope=0.1), "Clip"),
    "hard_sigmoid": (lambda: L.Activation("hard_sigmoid"), "Clip"),
    "clip": (lambda: CaffeUnary("clip", min_value=-0.5, max_value=0.7), "Clip"),
    "log_base2": (lambda: CaffeUnary("log", base=2.0, scale=0.5, shift=3.0), None),
    "swish_beta": (lambda: CaffeUnary("swish", beta=1.7), None),
    "tile": (lambda: CaffeTile(axis=3, tiles=3), "Tile"),
    "bias_only": (lambda: CaffeScale((1, 1, 4), use_scale=False, use_bias=True), "Bias"),
}


@pytest.mark.parametrize("name", list(OPENCV_REWRITES))
def test_constructs_opencv_lacks_are_rewritten_exactly(check, name):
    make, bvlc_type = OPENCV_REWRITES[name]
    x = np.random.default_rng(0).uniform(0.1, 2.0, (2, 4, 5, 6)).astype(np.float32)  # log needs shift+scale*x > 0
    model = _one(make())
    check(model, x=x, target="opencv")
    if bvlc_type:
        assert bvlc_type not in _types(model, "opencv") and bvlc_type in _types(model, "caffe")


def test_threshold_is_refused_for_opencv():
    with pytest.raises(ConversionError, match="OpenCV dnn has no Threshold layer"):
        convert(_one(CaffeUnary("threshold", threshold=0.1)), target="opencv")


def test_unknown_target():
    with pytest.raises(ConversionError, match="unknown keras2caffe target 'tensorrt'"):
        convert(_one(L.ReLU()), target="tensorrt")


def test_cli_target_option(tmp_path):
    import cv2

    from bnconvert.cli import main

    model = _one(L.ReLU(max_value=6.0))
    model.save(tmp_path / "m.keras")
    for target, want, absent in (("opencv", 'type: "ReLU6"', 'type: "Clip"'), ("caffe", 'type: "Clip"', "ReLU6")):
        proto, weights = tmp_path / f"{target}.prototxt", tmp_path / f"{target}.caffemodel"
        assert main(["keras2caffe", str(tmp_path / "m.keras"), "-o", str(proto), str(weights), "--target", target,
                     "-q"]) == 0
        text = proto.read_text()
        assert want in text and absent not in text, text
    cv2.dnn.readNetFromCaffe(str(tmp_path / "opencv.prototxt"), str(tmp_path / "opencv.caffemodel"))


def test_fork_layers_are_named_for_the_bvlc_target():
    """A layer BVLC Caffe lacks (here the fork's Interp) is written, and the report says which fork runs it."""
    from bnconvert.keras_layers import CaffeInterp

    x = keras.Input((5, 6, 4), batch_size=1)
    model = keras.Model(x, CaffeInterp((9, 11), name="zoom")(L.Conv2D(4, 1, name="pre")(x)))
    warnings = convert(model, target="caffe")[2]["warnings"]
    assert any(w.startswith("1 Interp layer (zoom): Interp is a layer of PSPNet's and DeepLab v2's Caffe")
               for w in warnings), warnings
    assert not any("not of BVLC Caffe" in w for w in convert(model, target="opencv")[2]["warnings"])
