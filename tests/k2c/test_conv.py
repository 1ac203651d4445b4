"""Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose and Dense, checked against OpenCV dnn."""
import keras
import numpy as np
import pytest

L = keras.layers


def _model(layer, shape=(10, 11, 4)):
    x = keras.Input(shape, name="data")
    return keras.Model(x, layer(x))


def _randomize(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        layer.set_weights([rng.normal(0, 0.3, w.shape).astype("float32") for w in layer.get_weights()])
    return model


@pytest.mark.parametrize("kw", [
    dict(kernel_size=3, padding="valid"),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=3, strides=2, padding="same"),  # TF's asymmetric pad on the even axis
    dict(kernel_size=(2, 4), strides=(2, 3), padding="same"),
    dict(kernel_size=3, strides=2, padding="valid"),
    dict(kernel_size=3, dilation_rate=2, padding="same"),
    dict(kernel_size=1, groups=2, padding="valid"),
    dict(kernel_size=3, groups=4, strides=2, padding="same", activation="relu"),
    dict(kernel_size=3, use_bias=False, padding="same", activation="tanh"),
])
def test_conv2d(check, kw):
    check(_randomize(_model(L.Conv2D(8, name="conv", **kw))))


@pytest.mark.parametrize("kw", [
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=3, strides=2, padding="same", depth_multiplier=2),
    dict(kernel_size=(3, 5), strides=2, padding="valid", activation="relu6"),
])
def test_depthwise_conv2d(check, kw):
    check(_randomize(_model(L.DepthwiseConv2D(name="dw", **kw))))


def test_depthwise_weights_layout():
    from bnconvert.k2c import convert

    m = _randomize(_model(L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")))
    _, weights, _ = convert(m)
    (layer,) = [x for x in weights.layer if x.name == "dw"]
    assert list(layer.blobs[0].shape.dim) == [8, 1, 3, 3]
    assert layer.convolution_param.group == 4


@pytest.mark.parametrize("kw", [dict(padding="same"), dict(strides=2, padding="same", depth_multiplier=2)])
def test_separable_conv2d(check, kw):
    check(_randomize(_model(L.SeparableConv2D(6, 3, name="sep", **kw))))


@pytest.mark.parametrize("kw", [
    dict(kernel_size=3, strides=2, padding="valid"),
    dict(kernel_size=3, strides=2, padding="same"),  # asymmetric: pad + Crop
    dict(kernel_size=4, strides=2, padding="same"),
    dict(kernel_size=3, strides=1, padding="same", use_bias=False),
])
def test_conv2d_transpose(check, kw):
    check(_randomize(_model(L.Conv2DTranspose(5, name="up", **kw), (5, 6, 3))))


def test_dense_2d(check):
    check(_randomize(_model(L.Dense(7, activation="sigmoid", name="fc"), (12,))))


def test_dense_after_flatten_reorders_kernel(check):
    x = keras.Input((5, 6, 3), name="data")
    y = L.Conv2D(4, 3, name="c")(x)
    y = L.Flatten(name="flat")(y)
    y = L.Dropout(0.5, name="drop")(y)
    m = _randomize(keras.Model(x, L.Dense(6, name="fc")(y)))
    report = check(m)
    assert report["dropped"] == [["drop", "Dropout"]]


def test_dense_on_3d_input(check):
    check(_randomize(_model(L.Dense(5, name="fc"), (4, 7))))


def test_channels_first_is_refused():
    from bnconvert.errors import ConversionError
    from bnconvert.k2c import convert

    m = _model(L.Conv2D(4, 3, data_format="channels_first", name="cf"), (3, 8, 8))
    with pytest.raises(ConversionError, match="channels_first"):
        convert(m)
