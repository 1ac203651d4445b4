"""Elementwise activations, Dropout and Softmax. Elementwise layers keep their input's layout."""
from __future__ import annotations

import numpy as np

from .. import layout as lay
from .._lazy import keras, kl
from ..registry import caffe_layer
from ._context import apply


def _same_layout(ctx, layer):
    """Apply an order-insensitive layer to the bottom as stored; the top keeps that layout."""
    return layer(ctx.input(0, any_layout=True)), [ctx.layout(0)]


@caffe_layer("ReLU")
def relu(ctx):
    """ReLU, leaky with negative_slope."""
    slope = float(ctx.p.relu_param.negative_slope)
    return _same_layout(ctx, keras.layers.ReLU(negative_slope=slope, name=ctx.name()))


@caffe_layer("ReLU6")
def relu6(ctx):
    """min(max(x, 0), 6)."""
    return _same_layout(ctx, keras.layers.ReLU(max_value=6.0, name=ctx.name()))


@caffe_layer("Sigmoid", "TanH")
def sigmoid_tanh(ctx):
    """Activation('sigmoid') / Activation('tanh')."""
    fn = "sigmoid" if ctx.layer.type == "Sigmoid" else "tanh"
    return _same_layout(ctx, keras.layers.Activation(fn, name=ctx.name()))


@caffe_layer("ELU")
def elu(ctx):
    """ELU with alpha."""
    return _same_layout(ctx, keras.layers.ELU(alpha=float(ctx.p.elu_param.alpha), name=ctx.name()))


@caffe_layer("Dropout")
def dropout(ctx):
    """Identity at inference (Caffe scales at training time, so no rescaling is needed)."""
    return _same_layout(ctx, keras.layers.Dropout(float(ctx.p.dropout_param.dropout_ratio), name=ctx.name()))


_UNARY_DOCS = {
    "AbsVal": "CaffeUnary(op='abs'): |x|.",
    "BNLL": "CaffeUnary(op='bnll'): log(1 + exp(x)), computed stably.",
    "Power": "CaffeUnary(op='power'): (shift + scale*x) ** power.",
    "Exp": "CaffeUnary(op='exp'): base ** (shift + scale*x) (e when base is -1).",
    "Log": "CaffeUnary(op='log'): log_base(shift + scale*x).",
    "Threshold": "CaffeUnary(op='threshold'): 1 where x > threshold, else 0.",
    "Clip": "CaffeUnary(op='clip'): x clipped to [min, max].",
    "Swish": "CaffeUnary(op='swish'): x * sigmoid(beta*x).",
}


@caffe_layer(*_UNARY_DOCS, doc=_UNARY_DOCS)
def unary(ctx):
    """CaffeUnary with the layer's parameters."""
    t, p = ctx.layer.type, ctx.p
    kw = {"AbsVal": lambda: dict(op="abs"), "BNLL": lambda: dict(op="bnll"),
          "Power": lambda: dict(op="power", power=p.power_param.power, scale=p.power_param.scale,
                                shift=p.power_param.shift),
          "Exp": lambda: dict(op="exp", base=p.exp_param.base, scale=p.exp_param.scale, shift=p.exp_param.shift),
          "Log": lambda: dict(op="log", base=p.log_param.base, scale=p.log_param.scale, shift=p.log_param.shift),
          "Threshold": lambda: dict(op="threshold", threshold=p.threshold_param.threshold),
          "Clip": lambda: dict(op="clip", min_value=p.clip_param.min, max_value=p.clip_param.max),
          "Swish": lambda: dict(op="swish", beta=p.swish_param.beta)}[t]()
    return _same_layout(ctx, kl.CaffeUnary(name=ctx.name(), **kw))


@caffe_layer("PReLU")
def prelu(ctx):
    """PReLU with a per-channel (or shared) slope."""
    shared = ctx.p.prelu_param.channel_shared
    rank = len(ctx.in_shape(0))
    lo = ctx.common_layout()
    x = ctx.input(0, lo)
    ch = lay.keras_axis(1, rank, lo)
    axes = list(range(1, rank)) if shared else [a for a in range(1, rank) if a != ch]
    alpha_shape = [1] * (rank - 1)
    if not shared:
        alpha_shape[ch - 1] = ctx.in_shape(0)[1]
    alpha = np.asarray(ctx.blob(0), np.float32).reshape(alpha_shape)
    layer = keras.layers.PReLU(shared_axes=axes or None, name=ctx.name())
    return apply(layer, x, [alpha]), [lo]


@caffe_layer("Softmax")
def softmax(ctx):
    """Softmax over the Caffe axis (mapped to the Keras axis)."""
    shape = ctx.in_shape(0)
    rank = len(shape)
    axis = lay.caffe_axis(ctx.p.softmax_param.axis, rank)
    lo = ctx.layout(0)
    if lo.kind == "flat_hwc" and axis == 1:  # softmax over every feature does not care about their order
        return keras.layers.Softmax(axis=-1, name=ctx.name())(ctx.input(0, any_layout=True)), [lo]
    lo = ctx.common_layout()
    return keras.layers.Softmax(axis=lay.keras_axis(axis, rank, lo), name=ctx.name())(ctx.input(0, lo)), [lo]
