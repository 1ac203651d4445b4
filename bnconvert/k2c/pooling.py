"""MaxPooling2D/AveragePooling2D (exact valid/same), global pooling and CaffePooling2D.

Caffe rounds pooled sizes up; BVLC's ``round_mode: FLOOR`` is not understood by every runtime
(OpenCV reads field 13 as the forks' ``ceil_mode``), so a smaller Keras output is reproduced by
cropping Caffe's extra row/column instead. TF's 'same' average excludes the padding from the divisor
and Caffe's includes it: a fixed per-position Scale corrects the divisor.
"""
from __future__ import annotations

import numpy as np

from .. import geometry as geo
from .. import layout as lay
from ..registry import keras_layer


def _pair(v):
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(x) for x in v)


def plan_axis(size, k, s, before, out):
    """(caffe pad, crop offset, caffe out) whose windows (after the crop) are Keras's, or None."""
    for m in range(k):
        pad = before + m * s
        if pad and pad >= k:
            return None
        co = geo.caffe_pool_out(size, k, s, pad)
        if co >= out + m:
            return pad, m, co
    return None


def _pool_layer(ctx, method, k, s, pads, out):
    """Emit Pooling (+ Crop + divisor Scale) over the source. ``pads`` are ignored pads (TF 'same')."""
    top, zp = ctx.source(0)
    _, h, w, _ = ctx.in_shape(0)
    src = (h - sum(zp[0]), w - sum(zp[1]))
    total = [(z[0] + p[0], z[1] + p[1]) for z, p in zip(zp, pads)]
    fold = any(map(any, zp))
    mixed = fold and any(map(any, pads))
    empty = any(min(geo.window_counts(sz, kk, ss, b, o)) <= 0 for sz, kk, ss, (b, _), o in zip(src, k, s, total, out))
    if fold and (mixed or empty or (method == "max" and not ctx.in_blob(0).nonneg)):
        top, src, total = ctx.input(0, lay.NHWC), (h, w), pads
        fold = False
    plans = [plan_axis(sz, kk, ss, b, o) for sz, kk, ss, (b, _), o in zip(src, k, s, total, out)]
    if None in plans:
        if any(map(any, zp)) and fold:
            top, src, total = ctx.input(0, lay.NHWC), (h, w), pads
            fold = False
            plans = [plan_axis(sz, kk, ss, b, o) for sz, kk, ss, (b, _), o in zip(src, k, s, total, out)]
        if None in plans:
            raise ctx.error(f"no Caffe pooling reproduces pool {k}, stride {s}, padding {total} on {src}")
    (ph, mh, coh), (pw, mw, cow) = plans
    crop = (coh, cow) != tuple(out)
    factor = None
    if method == "ave":
        cd = [np.array(geo.caffe_ave_divisors(sz, kk, ss, p, co))[m:m + o]
              for sz, kk, ss, (p, m, co), o in zip(src, k, s, plans, out)]
        want = [np.full(o, kk) if fold else np.array(geo.window_counts(sz, kk, ss, b, o))
                for sz, kk, ss, (b, _), o in zip(src, k, s, total, out)]
        f = np.outer(cd[0], cd[1]).astype(np.float64) / np.outer(want[0], want[1])
        factor = None if np.all(f == 1.0) else f.astype(np.float32)
    last = None if not crop and factor is None else "pool"
    y = ctx.add("Pooling", [top], last, pooling_param=dict(
        pool=0 if method == "max" else 1, kernel_h=k[0], kernel_w=k[1], stride_h=s[0], stride_w=s[1],
        pad_h=ph, pad_w=pw))
    if crop:
        ref = ctx.ref(y, (coh, cow), out, "ref")
        y = ctx.add("Crop", [y, ref], None if factor is None else "crop", crop_param=dict(axis=2, offset=[mh, mw]))
    if factor is not None:
        y = ctx.add("Scale", [y], blobs=[factor], scale_param=dict(axis=2, num_axes=2, bias_term=False))
    return ctx.out(y, lay.NHWC, nonneg=ctx.in_blob(0).nonneg)


def _keras_pool(ctx, method):
    cfg = ctx.config
    ctx.need_4d()
    ctx.check_channels_last()
    k = _pair(cfg["pool_size"])
    s = _pair(cfg["strides"] if cfg.get("strides") is not None else cfg["pool_size"])
    _, h, w, _ = ctx.in_shape(0)
    _, oh, ow, _ = ctx.out_shape(0)
    if cfg["padding"] == "same":
        pads = [geo.tf_same_pads(sz, kk, ss)[1:] for sz, kk, ss in zip((h, w), k, s)]
    else:
        pads = [(0, 0), (0, 0)]
    return _pool_layer(ctx, method, k, s, pads, (oh, ow))


