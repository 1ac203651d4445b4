"""BatchNorm (+Scale), Scale, Bias, LRN, MVN and Normalize against Caffe's formulas and OpenCV."""
import numpy as np
import pytest

from bnconvert.errors import ConversionError

from helpers import assert_close

from ._util import check_numpy, convert, inputs_for, proto


def _layer(typ, params="", bottom="data", top="out", name=None):
    bottoms = "".join(f'bottom: "{b}" ' for b in ([bottom] if isinstance(bottom, str) else bottom))
    return f'layer {{ name: "{name or top}" type: "{typ}" {bottoms}top: "{top}" {params} }}\n'


def bn_ref(x, blobs, eps=1e-5, axis=1):
    mean, var, s = blobs
    k = 0.0 if float(s.ravel()[0]) == 0 else 1.0 / float(s.ravel()[0])
    shp = [1] * x.ndim
    shp[axis] = -1
    return (x - (mean * k).reshape(shp)) / np.sqrt((var * k).reshape(shp) + eps)


def scale_ref(x, gamma, beta=None, axis=1):
    shp = [1] * x.ndim
    shp[axis:axis + gamma.ndim] = gamma.shape
    y = x * gamma.reshape(shp)
    return y if beta is None else y + beta.reshape(shp)


BN_CASES = {
    "bn_only": ('', None),
    "bn_eps": ('batch_norm_param { eps: 0.1 }', None),
    "bn_scale_inplace": ('', "inplace"),
    "bn_scale_separate": ('', "separate"),
    "bn_scale_nobias": ('', "nobias"),
    "bn_global_true_eps": ('batch_norm_param { use_global_stats: true eps: 0.001 }', "inplace"),
}


@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (3, 6)], ids=["4d", "2d"])
@pytest.mark.parametrize("key", BN_CASES.keys())
def test_batchnorm_with_and_without_scale(tmp_path, key, shape):
    params, scale = BN_CASES[key]
    eps = 0.1 if "0.1" in params else 0.001 if "0.001" in params else 1e-5
    if scale is None:
        body = _layer("BatchNorm", params, top="out", name="bn")
    else:
        top = "bn" if scale == "separate" else "data"
        body = _layer("BatchNorm", params, top=top, name="bn")
        sp = 'scale_param { bias_term: false }' if scale == "nobias" else 'scale_param { bias_term: true }'
        body += _layer("Scale", sp, bottom=top, top="out", name="sc")

    def ref(c, x):
        y = bn_ref(x["data"], c.blobs("bn"), eps)
        if scale is not None:
            y = scale_ref(y, *c.blobs("sc"))
        return {"out": y.astype(np.float32)}

    case, x, got = check_numpy(tmp_path, proto(body, shape=shape), ref)
    kinds = [type(layer).__name__ for layer in case.model.layers]
    assert sorted(kinds) == ["BatchNormalization", "InputLayer"], kinds
    bns = [layer for layer in case.model.layers if type(layer).__name__ == "BatchNormalization"]
    assert len(bns) == 1, kinds
    bn = bns[0]
    s = float(case.blobs("bn")[2][0])
    assert s != 1.0
    assert_close(bn.moving_mean.numpy(), case.blobs("bn")[0] / s, "moving_mean")
    assert_close(bn.moving_variance.numpy(), case.blobs("bn")[1] / s, "moving_variance")
    assert bn.epsilon == pytest.approx(eps) and bn.scale == (scale is not None)
    assert bn.center == (scale in ("inplace", "separate"))
    assert case.report["batchnorm_scale_pairs"] == ([["bn", "sc"]] if scale else [])
    assert_close(got["out"], case.opencv(x)["out"], "opencv")


def test_batchnorm_factor_zero_gives_zero_statistics(tmp_path):
    text = proto(_layer("BatchNorm", "batch_norm_param { eps: 0.01 }", top="out", name="bn"))
    case = convert(tmp_path, text)
    from bnconvert.testing import random_caffemodel
    from bnconvert.c2k import convert_caffe

    random_caffemodel(str(case.path), str(case.path.with_suffix(".zero")), bn_factor=0.0)
    model, report = convert_caffe(str(case.path), str(case.path.with_suffix(".zero")))
    case.model, case.report, case.caffemodel = model, report, case.path.with_suffix(".zero")
    assert report["batchnorm_factors"] == {"bn": 0.0}
    x = inputs_for(case)
    assert_close(case.run(x)["out"], x["data"] / np.sqrt(0.01), "out")


def test_batchnorm_momentum_and_batch_statistics_warning(tmp_path):
    params = "batch_norm_param { use_global_stats: false moving_average_fraction: 0.9 }"
    text = proto(_layer("BatchNorm", params, top="out", name="bn"))
    case = convert(tmp_path, text)
    bn = [la for la in case.model.layers if type(la).__name__ == "BatchNormalization"][0]
    assert bn.momentum == pytest.approx(0.9)
    assert any("use_global_stats" in w for w in case.report["warnings"])
    with pytest.raises(ConversionError, match="use_global_stats"):
        convert(tmp_path, text, on_batch_stats="error", name="again.prototxt")


