"""Eltwise (SUM with coefficients, PROD, MAX) and Axpy."""
from __future__ import annotations

from .. import layout as lay
from .._lazy import keras, kl
from ..registry import caffe_layer


@caffe_layer("Eltwise")
def eltwise(ctx):
    """Add / Multiply / Maximum, or CaffeEltwise for SUM with coefficients."""
    p = ctx.p.eltwise_param
    lo = ctx.common_layout()
    xs = ctx.inputs(lo)
    coeffs = list(p.coeff)
    if p.operation == p.SUM:
        if coeffs and any(c != 1.0 for c in coeffs):
            return kl.CaffeEltwise(coeffs, name=ctx.name())(xs), [lo]
        layer = keras.layers.Add(name=ctx.name())
    elif p.operation == p.PROD:
        layer = keras.layers.Multiply(name=ctx.name())
    else:
        layer = keras.layers.Maximum(name=ctx.name())
    if len(xs) == 1:
        return keras.layers.Identity(name=ctx.name())(xs[0]), [lo]
    return layer(xs), [lo]


@caffe_layer("Axpy")
def axpy(ctx):
    """a * x + y, with a per-channel a of shape N,C,1,1 (SE-ResNet's fork layer)."""
    a_shape = ctx.in_shape(0)
    x, y = ctx.input(1, lay.NHWC), ctx.input(2, lay.NHWC)
    a = ctx.input(0, lay.NHWC if len(a_shape) == 4 else lay.CAFFE)
    return kl.BroadcastTo((1, 1, ctx.in_shape(1)[1]), "axpy", name=ctx.name())([a, x, y])
