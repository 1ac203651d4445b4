"""Conv2D, DepthwiseConv2D, SeparableConv2D, Conv2DTranspose and Dense."""
from __future__ import annotations

import numpy as np

from .. import geometry as geo
from .. import layout as lay
from ..registry import keras_layer


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(x) for x in v)


def _conv_input(ctx, k, s, d):
    """The bottom top and the symmetric Caffe pad reproducing the layer's padding (plus any folded ZeroPadding2D).

    TF's asymmetric 'same' padding becomes an exact one-hot depthwise padding layer first.
    """
    ctx.need_4d()
    ctx.check_channels_last()
    top, zp = ctx.source(0)
    _, h, w, c = ctx.in_shape(0)
    pads = []
    for size, kk, ss, dd, (zb, za) in zip((h, w), k, s, d, zp):
        if ctx.config.get("padding", "valid") == "same":
            _, b, a = geo.tf_same_pads(size, kk, ss, dd)
        elif ctx.config.get("padding", "valid") == "valid":
            b = a = 0
        else:
            raise ctx.error(f"padding={ctx.config.get('padding')!r} is not supported")
        pads.append((zb + b, za + a))
    if all(b == a for b, a in pads):
        return top, (pads[0][0], pads[1][0])
    n = ctx.in_shape(0)[0]
    src_shape = (n, c, h - sum(zp[0]), w - sum(zp[1]))
    return ctx.pad_nchw(top, src_shape, pads, "pad"), (0, 0)


def _conv_param(num_output, k, s, pad, d, group, bias):
    p = dict(num_output=num_output, bias_term=bias, kernel_h=k[0], kernel_w=k[1], stride_h=s[0], stride_w=s[1],
             group=group if group > 1 else None)
    if any(pad):
        p.update(pad_h=pad[0], pad_w=pad[1])
    if d != (1, 1):
        p["dilation"] = list(d) if d[0] != d[1] else [d[0]]
    return p


def _finish(ctx, top):
    act = ctx.config.get("activation", "linear")
    top, nonneg = ctx.activation(top, act, lay.NHWC)
    return ctx.out(top, lay.NHWC, nonneg=nonneg)


def _last(ctx):
    """Suffix for the convolution itself: None (the layer's own name) unless an activation follows."""
    return "conv" if ctx.config.get("activation", "linear") not in ("linear", None) else None


@keras_layer("Conv2D")
def conv2d(ctx):
    """Convolution (valid/same incl. TF's asymmetric padding, stride, dilation, groups)."""
    cfg = ctx.config
    k, s, d = _pair(cfg["kernel_size"]), _pair(cfg["strides"]), _pair(cfg["dilation_rate"])
    x, pad = _conv_input(ctx, k, s, d)
    ws = ctx.weights
    blobs = [lay.conv_kernel_to_caffe(ws[0])] + ws[1:2]
    top = ctx.add("Convolution", [x], _last(ctx), blobs=blobs, convolution_param=_conv_param(
        cfg["filters"], k, s, pad, d, cfg.get("groups", 1), cfg["use_bias"]))
    return _finish(ctx, top)


@keras_layer("DepthwiseConv2D")
def depthwise_conv2d(ctx):
    """Convolution with group = channels (depth_multiplier m gives C*m outputs)."""
    cfg = ctx.config
    k, s, d = _pair(cfg["kernel_size"]), _pair(cfg["strides"]), _pair(cfg["dilation_rate"])
    x, pad = _conv_input(ctx, k, s, d)
    c = ctx.in_shape(0)[3]
    ws = ctx.weights
    blobs = [lay.depthwise_kernel_to_caffe(ws[0])] + ws[1:2]
    top = ctx.add("Convolution", [x], _last(ctx), blobs=blobs, convolution_param=_conv_param(
        c * cfg["depth_multiplier"], k, s, pad, d, c, cfg["use_bias"]))
    return _finish(ctx, top)


