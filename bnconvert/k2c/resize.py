"""bnconvert's fork resize layers back to the forks' Caffe layers: CaffeInterp -> Interp (DeepLab v2,
PSPNet), CaffeMaxUnpool2D -> Upsample with a mask bottom (SegNet, ENet). UpSampling2D stays the BVLC
Deconvolution of k2c/shape.py: exact, and it runs on every Caffe."""
from __future__ import annotations

from .. import layout as lay
from ..registry import keras_layer


@keras_layer("CaffeInterp")
def caffe_interp(ctx):
    """Interp with the output height/width and the cropping pads (the fork's aligned-corner bilinear)."""
    ctx.need_4d()
    c = ctx.config
    _, oh, ow, _ = ctx.out_shape(0)
    return ctx.out(ctx.add("Interp", [ctx.input(0, lay.NHWC)], interp_param=dict(
        height=oh, width=ow, pad_beg=c["pad_beg"] or None, pad_end=c["pad_end"] or None)), lay.NHWC)


@keras_layer("CaffeMaxUnpool2D")
def caffe_max_unpool2d(ctx):
    """Upsample (SegNet/ENet) over the values and the mask, with upsample_h/upsample_w."""
    ctx.need_4d()
    _, oh, ow, _ = ctx.out_shape(0)
    if oh <= 1 or ow <= 1:
        raise ctx.error(f"the fork's Upsample needs an output larger than 1x1. Received: {oh}x{ow}")
    values, mask = ctx.input(0, lay.NHWC), ctx.input(1, lay.NHWC)
    return ctx.out(ctx.add("Upsample", [values, mask], upsample_param=dict(upsample_h=oh, upsample_w=ow)),
                   lay.NHWC, nonneg=ctx.in_blob(0).nonneg)
