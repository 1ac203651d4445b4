"""The fork layers through the converter on tiny prototxts: Interp, Upsample (nearest and max-unpooling),
MAX Pooling with its argmax mask top, and the one-layer BN, against numpy written from each fork's source
(tests/c2k/_forks_ref.py) and, for Interp, OpenCV dnn (which implements it and agrees)."""
import numpy as np
import pytest

import keras

from bnconvert.caffe.graph import load_net
from bnconvert.errors import ConversionError

from helpers import assert_close, pb_field, pb_varint

from . import _forks_ref as ref
from ._util import check_numpy, convert, inputs_for, proto


def _layer(typ, params="", bottom="data", top="out", name=None):
    bottoms = "".join(f'bottom: "{b}" ' for b in ([bottom] if isinstance(bottom, str) else bottom))
    tops = "".join(f'top: "{t}" ' for t in ([top] if isinstance(top, str) else top))
    name = name or (top if isinstance(top, str) else top[0])
    return f'layer {{ name: "{name}" type: "{typ}" {bottoms}{tops}{params} }}\n'


# --- Interp -------------------------------------------------------------------------------

INTERP = {
    "zoom": ("zoom_factor: 3", dict(zoom=3)),
    "shrink": ("shrink_factor: 2", dict(shrink=2)),
    "shrink_then_zoom": ("shrink_factor: 2 zoom_factor: 3", dict(shrink=2, zoom=3)),
    "height_width_up": ("height: 11 width: 8", dict(height=11, width=8)),
    "height_width_down": ("height: 3 width: 2", dict(height=3, width=2)),
    "to_1x1": ("height: 1 width: 1", dict(height=1, width=1)),
    "same_size_copy": ("height: 7 width: 5", dict(height=7, width=5)),
    "crop_pads": ("zoom_factor: 2 pad_beg: -1 pad_end: -2", dict(zoom=2, pad_beg=-1, pad_end=-2)),
    "crop_same_size": ("height: 5 width: 3 pad_beg: -1 pad_end: -1", dict(height=5, width=3, pad_beg=-1, pad_end=-1)),
    # the fork's precedence: one factor beats height/width; both factors lose to height/width
    "zoom_beats_height_width": ("zoom_factor: 2 height: 3 width: 3", dict(zoom=2)),
    "height_width_beat_both_factors": ("zoom_factor: 2 shrink_factor: 2 height: 4 width: 6",
                                       dict(height=4, width=6)),
}


@pytest.mark.parametrize("key", INTERP)
def test_interp_matches_the_fork(tmp_path, key):
    params, kw = INTERP[key]
    shape = (2, 3, 7, 5)
    oh, ow = ref.interp_size(shape, **kw)

    def reference(case, x):
        return {"out": ref.interp(x["data"], oh, ow, kw.get("pad_beg", 0), kw.get("pad_end", 0))}

    case, x, got = check_numpy(tmp_path, proto(_layer("Interp", f"interp_param {{ {params} }}"), shape=shape),
                               reference)
    assert got["out"].shape == (2, 3, oh, ow)
    assert [type(la).__name__ for la in case.model.layers][1:] == ["CaffeInterp"]


@pytest.mark.parametrize("key", ["zoom", "height_width_up", "height_width_down"])
def test_interp_agrees_with_opencv(tmp_path, key):
    # OpenCV dnn implements Interp as a bilinear resize with aligned corners. It agrees with the fork
    # for zoom_factor and height/width; it has no shrink_factor (its output is 0x0) and no cropping.
    params, _ = INTERP[key]
    case = convert(tmp_path, proto(_layer("Interp", f"interp_param {{ {params} }}"), shape=(1, 2, 9, 6)))
    x = inputs_for(case)
    assert_close(case.run(x)["out"], case.opencv(x)["out"], "opencv")


