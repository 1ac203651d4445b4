"""Layers that move data: Flatten, Reshape, Permute, Concatenate, ZeroPadding2D, Cropping2D, UpSampling2D, ..."""
from __future__ import annotations

import numpy as np

from .. import layout as lay
from ..registry import keras_layer
from ._context import Blob
from .conv import upsample_kernel
from .elementwise import _common
from .transpose import permute_blob

# Layers that pass a tensor through unchanged at inference (see activation.dropped).
PASS_THROUGH = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
                "GaussianDropout", "AlphaDropout", "ActivityRegularization", "Identity"}


def _dense_readers(ctx, keys, unflat):
    """How many Dense layers read these tensors (looking through dropped layers); None if anything else does.

    A Reshape back to the unflattened (H, W, C) also reads H,W,C order for free. Model outputs do not
    count: they get Keras's order at the end (see ``Engine.output_tops``).
    """
    n = 0
    for k in keys:
        for s in ctx._engine.consumers.get(k, []):
            cls = type(s.layer).__name__
            if cls == "Reshape" and tuple(s.out_shapes[0][1:]) == unflat:
                continue
            m = _dense_readers(ctx, s.outputs, unflat) if cls in PASS_THROUGH else 1 if cls == "Dense" else None
            if m is None:
                return None
            n += m
    return n


@keras_layer("Flatten")
def flatten(ctx):
    """Flatten; an NHWC tensor read only by Dense keeps H,W,C order (the Dense kernel is reordered),
    otherwise a Permute(0,2,3,1) first gives Caffe Keras's element order."""
    b = ctx.in_blob(0)
    rank = len(b.shape)
    if rank == 2:
        return b
    if rank == 4 and b.layout.kind == "nhwc" and not lay.same_element_order(b.shape, b.layout):
        _, h, w, c = b.shape
        if _dense_readers(ctx, ctx.step.outputs, (h, w, c)):
            x = ctx.input(0, lay.NHWC)
            if not ctx.is_output():
                return ctx.out(ctx.add("Flatten", [x]), lay.flat_hwc(c, h, w), nonneg=b.nonneg)
            flat = ctx.add("Flatten", [x], "chw")
            hwc = permute_blob(ctx._engine, f"{ctx.base}/hwc", x, lay.caffe_shape(b.shape, lay.NHWC),
                               lay.NCHW_TO_NHWC)
            ctx._engine.output_tops[ctx.step.outputs[0]] = ctx.add("Flatten", [hwc])
            return ctx.out(flat, lay.flat_hwc(c, h, w), nonneg=b.nonneg)
    x = ctx.input(0, b.layout) if lay.same_element_order(b.shape, b.layout) and b.pad is None else ctx.input(0, lay.CAFFE)
    return ctx.out(ctx.add("Flatten", [x]), lay.CAFFE, nonneg=b.nonneg)


@keras_layer("Reshape")
def reshape(ctx):
    """Reshape in Keras's element order (a Permute first when the Caffe blob orders it differently)."""
    b = ctx.in_blob(0)
    out = tuple(ctx.out_shape(0))
    if b.layout.kind == "flat_hwc" and out[1:] == tuple(b.layout.chw[1:]) + b.layout.chw[:1]:
        dims = [0] + list(b.layout.chw)  # un-flattening H,W,C order: the Caffe C,H,W blob is NHWC already
        return ctx.out(ctx.add("Reshape", [b.top], reshape_param=dict(shape=dict(dim=dims))), lay.NHWC,
                       nonneg=b.nonneg)
    if b.pad is None and lay.same_element_order(b.shape, b.layout):
        x = b.top
    else:
        x = ctx.input(0, lay.CAFFE)
    lo = lay.NHWC if len(out) == 4 and lay.same_element_order(out, lay.NHWC) else lay.CAFFE
    dims = [0] + list(lay.caffe_shape(out, lo)[1:])
    return ctx.out(ctx.add("Reshape", [x], reshape_param=dict(shape=dict(dim=dims))), lo, nonneg=b.nonneg)


@keras_layer("Permute")
def permute(ctx):
    """Caffe Permute of the mapped axes; free when only the layout changes."""
    b = ctx.in_blob(0)
    rank = len(b.shape)
    perm = (0,) + tuple(int(d) for d in ctx.config["dims"])
    have = b.layout if b.layout.kind != "flat_hwc" else lay.CAFFE
    x = ctx.input(0, have)
    wants = [lay.NHWC, lay.CAFFE] if rank == 4 else [lay.CAFFE]
    for want in wants:
        order = lay.keras_perm_to_caffe(perm, rank, have, want)
        if order == tuple(range(rank)):
            return Blob(x, tuple(ctx.out_shape(0)), want, b.nonneg)
    order = lay.keras_perm_to_caffe(perm, rank, have, wants[0])
    top = permute_blob(ctx._engine, ctx.base, x, lay.caffe_shape(b.shape, have), order)
    return ctx.out(top, wants[0], nonneg=b.nonneg)


