"""Convolution, depthwise convolution, deconvolution and InnerProduct."""
from __future__ import annotations

from .. import layout as lay
from .._lazy import keras
from ..caffe.shapes import _Err, conv_geometry
from ..geometry import choose_padding
from ..registry import caffe_layer
from ._context import apply


def _geometry(ctx):
    return conv_geometry(ctx.p.convolution_param, _Err(ctx.layer, ctx.net.path))


def _padded(ctx, x, k, s, pd, d):
    """The input (zero-padded if needed) and the Keras padding mode that reproduce Caffe."""
    _, _, h, w = ctx.in_shape(0)
    _, _, oh, ow = ctx.out_shape(0)
    mode = choose_padding((h, w), k, s, pd, d, (oh, ow))
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
    if max(s) > 1 and max(d) > 1:
        raise ctx.error(f"stride {s} together with dilation {d} has no exact TensorFlow equivalent")
    if p.engine not in (0,):
        ctx.warn("engine is ignored (it selects an implementation, not a result)")
    x, mode = _padded(ctx, ctx.input(0), k, s, pd, d)
    w = ctx.blob(0)
    weights_tail = [ctx.blob(1)] if p.bias_term else []
    if group == c and group > 1 and p.num_output % c == 0:
        layer = keras.layers.DepthwiseConv2D(k, s, padding=mode, depth_multiplier=p.num_output // c,
                                             dilation_rate=d, use_bias=p.bias_term, name=ctx.name())
        return apply(layer, x, [lay.depthwise_kernel_to_keras(w, c)] + weights_tail)
    layer = keras.layers.Conv2D(p.num_output, k, s, padding=mode, dilation_rate=d, groups=group,
                                use_bias=p.bias_term, name=ctx.name())
    return apply(layer, x, [lay.conv_kernel_to_keras(w)] + weights_tail)


@caffe_layer("Deconvolution")
def deconvolution(ctx):
    """Conv2DTranspose, then a crop of Caffe's padding; groups become a block-diagonal kernel."""
    p = ctx.p.convolution_param
    k, s, pd, d = _geometry(ctx)
    group = p.group or 1
    layer = keras.layers.Conv2DTranspose(p.num_output, k, s, padding="valid", dilation_rate=d,
                                         use_bias=p.bias_term, name=ctx.name("deconv") if any(pd) or _extra(k, s, d) else ctx.name())
    weights = [lay.deconv_kernel_to_keras(ctx.blob(0), group)] + ([ctx.blob(1)] if p.bias_term else [])
    y = apply(layer, ctx.input(0), weights)
    ex = _extra(k, s, d)
    if any(pd) or any(ex):
        y = keras.layers.Cropping2D(((pd[0], pd[0] + ex[0]), (pd[1], pd[1] + ex[1])), name=ctx.name())(y)
    return y


def _extra(k, s, d):
    """Rows/cols Keras's transposed convolution adds beyond Caffe's when the kernel is smaller than the stride."""
    return tuple(max(st - ((kk - 1) * dd + 1), 0) for kk, st, dd in zip(k, s, d))


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
    elif lo.kind == "flat_hwc" and axis == 1:
        pass
    else:
        x = ctx.input(0, lay.CAFFE)
        lo = lay.CAFFE
        if axis != rank - 1:
            x = keras.layers.Reshape(tuple(shape[1:axis]) + (int(__import__("math").prod(shape[axis:])),),
                                     name=ctx.name("flatten"))(x)
    kernel = lay.fc_weights_to_keras(ctx.blob(0), p.transpose, lo)
    weights = [kernel] + ([ctx.blob(1)] if p.bias_term else [])
    return apply(keras.layers.Dense(p.num_output, use_bias=p.bias_term, name=ctx.name()), x, weights)