@pytest.mark.parametrize("params, msg", [
    ("pad_beg: 1", "non-positive"),
    ("", "needs zoom_factor"),
    ("height: 4", "needs zoom_factor"),
    ("zoom_factor: 0", ">= 1"),
])
def test_interp_bad_parameters_are_refused(tmp_path, params, msg):
    path = tmp_path / "bad.prototxt"
    path.write_text(proto(_layer("Interp", f"interp_param {{ {params} }}")))
    with pytest.raises(ConversionError, match=msg) as e:
        load_net(str(path))
    assert "out" in str(e.value) and "bad.prototxt" in str(e.value)


# --- Pooling with the argmax mask, and SegNet's unpooling -----------------------------------

POOL = {
    "k2s2": ("kernel_size: 2 stride: 2", (2, 2), (2, 2), (0, 0)),
    "k3s2_pad1": ("kernel_size: 3 stride: 2 pad: 1", (3, 3), (2, 2), (1, 1)),
    "k3s2_ceil_overhang": ("kernel_size: 3 stride: 2", (3, 3), (2, 2), (0, 0)),
    "k2s1_overlap": ("kernel_size: 2 stride: 1", (2, 2), (1, 1), (0, 0)),
    "rect": ("kernel_h: 3 kernel_w: 2 stride_h: 1 stride_w: 2", (3, 2), (1, 2), (0, 0)),
}


def _integer_input(case, seed=3):
    """Few distinct values, so that windows have ties (the first maximum in raster order must win)."""
    x = inputs_for(case)
    rng = np.random.default_rng(seed)
    return {"data": rng.integers(-2, 3, x["data"].shape).astype(np.float32)}


@pytest.mark.parametrize("key", POOL)
def test_max_pooling_with_mask_top(tmp_path, key):
    params, k, s, p = POOL[key]
    body = _layer("Pooling", f"pooling_param {{ pool: MAX {params} }}", top=["pool", "mask"])
    case = convert(tmp_path, proto(body, shape=(2, 3, 7, 6)))
    x = _integer_input(case)
    got = case.run(x)
    oh, ow = got["pool"].shape[2:]
    want_pool, want_mask = ref.max_pool_with_mask(x["data"], k, s, p, (oh, ow))
    assert_close(got["pool"], want_pool, "pool")
    np.testing.assert_array_equal(got["mask"], want_mask)
    assert_close(got["pool"], case.opencv(x, ["pool"])["pool"], "opencv pool")


def test_pooling_mask_needs_max(tmp_path):
    body = _layer("Pooling", "pooling_param { pool: AVE kernel_size: 2 stride: 2 }", top=["pool", "mask"])
    with pytest.raises(ConversionError, match="needs pool: MAX"):
        convert(tmp_path, proto(body))


UNPOOL = {
    "segnet_explicit_size": ("kernel_size: 2 stride: 2", "scale: 2 upsample_h: 7 upsample_w: 6", (7, 6)),
    "enet_scale": ("kernel_size: 2 stride: 2", "scale: 2", (6, 6)),
    "scale_h_w": ("kernel_size: 2 stride: 2", "scale_h: 2 scale_w: 2", (6, 6)),
    "pad_out": ("kernel_size: 2 stride: 2", "scale: 2 pad_out_h: true pad_out_w: true", (5, 5)),
    "overlapping_last_wins": ("kernel_size: 3 stride: 1", "upsample_h: 7 upsample_w: 6", (7, 6)),
}