def test_batchnorm_feeding_batchnorm_and_shared_top(tmp_path):
    """A BatchNorm whose top is consumed twice keeps its Scale separate (no pairing)."""
    body = (_layer("BatchNorm", "", top="b1", name="bn1") + _layer("BatchNorm", "", bottom="b1", top="b2", name="bn2") +
            _layer("Scale", "scale_param { bias_term: true }", bottom="b2", top="s", name="sc") +
            _layer("Eltwise", "", bottom=["s", "b2"], top="out", name="sum"))

    def ref(c, x):
        b2 = bn_ref(bn_ref(x["data"], c.blobs("bn1")), c.blobs("bn2"))
        return {"out": (scale_ref(b2, *c.blobs("sc")) + b2).astype(np.float32)}

    case, x, got = check_numpy(tmp_path, proto(body), ref)
    assert case.report["batchnorm_scale_pairs"] == []
    assert_close(got["out"], case.opencv(x)["out"], "opencv")


# --- Scale and Bias ----------------------------------------------------------------------------------

SCALE_CASES = {
    "channel": ("", (2, 3, 4, 5), 1, (3,)),
    "channel_bias": ("bias_term: true", (2, 3, 4, 5), 1, (3,)),
    "axis1_num_axes2": ("axis: 1 num_axes: 2 bias_term: true", (2, 3, 4, 5), 1, (3, 4)),
    "axis2": ("axis: 2", (2, 3, 4, 5), 2, (4,)),
    "axis2_num_axes2": ("axis: 2 num_axes: 2 bias_term: true", (2, 3, 4, 5), 2, (4, 5)),
    "axis_neg1": ("axis: -1 bias_term: true", (2, 3, 4, 5), 3, (5,)),
    "axis2_num_axes1": ("axis: 2 num_axes: 1", (2, 3, 4, 5), 2, (4,)),
    "num_axes0": ("num_axes: 0 bias_term: true", (2, 3, 4, 5), 1, ()),
    "axis0_num_axes_all": ("axis: 1 num_axes: -1", (2, 3, 4, 5), 1, (3, 4, 5)),
    "2d": ("bias_term: true", (4, 6), 1, (6,)),
    "3d_axis2": ("axis: 2", (2, 3, 5), 2, (5,)),
}


@pytest.mark.parametrize("key", SCALE_CASES.keys())
def test_scale_one_bottom(tmp_path, key):
    params, shape, axis, pshape = SCALE_CASES[key]
    text = proto(_layer("Scale", f"scale_param {{ {params} }}"), shape=shape)

    def ref(c, x):
        blobs = c.blobs("out")
        assert blobs[0].shape == pshape
        return {"out": scale_ref(x["data"], *blobs, axis=axis).astype(np.float32)}

    case, x, got = check_numpy(tmp_path, text, ref)
    if axis == 1 and len(pshape) == 1:
        assert_close(got["out"], case.opencv(x)["out"], "opencv")


@pytest.mark.parametrize("yshape,params", [((2, 3), "axis: 0"), ((2, 3, 4, 5), "axis: 0"), ((2, 3, 4), "axis: 0")],
                         ids=["se_flat", "same_shape", "nch"])
def test_scale_two_bottoms(tmp_path, yshape, params):
    """The second bottom scales the first with broadcasting (SE blocks)."""
    shape = (2, 3, 4, 5)
    body = _layer("Scale", f"scale_param {{ {params} }}", bottom=["data", "y"])
    text = proto(body, inputs={"data": shape, "y": yshape})

    def ref(c, x):
        axis = 0 if "axis: 0" in params else 1
        yb = x["y"].reshape(x["y"].shape + (1,) * (4 - axis - x["y"].ndim))
        return {"out": x["data"] * yb}

    case, x, got = check_numpy(tmp_path, text, ref)
    if len(yshape) == 2:  # OpenCV's two-bottom Scale handles the SE pattern
        assert_close(got["out"], case.opencv(x)["out"], "opencv")


def test_scale_two_bottoms_with_bias_over_batch_is_refused(tmp_path):
    """With axis 0 the bias blob would cover the batch axis, which a Keras weight cannot."""
    body = _layer("Scale", "scale_param { axis: 0 bias_term: true }", bottom=["data", "y"])
    with pytest.raises(ConversionError, match="batch"):
        convert(tmp_path, proto(body, inputs={"data": (2, 3, 4, 5), "y": (2, 3)}))


@pytest.mark.parametrize("params,shape,axis", [("", (2, 3, 4, 5), 1), ("axis: 2", (2, 3, 4, 5), 2),
                                                ("axis: 1 num_axes: 0", (2, 3, 4, 5), 1), ("", (3, 7), 1)])
def test_bias(tmp_path, params, shape, axis):
    text = proto(_layer("Bias", f"bias_param {{ {params} }}"), shape=shape)

    def ref(c, x):
        b = c.blobs("out")[0]
        shp = [1] * len(shape)
        shp[axis:axis + b.ndim] = b.shape
        return {"out": x["data"] + b.reshape(shp)}

    check_numpy(tmp_path, text, ref)


