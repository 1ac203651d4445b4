"""Resize layers to Caffe: bnconvert's CaffeInterp -> Interp (DeepLab v2, PSPNet) and CaffeMaxUnpool2D ->
Upsample with a mask bottom (SegNet, ENet), the forks' layers; Keras's nearest Resizing by whole factors ->
the BVLC Deconvolution that UpSampling2D becomes (k2c/shape.py): exact, and every Caffe runs it."""
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


@keras_layer("Resizing")
def resizing(ctx):
    """Nearest resize by whole factors: the exact Deconvolution of UpSampling2D (bilinear is refused)."""
    from .conv import upsample_kernel

    ctx.need_4d()
    ctx.check_channels_last()
    c = ctx.config
    _, h, w, ch = ctx.in_shape(0)
    oh, ow = int(c["height"]), int(c["width"])
    if c.get("interpolation") != "nearest" or c.get("crop_to_aspect_ratio") or c.get("pad_to_aspect_ratio"):
        raise ctx.error(f"Resizing with interpolation={c.get('interpolation')!r} (half-pixel centres), or with "
                        f"cropping/padding to the aspect ratio, has no exact Caffe equivalent",
                        hint="use interpolation='nearest' with whole factors, or bnconvert's CaffeInterp for "
                             "Caffe Interp's aligned-corner bilinear")
    if oh % h or ow % w:
        raise ctx.error(f"nearest Resizing from {h}x{w} to {oh}x{ow} is not by whole factors: no exact Caffe "
                        f"equivalent", hint="resize by whole factors (then it is an UpSampling2D)")
    sh, sw = oh // h, ow // w
    return ctx.out(ctx.add("Deconvolution", [ctx.input(0, lay.NHWC)], blobs=[upsample_kernel(ch, sh, sw)],
                           convolution_param=dict(num_output=ch, group=ch, bias_term=False, kernel_h=sh,
                                                  kernel_w=sw, stride_h=sh, stride_w=sw)),
                   lay.NHWC, nonneg=ctx.in_blob(0).nonneg)