@pytest.mark.parametrize("key", UNPOOL)
def test_segnet_unpooling_by_the_pooling_mask(tmp_path, key):
    pool_params, up_params, (uh, uw) = UNPOOL[key]
    body = _layer("Pooling", f"pooling_param {{ pool: MAX {pool_params} }}", top=["pool", "mask"])
    body += _layer("Upsample", f"upsample_param {{ {up_params} }}", bottom=["pool", "mask"], top="up")
    shape = {"segnet_explicit_size": (2, 3, 7, 6), "overlapping_last_wins": (2, 3, 7, 6),
             "pad_out": (2, 3, 5, 5)}.get(key, (2, 3, 6, 6))
    case = convert(tmp_path, proto(body, shape=shape), outputs=["up", "mask"])
    x = _integer_input(case)
    got = case.run(x)
    assert got["up"].shape == (2, 3, uh, uw)
    _, _, ph, pw = got["mask"].shape
    k, s = ((3, 3), (1, 1)) if "overlapping" in key else ((2, 2), (2, 2))
    pooled, mask = ref.max_pool_with_mask(x["data"], k, s, (0, 0), (ph, pw))
    if "overlapping" in key:
        assert len(np.unique(mask[0, 0])) < mask[0, 0].size  # duplicates: the later one must win
    assert_close(got["up"], ref.unpool(pooled, mask, uh, uw), "up")
    kinds = [type(la).__name__ for la in case.model.layers]
    assert "CaffeMaxPoolArgmax2D" in kinds and "CaffeMaxUnpool2D" in kinds


@pytest.mark.parametrize("params, expect", [("scale: 2", 2), ("scale: 3", 3), ("", 1)])
def test_yolo_upsample_is_nearest(tmp_path, params, expect):
    body = _layer("Upsample", f"upsample_param {{ {params} }}" if params else "")

    def reference(case, x):
        return {"out": ref.upsample_nearest(x["data"], expect)}

    case, _, _ = check_numpy(tmp_path, proto(body, shape=(2, 3, 4, 5)), reference)
    kinds = [type(la).__name__ for la in case.model.layers][1:]
    assert kinds == (["UpSampling2D"] if expect > 1 else ["Identity"])


@pytest.mark.parametrize("params, msg", [
    ("scale: 1", "must be > 1"),
    ("scale: 2 scale_h: 2", "give upsample_h"),
    ("scale: 3 pad_out_h: true", "scale of 2"),
])
def test_unpooling_bad_parameters_are_refused(tmp_path, params, msg):
    body = _layer("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", top=["pool", "mask"])
    body += _layer("Upsample", f"upsample_param {{ {params} }}", bottom=["pool", "mask"], top="up")
    path = tmp_path / "bad.prototxt"
    path.write_text(proto(body))
    with pytest.raises(ConversionError, match=msg):
        load_net(str(path))


# --- the forks' BN ---------------------------------------------------------------------------

def test_segnet_enet_bn_inference_is_one_batchnormalization(tmp_path):
    body = _layer("BN", 'bn_param { bn_mode: INFERENCE scale_filler { type: "constant" value: 1 } }', name="bn")

    def reference(case, x):
        scale, shift = case.blobs("bn")
        return {"out": ref.bn_inference(x["data"], scale, shift)}

    case, _, _ = check_numpy(tmp_path, proto(body, shape=(2, 4, 5, 3)), reference)
    bns = [la for la in case.model.layers if type(la).__name__ == "BatchNormalization"]
    assert len(case.model.layers) == 2 and len(bns) == 1
    assert bns[0].epsilon == pytest.approx(1e-9)
    assert np.all(bns[0].moving_variance.numpy() == 1) and np.all(bns[0].moving_mean.numpy() == 0)


def test_segnet_bn_learn_mode_is_refused(tmp_path):
    body = _layer("BN", 'bn_param { scale_filler { type: "constant" value: 1 } }', name="bn")
    with pytest.raises(ConversionError, match="bn_mode is LEARN") as e:
        convert(tmp_path, proto(body))
    assert "compute_bn_statistics" in str(e.value.hint or "") or "compute_bn_statistics" in str(e.value)


PSP_PARAMS = 'param { lr_mult: 1 } param { lr_mult: 1 } param { lr_mult: 0 } param { lr_mult: 0 }'


