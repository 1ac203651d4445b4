"""keras2caffe of the fork layers: CaffeInterp -> Interp, CaffeMaxUnpool2D -> Upsample (two bottoms),
CaffeMaxPoolArgmax2D -> Pooling with two tops. Fork nets round-trip caffe -> keras -> caffe -> keras with
the same outputs (OpenCV cannot run BN/Upsample, so the second conversion is the reference runtime)."""
import keras
import numpy as np
import pytest

from bnconvert import layout as lay
from bnconvert import keras_layers as kl
from bnconvert.c2k import convert_caffe
from bnconvert.caffe.io import write_caffemodel, write_prototxt
from bnconvert.k2c import convert
from bnconvert.testing import random_caffemodel, run_keras

from helpers import assert_close

FORK_NET = '''name: "forks"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 9 dim: 10 } } }
layer { name: "bn1" type: "BN" bottom: "data" top: "bn1" bn_param { bn_mode: INFERENCE } }
layer { name: "pool1" type: "Pooling" bottom: "bn1" top: "pool1" top: "pool1_mask"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "bn2" type: "BN" bottom: "pool1" top: "bn2"
        param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 0 } param { lr_mult: 0 } bn_param { eps: 0.001 } }
layer { name: "up1" type: "Upsample" bottom: "bn2" bottom: "pool1_mask" top: "up1"
        upsample_param { scale: 2 upsample_h: 9 upsample_w: 10 } }
layer { name: "interp" type: "Interp" bottom: "pool1" top: "interp" interp_param { zoom_factor: 3 pad_beg: -1 } }
layer { name: "near" type: "Upsample" bottom: "pool1" top: "near" upsample_param { scale: 2 } }
'''


def _run(model, x):
    feeds = lay.to_keras_array(x, lay.NHWC)
    outs = model(feeds, training=False)
    return [lay.to_caffe_array(np.asarray(o), lay.NHWC) for o in (outs if isinstance(outs, list) else [outs])]


def test_fork_net_round_trips(tmp_path):
    src = tmp_path / "forks.prototxt"
    src.write_text(FORK_NET)
    random_caffemodel(str(src), str(tmp_path / "forks.caffemodel"), seed=2)
    outputs = ["up1", "interp", "near"]
    model, report = convert_caffe(str(src), str(tmp_path / "forks.caffemodel"), outputs=outputs)
    deploy, weights, _ = convert(model, input_shape=(1, 3, 9, 10))
    types = {L.name: (L.type, len(L.bottom), len(L.top)) for L in deploy.layer}
    assert ("Interp", 1, 1) in types.values() and ("Upsample", 2, 1) in types.values()
    assert ("Pooling", 1, 2) in types.values()
    interp = [L for L in deploy.layer if L.type == "Interp"][0].interp_param
    assert (interp.height, interp.width, interp.pad_beg, interp.HasField("pad_end")) == (10, 10, -1, False)
    write_prototxt(deploy, tmp_path / "rt.prototxt")
    write_caffemodel(weights, tmp_path / "rt.caffemodel")
    again, report2 = convert_caffe(str(tmp_path / "rt.prototxt"), str(tmp_path / "rt.caffemodel"))
    rng = np.random.default_rng(4)
    x = rng.integers(-3, 4, (1, 3, 9, 10)).astype(np.float32)  # ties in the pooling windows
    first = dict(zip(report["outputs"], run_keras(model, {"data": x}, ["data"])))
    second = run_keras(again, {"data": x}, list(report2["inputs"]))
    assert len(second) == 3
    for name, got in zip(report2["outputs"], second):
        key = [o for o in outputs if name.startswith(o)][0]
        assert_close(got, first[key], name)


@pytest.mark.parametrize("ceil_mode", [True, False])
def test_argmax_pooling_and_unpooling_from_keras(tmp_path, ceil_mode):
    inp = keras.Input((8, 8, 2))
    pooled, mask = kl.CaffeMaxPoolArgmax2D((3, 3), (2, 2), (1, 1), ceil_mode=ceil_mode, name="p")(inp)
    up = kl.CaffeMaxUnpool2D((8, 8), name="u")([pooled, mask])
    model = keras.Model(inp, [up, mask])
    deploy, weights, _ = convert(model, input_shape=(1, 2, 8, 8))
    write_prototxt(deploy, tmp_path / "rt.prototxt")
    write_caffemodel(weights, tmp_path / "rt.caffemodel")
    again, report = convert_caffe(str(tmp_path / "rt.prototxt"), str(tmp_path / "rt.caffemodel"))
    x = np.random.default_rng(1).integers(-2, 3, (1, 2, 8, 8)).astype(np.float32)
    want = _run(model, x)
    got = run_keras(again, {"data": x} if "data" in report["inputs"] else {list(report["inputs"])[0]: x},
                    list(report["inputs"]))
    assert len(got) == 2
    by_shape = {g.shape: g for g in got}  # unpooled 8x8; mask 5x5 (ceil) or 4x4 (floor)
    for w in want:
        assert_close(by_shape[w.shape], w)


def test_interp_from_keras_matches_opencv(tmp_path):
    from .conftest import run_converted

    inp = keras.Input((5, 6, 3))
    model = keras.Model(inp, kl.CaffeInterp((9, 11), name="i")(inp))
    kres, cv, _ = run_converted(model, tmp_path)
    assert len(kres) == 1
    for name in kres:
        assert_close(cv[name].reshape(kres[name].shape), kres[name], name)


@pytest.mark.parametrize("size", [(10, 14), (15, 7)])
def test_nearest_resizing_by_whole_factors_matches_opencv(tmp_path, size):
    from .conftest import run_converted

    inp = keras.Input((5, 7, 3))
    model = keras.Model(inp, keras.layers.Resizing(*size, interpolation="nearest", name="r")(inp))
    kres, cv, _ = run_converted(model, tmp_path)
    for name in kres:
        assert_close(cv[name].reshape(kres[name].shape), kres[name], name)


@pytest.mark.parametrize("kwargs, msg", [
    (dict(height=10, width=14), "bilinear"),
    (dict(height=10, width=14, interpolation="nearest", crop_to_aspect_ratio=True), "aspect ratio"),
    (dict(height=8, width=14, interpolation="nearest"), "whole factors"),
])
def test_inexact_resizing_is_refused(kwargs, msg):
    from bnconvert.errors import ConversionError

    inp = keras.Input((5, 7, 3))
    model = keras.Model(inp, keras.layers.Resizing(name="r", **kwargs)(inp))
    with pytest.raises(ConversionError, match=msg) as e:
        convert(model, input_shape=(1, 3, 5, 7))
    assert "'r'" in str(e.value)
