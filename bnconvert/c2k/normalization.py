"""BatchNorm (merged with its Scale), the forks' one-layer BN, Scale, Bias, LRN, MVN and SSD's Normalize."""
from __future__ import annotations

import numpy as np

from .. import layout as lay
from .._lazy import keras, kl
from ..caffe.bnpair import batchnorm_stats, use_global_stats
from ..caffe.shapes import bn_blob_count
from ..registry import caffe_layer
from ._context import apply


def _channel_input(ctx):
    """The bottom with its channel axis (Caffe axis 1) addressable: returns (tensor, keras axis)."""
    lo = ctx.common_layout()
    rank = len(ctx.in_shape(0))
    return ctx.input(0, lo), lay.keras_axis(1, rank, lo), lo


def _batch_stats(ctx, what, fixes):
    """A layer that Caffe runs on batch statistics in this phase: warn, or fail with --batch-stats error."""
    msg = f"{what}; the Keras model uses the stored statistics at inference"
    if ctx.options.get("on_batch_stats") == "error":
        raise ctx.error(msg, hint=f"{fixes}, or allow it with --batch-stats convert")
    ctx.warn(msg)


@caffe_layer("BatchNorm")
def batchnorm(ctx):
    """One BatchNormalization: statistics divided by the factor, gamma/beta from the paired Scale."""
    p = ctx.p.batch_norm_param
    if not use_global_stats(ctx.layer, ctx.net.phase):
        _batch_stats(ctx, f"use_global_stats is false in phase {ctx.net.phase}: Caffe normalizes with batch "
                          f"statistics here", "set use_global_stats: true, convert --phase TEST")
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


@caffe_layer("BN")
def fork_bn(ctx):
    """The BN of SegNet/ENet (scale, shift) or PSPNet (scale, shift, mean, variance): one BatchNormalization."""
    L, c = ctx.layer, ctx.in_shape(0)[1]
    if len(L.tops) != 1:
        raise ctx.error("the extra tops (batch mean and variance) exist only in bn_mode LEARN training",
                        hint="keep one top for inference")
    n = len(L.blobs)
    if n not in (2, 4) or (bn_blob_count(L) or n) != n:
        raise ctx.error(f"the caffemodel has {n} blob(s) for this BN: SegNet/ENet's BN has 2 (scale, shift), "
                        f"PSPNet's 4 (scale, shift, mean, variance)",
                        hint="check that the caffemodel belongs to this prototxt")
    blobs = [np.asarray(ctx.blob(i), np.float32).reshape(-1) for i in range(n)]
    if any(b.size != c for b in blobs):
        raise ctx.error(f"BN blobs have {[b.size for b in blobs]} values but the bottom has {c} channels")
    return _pspnet_bn(ctx, blobs) if n == 4 else _segnet_bn(ctx, blobs)


def _segnet_bn(ctx, blobs):
    """INFERENCE: y = scale * x + shift, as a BatchNormalization with mean 0 and variance 1; its
    epsilon is the fork's 1e-9 (1 + 1e-9 is 1 in float32, so the result is exact)."""
    p = ctx.p.bn_param
    if p.bn_mode != p.INFERENCE:
        raise ctx.error("bn_mode is LEARN: this BN normalizes every batch with the batch's own statistics, in "
                        "every phase, and stores no statistics to convert",
                        hint="compute the statistics with the fork's compute_bn_statistics.py, which writes an "
                             "inference net with bn_mode: INFERENCE, and convert that")
    scale, shift = blobs
    layer = keras.layers.BatchNormalization(axis=-1, epsilon=1e-9, name=ctx.name())
    zeros = np.zeros_like(scale)
    return apply(layer, ctx.input(0, lay.NHWC), [scale, shift, zeros, zeros + 1])


def _pspnet_bn(ctx, blobs):
    """Stored statistics in TEST or when frozen; bn_param's eps and momentum carried over."""
    p = ctx.p.bn_param
    if ctx.net.phase != "TEST" and not p.frozen:
        _batch_stats(ctx, f"PSPNet's BN normalizes with batch statistics in phase {ctx.net.phase} unless frozen",
                     "convert --phase TEST, set bn_param { frozen: true }")
    layer = keras.layers.BatchNormalization(axis=-1, momentum=float(p.momentum), epsilon=float(p.eps),
                                            name=ctx.name())
    return apply(layer, ctx.input(0, lay.NHWC), blobs)
