"""Pooling with Caffe's exact rounding, padding and average divisor."""
from __future__ import annotations

from .._lazy import keras, kl
from ..caffe.shapes import _Err, pooling_ceil, pooling_geometry
from ..geometry import choose_padding
from ..registry import caffe_layer


@caffe_layer("Pooling")
def pooling(ctx):
    """MAX/AVE pooling (Keras pooling where exact, else CaffePooling2D); MAX with two tops: CaffeMaxPoolArgmax2D."""
    p = ctx.p.pooling_param
    shape = ctx.in_shape(0)
    err = _Err(ctx.layer, ctx.net.path)
    k, s, pd, out, is_global = pooling_geometry(ctx.layer, shape, err)
    method = {p.MAX: "max", p.AVE: "ave"}.get(p.pool)
    if method is None:
        raise ctx.error("STOCHASTIC pooling has no deterministic inference equivalent in Keras")
    if p.global_pooling and (p.pad or p.pad_h or p.pad_w):
        ctx.warn("pad is ignored with global_pooling, as Caffe ignores it")
    x = ctx.input(0)
    if len(ctx.layer.tops) == 2:
        return _with_mask(ctx, method, k, s, pd, err, x)
    if is_global:
        cls = keras.layers.GlobalAveragePooling2D if method == "ave" else keras.layers.GlobalMaxPooling2D
        return cls(keepdims=True, name=ctx.name())(x)
    mode = choose_padding(shape[2:], k, s, pd, (1, 1), out)
    # TF's 'same' average excludes padding from the divisor; that equals Caffe only when pad is 0.
    if mode == "valid" or (mode == "same" and (method == "max" or not any(pd))):
        cls = keras.layers.MaxPooling2D if method == "max" else keras.layers.AveragePooling2D
        return cls(k, s, padding=mode, name=ctx.name())(x)
    return kl.CaffePooling2D(method, k, s, pd, ceil_mode=pooling_ceil(ctx.layer, err), name=ctx.name())(x)


def _with_mask(ctx, method, k, s, pd, err, x):
    """MAX pooling with a second top: the argmax mask (index into the flattened input plane)."""
    if method != "max":
        raise ctx.error("a second top (the argmax mask) needs pool: MAX, as Caffe requires")
    layer = kl.CaffeMaxPoolArgmax2D(k, s, pd, ceil_mode=pooling_ceil(ctx.layer, err), name=ctx.name())
    return list(layer(x))
