"""Pooling: Caffe's exact output size (ceil/floor, the clip of windows starting in the padding),
MAX padding that never wins, and AVE divisors that count padding but not the ceil overhang."""
import math

import numpy as np
import pytest

from bnconvert.errors import ConversionError

from helpers import assert_close

from ._util import check_numpy, convert, inputs_for, proto


def caffe_pool(x, method, k, s, p, ceil=True):
    """Caffe's PoolingLayer::Forward_cpu, written from its source (pooling_layer.cpp)."""
    n, c, h, w = x.shape
    rnd = math.ceil if ceil else math.floor
    oh, ow = (int(rnd((size + 2 * pp - kk) / ss)) + 1 for size, kk, ss, pp in zip((h, w), k, s, p))
    if p[0] or p[1]:
        oh -= (oh - 1) * s[0] >= h + p[0]
        ow -= (ow - 1) * s[1] >= w + p[1]
    out = np.zeros((n, c, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * s[0] - p[0], j * s[1] - p[1]
            he, we = min(hs + k[0], h + p[0]), min(ws + k[1], w + p[1])
            area = (he - hs) * (we - ws)
            hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
            win = x[:, :, hs:he, ws:we].astype(np.float64)
            out[:, :, i, j] = win.max(axis=(2, 3)) if method == "MAX" else win.sum(axis=(2, 3)) / area
    return out.astype(np.float32)


def _pool(params):
    return f'layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param {{ {params} }} }}\n'


# (pooling_param text, kernel, stride, pad, ceil)
CASES = {
    "k2_s2": ("kernel_size: 2 stride: 2", (2, 2), (2, 2), (0, 0), True),
    "k3_s2_ceil_overhang": ("kernel_size: 3 stride: 2", (3, 3), (2, 2), (0, 0), True),
    "k3_s2_pad1": ("kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1), True),
    "k3_s1_pad1": ("kernel_size: 3 stride: 1 pad: 1", (3, 3), (1, 1), (1, 1), True),
    "k2_s2_pad1_clip": ("kernel_size: 2 stride: 2 pad: 1", (2, 2), (2, 2), (1, 1), True),
    "k5_s3_pad2": ("kernel_size: 5 stride: 3 pad: 2", (5, 5), (3, 3), (2, 2), True),
    "hw": ("kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 0", (3, 2), (2, 1), (1, 0), True),
    "round_floor": ("kernel_size: 3 stride: 2 round_mode: FLOOR", (3, 3), (2, 2), (0, 0), False),
    "round_floor_pad": ("kernel_size: 3 stride: 2 pad: 1 round_mode: FLOOR", (3, 3), (2, 2), (1, 1), False),
    "ceil_mode_false": ("kernel_size: 3 stride: 2 ceil_mode: false", (3, 3), (2, 2), (0, 0), False),
    "round_ceil_explicit": ("kernel_size: 2 stride: 3 round_mode: CEIL", (2, 2), (3, 3), (0, 0), True),
    "stride_gt_kernel": ("kernel_size: 2 stride: 3", (2, 2), (3, 3), (0, 0), True),
}


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("params,k,s,p,ceil", CASES.values(), ids=CASES.keys())
def test_pooling_matches_caffe(tmp_path, method, params, k, s, p, ceil):
    text = proto(_pool(f"pool: {method} {params}"), shape=(2, 3, 11, 10))
    case, x, got = check_numpy(tmp_path, text, lambda c, x: {"pool": caffe_pool(x["data"], method, k, s, p, ceil)})
    if "round_mode" not in params and "ceil_mode" not in params:  # OpenCV's schema lacks round_mode
        assert_close(got["pool"], case.opencv(x)["pool"], "opencv")


@pytest.mark.parametrize("method", ["MAX", "AVE"])
@pytest.mark.parametrize("shape", [(2, 3, 7, 5), (1, 4, 1, 1)])
def test_global_pooling(tmp_path, method, shape):
    text = proto(_pool(f"pool: {method} global_pooling: true"), shape=shape)
    case, x, got = check_numpy(tmp_path, text, lambda c, x: {
        "pool": caffe_pool(x["data"], method, shape[2:], (1, 1), (0, 0))})
    assert got["pool"].shape == shape[:2] + (1, 1)
    assert_close(got["pool"], case.opencv(x)["pool"], "opencv")


def test_max_pool_padding_never_wins(tmp_path):
    """All-negative inputs: zero padding must not become the maximum."""
    case = convert(tmp_path, proto(_pool("pool: MAX kernel_size: 3 stride: 2 pad: 1"), shape=(1, 2, 6, 6)))
    x = {"data": -1.0 - np.abs(inputs_for(case)["data"])}
    got = case.run(x)["pool"]
    assert got.max() < -1.0
    assert_close(got, caffe_pool(x["data"], "MAX", (3, 3), (2, 2), (1, 1)), "pool")


@pytest.mark.parametrize("batch", [1, 5])
def test_pooling_other_batch_sizes(tmp_path, batch):
    case = convert(tmp_path, proto(_pool("pool: AVE kernel_size: 3 stride: 2 pad: 1"), shape=(2, 3, 9, 8)))
    x = inputs_for(case, batch=batch)
    assert_close(case.run(x)["pool"], caffe_pool(x["data"], "AVE", (3, 3), (2, 2), (1, 1)), "pool")


def test_stochastic_pooling_is_refused(tmp_path):
    with pytest.raises(ConversionError, match="STOCHASTIC"):
        convert(tmp_path, proto(_pool("pool: STOCHASTIC kernel_size: 2 stride: 2")))
