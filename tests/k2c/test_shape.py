"""Flatten, Reshape, Permute, ZeroPadding2D, Cropping2D, UpSampling2D, nested models, bnconvert's shape layers."""
import keras
import pytest

L = keras.layers


def _model(*layers, shape=(4, 5, 3)):
    x = keras.Input(shape, name="data")
    y = x
    for layer in layers:
        y = layer(y)
    return keras.Model(x, y)


def test_flatten_output_keeps_keras_order(check):
    check(_model(L.Conv2D(3, 1, name="c"), L.Flatten(name="flat")))


def test_flatten_into_non_dense(check):
    x = keras.Input((3, 4, 2), name="data")
    f = L.Flatten(name="flat")(x)
    y = L.Activation("relu", name="act")(f)
    z = L.Dense(3, name="fc")(f)
    check(keras.Model(x, [y, z]))


@pytest.mark.parametrize("target", [(20, 3), (3, 4, 5), (60,), (5, 4, 3)])
def test_reshape(check, target):
    check(_model(L.Conv2D(3, 1, name="c"), L.Reshape(target, name="rs")))


@pytest.mark.parametrize("dims", [(3, 1, 2), (2, 1, 3), (1, 3, 2)])
def test_permute(check, dims):
    """The default target has no Permute (BVLC Caffe lacks it): a transpose of two axis groups becomes
    Reshape/Slice/Concat (tests/k2c/test_transpose.py); other orders are refused there and kept as
    Permute for OpenCV."""
    from bnconvert.errors import ConversionError

    model = _model(L.Permute(dims, name="perm"), L.Conv2D(2, 1, name="after"))
    if dims == (3, 1, 2):
        check(model)
    else:
        with pytest.raises(ConversionError, match="BVLC Caffe has no Permute layer"):
            check(model)
    check(model, target="opencv")


@pytest.mark.parametrize("pad", [1, ((0, 1), (2, 1)), ((2, 0), (0, 0))])
def test_zero_padding(check, pad):
    check(_model(L.ZeroPadding2D(pad, name="pad")))


@pytest.mark.parametrize("pad", [1, ((0, 1), (0, 1)), 3])
def test_zero_padding_into_conv(check, pad):
    check(_model(L.ZeroPadding2D(pad, name="pad"), L.Conv2D(4, 3, strides=2, name="conv"), shape=(8, 8, 3)))


@pytest.mark.parametrize("crop", [1, ((0, 1), (2, 1))])
def test_cropping(check, crop):
    check(_model(L.Cropping2D(crop, name="crop"), shape=(6, 7, 3)))


def test_upsampling(check):
    check(_model(L.UpSampling2D((2, 3), name="up")))


def test_upsampling_bicubic_is_refused():
    # bilinear is exact (tests/k2c/test_upsampling.py); the other interpolations have no Caffe layer
    from bnconvert.errors import ConversionError
    from bnconvert.k2c import convert

    with pytest.raises(ConversionError, match="bicubic"):
        convert(_model(L.UpSampling2D(2, interpolation="bicubic", name="up")))


def test_dropped_layers(check):
    m = _model(L.Dropout(0.3, name="d"), L.SpatialDropout2D(0.2, name="sd"), L.GaussianNoise(0.1, name="gn"),
               L.Conv2D(2, 1, name="c"))
    report = check(m)
    assert [d[0] for d in report["dropped"]] == ["d", "sd", "gn"]


def test_nested_model_in_sequential(check):
    inner = keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="conv"), L.BatchNormalization(name="bn"),
                              L.ReLU(name="relu")], name="backbone")
    outer = keras.Sequential([keras.Input((8, 8, 3), name="img"), inner, L.GlobalAveragePooling2D(name="gap"),
                              L.Dense(3, name="head")])
    report = check(outer)
    assert list(report["outputs"]) == ["head"] and list(report["inputs"]) == ["img"]


def test_caffe_slice_crop_shuffle(check):
    from bnconvert import keras_layers as kl

    x = keras.Input((6, 6, 4), name="data")
    a, b = kl.CaffeSlice(3, (0, 2, 4), name="slice")(x)
    ref = L.Conv2D(3, 3, name="small")(x)
    c = kl.CaffeCrop((0, 1, 1, 0), (1, 2), name="crop")([b, ref])
    s = kl.ShuffleChannel(2, name="shuffle")(a)
    check(keras.Model(x, [c, s]))


def test_caffe_tile():
    # OpenCV's Tile layer cannot read Caffe's tile_param, so this checks the emitted layer.
    from bnconvert import keras_layers as kl
    from bnconvert.k2c import convert

    deploy, _, report = convert(_model(kl.CaffeTile(3, 2, name="tile")))
    (tile,) = [layer for layer in deploy.layer if layer.type == "Tile"]
    assert (tile.tile_param.axis, tile.tile_param.tiles) == (1, 2)
    assert report["outputs"] == {"tile": [1, 6, 4, 5]}
