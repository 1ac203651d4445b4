"""bnconvert.caffe.shapes: exact Caffe shapes, refused absurd/unsupported geometry, semantic warnings."""
from __future__ import annotations

import glob
import math
import os
import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from bnconvert.caffe import load_net
from bnconvert.caffe.shapes import _pool_out
from bnconvert.errors import ShapeError

from ._nets import net_with

CONV = ('layer {{ name: "c" type: "{t}" bottom: "data" top: "c" '
        'convolution_param {{ num_output: {n} kernel_size: {k} {extra} }} }}\n')
POOL = 'layer {{ name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param {{ {params} }} }}\n'


def conv(n=4, k=3, extra="", t="Convolution"):
    return CONV.format(n=n, k=k, extra=extra, t=t)


def pool(params):
    return POOL.format(params=params)


def load(tmp_path, layers, shape=(1, 3, 8, 8)):
    return load_net(net_with(tmp_path, layers, shape=shape))


def refuse(tmp_path, layers, match, shape=(1, 3, 8, 8), layer="c"):
    t0 = time.perf_counter()
    with pytest.raises(ShapeError, match=match) as ei:
        load(tmp_path, layers, shape)
    assert time.perf_counter() - t0 < 1.0, "must refuse before allocating anything"
    assert ei.value.layer == layer and ei.value.file
    return ei.value


def test_shapes_match_real_caffe():
    """The inferred shape of every blob Caffe recorded, for every net in ../shared/caffe-ref."""
    from helpers import need_shared

    root = need_shared("caffe-ref")
    for d in sorted(glob.glob(os.path.join(str(root), "*", ""))):
        p = d + "deploy.prototxt" if os.path.exists(d + "deploy.prototxt") else d + "train_test_input.prototxt"
        net = load_net(p, d + "weights.caffemodel")
        ref = np.load(d + "ref.npz")
        fv = net.final_versions()
        checked = [k for k in ref.files if k in fv]
        assert checked, d
        assert [k for k in checked if tuple(ref[k].shape) != net.shapes[fv[k]]] == [], d


# --- absurd and invalid dimensions ------------------------------------------------------


def test_conv_with_absurd_num_output_refused_by_weight_shape(tmp_path):
    # a 1x1 input keeps the top under the limit: the 2e9 x 3 x 1 x 1 weights are what is refused
    e = refuse(tmp_path, conv(n=2000000000, k=1), r"weight blob 0 shape \(2000000000, 3, 1, 1\)", shape=(1, 3, 1, 1))
    assert e.layer_type == "Convolution"


def test_conv_with_absurd_num_output_refused_by_top_shape(tmp_path):
    refuse(tmp_path, conv(n=2000000000), "over the limit")


def test_inner_product_with_absurd_weights(tmp_path):
    layers = 'layer { name: "c" type: "InnerProduct" bottom: "data" top: "c" inner_product_param { num_output: 100000000 } }\n'
    refuse(tmp_path, layers, "weight blob 0", shape=(1, 3, 64, 64))


def test_reshape_and_tile_to_absurd_sizes(tmp_path):
    refuse(tmp_path, 'layer { name: "c" type: "Tile" bottom: "data" top: "c" tile_param { tiles: 1000000000 } }\n',
           "over the limit")


@pytest.mark.parametrize("layers, match", [
    (conv(n=0), "num_output must be positive"),
    (conv(k=0), "invalid convolution geometry"),
    (conv(k=20), "does not fit"),
    (conv(extra="axis: 2"), "axis 2 is not supported"),
    (conv(extra="axis: 2", t="Deconvolution"), "axis 2 is not supported"),
    (conv(extra="group: 2"), "group 2 must divide"),
])
def test_invalid_convolutions(tmp_path, layers, match):
    refuse(tmp_path, layers, match)


def test_prelu_and_normalize_need_a_channel_axis(tmp_path):
    layers = 'layer { name: "c" type: "PReLU" bottom: "data" top: "c" }\n'
    refuse(tmp_path, layers, "needs a channel axis", shape=(5,))


def test_crop_offsets_and_ranks(tmp_path):
    base = ('layer { name: "ref" type: "Input" top: "ref" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } } }\n'
            'layer { name: "c" type: "Crop" bottom: "data" bottom: "ref" top: "c" crop_param { axis: 2 %s } }\n')
    assert load(tmp_path, base % "offset: 1 offset: 2").shapes["c"] == (1, 3, 4, 4)
    refuse(tmp_path, base % "offset: 1 offset: 2 offset: 3", "3 offsets")
    refuse(tmp_path, base % "offset: 5", "runs past")
    flat = base.replace("dim: 1 dim: 3 dim: 4 dim: 4", "dim: 1 dim: 3")
    refuse(tmp_path, flat % "", "different ranks")


def test_convolution_with_several_bottoms(tmp_path):
    layers = ('layer { name: "d2" type: "Input" top: "d2" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
              'layer { name: "c" type: "Convolution" bottom: "data" bottom: "d2" top: "c1" top: "c2" '
              'convolution_param { num_output: 4 kernel_size: 3 } }\n')
    net = load(tmp_path, layers)
    assert net.shapes["c1"] == net.shapes["c2"] == (1, 4, 6, 6)
    refuse(tmp_path, layers.replace("dim: 8 dim: 8 } } }", "dim: 9 dim: 8 } } }", 1), "same shape")


# --- pooling ----------------------------------------------------------------------------


