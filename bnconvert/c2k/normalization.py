"""BatchNorm (merged with its Scale), Scale, Bias, LRN, MVN and SSD's Normalize."""
from __future__ import annotations

import numpy as np

from .. import layout as lay
from .._lazy import keras, kl
from ..caffe.bnpair import batchnorm_stats, use_global_stats
from ..registry import caffe_layer
from ._context import apply


def _channel_input(ctx):
    """The bottom with its channel axis (Caffe axis 1) addressable: returns (tensor, keras axis)."""
    lo = ctx.common_layout()
    rank = len(ctx.in_shape(0))
    return ctx.input(0, lo), lay.keras_axis(1, rank, lo), lo


@caffe_layer("BatchNorm")
def batchnorm(ctx):
    """One BatchNormalization: statistics divided by the factor, gamma/beta from the paired Scale."""
    p = ctx.p.batch_norm_param
    if not use_global_stats(ctx.layer, ctx.net.phase):
        msg = (f"use_global_stats is false in phase {ctx.net.phase}: Caffe normalizes with batch statistics "
               f"here; the Keras model uses the stored statistics at inference")
        if ctx.options.get("on_batch_stats") == "error":
            raise ctx.error(msg, hint="set use_global_stats: true, convert --phase TEST, or allow it with "
                                      "--batch-stats convert")
        ctx.warn(msg)
    mean, var, _ = batchnorm_stats(_stats_layer(ctx))
    x, axis, _ = _channel_input(ctx)
    scale = ctx.paired_scale
    weights, center, use_gamma = [], False, False
    if scale is not None:
        use_gamma = True
        weights.append(ctx.blob(0, scale))
        if scale.param.scale_param.bias_term:
            center = True
            weights.append(ctx.blob(1, scale))
    layer = keras.layers.BatchNormalization(axis=axis, momentum=float(p.moving_average_fraction),
                                            epsilon=float(p.eps), center=center, scale=use_gamma, name=ctx.name())
    return apply(layer, x, weights + [mean, var])


def _stats_layer(ctx):
    for i in range(3):
        ctx.blob(i)
    return ctx.layer


@caffe_layer("Scale")
def scale(ctx):
    """Per-channel (or per-axis) affine; with two bottoms, a broadcast multiply (SE blocks)."""
    p = ctx.p.scale_param
    shape = ctx.in_shape(0)
    rank = len(shape)
    if len(ctx.layer.bottoms) == 2:
        return _scale_by_bottom(ctx, p, rank)
    lo = ctx.common_layout()
    x = ctx.input(0, lo)
    g = ctx.blob(0)
    t, order = _target(g.shape, p.axis, rank, lo)
    weights = [g.transpose(order).reshape(t)]
    if p.bias_term:
        weights.append(ctx.blob(1).transpose(order).reshape(t))
    return apply(kl.CaffeScale(t, use_bias=p.bias_term, name=ctx.name()), x, weights), [lo]


def _scale_by_bottom(ctx, p, rank, op="mul"):
    """x * y (or x + y) with y broadcast from Caffe axis ``axis`` on, plus an optional learned bias."""
    yshape = ctx.in_shape(1)
    lo = ctx.common_layout()
    target, order = _target(yshape, p.axis, rank, lo)
    if tuple(order) != tuple(range(len(yshape))):  # y's axes would need a transpose: work in Caffe order
        lo = lay.CAFFE
        target, _ = _target(yshape, p.axis, rank, lo)
    x, y = ctx.input(0, lo), ctx.input(1, lo if len(yshape) == rank else None)
    bias_term = op == "mul" and p.bias_term
    if bias_term and lay.caffe_axis(p.axis, rank) == 0:
        raise ctx.error("a bias over the batch axis (axis: 0 with bias_term) has no Keras equivalent",
                        hint="move the bias to a separate Bias layer over axis 1")
    out = kl.BroadcastTo(target, op, name=ctx.name("mul") if bias_term else ctx.name())([x, y])
    if bias_term:
        b = ctx.blob(0)
        t, order = _target(b.shape, p.axis, rank, lo)
        out = apply(kl.CaffeScale(t, use_scale=False, name=ctx.name()), out, [b.transpose(order).reshape(t)])
    return out, [lo]


def _target(param_shape, axis, rank, lo):
    return lay.broadcast_shape_for(tuple(param_shape), axis, rank, lo)


@caffe_layer("Bias")
def bias(ctx):
    """A learned additive parameter broadcast over axes axis..axis+num_axes."""
    p = ctx.p.bias_param
    if len(ctx.layer.bottoms) == 2:
        return _scale_by_bottom(ctx, p, len(ctx.in_shape(0)), op="add")
    lo = ctx.common_layout()
    rank = len(ctx.in_shape(0))
    b = ctx.blob(0)
    t, order = _target(b.shape, p.axis, rank, lo)
    return apply(kl.CaffeScale(t, use_scale=False, name=ctx.name()), ctx.input(0, lo),
                 [b.transpose(order).reshape(t)]), [lo]


@caffe_layer("LRN")
def lrn(ctx):
    """Local response normalization, across channels or within a channel."""
    p = ctx.p.lrn_param
    region = "across_channels" if p.norm_region == p.ACROSS_CHANNELS else "within_channel"
    if len(ctx.in_shape(0)) != 4:
        raise ctx.error("LRN needs a 4-d bottom")
    return kl.CaffeLRN(p.local_size, p.alpha, p.beta, p.k, region, name=ctx.name())(ctx.input(0, lay.NHWC))


@caffe_layer("MVN")
def mvn(ctx):
    """Mean-variance normalization per channel (or across channels)."""
    p = ctx.p.mvn_param
    rank = len(ctx.in_shape(0))
    if rank != 4:
        raise ctx.error("MVN needs a 4-d bottom")
    axes = (1, 2, 3) if p.across_channels else (1, 2)
    return kl.CaffeMVN(axes, p.normalize_variance, p.eps, name=ctx.name())(ctx.input(0, lay.NHWC))


@caffe_layer("Normalize")
def normalize(ctx):
    """SSD's L2 Normalize with its learned scale."""
    p = ctx.p.norm_param
    layer = kl.CaffeNormalize(p.across_spatial, p.channel_shared, p.eps, name=ctx.name())
    return apply(layer, ctx.input(0, lay.NHWC), [np.asarray(ctx.blob(0)).reshape(-1)])
