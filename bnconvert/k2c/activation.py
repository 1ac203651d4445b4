"""Activation layers and the activations fused into Conv2D/Dense (``activation='relu'``)."""
from __future__ import annotations

import numpy as np

from .. import layout as lay
from ..registry import keras_layer
from .targets import refuse

FLT_MAX = float(np.finfo(np.float32).max)


def _clip(lo, hi):
    return dict(clip_param=dict(min=float(lo), max=float(hi)))


def opencv_clip(lo, hi):
    """clip(x, lo, hi) from layers OpenCV dnn has: its ReLU6 for 0..6, else min/max from ReLU and Power
    (min(x, hi) = hi - relu(hi - x), max(x, lo) = lo + relu(x - lo))."""
    if (lo, hi) == (0.0, 6.0):
        return [("ReLU6", {})]
    ops = []
    if lo == 0.0:
        ops.append(("ReLU", {}))
    elif lo > -FLT_MAX:
        ops += [("Power", dict(power_param=dict(shift=-lo))), ("ReLU", {}), ("Power", dict(power_param=dict(shift=lo)))]
    if hi < FLT_MAX:
        flip = ("Power", dict(power_param=dict(scale=-1.0, shift=hi)))
        ops += [flip, ("ReLU", {}), flip]
    return ops


def for_target(ctx, t, p):
    """The (type, params) chain that computes Caffe layer ``t`` on the target runtime."""
    if ctx.target != "opencv":
        return [(t, p)]
    if t == "Clip":
        return opencv_clip(float(p["clip_param"]["min"]), float(p["clip_param"]["max"]))
    if t == "Log":  # OpenCV's Log is the plain natural log: base, scale and shift are ignored
        lp = p["log_param"]
        base = float(lp.get("base", -1.0))
        ops = [("Power", dict(power_param=dict(scale=lp.get("scale", 1.0), shift=lp.get("shift", 0.0)))), ("Log", {})]
        return ops + ([("Power", dict(power_param=dict(scale=1.0 / float(np.log(base)))))] if base != -1.0 else [])
    if t == "Threshold":
        raise refuse(ctx, "OpenCV dnn has no Threshold layer")
    return [(t, p)]


def _chain(ctx, top, ops, suffix):
    """Emit a chain of (type, params) layers for the target; the last one gets ``suffix``."""
    ops = [q for t, p in ops for q in for_target(ctx, t, p)]
    for i, (t, p) in enumerate(ops):
        top = ctx.add(t, [top], suffix if i == len(ops) - 1 else f"act{i}", **p)
    return top


# name -> (list of (Caffe type, params), nonnegative result)
SIMPLE = {
    "relu": ([("ReLU", {})], True),
    "relu6": ([("Clip", _clip(0, 6))], True),
    "sigmoid": ([("Sigmoid", {})], True),
    "tanh": ([("TanH", {})], False),
    "elu": ([("ELU", {})], False),
    "swish": ([("Swish", {})], False),
    "silu": ([("Swish", {})], False),
    "softplus": ([("BNLL", {})], True),
    "exponential": ([("Exp", {})], True),
    "leaky_relu": ([("ReLU", dict(relu_param=dict(negative_slope=0.2)))], False),
    "selu": ([("ELU", dict(elu_param=dict(alpha=1.6732632423543772))),
              ("Power", dict(power_param=dict(scale=1.0507009873554805)))], False),
    "hard_sigmoid": ([("Power", dict(power_param=dict(scale=1.0 / 6.0, shift=0.5))), ("Clip", _clip(0, 1))], True),
}


def emit_activation(ctx, top, act, layout, suffix=None):
    """Apply activation ``act`` to ``top``; returns (top, nonneg). The last layer gets ``suffix``."""
    if isinstance(act, dict):
        act = act.get("config", {}).get("name", act.get("class_name"))
    if act in (None, "linear"):
        return top, False
    if act in SIMPLE:
        ops, nonneg = SIMPLE[act]
        return _chain(ctx, top, ops, suffix), nonneg
    if act in ("hard_swish", "hard_silu", "mish"):
        if act == "mish":
            g = _chain(ctx, top, [("BNLL", {}), ("TanH", {})], "gate")
        else:
            g = _chain(ctx, top, SIMPLE["hard_sigmoid"][0], "gate")
        return ctx.add("Eltwise", [top, g], suffix, eltwise_param=dict(operation=0)), False
    if act == "softmax":
        rank = len(ctx.out_shape(0))
        if layout.kind == "flat_hwc":
            return ctx.add("Softmax", [top], suffix, softmax_param=dict(axis=1)), True
        return ctx.add("Softmax", [top], suffix, softmax_param=dict(axis=lay.caffe_axis_of(-1, rank, layout))), True
    raise ctx.error(f"activation {act!r} has no exact Caffe equivalent")


def _same(ctx, act, nonneg=None):
    """Apply ``act`` to the bottom as stored: elementwise layers keep the layout."""
    b = ctx.in_blob(0)
    if b.pad is not None:
        ctx.input(0)
    top, nn = emit_activation(ctx, b.top, act, b.layout)
    return ctx.out(top, b.layout, nonneg=nn if nonneg is None else nonneg)


@keras_layer("Activation")
def activation(ctx):
    """ReLU, Clip, Sigmoid, TanH, ELU, Swish, BNLL, Softmax, ... by activation name."""
    return _same(ctx, ctx.config["activation"])


