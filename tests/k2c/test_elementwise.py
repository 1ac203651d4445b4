"""Add, Subtract, Multiply (incl. SE gates), Maximum, Minimum, Average, CaffeEltwise, BroadcastTo."""
import keras
import pytest

L = keras.layers


def _two_branch(merge):
    x = keras.Input((5, 6, 4), name="data")
    a = L.Conv2D(4, 1, name="a")(x)
    b = L.Conv2D(4, 3, padding="same", name="b")(x)
    return keras.Model(x, merge([a, b]))


@pytest.mark.parametrize("merge", [L.Add, L.Subtract, L.Multiply, L.Maximum, L.Minimum, L.Average])
def test_merge(check, merge):
    check(_two_branch(merge(name="merge")))


def test_average_of_three(check):
    x = keras.Input((3, 3, 2), name="data")
    ys = [L.Conv2D(2, 1, name=f"c{i}")(x) for i in range(3)]
    check(keras.Model(x, L.Average(name="avg")(ys)))


def test_se_gate(check):
    x = keras.Input((6, 6, 8), name="data")
    s = L.GlobalAveragePooling2D(keepdims=True, name="squeeze")(x)
    s = L.Conv2D(2, 1, activation="relu", name="reduce")(s)
    s = L.Conv2D(8, 1, activation="sigmoid", name="expand")(s)
    m = keras.Model(x, L.Multiply(name="excite")([x, s]))
    check(m)
    from bnconvert.k2c import convert

    deploy, _, _ = convert(m)
    (scale,) = [layer for layer in deploy.layer if layer.type == "Scale"]
    assert len(scale.bottom) == 2 and scale.scale_param.axis == 0


def test_se_gate_flat(check):
    x = keras.Input((6, 6, 8), name="data")
    s = L.GlobalAveragePooling2D(name="squeeze")(x)
    s = L.Dense(8, activation="sigmoid", name="fc")(s)
    s = L.Reshape((1, 1, 8), name="rs")(s)
    check(keras.Model(x, L.Multiply(name="excite")([s, x])))


def test_concatenate_axes(check):
    x = keras.Input((4, 5, 3), name="data")
    a = L.Conv2D(2, 1, name="a")(x)
    b = L.Conv2D(2, 1, name="b")(x)
    c = [L.Concatenate(axis=ax, name=f"cat{ax}")([a, b]) for ax in (-1, 1, 2)]
    check(keras.Model(x, c))


def test_mismatched_shapes_are_refused():
    from bnconvert.errors import ConversionError
    from bnconvert.k2c import convert

    x = keras.Input((4, 4, 3), name="data")
    y = keras.Input((1, 4, 3), name="row")
    with pytest.raises(ConversionError, match="broadcast"):
        convert(keras.Model([x, y], L.Add(name="add")([x, y])))


def test_caffe_eltwise_and_broadcast(check):
    from bnconvert import keras_layers as kl

    x = keras.Input((4, 4, 3), name="data")
    a = L.Conv2D(3, 1, name="a")(x)
    e = kl.CaffeEltwise([0.5, -2.0], name="elt")([x, a])
    g = L.GlobalAveragePooling2D(name="g")(e)
    y = kl.BroadcastTo((1, 1, 3), "mul", name="bmul")([e, g])
    z = kl.BroadcastTo((1, 1, 3), "axpy", name="axpy")([g, y, x])
    check(keras.Model(x, z))