@pytest.mark.parametrize("bn_param, eps, momentum", [
    ("", 1e-5, 0.9),
    ("bn_param { eps: 0.01 momentum: 0.95 frozen: true }", 0.01, 0.95),
])
def test_pspnet_bn(tmp_path, bn_param, eps, momentum):
    body = _layer("BN", f"{PSP_PARAMS} {bn_param}", name="bn")

    def reference(case, x):
        return {"out": ref.bn_pspnet(x["data"], *case.blobs("bn"), eps=eps)}

    case, _, _ = check_numpy(tmp_path, proto(body, shape=(2, 4, 5, 3)), reference)
    bn = [la for la in case.model.layers if type(la).__name__ == "BatchNormalization"][0]
    assert bn.epsilon == pytest.approx(eps) and bn.momentum == pytest.approx(momentum)
    assert_close(bn.moving_variance.numpy(), case.blobs("bn")[3].reshape(-1), "variance")
    assert len(case.model.layers) == 2


def test_pspnet_bn_in_train_phase_uses_batch_statistics(tmp_path):
    body = _layer("BN", PSP_PARAMS, name="bn")
    case = convert(tmp_path, proto(body), phase="TRAIN")
    assert any("batch statistics" in w for w in case.report["warnings"])
    with pytest.raises(ConversionError, match="batch statistics"):
        convert(tmp_path, proto(body), phase="TRAIN", on_batch_stats="error", name="again.prototxt")
    frozen = _layer("BN", PSP_PARAMS + " bn_param { frozen: true }", name="bn")
    case = convert(tmp_path, proto(frozen), phase="TRAIN", name="frozen.prototxt")
    assert not any("batch statistics" in w for w in case.report["warnings"])


def test_bn_blob_count_must_match_a_fork(tmp_path):
    # SegNet's bn_param with a caffemodel that holds PSPNet's four blobs
    text = proto(_layer("BN", PSP_PARAMS, name="bn"))
    case = convert(tmp_path, text)
    path = tmp_path / "segnet.prototxt"
    path.write_text(proto(_layer("BN", "bn_param { bn_mode: INFERENCE }", name="bn")))
    from bnconvert.c2k import convert_caffe
    with pytest.raises(ConversionError, match="blob"):
        convert_caffe(str(path), str(case.caffemodel))


# --- saving ------------------------------------------------------------------------------------

def test_fork_layers_survive_save_and_load(tmp_path):
    body = _layer("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", top=["pool", "mask"])
    body += _layer("Interp", "interp_param { zoom_factor: 2 }", bottom="pool", top="zoomed")
    body += _layer("Upsample", "upsample_param { scale: 2 }", bottom=["pool", "mask"], top="up")
    case = convert(tmp_path, proto(body, shape=(1, 2, 6, 6)), outputs=["zoomed", "up"])
    x = _integer_input(case)
    before = case.run(x)
    path = tmp_path / "m.keras"
    case.model.save(path)
    case.model = keras.saving.load_model(path)
    after = case.run(x)
    for n in before:
        np.testing.assert_array_equal(after[n], before[n])


# --- caffemodels written by the forks, with the forks' own field numbers -------------------------

def _blob(arr):
    dims = b"".join(pb_varint(d) for d in arr.shape)
    return pb_field(7, 2, pb_field(1, 2, dims)) + pb_field(5, 2, np.asarray(arr, "<f4").tobytes())


def _fork_layer(name, typ, params=b"", blobs=()):
    body = pb_field(1, 2, name.encode()) + pb_field(2, 2, typ.encode()) + params
    return pb_field(100, 2, body + b"".join(pb_field(7, 2, _blob(b)) for b in blobs))