@keras_layer("ReLU")
def relu(ctx):
    """ReLU (negative_slope), then Clip for max_value (relu6 -> Clip 0..6)."""
    cfg = ctx.config
    if float(cfg.get("threshold", 0.0)) != 0.0:
        raise ctx.error("ReLU with a nonzero threshold has no Caffe equivalent")
    slope, mx = float(cfg.get("negative_slope", 0.0)), cfg.get("max_value")
    b = ctx.in_blob(0)
    x = ctx.input(0, b.layout) if b.pad is not None else b.top
    if mx is not None and slope == 0.0:
        return ctx.out(_chain(ctx, x, [("Clip", _clip(0, mx))], None), b.layout, nonneg=True)
    top = ctx.add("ReLU", [x], "relu" if mx is not None else None,
                  relu_param=dict(negative_slope=slope) if slope else {})
    if mx is not None:
        top = _chain(ctx, top, [("Clip", _clip(-FLT_MAX, mx))], None)
    return ctx.out(top, b.layout, nonneg=slope == 0.0)


@keras_layer("LeakyReLU")
def leaky_relu(ctx):
    """ReLU with negative_slope."""
    slope = float(ctx.config.get("negative_slope", ctx.config.get("alpha", 0.3)))
    b = ctx.in_blob(0)
    x = ctx.input(0, b.layout) if b.pad is not None else b.top
    return ctx.out(ctx.add("ReLU", [x], relu_param=dict(negative_slope=slope)), b.layout)


@keras_layer("ELU")
def elu(ctx):
    """ELU with alpha."""
    b = ctx.in_blob(0)
    x = ctx.input(0, b.layout) if b.pad is not None else b.top
    return ctx.out(ctx.add("ELU", [x], elu_param=dict(alpha=float(ctx.config.get("alpha", 1.0)))), b.layout)


@keras_layer("Softmax")
def softmax(ctx):
    """Softmax over the mapped axis."""
    axis = ctx.config.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if not isinstance(axis, int):
        raise ctx.error(f"softmax over several axes {axis} has no Caffe equivalent")
    b = ctx.in_blob(0)
    rank = len(b.shape)
    if b.layout.kind == "flat_hwc":
        return ctx.out(ctx.add("Softmax", [b.top], softmax_param=dict(axis=1)), b.layout, nonneg=True)
    x = ctx.input(0, b.layout)
    return ctx.out(ctx.add("Softmax", [x], softmax_param=dict(axis=lay.caffe_axis_of(axis, rank, b.layout))),
                   b.layout, nonneg=True)


@keras_layer("PReLU")
def prelu(ctx):
    """PReLU with a per-channel or shared slope."""
    b = ctx.in_blob(0)
    rank = len(b.shape)
    alpha = ctx.weights[0]
    shared = sorted(int(a) for a in (ctx.config.get("shared_axes") or []))
    if alpha.size == 1:
        return ctx.out(ctx.add("PReLU", [ctx.input(0, b.layout)], blobs=[alpha.reshape(1)],
                               prelu_param=dict(channel_shared=True)), b.layout)
    lo = b.layout if b.layout.kind != "flat_hwc" else lay.CAFFE
    res = lay.keras_param_to_caffe(alpha, rank, lo)
    if res is None or res[0] != 1 or len(res[1].shape) != 1:
        raise ctx.error(f"PReLU slopes of shape {alpha.shape} (shared_axes={shared}) are not per channel; "
                        "Caffe's PReLU has one slope per channel")
    return ctx.out(ctx.add("PReLU", [ctx.input(0, lo)], blobs=[res[1]]), lo)


@keras_layer("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
             "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity")
def dropped(ctx):
    """Identity at inference: dropped (no Caffe layer)."""
    ctx._engine.dropped.append([ctx.layer.name, type(ctx.layer).__name__])
    return ctx.in_blob(0)


@keras_layer("CaffeUnary")
def caffe_unary(ctx):
    """bnconvert's CaffeUnary back to AbsVal, BNLL, Power, Exp, Log, Threshold, Clip or Swish."""
    c = ctx.config
    op = c["op"]
    t, p = {"abs": ("AbsVal", {}), "bnll": ("BNLL", {}),
            "power": ("Power", dict(power_param=dict(power=c["power"], scale=c["scale"], shift=c["shift"]))),
            "exp": ("Exp", dict(exp_param=dict(base=c["base"], scale=c["scale"], shift=c["shift"]))),
            "log": ("Log", dict(log_param=dict(base=c["base"], scale=c["scale"], shift=c["shift"]))),
            "threshold": ("Threshold", dict(threshold_param=dict(threshold=c["threshold"]))),
            "clip": ("Clip", _clip(c["min_value"], c["max_value"])),
            "swish": ("Swish", dict(swish_param=dict(beta=c["beta"])))}[op]
    b = ctx.in_blob(0)
    x = ctx.input(0, b.layout) if b.pad is not None else b.top
    if op == "swish" and ctx.target == "opencv" and float(c["beta"]) != 1.0:  # OpenCV's Swish has no beta
        g = _chain(ctx, x, [("Power", dict(power_param=dict(scale=c["beta"]))), ("Sigmoid", {})], "gate")
        return ctx.out(ctx.add("Eltwise", [x, g], eltwise_param=dict(operation=0)), b.layout)
    return ctx.out(_chain(ctx, x, [(t, p)], None), b.layout)