@keras_layer("Concatenate")
def concatenate(ctx):
    """Concat along the mapped axis."""
    xs, lo = _common(ctx)
    rank = len(ctx.in_shape(0))
    if lo.kind == "flat_hwc":
        xs, lo = [ctx.input(i, lay.CAFFE) for i in range(ctx.n_inputs)], lay.CAFFE
    axis = lay.caffe_axis_of(ctx.config["axis"], rank, lo)
    nonneg = all(ctx.in_blob(i).nonneg for i in range(ctx.n_inputs))
    return ctx.out(ctx.add("Concat", xs, concat_param=dict(axis=axis)), lo, nonneg=nonneg)


def _pads(v):
    if isinstance(v, int):
        return ((v, v), (v, v))
    return tuple((int(p), int(p)) if isinstance(p, int) else (int(p[0]), int(p[1])) for p in v)


@keras_layer("ZeroPadding2D")
def zero_padding2d(ctx):
    """Folded into the next Conv/Pooling where exact, else a one-hot depthwise Convolution (exact zero pad)."""
    ctx.need_4d()
    ctx.check_channels_last()
    top, zp = ctx.source(0)
    pads = _pads(ctx.config["padding"])
    total = tuple((a[0] + b[0], a[1] + b[1]) for a, b in zip(zp, pads))
    return Blob(top, tuple(ctx.out_shape(0)), lay.NHWC, ctx.in_blob(0).nonneg, pad=total, pad_name=ctx.base)


@keras_layer("Cropping2D")
def cropping2d(ctx):
    """Crop with offsets (top, left) to a reference blob of the cropped size."""
    ctx.need_4d()
    ctx.check_channels_last()
    (t, _), (l, _) = _pads(ctx.config["cropping"])
    _, h, w, _ = ctx.in_shape(0)
    _, oh, ow, _ = ctx.out_shape(0)
    x = ctx.input(0, lay.NHWC)
    if (oh, ow) == (h, w):
        return Blob(x, tuple(ctx.out_shape(0)), lay.NHWC, ctx.in_blob(0).nonneg)
    ref = ctx.ref(x, (h, w), (oh, ow), "ref")
    return ctx.out(ctx.add("Crop", [x, ref], crop_param=dict(axis=2, offset=[t, l])), lay.NHWC,
                   nonneg=ctx.in_blob(0).nonneg)


@keras_layer("UpSampling2D")
def upsampling2d(ctx):
    """Nearest: a Deconvolution with group C and a kernel of ones; bilinear: edges repeated, a bilinear
    Deconvolution, a Crop (both exact)."""
    ctx.need_4d()
    ctx.check_channels_last()
    sh, sw = (int(v) for v in ctx.config["size"])
    if ctx.config.get("interpolation", "nearest") == "bilinear":
        return _bilinear_upsampling(ctx, sh, sw)
    if ctx.config.get("interpolation", "nearest") != "nearest":
        raise ctx.error(f"interpolation={ctx.config['interpolation']!r} has no exact Caffe equivalent",
                        hint="use interpolation='nearest' or 'bilinear'")
    c = ctx.in_shape(0)[3]
    return ctx.out(ctx.add("Deconvolution", [ctx.input(0, lay.NHWC)], blobs=[upsample_kernel(c, sh, sw)],
                           convolution_param=dict(num_output=c, group=c, bias_term=False, kernel_h=sh, kernel_w=sw,
                                                  stride_h=sh, stride_w=sw)), lay.NHWC, nonneg=ctx.in_blob(0).nonneg)


def bilinear_kernel(factor):
    """1-d weights of a stride-``factor`` Deconvolution that interpolates linearly at half-pixel centres."""
    k = 2 * factor - factor % 2
    f = (k + 1) // 2
    centre = (2 * f - 1 - f % 2) / (2.0 * f)
    return np.array([1.0 - abs(i / f - centre) for i in range(k)], np.float64), factor // 2


def _edge_rows(ctx, x, hw, axis, suffix):
    """``x`` with its first and last row (axis 2) or column (axis 3) repeated once: Crops and a Concat."""
    size = hw[axis - 2]
    one = (1, hw[1]) if axis == 2 else (hw[0], 1)
    ref = ctx.ref(x, hw, one, f"{suffix}_ref")
    ends = [ctx.add("Crop", [x, ref], f"{suffix}_{i}", crop_param=dict(axis=2, offset=[o, 0] if axis == 2 else [0, o]))
            for i, o in enumerate((0, size - 1))]
    return ctx.add("Concat", [ends[0], x, ends[1]], suffix, concat_param=dict(axis=axis))


