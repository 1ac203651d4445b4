"""Pooling (exact valid/same, floor sizes, TF's 'same' average divisor), global pooling, CaffePooling2D."""
import keras
import pytest

L = keras.layers


def _model(*layers, shape=(9, 10, 3)):
    x = keras.Input(shape, name="data")
    y = x
    for layer in layers:
        y = layer(y)
    return keras.Model(x, y)


@pytest.mark.parametrize("cls", [L.MaxPooling2D, L.AveragePooling2D])
@pytest.mark.parametrize("kw", [
    dict(pool_size=2),  # floor: Caffe's ceil size is cropped
    dict(pool_size=3, strides=2),
    dict(pool_size=3, strides=2, padding="same"),
    dict(pool_size=3, strides=1, padding="same"),  # same average: divisor excludes the padding
    dict(pool_size=2, strides=1, padding="same"),  # pad only after: needs a cropped extra pad
    dict(pool_size=(2, 3), strides=(3, 2), padding="same"),
])
def test_pooling(check, cls, kw):
    check(_model(cls(name="pool", **kw)))


def test_floor_pooling_uses_crop_not_round_mode():
    from bnconvert.k2c import convert

    deploy, _, _ = convert(_model(L.MaxPooling2D(2, name="pool")))
    types = [layer.type for layer in deploy.layer]
    assert "Crop" in types
    assert not any(layer.pooling_param.HasField("round_mode") for layer in deploy.layer)


@pytest.mark.parametrize("cls", [L.GlobalAveragePooling2D, L.GlobalMaxPooling2D])
@pytest.mark.parametrize("keepdims", [True, False])
def test_global_pooling(check, cls, keepdims):
    check(_model(cls(keepdims=keepdims, name="gp")))


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("cls", [L.MaxPooling2D, L.AveragePooling2D])
def test_zero_padding_then_pool(check, relu, cls):
    layers = ([L.ReLU(name="relu")] if relu else []) + [L.ZeroPadding2D(1, name="pad"), cls(3, 2, name="pool")]
    report = check(_model(*layers, shape=(8, 8, 3)))
    assert report["caffe_layers"] >= 2


def test_zero_padding_folds_into_max_pool_after_relu():
    from bnconvert.k2c import convert

    deploy, _, _ = convert(_model(L.ReLU(name="relu"), L.ZeroPadding2D(1, name="pad"), L.MaxPooling2D(3, 2, name="p"),
                                  shape=(8, 8, 3)))
    assert [layer.type for layer in deploy.layer if layer.type == "Convolution"] == []
    (pool,) = [layer for layer in deploy.layer if layer.type == "Pooling" and layer.name.startswith("p")][:1]
    assert pool.pooling_param.pad_h == 1


@pytest.mark.parametrize("kw", [
    dict(method="max", pool_size=(3, 3), strides=(2, 2), padding=(1, 1), ceil_mode=True),
    dict(method="ave", pool_size=(3, 3), strides=(2, 2), padding=(1, 1), ceil_mode=True),
    dict(method="max", pool_size=(3, 3), strides=(2, 2), padding=(0, 0), ceil_mode=False),
])
def test_caffe_pooling2d(check, kw):
    from bnconvert.keras_layers import CaffePooling2D

    check(_model(CaffePooling2D(name="cp", **kw), shape=(10, 10, 2)))
