"""BatchNormalization (BatchNorm + Scale), Normalization, Rescaling and bnconvert's Caffe layers."""
from __future__ import annotations

import numpy as np

from .. import layout as lay
from ..registry import keras_layer


def _channel_axis(ctx, axis):
    """Check that ``axis`` (Keras) is Caffe's channel axis 1; returns the input top and its layout."""
    b = ctx.in_blob(0)
    rank = len(b.shape)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if not isinstance(axis, int):
        raise ctx.error(f"normalizing over several axes {axis} is not supported")
    lo = b.layout
    if lo.kind == "flat_hwc":
        if lay.caffe_axis(axis, rank) != 1:
            raise ctx.error(f"axis {axis} of a flattened tensor is not its feature axis")
        return b.top, lo
    if lay.caffe_axis_of(axis, rank, lo) != 1:
        lo = lay.NHWC if rank == 4 and lay.caffe_axis(axis, rank) == 3 else lay.CAFFE
        if lay.caffe_axis_of(axis, rank, lo) != 1:
            raise ctx.error(f"axis {axis} is not the channel axis; Caffe normalizes axis 1 only",
                            hint="normalize the channels (axis -1 of an NHWC tensor)")
    return ctx.input(0, lo), lo


@keras_layer("BatchNormalization")
def batch_normalization(ctx):
    """BatchNorm (mean, variance, factor 1; use_global_stats) then Scale with gamma and beta."""
    cfg = ctx.config
    x, lo = _channel_axis(ctx, cfg["axis"])
    ws = ctx.weights
    gamma = ws.pop(0) if cfg["scale"] else None
    beta = ws.pop(0) if cfg["center"] else None
    mean, var = (lay.params_to_caffe(v, lo) for v in ws[:2])
    bn = ctx.add("BatchNorm", [x], blobs=[mean, var, np.ones(1, np.float32)], batch_norm_param=dict(
        use_global_stats=True, eps=float(cfg["epsilon"]), moving_average_fraction=float(cfg["momentum"])))
    scale_name = None
    if gamma is not None or beta is not None:
        g = lay.params_to_caffe(gamma, lo) if gamma is not None else np.ones_like(mean)
        blobs = [g] + ([lay.params_to_caffe(beta, lo)] if beta is not None else [])
        ctx.add("Scale", [bn], "scale", tops=[bn], blobs=blobs, scale_param=dict(bias_term=beta is not None))
        scale_name = ctx._engine.net.layer[-1].name
    ctx._engine.batchnorm.append([ctx.layer.name, ctx.base, scale_name])
    return ctx.out(bn, lo)


def _affine(ctx, x, lo, scale, bias, suffix=None):
    """A per-channel Scale (with bias) on channel axis 1."""
    blobs = [lay.params_to_caffe(scale, lo)] + ([lay.params_to_caffe(bias, lo)] if bias is not None else [])
    return ctx.add("Scale", [x], suffix, blobs=blobs, scale_param=dict(bias_term=bias is not None))


@keras_layer("Normalization")
def normalization(ctx):
    """(x - mean) / max(sqrt(var), eps) (or its inverse) as a per-channel Scale with bias."""
    import keras

    cfg = ctx.config
    x, lo = _channel_axis(ctx, cfg.get("axis", -1))
    c = lay.caffe_shape(ctx.in_shape(0), lo)[1] if lo.kind != "flat_hwc" else ctx.in_shape(0)[1]
    mean = np.broadcast_to(np.asarray(ctx.layer.mean, np.float64).reshape(-1), (c,))
    var = np.broadcast_to(np.asarray(ctx.layer.variance, np.float64).reshape(-1), (c,))
    std = np.maximum(np.sqrt(var), keras.config.epsilon())
    if cfg.get("invert"):
        scale, bias = std, mean
    else:
        scale, bias = 1.0 / std, -mean / std
    return ctx.out(_affine(ctx, x, lo, scale.astype(np.float32), bias.astype(np.float32)), lo)