def _bilinear_upsampling(ctx, sh, sw):
    """Keras's bilinear UpSampling2D (half-pixel centres, edges clamped), exactly: the edges repeated
    once, a depthwise Deconvolution with the bilinear kernel, and a Crop of the interior."""
    _, h, w, c = ctx.in_shape(0)
    x = _edge_rows(ctx, ctx.input(0, lay.NHWC), (h, w), 2, "edge_h")
    x = _edge_rows(ctx, x, (h + 2, w), 3, "edge_w")
    (kh, ph), (kw, pw) = bilinear_kernel(sh), bilinear_kernel(sw)
    kernel = np.broadcast_to(np.outer(kh, kw).astype(np.float32), (c, 1, len(kh), len(kw)))
    y = ctx.add("Deconvolution", [x], "deconv", blobs=[np.ascontiguousarray(kernel)], convolution_param=dict(
        num_output=c, group=c, bias_term=False, kernel_h=len(kh), kernel_w=len(kw), stride_h=sh, stride_w=sw,
        pad_h=ph, pad_w=pw))
    full = (sh * (h + 1) + len(kh) - 2 * ph, sw * (w + 1) + len(kw) - 2 * pw)
    ref = ctx.ref(y, full, (sh * h, sw * w), "ref")
    return ctx.out(ctx.add("Crop", [y, ref], crop_param=dict(axis=2, offset=[sh, sw])), lay.NHWC,
                   nonneg=ctx.in_blob(0).nonneg)


@keras_layer("CaffeSlice")
def caffe_slice(ctx):
    """bnconvert's CaffeSlice back to Slice at the same points."""
    b = ctx.in_blob(0)
    rank = len(b.shape)
    lo = b.layout if b.layout.kind != "flat_hwc" else lay.CAFFE
    c = ctx.config
    bounds = list(c["bounds"])
    axis = lay.caffe_axis_of(c["axis"], rank, lo)
    if bounds[0] != 0 or bounds[-1] != b.shape[lay.caffe_axis(c["axis"], rank)]:
        raise ctx.error(f"slice bounds {bounds} do not cover the whole axis")
    tops = [f"{ctx.base}_{i}" for i in range(len(bounds) - 1)]
    ctx.add("Slice", [ctx.input(0, lo)], tops=tops, slice_param=dict(axis=axis, slice_point=bounds[1:-1]))
    return [ctx.out(t, lo, i=i) for i, t in enumerate(tops)]


@keras_layer("CaffeCrop")
def caffe_crop(ctx):
    """bnconvert's CaffeCrop back to a two-bottom Crop."""
    b = ctx.in_blob(0)
    rank = len(b.shape)
    lo = lay.default_layout(rank)
    c = ctx.config
    axes = sorted(lay.caffe_axis_of(a, rank, lo) for a in c["axes"])
    if axes != list(range(axes[0], rank)):
        raise ctx.error(f"cropping Keras axes {c['axes']} is not a trailing run of Caffe axes")
    offs = [0] * rank
    for a in range(rank):
        offs[lay.caffe_axis_of(a, rank, lo)] = c["offsets"][a]
    return ctx.out(ctx.add("Crop", [ctx.input(0, lo), ctx.input(1, lo)],
                           crop_param=dict(axis=axes[0], offset=offs[axes[0]:])), lo)


@keras_layer("CaffeTile")
def caffe_tile(ctx):
    """bnconvert's CaffeTile back to Tile."""
    b = ctx.in_blob(0)
    lo = b.layout if b.layout.kind != "flat_hwc" else lay.CAFFE
    axis = lay.caffe_axis_of(ctx.config["axis"], len(b.shape), lo)
    x = ctx.input(0, lo)
    if ctx.target == "opencv":  # OpenCV's Tile reads ONNX's repeats, not tile_param: copies in a Concat
        return ctx.out(ctx.add("Concat", [x] * int(ctx.config["tiles"]), concat_param=dict(axis=axis)), lo)
    return ctx.out(ctx.add("Tile", [x], tile_param=dict(axis=axis, tiles=ctx.config["tiles"])), lo)


@keras_layer("ShuffleChannel")
def shuffle_channel(ctx):
    """bnconvert's ShuffleChannel back to ShuffleChannel (a fork layer type)."""
    return ctx.out(ctx.add("ShuffleChannel", [ctx.input(0, lay.NHWC)],
                           shuffle_channel_param=dict(group=ctx.config["group"])), lay.NHWC)
