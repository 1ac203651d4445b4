"""Convolution, depthwise convolution, deconvolution and InnerProduct."""
from __future__ import annotations

import math

import numpy as np

from .. import layout as lay
from .._lazy import keras
from ..caffe.shapes import _Err, conv_geometry
from ..geometry import choose_padding
from ..registry import caffe_layer
from ._context import apply


def _geometry(ctx):
    return conv_geometry(ctx.p.convolution_param, _Err(ctx.layer, ctx.net.path))


def _padded(ctx, x, k, s, pd, d, out=None):
    """The input (zero-padded if needed) and the Keras padding mode that reproduce Caffe."""
    _, _, h, w = ctx.in_shape(0)
    mode = choose_padding((h, w), k, s, pd, d, out or tuple(ctx.out_shape(0)[2:]))
    if mode is None:
        x = keras.layers.ZeroPadding2D(((pd[0], pd[0]), (pd[1], pd[1])), name=ctx.name("pad"))(x)
        mode = "valid"
    return x, mode


@caffe_layer("Convolution", "ConvolutionDepthwise", "DepthwiseConvolution")
def convolution(ctx):
    """Conv2D / DepthwiseConv2D with Caffe's symmetric padding, dilation and groups."""
    p = ctx.p.convolution_param
    k, s, pd, d = _geometry(ctx)
    c = ctx.in_shape(0)[1]
    group = c if ctx.layer.type != "Convolution" else (p.group or 1)
    if p.engine not in (0,):
        ctx.warn("engine is ignored (it selects an implementation, not a result)")
    # Keras rejects stride > 1 with dilation > 1: convolve at stride 1, then keep every s-th output.
    subsample = s if max(s) > 1 and max(d) > 1 else None
    conv_s = (1, 1) if subsample else s
    x, mode = _padded(ctx, ctx.input(0), k, conv_s, pd, d, _dense_out(ctx, k, pd, d) if subsample else None)
    w = ctx.blob(0)
    weights_tail = [ctx.blob(1)] if p.bias_term else []
    name = ctx.name("dense") if subsample else ctx.name()
    if group == c and group > 1 and p.num_output % c == 0:
        layer = keras.layers.DepthwiseConv2D(k, conv_s, padding=mode, depth_multiplier=p.num_output // c,
                                             dilation_rate=d, use_bias=p.bias_term, name=name)
        y = apply(layer, x, [lay.depthwise_kernel_to_keras(w, c)] + weights_tail)
    else:
        layer = keras.layers.Conv2D(p.num_output, k, conv_s, padding=mode, dilation_rate=d, groups=group,
                                    use_bias=p.bias_term, name=name)
        y = apply(layer, x, [lay.conv_kernel_to_keras(w)] + weights_tail)
    if subsample:  # a 1x1 max pool with stride s picks rows/cols 0, s, 2s, ... exactly
        y = keras.layers.MaxPooling2D((1, 1), subsample, padding="valid", name=ctx.name())(y)
    return y


def _dense_out(ctx, k, pd, d):
    """Caffe's output size of this convolution at stride 1."""
    _, _, h, w = ctx.in_shape(0)
    return tuple(size + 2 * p - ((kk - 1) * dd + 1) + 1 for size, kk, p, dd in zip((h, w), k, pd, d))


@caffe_layer("Deconvolution")
def deconvolution(ctx):
    """Conv2DTranspose, then a crop of Caffe's padding; groups become a block-diagonal kernel.

    TensorFlow's CPU kernels have no dilated transposed convolution, so a dilated kernel is
    spread out with zeros instead (exact: the zeros add exact zeros).
    """
    p = ctx.p.convolution_param
    k, s, pd, d = _geometry(ctx)
    kernel = _dilate(lay.deconv_kernel_to_keras(ctx.blob(0), p.group or 1), d)
    k = kernel.shape[:2]
    ex = _extra(k, s)
    crop = any(pd) or any(ex)
    layer = keras.layers.Conv2DTranspose(p.num_output, k, s, padding="valid", use_bias=p.bias_term,
                                         name=ctx.name("deconv") if crop else ctx.name())
    y = apply(layer, ctx.input(0), [kernel] + ([ctx.blob(1)] if p.bias_term else []))
    if crop:
        y = keras.layers.Cropping2D(((pd[0], pd[0] + ex[0]), (pd[1], pd[1] + ex[1])), name=ctx.name())(y)
    return y


def _dilate(kernel, d):
    """A kh,kw,O,I kernel with d-1 zero rows/cols between taps."""
    if d == (1, 1):
        return kernel
    kh, kw = kernel.shape[:2]
    out = np.zeros(((kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1) + kernel.shape[2:], kernel.dtype)
    out[::d[0], ::d[1]] = kernel
    return out


def _extra(k, s):
    """Rows/cols Keras's transposed convolution adds beyond Caffe's when the kernel is smaller than the stride."""
    return tuple(max(st - kk, 0) for kk, st in zip(k, s))


@caffe_layer("InnerProduct")
def inner_product(ctx):
    """Dense; a 4-d bottom is flattened and the weights reordered from C,H,W to H,W,C."""
    p = ctx.p.inner_product_param
    shape = ctx.in_shape(0)
    rank = len(shape)
    axis = lay.caffe_axis(p.axis, rank)
    x, lo = ctx.input(0, any_layout=True), ctx.layout(0)
    if lo.kind == "nhwc" and axis == 1:
        n, c, h, w = shape
        x = keras.layers.Flatten(name=ctx.name("flatten"))(x)
        lo = lay.flat_hwc(c, h, w) if h * w > 1 else lay.CAFFE
    elif not (lo.kind == "flat_hwc" and axis == 1):
        x, lo = ctx.input(0, lay.CAFFE), lay.CAFFE
        if axis != rank - 1:
            x = keras.layers.Reshape(tuple(shape[1:axis]) + (math.prod(shape[axis:]),), name=ctx.name("flatten"))(x)
    kernel = lay.fc_weights_to_keras(ctx.blob(0), p.transpose, lo)
    weights = [kernel] + ([ctx.blob(1)] if p.bias_term else [])
    y = apply(keras.layers.Dense(p.num_output, use_bias=p.bias_term, name=ctx.name()), x, weights)
    return y, [lay.CAFFE]  # the top keeps Caffe's axis order, whatever its rank