@keras_layer("Rescaling")
def rescaling(ctx):
    """x * scale + offset: Power for scalars, a per-channel Scale otherwise."""
    cfg = ctx.config
    scale, offset = np.asarray(cfg["scale"], np.float64), np.asarray(cfg["offset"], np.float64)
    b = ctx.in_blob(0)
    if scale.size == 1 and offset.size == 1:
        x = ctx.input(0, b.layout) if b.pad is not None else b.top
        return ctx.out(ctx.add("Power", [x], power_param=dict(scale=float(scale.ravel()[0]),
                                                               shift=float(offset.ravel()[0]))), b.layout)
    x, lo = _channel_axis(ctx, -1)
    c = ctx.in_shape(0)[-1]
    s = np.broadcast_to(scale.reshape(-1), (c,)).astype(np.float32)
    o = np.broadcast_to(offset.reshape(-1), (c,)).astype(np.float32)
    return ctx.out(_affine(ctx, x, lo, s, o), lo)


@keras_layer("CaffeScale")
def caffe_scale(ctx):
    """bnconvert's CaffeScale back to Scale (or Bias) over the mapped axes."""
    cfg = ctx.config
    b = ctx.in_blob(0)
    rank = len(b.shape)
    lo = b.layout if b.layout.kind != "flat_hwc" else lay.CAFFE
    ws = ctx.weights
    conv = [lay.keras_param_to_caffe(w, rank, lo) for w in ws]
    if any(r is None for r in conv) or len({r[0] for r in conv}) != 1:
        raise ctx.error(f"a parameter of shape {ws[0].shape} does not cover one contiguous run of Caffe axes")
    axis, blobs = conv[0][0], [r[1] for r in conv]
    x = ctx.input(0, lo)
    if not cfg["use_scale"] and ctx.target == "opencv":  # OpenCV dnn has no Bias layer: Scale by ones + bias
        return ctx.out(ctx.add("Scale", [x], blobs=[np.ones_like(blobs[0])] + blobs, scale_param=dict(
            axis=axis, num_axes=blobs[0].ndim, bias_term=True)), lo)
    if not cfg["use_scale"]:
        return ctx.out(ctx.add("Bias", [x], blobs=blobs, bias_param=dict(axis=axis, num_axes=blobs[0].ndim)), lo)
    return ctx.out(ctx.add("Scale", [x], blobs=blobs, scale_param=dict(
        axis=axis, num_axes=blobs[0].ndim, bias_term=bool(cfg["use_bias"]))), lo)


@keras_layer("CaffeLRN")
def caffe_lrn(ctx):
    """bnconvert's CaffeLRN back to LRN."""
    c = ctx.config
    region = 0 if c["norm_region"] == "across_channels" else 1
    return ctx.out(ctx.add("LRN", [ctx.input(0, lay.NHWC)], lrn_param=dict(
        local_size=c["local_size"], alpha=c["alpha"], beta=c["beta"], k=c["k"], norm_region=region)), lay.NHWC)


@keras_layer("CaffeMVN")
def caffe_mvn(ctx):
    """bnconvert's CaffeMVN back to MVN."""
    c = ctx.config
    across = tuple(sorted(c["axes"])) == (1, 2, 3)
    if not across and tuple(sorted(c["axes"])) != (1, 2):
        raise ctx.error(f"MVN over axes {c['axes']} has no Caffe equivalent")
    return ctx.out(ctx.add("MVN", [ctx.input(0, lay.NHWC)], mvn_param=dict(
        across_channels=across, normalize_variance=c["normalize_variance"], eps=c["eps"])), lay.NHWC)


@keras_layer("CaffeNormalize")
def caffe_normalize(ctx):
    """bnconvert's CaffeNormalize back to SSD's Normalize (a fork layer type)."""
    c = ctx.config
    scale = ctx.weights[0].reshape(-1)
    return ctx.out(ctx.add("Normalize", [ctx.input(0, lay.NHWC)], blobs=[scale], norm_param=dict(
        across_spatial=c["across_spatial"], channel_shared=c["channel_shared"], eps=c["eps"])), lay.NHWC)