@keras_layer("MaxPooling2D")
def max_pooling2d(ctx):
    """Pooling MAX, cropped to Keras's (floor) size; folds a preceding ZeroPadding2D after a ReLU."""
    return _keras_pool(ctx, "max")


@keras_layer("AveragePooling2D")
def average_pooling2d(ctx):
    """Pooling AVE; 'same' gets a fixed Scale so the divisor excludes the padding as TF does."""
    return _keras_pool(ctx, "ave")


def _global(ctx, method):
    ctx.need_4d()
    ctx.check_channels_last()
    keep = ctx.config.get("keepdims", False)
    x = ctx.input(0, lay.NHWC)
    y = ctx.add("Pooling", [x], None if keep else "pool", pooling_param=dict(pool=method, global_pooling=True))
    if keep:
        return ctx.out(y, lay.NHWC, nonneg=ctx.in_blob(0).nonneg)
    return ctx.out(ctx.add("Flatten", [y]), lay.CAFFE, nonneg=ctx.in_blob(0).nonneg)


@keras_layer("GlobalAveragePooling2D")
def global_average_pooling2d(ctx):
    """Pooling AVE with global_pooling (then Flatten unless keepdims)."""
    return _global(ctx, 1)


@keras_layer("GlobalMaxPooling2D")
def global_max_pooling2d(ctx):
    """Pooling MAX with global_pooling (then Flatten unless keepdims)."""
    return _global(ctx, 0)


@keras_layer("CaffePooling2D")
def caffe_pooling2d(ctx):
    """bnconvert's CaffePooling2D back to Pooling (ceil_mode=False crops the extra row/column)."""
    c = ctx.config
    k, s, pd = _pair(c["pool_size"]), _pair(c["strides"]), _pair(c["padding"])
    _, h, w, _ = ctx.in_shape(0)
    out = ctx.out_shape(0)[1:3]
    x = ctx.input(0, lay.NHWC)
    co = tuple(geo.caffe_pool_out(sz, kk, ss, p) for sz, kk, ss, p in zip((h, w), k, s, pd))
    y = ctx.add("Pooling", [x], None if co == tuple(out) else "pool", pooling_param=dict(
        pool=0 if c["method"] == "max" else 1, kernel_h=k[0], kernel_w=k[1], stride_h=s[0], stride_w=s[1],
        pad_h=pd[0], pad_w=pd[1]))
    if co != tuple(out):
        ref = ctx.ref(y, co, out, "ref")
        y = ctx.add("Crop", [y, ref], crop_param=dict(axis=2, offset=[0, 0]))
    return ctx.out(y, lay.NHWC)


@keras_layer("CaffeMaxPoolArgmax2D")
def caffe_max_pool_argmax2d(ctx):
    """MAX Pooling with two tops (values, argmax mask); ceil_mode=False crops both to the floor size."""
    c = ctx.config
    k, s, pd = _pair(c["pool_size"]), _pair(c["strides"]), _pair(c["padding"])
    _, h, w, _ = ctx.in_shape(0)
    out = tuple(ctx.out_shape(0)[1:3])
    co = tuple(geo.caffe_pool_out(sz, kk, ss, p) for sz, kk, ss, p in zip((h, w), k, s, pd))
    crop = co != out
    tops = [ctx.base + ("/pool" if crop else ""), ctx.base + ("/mask_pool" if crop else "_mask")]
    y, mask = ctx.add("Pooling", [ctx.input(0, lay.NHWC)], "pool" if crop else None, tops=tops, pooling_param=dict(
        pool=0, kernel_h=k[0], kernel_w=k[1], stride_h=s[0], stride_w=s[1], pad_h=pd[0], pad_w=pd[1]))
    if crop:
        ref = ctx.ref(y, co, out, "ref")
        y = ctx.add("Crop", [y, ref], crop_param=dict(axis=2, offset=[0, 0]))
        mask = ctx.add("Crop", [mask, ref], "mask", crop_param=dict(axis=2, offset=[0, 0]))
    return [ctx.out(y, lay.NHWC, i=0), ctx.out(mask, lay.NHWC, i=1)]