@pytest.mark.parametrize("params, hw", [
    ("kernel_size: 3 stride: 2", (4, 4)),                                 # default: ceil
    ("kernel_size: 3 stride: 2 ceil_mode: false", (3, 3)),
    ("kernel_size: 3 stride: 2 round_mode: FLOOR", (3, 3)),
    ("kernel_size: 3 stride: 2 ceil_mode: true round_mode: CEIL", (4, 4)),  # agreeing: fine
    ("kernel_size: 3 stride: 2 ceil_mode: false round_mode: FLOOR", (3, 3)),
])
def test_ceil_and_round_mode(tmp_path, params, hw):
    assert load(tmp_path, pool(params), shape=(1, 3, 8, 8)).shapes["p"][2:] == hw


@pytest.mark.parametrize("params", ["ceil_mode: true round_mode: FLOOR", "ceil_mode: false round_mode: CEIL"])
def test_ceil_and_round_mode_disagreeing(tmp_path, params):
    e = refuse(tmp_path, pool("kernel_size: 3 stride: 2 " + params), "disagree", layer="p")
    assert e.hint == "keep only one of them"


@given(size=st.integers(1, 300), k=st.integers(1, 12), s=st.integers(1, 6), pad=st.integers(0, 11),
       ceil=st.booleans())
@settings(max_examples=300, deadline=None)
def test_integer_pool_size_equals_caffes_float_formula(size, k, s, pad, ceil):
    if pad >= k:
        return
    rnd = math.ceil if ceil else math.floor
    want = int(rnd(np.float32(size + 2 * pad - k) / np.float32(s))) + 1
    if pad and (want - 1) * s >= size + pad:
        want -= 1
    assert _pool_out(size, k, s, pad, ceil) == want


def test_global_pooling_pad_and_stride_warn(tmp_path):
    net = load(tmp_path, pool("global_pooling: true pad: 1 stride: 2"))
    ws = [w for w in net.warnings if "layer 'p' (Pooling)" in w]
    assert any("pad is ignored" in w for w in ws) and any("stride is ignored" in w for w in ws)
    assert net.shapes["p"] == (1, 3, 1, 1)
    assert load(tmp_path, pool("global_pooling: true")).warnings == []


def test_global_pooling_with_kernel_is_refused(tmp_path):
    refuse(tmp_path, pool("global_pooling: true kernel_w: 2"), "cannot both be set", layer="p")


@pytest.mark.parametrize("params, warns", [
    ("pool: AVE kernel_size: 3 stride: 2 engine: CUDNN", True),    # 8 -> 4 windows, the last overhangs
    ("pool: AVE kernel_size: 2 stride: 2 engine: CUDNN", False),   # windows tile the input exactly
    ("pool: MAX kernel_size: 3 stride: 2 engine: CUDNN", False),   # Caffe runs MAX on its own engine
    ("pool: AVE kernel_size: 3 stride: 2 engine: CAFFE", False),
])
def test_cudnn_average_pooling_warns_only_when_results_differ(tmp_path, params, warns):
    net = load(tmp_path, pool(params))
    assert any("engine CUDNN" in w for w in net.warnings) == warns


def test_conv_engine_and_force_nd_im2col(tmp_path):
    net = load(tmp_path, conv(extra="engine: CUDNN dilation: 2"))
    assert any("engine CUDNN with dilation" in w for w in net.warnings)
    plain = load(tmp_path, conv())
    nd = load(tmp_path, conv(extra="force_nd_im2col: true engine: CUDNN"))
    assert nd.warnings == [] and nd.shapes == plain.shapes
    assert nd.layer("c").param_shapes == plain.layer("c").param_shapes


# --- Caffe's LayerSetUp CHECKs (issue 12 §6) ----------------------------------------------------


@pytest.mark.parametrize("size", [2, 4, 0])
def test_lrn_even_local_size_refused_like_caffe(tmp_path, size):
    p = net_with(tmp_path, f'layer {{ name: "n" type: "LRN" bottom: "data" top: "n" '
                           f'lrn_param {{ local_size: {size} }} }}\n')
    with pytest.raises(ShapeError, match=f"LRN only supports odd values for local_size.*Received: {size}") as e:
        load_net(p)
    assert e.value.layer == "n" and "\n" not in str(e.value)


def test_lrn_odd_local_size_accepted(tmp_path):
    p = net_with(tmp_path, 'layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param { local_size: 3 } }\n')
    assert load_net(p).shapes["n"] == (1, 3, 8, 8)


@pytest.mark.parametrize("param, needle", [
    ("top_k: 193", r"top_k 193 is larger than the 192 values per item"),  # no axis: count(1) = 3*8*8
    ("top_k: 4 axis: 1", r"top_k 4 is larger than axis size 3"),
    ("top_k: 0", r"top_k must not be less than 1"),
])
def test_argmax_top_k_over_the_axis_refused(tmp_path, param, needle):
    p = net_with(tmp_path, f'layer {{ name: "a" type: "ArgMax" bottom: "data" top: "a" argmax_param {{ {param} }} }}\n')
    with pytest.raises(ShapeError, match=needle) as e:
        load_net(p)
    assert e.value.layer == "a"


def test_argmax_top_k_at_the_limit_accepted(tmp_path):
    p = net_with(tmp_path, 'layer { name: "a" type: "ArgMax" bottom: "data" top: "a" argmax_param { top_k: 192 } }\n')
    assert load_net(p).shapes["a"] == (1, 1, 192, 1)  # Caffe keeps the bottom's 4 axes
