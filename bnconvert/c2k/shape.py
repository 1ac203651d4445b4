"""Layers that move data around: Concat, Slice, Split, Flatten, Reshape, Crop, Permute, Tile, ShuffleChannel."""
from __future__ import annotations

from .. import layout as lay
from .._lazy import keras, kl
from ..caffe.shapes import crop_offsets, permute_order, slice_bounds
from ..registry import caffe_layer


@caffe_layer("Concat")
def concat(ctx):
    """Concatenate along the mapped axis."""
    p = ctx.p.concat_param
    rank = len(ctx.in_shape(0))
    axis = lay.caffe_axis(p.concat_dim if p.HasField("concat_dim") else p.axis, rank)
    lo = ctx.common_layout()
    xs = ctx.inputs(lo)
    if len(xs) == 1:
        return keras.layers.Identity(name=ctx.name())(xs[0]), [lo]
    return keras.layers.Concatenate(axis=lay.keras_axis(axis, rank, lo), name=ctx.name())(xs), [lo]


@caffe_layer("Slice")
def slice_(ctx):
    """CaffeSlice at the slice points (or into equal parts)."""
    shape = ctx.in_shape(0)
    lo = ctx.common_layout()
    axis, bounds = slice_bounds(ctx.layer, shape)
    outs = kl.CaffeSlice(lay.keras_axis(axis, len(shape), lo), bounds, name=ctx.name())(ctx.input(0, lo))
    return list(outs), [lo] * len(outs)


@caffe_layer("Split")
def split(ctx):
    """Every top is the bottom itself."""
    x = ctx.input(0, any_layout=True)
    n = len(ctx.layer.tops)
    return [x] * n, [ctx.layout(0)] * n


@caffe_layer("Flatten")
def flatten(ctx):
    """Flatten; a 4-d NHWC bottom keeps H,W,C order until a consumer needs C,H,W."""
    p = ctx.p.flatten_param
    shape = ctx.in_shape(0)
    rank = len(shape)
    a, e = lay.caffe_axis(p.axis, rank), lay.caffe_axis(p.end_axis, rank)
    if a == 1 and e == rank - 1:
        if ctx.layout(0).kind == "nhwc":
            _, c, h, w = shape
            out = keras.layers.Flatten(name=ctx.name())(ctx.input(0, lay.NHWC))
            return out, [lay.flat_hwc(c, h, w) if (h * w > 1 and c > 1) else lay.CAFFE]
        if ctx.layout(0).kind == "flat_hwc":
            return keras.layers.Identity(name=ctx.name())(ctx.input(0, any_layout=True)), [ctx.layout(0)]
        return keras.layers.Flatten(name=ctx.name())(ctx.input(0, lay.CAFFE)), [lay.CAFFE]
    return _reshape_to(ctx, ctx.out_shape(0))


def _reshape_to(ctx, out_shape):
    if out_shape[0] != ctx.in_shape(0)[0]:
        raise ctx.error(f"reshaping the batch axis ({ctx.in_shape(0)} -> {out_shape}) is not supported; "
                        f"Keras keeps the batch axis apart")
    y = keras.layers.Reshape(tuple(out_shape[1:]), name=ctx.name())(ctx.input(0, lay.CAFFE))
    return y, [lay.CAFFE]


@caffe_layer("Reshape")
def reshape(ctx):
    """Reshape in Caffe's axis order (0 copies a dimension, -1 is inferred)."""
    return _reshape_to(ctx, ctx.out_shape(0))


@caffe_layer("Crop")
def crop(ctx):
    """CaffeCrop: crop bottom 0 to bottom 1's size on axes >= axis, from the offsets."""
    shape = ctx.in_shape(0)
    rank = len(shape)
    lo = lay.default_layout(rank)
    axis = lay.caffe_axis(ctx.p.crop_param.axis, rank)
    offs = crop_offsets(ctx.layer, rank)
    k_axes = [lay.keras_axis(a, rank, lo) for a in range(axis, rank)]
    k_offs = [0] * rank
    for a in range(rank):
        k_offs[lay.keras_axis(a, rank, lo)] = offs[a]
    return kl.CaffeCrop(k_offs, k_axes, name=ctx.name())([ctx.input(0, lo), ctx.input(1, lo)])


@caffe_layer("Permute")
def permute(ctx):
    """Transpose; free when the permutation only changes how the result is laid out (SSD heads)."""
    shape = ctx.in_shape(0)
    rank = len(shape)
    order = permute_order(ctx.layer, rank)
    if order[0] != 0:
        raise ctx.error(f"permuting the batch axis (order {order}) is not supported")
    lo = ctx.common_layout()
    x = ctx.input(0, lo)
    k_in = [lay.keras_axis(i, rank, lo) for i in range(rank)]  # Keras axis holding Caffe input axis i
    perm_caffe_out = [k_in[o] for o in order]  # the result in Caffe order
    candidates = [(perm_caffe_out, lay.CAFFE)]
    if rank == 4:
        candidates.insert(0, ([perm_caffe_out[i] for i in lay.NCHW_TO_NHWC], lay.NHWC))
    for perm, out_lo in candidates:
        if perm == list(range(rank)):
            return keras.layers.Identity(name=ctx.name())(x), [out_lo]
    perm, out_lo = candidates[0]
    return keras.layers.Permute(tuple(perm[1:]), name=ctx.name())(x), [out_lo]


@caffe_layer("Tile")
def tile(ctx):
    """CaffeTile along the mapped axis."""
    rank = len(ctx.in_shape(0))
    lo = ctx.common_layout()
    axis = lay.keras_axis(lay.caffe_axis(ctx.p.tile_param.axis, rank), rank, lo)
    return kl.CaffeTile(axis, ctx.p.tile_param.tiles, name=ctx.name())(ctx.input(0, lo)), [lo]


@caffe_layer("ShuffleChannel")
def shuffle_channel(ctx):
    """ShuffleNet's channel shuffle."""
    return kl.ShuffleChannel(ctx.p.shuffle_channel_param.group, name=ctx.name())(ctx.input(0, lay.NHWC))

