"""BatchNormalization -> BatchNorm + Scale, Normalization, Rescaling and bnconvert's normalization layers."""
import keras
import numpy as np
import pytest

L = keras.layers


def _bn_model(**kw):
    x = keras.Input((6, 7, 5), name="data")
    y = L.Conv2D(5, 3, padding="same", name="conv")(x)
    y = L.BatchNormalization(name="bn", epsilon=1e-3, momentum=0.9, **kw)(y)
    m = keras.Model(x, y)
    rng = np.random.default_rng(1)
    bn = m.get_layer("bn")
    ws = []
    for w in bn.weights:
        n = w.path.split("/")[-1]
        ws.append({"gamma": rng.uniform(0.5, 1.5, 5), "beta": rng.normal(0, 0.5, 5),
                   "moving_mean": rng.normal(0, 1, 5), "moving_variance": rng.uniform(0.3, 3, 5)}[n])
    bn.set_weights([w.astype("float32") for w in ws])
    return m


@pytest.mark.parametrize("scale,center", [(True, True), (False, True), (True, False), (False, False)])
def test_batchnorm(check, scale, center):
    m = _bn_model(scale=scale, center=center)
    check(m)
    from bnconvert.k2c import convert

    deploy, weights, report = convert(m)
    bn = [x for x in weights.layer if x.type == "BatchNorm"][0]
    p = bn.batch_norm_param
    assert p.use_global_stats and abs(p.eps - 1e-3) < 1e-9 and abs(p.moving_average_fraction - 0.9) < 1e-7
    assert len(bn.param) == 0 and len(bn.blobs) == 3 and list(bn.blobs[2].data) == [1.0]
    k = m.get_layer("bn")
    np.testing.assert_array_equal(np.array(bn.blobs[0].data, np.float32), k.moving_mean.numpy())
    np.testing.assert_array_equal(np.array(bn.blobs[1].data, np.float32), k.moving_variance.numpy())
    scales = [x for x in weights.layer if x.type == "Scale"]
    if not (scale or center):
        assert scales == []
        return
    (s,) = scales
    assert list(s.bottom) == list(s.top) == list(bn.top)  # in place on the BatchNorm's top
    assert s.scale_param.bias_term == center and len(s.blobs) == 1 + center
    gamma = np.array(s.blobs[0].data)
    np.testing.assert_array_equal(gamma, k.gamma.numpy() if scale else np.ones(5))
    assert report["batchnorm"][0][0] == "bn"


def test_batchnorm_after_dense(check):
    x = keras.Input((8,), name="data")
    y = L.BatchNormalization(name="bn")(L.Dense(4, name="fc")(x))
    m = keras.Model(x, y)
    m.get_layer("bn").set_weights([np.full(4, 1.3, "float32"), np.full(4, 0.2, "float32"),
                                   np.linspace(-1, 1, 4).astype("float32"), np.linspace(0.5, 2, 4).astype("float32")])
    check(m)


def test_normalization_layer(check):
    x = keras.Input((5, 5, 3), name="data")
    y = L.Normalization(mean=[0.4, -1.0, 2.0], variance=[0.25, 4.0, 0.5], name="norm")(x)
    y2 = L.Normalization(mean=[0.4, -1.0, 2.0], variance=[0.25, 4.0, 0.5], invert=True, name="denorm")(y)
    check(keras.Model(x, [y, y2]))


@pytest.mark.parametrize("scale,offset", [(1 / 255.0, 0.0), (2.0, -1.0), ([0.5, 2.0, 1.0], [0.1, 0.2, 0.3])])
def test_rescaling(check, scale, offset):
    x = keras.Input((5, 5, 3), name="data")
    check(keras.Model(x, L.Rescaling(scale, offset, name="rescale")(x)))


def test_bnconvert_layers(check):
    from bnconvert import keras_layers as kl

    x = keras.Input((6, 6, 4), name="data")
    a = kl.CaffeLRN(3, 1e-2, 0.75, 1.0, name="lrn")(x)  # OpenCV ignores LRN's k (it reads "bias")
    b = kl.CaffeScale((1, 1, 4), name="cscale")(a)
    c = kl.CaffeNormalize(False, False, name="l2n")(b)
    d = kl.CaffeMVN((1, 2), name="mvn")(c)
    m = keras.Model(x, d)
    m.get_layer("cscale").set_weights([np.array([[[0.5, 1.5, -1, 2]]], "float32").reshape(1, 1, 4),
                                       np.array([0.1, 0.2, 0.3, 0.4], "float32").reshape(1, 1, 4)])
    m.get_layer("l2n").set_weights([np.array([1.0, 2.0, 3.0, 4.0], "float32")])
    check(m)
