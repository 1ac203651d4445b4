"""ArgMax and Reduction."""
from __future__ import annotations

import math

from .. import layout as lay
from .._lazy import keras, kl
from ..registry import caffe_layer


@caffe_layer("ArgMax")
def argmax(ctx):
    """Top-k indices (or values with out_max_val) along an axis."""
    p = ctx.p.argmax_param
    rank = len(ctx.in_shape(0))
    if not p.HasField("axis"):
        return _argmax_flat(ctx, p), [lay.CAFFE]
    lo = ctx.common_layout()
    axis = lay.keras_axis(lay.caffe_axis(p.axis, rank), rank, lo)
    op = "maxval" if p.out_max_val else "argmax"
    return kl.CaffeReduce(op, (axis,), top_k=p.top_k, name=ctx.name())(ctx.input(0, lo)), [lo]


def _argmax_flat(ctx, p):
    """ArgMax over all of C,H,W (Caffe order): top (N, 1, k[, 1]) of indices, or (N, 2, k[, 1]) of
    indices then values with out_max_val."""
    shape = ctx.in_shape(0)
    x = ctx.input(0, lay.CAFFE)
    if len(shape) > 2:
        x = keras.layers.Reshape((math.prod(shape[1:]),), name=ctx.name("flat"))(x)
    ops = ("argmax", "maxval") if p.out_max_val else ("argmax",)
    parts = [keras.layers.Reshape((1, p.top_k), name=ctx.name(f"{op}_row"))(
        kl.CaffeReduce(op, (1,), top_k=p.top_k, name=ctx.name(op))(x)) for op in ops]
    y = keras.layers.Concatenate(axis=1, name=ctx.name("rows"))(parts) if len(parts) > 1 else parts[0]
    return keras.layers.Reshape(tuple(ctx.out_shape(0)[1:]), name=ctx.name())(y)


@caffe_layer("Reduction")
def reduction(ctx):
    """SUM/ASUM/SUMSQ/MEAN over every axis from ``axis`` on, times coeff."""
    p = ctx.p.reduction_param
    shape = ctx.in_shape(0)
    rank = len(shape)
    axis = lay.caffe_axis(p.axis, rank)
    op = {p.SUM: "sum", p.ASUM: "asum", p.SUMSQ: "sumsq", p.MEAN: "mean"}[p.operation]
    lo = ctx.common_layout()
    if lo.kind == "nhwc" and axis > 2:
        lo = lay.CAFFE
    axes = sorted(lay.keras_axis(a, rank, lo) for a in range(axis, rank))
    out_lo = lay.CAFFE
    return kl.CaffeReduce(op, axes, coeff=p.coeff, name=ctx.name())(ctx.input(0, lo)), [out_lo]
