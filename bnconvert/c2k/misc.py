"""ArgMax and Reduction."""
from __future__ import annotations

from .. import layout as lay
from .._lazy import kl
from ..registry import caffe_layer


@caffe_layer("ArgMax")
def argmax(ctx):
    """Top-k indices (or values with out_max_val) along an axis."""
    p = ctx.p.argmax_param
    rank = len(ctx.in_shape(0))
    if not p.HasField("axis"):
        if rank != 2 or p.out_max_val:
            raise ctx.error("ArgMax without axis is supported only for 2-d bottoms without out_max_val",
                            hint="set argmax_param { axis: 1 }")
        y = kl.CaffeReduce("argmax", (1,), top_k=p.top_k, name=ctx.name("argmax"))(ctx.input(0, lay.CAFFE))
        from .._lazy import keras

        return keras.layers.Reshape((1, p.top_k), name=ctx.name())(y), [lay.CAFFE]
    lo = ctx.common_layout()
    axis = lay.keras_axis(lay.caffe_axis(p.axis, rank), rank, lo)
    op = "maxval" if p.out_max_val else "argmax"
    return kl.CaffeReduce(op, (axis,), top_k=p.top_k, name=ctx.name())(ctx.input(0, lo)), [lo]


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