@keras_layer("SeparableConv2D")
def separable_conv2d(ctx):
    """A depthwise Convolution followed by a 1x1 Convolution."""
    cfg = ctx.config
    k, s, d = _pair(cfg["kernel_size"]), _pair(cfg["strides"]), _pair(cfg["dilation_rate"])
    x, pad = _conv_input(ctx, k, s, d)
    c, m = ctx.in_shape(0)[3], cfg["depth_multiplier"]
    ws = ctx.weights
    dw = ctx.add("Convolution", [x], "depthwise", blobs=[lay.depthwise_kernel_to_caffe(ws[0])],
                 convolution_param=_conv_param(c * m, k, s, pad, d, c, False))
    top = ctx.add("Convolution", [dw], _last(ctx), blobs=[lay.conv_kernel_to_caffe(ws[1])] + ws[2:3],
                  convolution_param=_conv_param(cfg["filters"], (1, 1), (1, 1), (0, 0), (1, 1), 1, cfg["use_bias"]))
    return _finish(ctx, top)


@keras_layer("Conv2DTranspose")
def conv2d_transpose(ctx):
    """Deconvolution; TF's 'same' crop and output_padding become Caffe's pad, a Crop, and zero rows
    appended to the input where the output reaches past the kernel (those rows hold only the bias)."""
    cfg = ctx.config
    ctx.need_4d()
    ctx.check_channels_last()
    k, s, d = _pair(cfg["kernel_size"]), _pair(cfg["strides"]), _pair(cfg["dilation_rate"])
    n, h, w, c = ctx.in_shape(0)
    out = ctx.out_shape(0)[1:3]
    full = [st * (size - 1) + dd * (kk - 1) + 1 for st, size, kk, dd in zip(s, (h, w), k, d)]
    start = [0 if cfg["padding"] == "valid" else max(0, (f - o) // 2) for f, o in zip(full, out)]
    grow = [max(0, -(-(a + o - f) // st)) for a, o, f, st in zip(start, out, full, s)]
    x = ctx.input(0, lay.NHWC)
    if any(grow):
        x = ctx.pad_nchw(x, (n, c, h, w), ((0, grow[0]), (0, grow[1])), "grow")
        full = [f + g * st for f, g, st in zip(full, grow, s)]
    pad = [min(a, f - a - o) for a, o, f in zip(start, out, full)]
    ws = ctx.weights
    sizes = [f - 2 * p for f, p in zip(full, pad)]
    crop = sizes != list(out)
    top = ctx.add("Deconvolution", [x], "deconv" if crop else _last(ctx),
                  blobs=[lay.deconv_kernel_to_caffe(ws[0])] + ws[1:2],
                  convolution_param=_conv_param(cfg["filters"], k, s, pad, d, 1, cfg["use_bias"]))
    if crop:
        ref = ctx.ref(top, sizes, out, "ref")
        top = ctx.add("Crop", [top, ref], _last(ctx), crop_param=dict(
            axis=2, offset=[a - p for a, p in zip(start, pad)]))
    return _finish(ctx, top)


@keras_layer("Dense")
def dense(ctx):
    """InnerProduct; after a Flatten of an NHWC tensor the kernel rows are reordered to C,H,W."""
    cfg = ctx.config
    rank = len(ctx.in_shape(0))
    b = ctx.in_blob(0)
    if rank == 2 and b.layout.kind == "flat_hwc" and b.pad is None:
        x, lo = b.top, b.layout
    else:
        x, lo = ctx.input(0, lay.CAFFE), lay.CAFFE
    ws = ctx.weights
    blobs = [lay.fc_weights_to_caffe(ws[0], lo)] + ws[1:2]
    top = ctx.add("InnerProduct", [x], _last(ctx), blobs=blobs, inner_product_param=dict(
        num_output=cfg["units"], bias_term=cfg["use_bias"], axis=rank - 1 if rank > 2 else None))
    act = cfg.get("activation", "linear")
    top, nonneg = ctx.activation(top, act, lay.CAFFE)
    return ctx.out(top, lay.CAFFE, nonneg=nonneg)


def upsample_kernel(c, sh, sw):
    """Deconvolution weights (C,1,sh,sw) of ones: nearest-neighbour upsampling by (sh, sw) with group C."""
    return np.ones((c, 1, sh, sw), np.float32)
