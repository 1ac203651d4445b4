"""Activation layers and fused activations, checked against OpenCV dnn."""
import keras
import numpy as np
import pytest

L = keras.layers


def _model(layer, shape=(4, 5, 3)):
    x = keras.Input(shape, name="data")
    return keras.Model(x, layer(x))


@pytest.mark.parametrize("act", ["relu", "relu6", "sigmoid", "tanh", "elu", "selu", "swish", "silu", "softplus",
                                 "hard_sigmoid", "hard_swish", "mish", "leaky_relu", "softmax", "exponential",
                                 "linear"])
def test_activation(check, act):
    check(_model(L.Activation(act, name="act")))


@pytest.mark.parametrize("layer", [
    lambda: L.ReLU(name="r"), lambda: L.ReLU(6.0, name="r"), lambda: L.ReLU(negative_slope=0.1, name="r"),
    lambda: L.ReLU(4.0, negative_slope=0.1, name="r"),
    lambda: L.LeakyReLU(0.2, name="r"), lambda: L.ELU(0.7, name="r"), lambda: L.Softmax(name="r"),
    lambda: L.Softmax(axis=1, name="r"),
])
def test_activation_layers(check, layer):
    check(_model(layer()))


def test_relu6_is_clip():
    from bnconvert.k2c import convert

    deploy, _, _ = convert(_model(L.ReLU(6.0, name="r6")))
    (clip,) = [x for x in deploy.layer if x.type == "Clip"]
    assert (clip.clip_param.min, clip.clip_param.max) == (0.0, 6.0)


@pytest.mark.parametrize("shared", [None, [1, 2]])
def test_prelu(check, shared):
    m = _model(L.PReLU(shared_axes=shared, name="prelu"))
    w = m.get_layer("prelu").get_weights()[0]
    m.get_layer("prelu").set_weights([np.random.default_rng(0).uniform(0.05, 0.5, w.shape).astype("float32")])
    if shared is None:
        from bnconvert.errors import ConversionError
        from bnconvert.k2c import convert

        with pytest.raises(ConversionError, match="per channel"):
            convert(m)
    else:
        check(m)


def test_gelu_is_refused():
    from bnconvert.errors import ConversionError
    from bnconvert.k2c import convert

    with pytest.raises(ConversionError, match="gelu"):
        convert(_model(L.Activation("gelu", name="g")))


def test_caffe_unary(check):
    from bnconvert.keras_layers import CaffeUnary

    x = keras.Input((4, 4, 2), name="data")
    y = CaffeUnary("abs", name="abs")(x)
    y = CaffeUnary("power", power=2.0, scale=0.5, shift=1.0, name="pow")(y)
    y = CaffeUnary("log", name="log")(y)
    y = CaffeUnary("swish", beta=1.0, name="sw")(y)
    check(keras.Model(x, y))
