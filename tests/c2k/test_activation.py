"""Elementwise activations, Dropout and Softmax against Caffe's formulas (and OpenCV where it has the layer)."""
import numpy as np
import pytest

from helpers import assert_close

from ._util import check_numpy, convert, inputs_for, proto


def _layer(typ, params="", bottom="data", top="out", name=None):
    return f'layer {{ name: "{name or top}" type: "{typ}" bottom: "{bottom}" top: "{top}" {params} }}\n'


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


# type, params, numpy formula of Caffe's forward pass, input transform (keeps Log/Power in their domain)
UNARY = {
    "relu": ("ReLU", "", lambda x: np.maximum(x, 0), None),
    "leaky_relu": ("ReLU", "relu_param { negative_slope: 0.2 }", lambda x: np.where(x > 0, x, 0.2 * x), None),
    "relu6": ("ReLU6", "", lambda x: np.clip(x, 0, 6), lambda x: 4 * x),
    "elu": ("ELU", "", lambda x: np.where(x > 0, x, np.exp(x) - 1), None),
    "elu_alpha": ("ELU", "elu_param { alpha: 0.5 }", lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1)), None),
    "sigmoid": ("Sigmoid", "", _sigmoid, None),
    "tanh": ("TanH", "", np.tanh, None),
    "absval": ("AbsVal", "", np.abs, None),
    "bnll": ("BNLL", "", lambda x: np.log1p(np.exp(x)), lambda x: 10 * x),
    "power_default": ("Power", "", lambda x: x, None),
    "power": ("Power", "power_param { power: 2 scale: 0.5 shift: 1 }", lambda x: (1 + 0.5 * x) ** 2, None),
    "power_frac": ("Power", "power_param { power: 0.5 scale: 2 shift: 0.1 }", lambda x: (0.1 + 2 * x) ** 0.5,
                   np.abs),
    "power_neg": ("Power", "power_param { power: -1.5 shift: 1 }", lambda x: (1 + x) ** -1.5, np.abs),
    "exp": ("Exp", "", np.exp, None),
    "exp_base": ("Exp", "exp_param { base: 2 scale: 0.5 shift: -1 }", lambda x: 2.0 ** (0.5 * x - 1), None),
    "log": ("Log", "", np.log, lambda x: np.abs(x) + 0.1),
    "log_base": ("Log", "log_param { base: 10 scale: 2 shift: 3 }", lambda x: np.log10(2 * x + 3),
                 lambda x: np.abs(x)),
    "threshold": ("Threshold", "threshold_param { threshold: 0.3 }", lambda x: (x > 0.3).astype(np.float32), None),
    "threshold_default": ("Threshold", "", lambda x: (x > 0).astype(np.float32), None),
    "clip": ("Clip", "clip_param { min: -0.5 max: 0.7 }", lambda x: np.clip(x, -0.5, 0.7), None),
    "swish": ("Swish", "", lambda x: x * _sigmoid(x), None),
    "swish_beta": ("Swish", "swish_param { beta: 1.7 }", lambda x: x * _sigmoid(1.7 * x), None),
    "dropout": ("Dropout", "dropout_param { dropout_ratio: 0.7 }", lambda x: x, None),
}
OPENCV_HAS = {"relu", "leaky_relu", "relu6", "elu", "sigmoid", "tanh", "absval", "bnll", "power", "exp", "dropout"}


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (3, 7)], ids=["4d", "2d"])
@pytest.mark.parametrize("key", UNARY.keys())
def test_unary(tmp_path, key, shape):
    typ, params, fn, prep = UNARY[key]
    case = convert(tmp_path, proto(_layer(typ, params), shape=shape))
    x = inputs_for(case)
    if prep is not None:
        x = {"data": prep(x["data"]).astype(np.float32)}
    got = case.run(x)["out"]
    assert_close(got, fn(x["data"].astype(np.float64)).astype(np.float32), key)
    if key in OPENCV_HAS:
        assert_close(got, case.opencv(x)["out"], "opencv")


def test_unary_in_place_chain_on_flattened_features(tmp_path):
    """In-place activations on a flattened (H,W,C-ordered) tensor keep that order for the InnerProduct."""
    body = (_layer("Flatten", top="flat") + _layer("Sigmoid", bottom="flat", top="flat", name="sig") +
            _layer("Power", "power_param { scale: 3 shift: -1 }", bottom="flat", top="flat", name="pow") +
            'layer { name: "fc" type: "InnerProduct" bottom: "flat" top: "fc" inner_product_param { num_output: 3 } }\n')

    def ref(c, x):
        w, b = c.blobs("fc")
        return {"fc": (3 * _sigmoid(x["data"].reshape(2, -1)) - 1) @ w.T + b}

    case, x, got = check_numpy(tmp_path, proto(body, shape=(2, 3, 4, 5)), ref)
    assert_close(got["fc"], case.opencv(x)["fc"], "opencv")


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 6), (2, 3, 5)], ids=["4d", "2d", "3d"])
def test_prelu(tmp_path, shared, shape):
    text = proto(_layer("PReLU", f"prelu_param {{ channel_shared: {str(shared).lower()} }}"), shape=shape)

    def ref(c, x):
        a = c.blobs("out")[0]
        assert a.shape == (() if shared else (shape[1],))
        a = a.reshape((1, -1) + (1,) * (len(shape) - 2)) if not shared else a
        d = x["data"]
        return {"out": np.where(d > 0, d, a * d)}

    case, x, got = check_numpy(tmp_path, text, ref)
    if not shared:  # OpenCV cannot read the 0-d slope blob Caffe stores for channel_shared
        assert_close(got["out"], case.opencv(x)["out"], "opencv")


@pytest.mark.parametrize("axis,shape", [(1, (2, 4, 3, 5)), (2, (2, 4, 3, 5)), (3, (2, 4, 3, 5)), (-1, (2, 4, 3, 5)),
                                        (1, (3, 6)), (0, (3, 6)), (2, (2, 3, 4))])
def test_softmax_axis(tmp_path, axis, shape):
    text = proto(_layer("Softmax", f"softmax_param {{ axis: {axis} }}"), shape=shape)

    def ref(c, x):
        d = x["data"].astype(np.float64)
        e = np.exp(d - d.max(axis=axis, keepdims=True))
        return {"out": (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)}

    case, x, got = check_numpy(tmp_path, text, ref)
    assert_close(got["out"], case.opencv(x)["out"], "opencv")


def test_softmax_default_axis_after_flatten(tmp_path):
    body = _layer("Flatten", top="flat") + _layer("Softmax", bottom="flat", top="prob")

    def ref(c, x):
        d = x["data"].reshape(2, -1).astype(np.float64)
        e = np.exp(d - d.max(axis=1, keepdims=True))
        return {"prob": (e / e.sum(axis=1, keepdims=True)).astype(np.float32)}

    check_numpy(tmp_path, proto(body, shape=(2, 3, 2, 4)), ref)
