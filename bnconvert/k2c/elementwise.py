"""Add, Subtract, Multiply (incl. broadcast SE gates), Maximum, Minimum, Average and CaffeEltwise/BroadcastTo."""
from __future__ import annotations

import numpy as np

from .. import layout as lay
from ..registry import keras_layer

SUM, PROD, MAX = 1, 0, 2


def _common(ctx):
    """All bottoms in one layout (their shared one if they agree, else the default for the rank)."""
    blobs = [ctx.in_blob(i) for i in range(ctx.n_inputs)]
    los = {b.layout for b in blobs}
    lo = los.pop() if len(los) == 1 and blobs[0].pad is None else lay.default_layout(len(blobs[0].shape))
    if lo.kind == "flat_hwc" and len({b.layout for b in blobs}) != 1:
        lo = lay.CAFFE
    return [ctx.input(i, lo) if blobs[i].layout != lo or blobs[i].pad is not None else blobs[i].top
            for i in range(ctx.n_inputs)], lo


def _eltwise(ctx, op, coeffs=None, suffix=None):
    shapes = {tuple(ctx.in_shape(i)) for i in range(ctx.n_inputs)}
    if len(shapes) != 1:
        raise ctx.error(f"inputs of different shapes {sorted(shapes)} need broadcasting, which Caffe's "
                        "Eltwise does not do")
    xs, lo = _common(ctx)
    p = dict(operation=op)
    if coeffs is not None:
        p["coeff"] = [float(c) for c in coeffs]
    nonneg = all(ctx.in_blob(i).nonneg for i in range(ctx.n_inputs)) and op != SUM or (
        op == SUM and coeffs is None and all(ctx.in_blob(i).nonneg for i in range(ctx.n_inputs)))
    return ctx.add("Eltwise", xs, suffix, eltwise_param=p), lo, nonneg


@keras_layer("Add")
def add(ctx):
    """Eltwise SUM."""
    top, lo, nn = _eltwise(ctx, SUM)
    return ctx.out(top, lo, nonneg=nn)


@keras_layer("Subtract")
def subtract(ctx):
    """Eltwise SUM with coefficients 1, -1."""
    top, lo, _ = _eltwise(ctx, SUM, [1.0, -1.0])
    return ctx.out(top, lo)


@keras_layer("Average")
def average(ctx):
    """Eltwise SUM with coefficients 1/n."""
    n = ctx.n_inputs
    top, lo, nn = _eltwise(ctx, SUM, [1.0 / n] * n)
    return ctx.out(top, lo, nonneg=nn)


@keras_layer("Maximum")
def maximum(ctx):
    """Eltwise MAX."""
    top, lo, _ = _eltwise(ctx, MAX)
    return ctx.out(top, lo, nonneg=any(ctx.in_blob(i).nonneg for i in range(ctx.n_inputs)))


@keras_layer("Minimum")
def minimum(ctx):
    """-max(-a, -b, ...): Power(scale -1) on each input, Eltwise MAX, Power(scale -1)."""
    shapes = {tuple(ctx.in_shape(i)) for i in range(ctx.n_inputs)}
    if len(shapes) != 1:
        raise ctx.error("Minimum of inputs of different shapes needs broadcasting, which Caffe does not do")
    xs, lo = _common(ctx)
    neg = [ctx.add("Power", [x], f"neg{i}", power_param=dict(scale=-1.0)) for i, x in enumerate(xs)]
    m = ctx.add("Eltwise", neg, "max", eltwise_param=dict(operation=MAX))
    return ctx.out(ctx.add("Power", [m], power_param=dict(scale=-1.0)), lo)


@keras_layer("Multiply")
def multiply(ctx):
    """Eltwise PROD; a broadcast gate (e.g. SE's N,1,1,C) becomes a two-bottom Scale."""
    shapes = [tuple(ctx.in_shape(i)) for i in range(ctx.n_inputs)]
    if len(set(shapes)) == 1:
        top, lo, nn = _eltwise(ctx, PROD)
        return ctx.out(top, lo, nonneg=nn)
    if ctx.n_inputs != 2:
        raise ctx.error(f"broadcasting Multiply of {ctx.n_inputs} inputs has no Caffe equivalent")
    big = 0 if np.prod(shapes[0]) >= np.prod(shapes[1]) else 1
    return ctx.out(*_scale_by(ctx, big, 1 - big, tuple(ctx.out_shape(0))))


