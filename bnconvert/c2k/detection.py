"""SSD's PriorBox (a constant built at conversion) and DetectionOutput (decode + NMS inside the model)."""
from __future__ import annotations

from .. import layout as lay
from .._lazy import kl
from ..caffe.ssd import detection_output_settings, prior_box_settings
from ..registry import caffe_layer


@caffe_layer("PriorBox")
def prior_box(ctx):
    """CaffePriorBox: SSD's priors computed once at conversion, a constant broadcast to the batch."""
    settings = prior_box_settings(ctx.p.prior_box_param, ctx.error)
    needs_image = not (settings["img_h"] and settings["img_w"])
    xs = [ctx.input(i, lay.NHWC) for i in range(2 if needs_image else 1)]
    out = kl.CaffePriorBox(**settings, name=ctx.name())(xs)
    return out, [lay.CAFFE]


@caffe_layer("DetectionOutput")
def detection_output(ctx):
    """CaffeDetectionOutput: decode, per-class NMS, keep_top_k; output (num, rows, 7), padded (see README)."""
    if len(ctx.layer.bottoms) > 3:
        ctx.warn("bottom 3 is ignored (SSD's DetectionOutput reads only loc, conf and priors)")
    p = ctx.p.detection_output_param
    if p.save_output_param.output_directory or p.visualize:
        ctx.warn("save_output_param/visualize are not converted: the model returns the detections only")
    settings = detection_output_settings(p, ctx.error)
    xs = [ctx.input(i, lay.CAFFE) for i in range(3)]
    loc, conf = (_flat(ctx, x, i) for i, x in enumerate(xs[:2]))
    return kl.CaffeDetectionOutput(**settings, name=ctx.name())([loc, conf, xs[2]]), [lay.CAFFE]


def _flat(ctx, x, i):
    """Bottom ``i`` as (num, values) in Caffe's element order."""
    shape = ctx.in_shape(i)
    if len(shape) == 2:
        return x
    return ctx.keras.layers.Flatten(name=ctx.name(f"flat{i}"))(x)