@pytest.mark.parametrize("yshape,axis", [((2, 3), 0), ((2, 3, 4, 5), 0), ((2, 3, 4), 0)])
def test_bias_two_bottoms(tmp_path, yshape, axis):
    body = _layer("Bias", f"bias_param {{ axis: {axis} }}", bottom=["data", "y"])

    def ref(c, x):
        return {"out": x["data"] + x["y"].reshape(yshape + (1,) * (4 - len(yshape)))}

    check_numpy(tmp_path, proto(body, inputs={"data": (2, 3, 4, 5), "y": yshape}), ref)


# --- LRN, MVN, Normalize -----------------------------------------------------------------------------

def lrn_ref(x, n, alpha, beta, k, region):
    x = x.astype(np.float64)
    half = (n - 1) // 2
    sq = x ** 2
    if region == "ACROSS_CHANNELS":
        p = np.pad(sq, ((0, 0), (half, half), (0, 0), (0, 0)))
        s = sum(p[:, i:i + x.shape[1]] for i in range(n))
        scale = k + alpha / n * s
    else:  # Caffe: average pool (pad half, divisor n*n) of x^2, then (1 + alpha*avg)^-beta; k is unused
        p = np.pad(sq, ((0, 0), (0, 0), (half, half), (half, half)))
        h, w = x.shape[2:]
        s = sum(p[:, :, i:i + h, j:j + w] for i in range(n) for j in range(n))
        scale = 1.0 + alpha * s / (n * n)
    return (x * scale ** -beta).astype(np.float32)


LRN_CASES = {
    "across_default": ("", 5, 1.0, 0.75, 1.0, "ACROSS_CHANNELS"),
    "across_alexnet": ("local_size: 5 alpha: 0.0001 beta: 0.75", 5, 1e-4, 0.75, 1.0, "ACROSS_CHANNELS"),
    "across_k2": ("local_size: 3 alpha: 0.5 beta: 0.6 k: 2", 3, 0.5, 0.6, 2.0, "ACROSS_CHANNELS"),
    "within": ("local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL", 3, 0.5, 0.75, 1.0,
               "WITHIN_CHANNEL"),
    "within_k": ("local_size: 5 alpha: 2 beta: 0.5 k: 3 norm_region: WITHIN_CHANNEL", 5, 2.0, 0.5, 3.0,
                 "WITHIN_CHANNEL"),
}


@pytest.mark.parametrize("key", LRN_CASES.keys())
def test_lrn(tmp_path, key):
    params, n, alpha, beta, k, region = LRN_CASES[key]
    text = proto(_layer("LRN", f"lrn_param {{ {params} }}"), shape=(2, 7, 6, 5))
    case, x, got = check_numpy(tmp_path, text, lambda c, x: {"out": lrn_ref(x["data"], n, alpha, beta, k, region)})
    if k == 1.0 and params:  # OpenCV's LRN differs for k != 1, and its defaults differ from Caffe's
        assert_close(got["out"], case.opencv(x)["out"], "opencv")


def mvn_ref(x, across, variance, eps):
    axes = (1, 2, 3) if across else (2, 3)
    x = x.astype(np.float64)
    y = x - x.mean(axis=axes, keepdims=True)
    if variance:  # Caffe adds eps after the square root
        y = y / (np.sqrt((y ** 2).mean(axis=axes, keepdims=True)) + eps)
    return y.astype(np.float32)


@pytest.mark.parametrize("across", [False, True])
@pytest.mark.parametrize("variance", [True, False])
def test_mvn(tmp_path, across, variance):
    params = (f"mvn_param {{ across_channels: {str(across).lower()} normalize_variance: {str(variance).lower()} "
              f"eps: 0.01 }}")
    text = proto(_layer("MVN", params), shape=(2, 3, 5, 4))
    case = convert(tmp_path, text)
    x = {"data": (3 * inputs_for(case)["data"] + 1).astype(np.float32)}
    assert_close(case.run(x)["out"], mvn_ref(x["data"], across, variance, 0.01), "out")


@pytest.mark.parametrize("across_spatial", [True, False])
@pytest.mark.parametrize("channel_shared", [True, False])
def test_normalize(tmp_path, across_spatial, channel_shared):
    params = (f"norm_param {{ across_spatial: {str(across_spatial).lower()} "
              f"channel_shared: {str(channel_shared).lower()} eps: 1e-6 }}")
    text = proto(_layer("Normalize", params), shape=(2, 3, 4, 5))

    def ref(c, x):
        d = x["data"].astype(np.float64)
        axes = (1, 2, 3) if across_spatial else (1,)
        norm = np.sqrt((d ** 2).sum(axis=axes, keepdims=True) + 1e-6)
        s = c.blobs("out")[0]
        s = s.reshape(1, -1, 1, 1) if not channel_shared else s.reshape(())
        return {"out": (d / norm * s).astype(np.float32)}

    case, x, got = check_numpy(tmp_path, text, ref)
    if not across_spatial or channel_shared:  # OpenCV needs one scale per plane when across_spatial
        assert_close(got["out"], case.opencv(x)["out"], "opencv")