def _scale_by(ctx, xi, gi, out_shape):
    """x * gate with gate broadcast: reshape the gate to x's Caffe dims it covers, then Scale(x, gate)."""
    xb, gb = ctx.in_blob(xi), ctx.in_blob(gi)
    rank = len(out_shape)
    if tuple(xb.shape) != out_shape or len(gb.shape) != rank:
        raise ctx.error(f"cannot broadcast {gb.shape} against {xb.shape} with a Caffe Scale")
    lo = xb.layout if xb.layout.kind != "flat_hwc" else lay.CAFFE
    res = lay.keras_param_to_caffe(np.zeros(gb.shape[1:], np.float32), rank, lo)
    xc = lay.caffe_shape(xb.shape, lo)
    gc = lay.caffe_shape(gb.shape, lo if len(gb.shape) == 4 or lo.kind == "caffe" else lay.CAFFE)
    lead = [i for i in range(rank) if gc[i] != 1 or i == 0]
    a, b = 0, lead[-1] + 1
    if res is None or any(gc[i] != xc[i] for i in range(a, b)) or any(gc[i] != 1 for i in range(b, rank)):
        raise ctx.error(f"a gate of shape {gb.shape} does not cover one leading run of the input's Caffe axes")
    g = ctx.input(gi, lo if len(gb.shape) == 4 else lay.CAFFE)
    g = ctx.add("Reshape", [g], "gate", reshape_param=dict(shape=dict(dim=[0] + list(xc[1:b]))))
    x = ctx.input(xi, lo)
    return ctx.add("Scale", [x, g], scale_param=dict(axis=0, num_axes=b)), lo


@keras_layer("CaffeEltwise")
def caffe_eltwise(ctx):
    """bnconvert's CaffeEltwise back to Eltwise SUM with coefficients."""
    top, lo, _ = _eltwise(ctx, SUM, ctx.config["coeffs"])
    return ctx.out(top, lo)


@keras_layer("BroadcastTo")
def broadcast_to(ctx):
    """bnconvert's BroadcastTo: a two-bottom Scale ('mul'), plus an Eltwise SUM for 'axpy'."""
    cfg = ctx.config
    if cfg["op"] == "mul":
        return ctx.out(*_target_scale(ctx, 0, 1, None))
    top, lo = _target_scale(ctx, 1, 0, "scale")
    y = ctx.input(2, lo)
    return ctx.out(ctx.add("Eltwise", [top, y], eltwise_param=dict(operation=SUM)), lo)


def _target_scale(ctx, xi, gi, suffix):
    """Scale(x, gate) where the gate takes BroadcastTo's ``target_shape`` (Keras order) first."""
    xb = ctx.in_blob(xi)
    rank = len(xb.shape)
    lo = xb.layout if xb.layout.kind != "flat_hwc" else lay.CAFFE
    target = tuple(ctx.config["target_shape"])
    dims = lay.caffe_shape((1,) + target, lo)[1:] if len(target) == rank - 1 else None
    xc = lay.caffe_shape(xb.shape, lo)
    if dims is None:
        raise ctx.error(f"target_shape {target} does not match the input rank {rank}")
    big = [i + 1 for i, d in enumerate(dims) if d != 1]
    a, b = (big[0], big[-1] + 1) if big else (1, 2)
    if a != 1 or any(dims[i - 1] != xc[i] for i in range(a, b)):
        raise ctx.error(f"target_shape {target} does not cover one run of the input's Caffe axes")
    g = ctx.input(gi, lay.CAFFE)
    g = ctx.add("Reshape", [g], "gate", reshape_param=dict(shape=dict(dim=[0] + list(xc[1:b]))))
    return ctx.add("Scale", [ctx.input(xi, lo), g], suffix, scale_param=dict(axis=0, num_axes=b)), lo
