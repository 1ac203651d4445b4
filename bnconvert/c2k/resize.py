"""Fork resize layers: Interp (DeepLab v2, PSPNet) and Upsample (YOLOv3 ports' nearest, SegNet/ENet unpooling)."""
from __future__ import annotations

from .. import layout as lay
from .._lazy import keras, kl
from ..registry import caffe_layer


@caffe_layer("Interp")
def interp(ctx):
    """CaffeInterp: bilinear with aligned corners and cropping pads, exactly as the fork's caffe_cpu_interp2."""
    p = ctx.p.interp_param
    _, _, oh, ow = ctx.out_shape(0)
    return kl.CaffeInterp((oh, ow), p.pad_beg, p.pad_end, name=ctx.name())(ctx.input(0, lay.NHWC))


@caffe_layer("Upsample")
def upsample(ctx):
    """One bottom (YOLOv3 ports): nearest UpSampling2D by scale. Two bottoms (SegNet, ENet): CaffeMaxUnpool2D."""
    _, _, oh, ow = ctx.out_shape(0)
    if len(ctx.layer.bottoms) == 1:
        _, _, h, w = ctx.in_shape(0)
        x = ctx.input(0, lay.NHWC)
        if (oh, ow) == (h, w):
            return keras.layers.Identity(name=ctx.name())(x)
        return keras.layers.UpSampling2D((oh // h, ow // w), interpolation="nearest", name=ctx.name())(x)
    values, mask = ctx.input(0, lay.NHWC), ctx.input(1, lay.NHWC)
    return kl.CaffeMaxUnpool2D((oh, ow), name=ctx.name())([values, mask])
