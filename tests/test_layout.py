import numpy as np
import pytest

from bnconvert import layout as lay


def test_conv_kernel_round_trip():
    w = np.random.default_rng(0).normal(size=(8, 3, 5, 7)).astype(np.float32)
    k = lay.conv_kernel_to_keras(w)
    assert k.shape == (5, 7, 3, 8)
    assert k[1, 2, 0, 4] == w[4, 0, 1, 2]
    np.testing.assert_array_equal(lay.conv_kernel_to_caffe(k), w)


def test_depthwise_kernel_channel_order():
    c, m = 3, 2
    w = np.arange(c * m * 4, dtype=np.float32).reshape(c * m, 1, 2, 2)
    k = lay.depthwise_kernel_to_keras(w, c)
    assert k.shape == (2, 2, c, m)
    # Caffe output channel o = ci * m + j comes from input channel ci.
    assert k[0, 1, 2, 1] == w[2 * m + 1, 0, 0, 1]
    np.testing.assert_array_equal(lay.depthwise_kernel_to_caffe(k), w)


def test_fc_reorder_matches_flatten_orders():
    rng = np.random.default_rng(1)
    c, h, w, o = 4, 3, 2, 5
    x = rng.normal(size=(2, c, h, w)).astype(np.float32)
    wt = rng.normal(size=(o, c * h * w)).astype(np.float32)
    ref = x.reshape(2, -1) @ wt.T                      # Caffe: C,H,W flatten
    k = lay.fc_weights_to_keras(wt, in_layout=lay.flat_hwc(c, h, w))
    got = x.transpose(0, 2, 3, 1).reshape(2, -1) @ k   # Keras: H,W,C flatten
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(lay.fc_weights_to_caffe(k, lay.flat_hwc(c, h, w)), wt)


def test_transpose_flag_and_axes():
    wt = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(lay.fc_weights_to_keras(wt, transpose=True), wt)
    assert [lay.keras_axis(a, 4, lay.NHWC) for a in range(4)] == [0, 3, 1, 2]
    assert lay.keras_axis(-1, 4, lay.NHWC) == 2
    assert lay.keras_axis(1, 2, lay.CAFFE) == 1
    with pytest.raises(ValueError, match="Received"):
        lay.caffe_axis(4, 4)


def test_array_layouts_round_trip():
    x = np.random.default_rng(2).normal(size=(2, 3, 4, 5)).astype(np.float32)
    for lo in (lay.NHWC, lay.CAFFE):
        np.testing.assert_array_equal(lay.to_caffe_array(lay.to_keras_array(x, lo), lo), x)
    flat = x.reshape(2, -1)
    lo = lay.flat_hwc(3, 4, 5)
    np.testing.assert_array_equal(lay.to_keras_array(flat, lo), x.transpose(0, 2, 3, 1).reshape(2, -1))
    np.testing.assert_array_equal(lay.to_caffe_array(lay.to_keras_array(flat, lo), lo), flat)


def test_broadcast_shape_for_channel_param():
    shape, order = lay.broadcast_shape_for((6,), 1, 4, lay.NHWC)
    assert shape == (1, 1, 6) and order == (0,)
    shape, order = lay.broadcast_shape_for((6, 5), 1, 4, lay.NHWC)  # C,H -> keras H(axis1), C(axis3)
    assert shape == (5, 1, 6) and order == (1, 0)