def test_caffemodel_written_with_the_forks_field_numbers_loads(tmp_path):
    """PSPNet writes bn_param at 152 and interp_param at 143 (BVLC's input_param); SegNet writes bn_param
    at 45 and upsample_param at 137 (BVLC's embed_param, with a bool at 2 and messages at 4-5 there);
    ENet writes upsample_param at 147 (BVLC's swish_param). Such a file must load and convert: its
    blobs are matched by layer name, its layer parameters come from the prototxt."""
    rng = np.random.default_rng(5)
    c = 3
    psp = [rng.uniform(0.6, 1.4, (1, c, 1, 1)), rng.normal(0, 0.2, (1, c, 1, 1)),
           rng.normal(0, 0.5, (1, c, 1, 1)), rng.uniform(0.5, 2, (1, c, 1, 1))]
    seg = [rng.uniform(0.6, 1.4, (1, c, 1, 1)), rng.normal(0, 0.2, (1, c, 1, 1))]
    f32 = lambda v: np.float32(v).tobytes()  # noqa: E731
    psp_param = pb_field(152, 2, pb_field(3, 5, f32(0.95)) + pb_field(4, 5, f32(1e-3)) + pb_field(5, 0, pb_varint(1)))
    interp_param = pb_field(143, 2, pb_field(3, 0, pb_varint(2)))
    seg_bn_param = pb_field(45, 2, pb_field(3, 0, pb_varint(1)))
    seg_up_param = pb_field(137, 2, pb_field(1, 0, pb_varint(2)) + pb_field(2, 0, pb_varint(2)) + pb_field(3, 0, pb_varint(2))
                          + pb_field(6, 0, pb_varint(10)) + pb_field(7, 0, pb_varint(8)))
    enet_up_param = pb_field(147, 2, pb_field(1, 0, pb_varint(2)))
    model = pb_field(1, 2, b"fork") + b"".join([
        _fork_layer("data", "Input"),
        _fork_layer("psp_bn", "BN", psp_param, psp),
        _fork_layer("interp", "Interp", interp_param),
        _fork_layer("pool", "Pooling"),
        _fork_layer("seg_bn", "BN", seg_bn_param, seg),
        _fork_layer("up", "Upsample", seg_up_param),
        _fork_layer("up2", "Upsample", enet_up_param),
    ])
    cm = tmp_path / "fork.caffemodel"
    cm.write_bytes(model)
    body = _layer("BN", PSP_PARAMS + " bn_param { eps: 0.001 momentum: 0.95 frozen: true }", top="a", name="psp_bn")
    body += _layer("Interp", "interp_param { zoom_factor: 2 }", bottom="a", top="b", name="interp")
    body += _layer("Pooling", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }", bottom="b",
                   top=["p", "m"], name="pool")
    body += _layer("BN", "bn_param { bn_mode: INFERENCE }", bottom="p", top="q", name="seg_bn")
    body += _layer("Upsample", "upsample_param { upsample_h: 10 upsample_w: 8 }", bottom=["q", "m"], top="u",
                   name="up")
    body += _layer("Upsample", "upsample_param { scale: 2 }", bottom=["q", "m"], top="u2", name="up2")
    path = tmp_path / "fork.prototxt"
    path.write_text(proto(body, shape=(1, c, 5, 4)))
    from bnconvert.c2k import convert_caffe
    from bnconvert.testing import run_keras
    model, report = convert_caffe(str(path), str(cm), outputs=["u", "u2"])
    assert report["unused_weights"] == []
    x = {"data": rng.standard_normal((1, c, 5, 4)).astype(np.float32)}
    got = dict(zip(report["outputs"], run_keras(model, x, list(report["inputs"]))))
    a = ref.bn_pspnet(x["data"], *psp, eps=1e-3)
    b = ref.interp(a, 9, 7)
    p, m = ref.max_pool_with_mask(b, (2, 2), (2, 2), (0, 0), (5, 4))
    q = ref.bn_inference(p, *seg)
    assert_close(got["u"], ref.unpool(q, m, 10, 8), "u")
    assert_close(got["u2"], ref.unpool(q, m, 10, 8), "u2")
