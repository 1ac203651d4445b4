"""bnconvert's CaffeReduce back to Caffe's Reduction and ArgMax.

Reduction reduces every axis from ``axis`` on. OpenCV dnn has neither layer: there a sum is an
InnerProduct of ones (a mean: of 1/count) over the trailing axes, and ArgMax is refused.
"""
from __future__ import annotations

import numpy as np

from .. import layout as lay
from ..registry import keras_layer
from .targets import refuse

REDUCTION_OPS = {"sum": 1, "asum": 2, "sumsq": 3, "mean": 4}  # ReductionParameter.ReductionOp


@keras_layer("CaffeReduce")
def caffe_reduce(ctx):
    """Reduction (SUM, ASUM, SUMSQ, MEAN, coeff) over the trailing axes, or ArgMax (top_k, out_max_val)."""
    rank = len(ctx.in_shape(0))
    axes = sorted({int(a) % rank for a in ctx.config["axes"]})
    if 0 in axes:
        raise ctx.error(f"reducing the batch axis has no Caffe equivalent. Received: axes={tuple(ctx.config['axes'])}")
    if ctx.config["op"] in ("argmax", "maxval"):
        return _argmax(ctx, axes[0], rank)
    return _reduction(ctx, axes, rank)


def _reduction(ctx, axes, rank):
    """The reduced axes trailing in the Caffe blob: Reduction (OpenCV: an InnerProduct of ones); the
    channels of an NHWC tensor: a 1x1 Convolution of ones; otherwise a Permute first (OpenCV only:
    BVLC Caffe has no Permute layer)."""
    kept = [a for a in range(rank) if a not in axes]
    lo = ctx.in_blob(0).layout
    lo = lo if lo.kind != "flat_hwc" else lay.CAFFE
    op, coeff = ctx.config["op"], float(ctx.config["coeff"])
    count = int(np.prod([ctx.in_shape(0)[a] for a in axes]))
    where = [lay.caffe_axis_of(a, rank, lo) for a in range(rank)]
    red, keep = sorted(where[a] for a in axes), [where[a] for a in kept]
    if len(kept) == 1 or (red == list(range(len(kept), rank)) and keep == sorted(keep)):
        x = ctx.input(0, lo)
    elif lo.kind == "nhwc" and axes == [3]:
        return _channel_sum(ctx, ctx.input(0, lo), op, coeff, count)
    elif ctx.target == "opencv":
        x = ctx.add("Permute", [ctx.input(0, lay.CAFFE)], "order", permute_param=dict(order=kept + axes))
    else:
        raise ctx.error(f"Reduction reduces trailing axes and BVLC Caffe has no Permute layer to move Keras "
                        f"axes {tuple(axes)} last. Received: axes={tuple(ctx.config['axes'])} on {ctx.in_shape(0)}",
                        hint="reduce trailing axes, or use --target opencv")
    if ctx.target == "opencv":
        return _opencv_reduction(ctx, x, op, coeff, len(kept), count)
    top = ctx.add("Reduction", [x], reduction_param=dict(operation=REDUCTION_OPS[op], axis=len(kept), coeff=coeff))
    return ctx.out(top, lay.default_layout(len(kept)))


def _pre(ctx, x, op):
    if op == "asum":
        return ctx.add("AbsVal", [x], "abs")
    if op == "sumsq":
        return ctx.add("Power", [x], "square", power_param=dict(power=2.0))
    return x


def _channel_sum(ctx, x, op, coeff, count):
    """A sum over the channels of an NCHW blob: a 1x1 Convolution of ones, then (N, H, W)."""
    _, h, w, _ = ctx.in_shape(0)
    k = np.full((1, count, 1, 1), coeff / count if op == "mean" else coeff, np.float32)
    y = ctx.add("Convolution", [_pre(ctx, x, op)], "sum", blobs=[k], convolution_param=dict(
        num_output=1, bias_term=False, kernel_size=[1]))
    return ctx.out(ctx.add("Reshape", [y], reshape_param=dict(shape=dict(dim=[0, h, w]))), lay.CAFFE)


def _opencv_reduction(ctx, x, op, coeff, axis, count):
    x = _pre(ctx, x, op)
    w = np.full((1, count), coeff / count if op == "mean" else coeff, np.float32)
    y = ctx.add("InnerProduct", [x], "sum", blobs=[w], inner_product_param=dict(num_output=1, bias_term=False,
                                                                                 axis=axis))
    top = ctx.add("Reshape", [y], reshape_param=dict(shape=dict(dim=[0] * axis)))
    return ctx.out(top, lay.default_layout(axis))


def _argmax(ctx, axis, rank):
    if ctx.target == "opencv":
        raise refuse(ctx, "OpenCV dnn has no Caffe ArgMax layer")
    lo = lay.NHWC if rank == 4 else lay.CAFFE
    c = ctx.config
    top = ctx.add("ArgMax", [ctx.input(0, lo)], argmax_param=dict(
        axis=lay.caffe_axis_of(axis, rank, lo), top_k=int(c["top_k"]), out_max_val=c["op"] == "maxval"))
    return ctx.out(top, lo, nonneg=c["op"] == "argmax")
