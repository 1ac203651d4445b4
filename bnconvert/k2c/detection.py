"""bnconvert's SSD layers back to SSD's PriorBox and DetectionOutput (weiliu89/caffe, branch ssd)."""
from __future__ import annotations

from .. import layout as lay
from ..caffe.ssd import CODE_TYPES
from ..registry import keras_layer


def _pair(c, h, w, single):
    """``{single: v}`` when the two values are equal, ``{h: ., w: .}`` otherwise, ``{}`` when unset (0)."""
    if not (c[h] and c[w]):
        return {}
    return {single: c[h]} if c[h] == c[w] else {h: c[h], w: c[w]}


@keras_layer("CaffePriorBox")
def caffe_prior_box(ctx):
    """bnconvert's CaffePriorBox back to PriorBox with the same parameters (Caffe recomputes the boxes)."""
    c = ctx.config
    param = dict(min_size=c["min_size"], max_size=c["max_size"], aspect_ratio=c["aspect_ratio"], flip=c["flip"],
                 clip=c["clip"], variance=c["variance"], offset=c["offset"])
    param.update(_pair(c, "img_h", "img_w", "img_size"))
    param.update(_pair(c, "step_h", "step_w", "step"))
    bottoms = [ctx.input(i, lay.NHWC) for i in range(ctx.n_inputs)]
    return ctx.out(ctx.add("PriorBox", bottoms, prior_box_param=param), lay.CAFFE)


@keras_layer("CaffeDetectionOutput")
def caffe_detection_output(ctx):
    """bnconvert's CaffeDetectionOutput back to DetectionOutput (Caffe's top has a variable row count)."""
    c = ctx.config
    code = {name: number for number, name in CODE_TYPES.items()}[c["code_type"]]
    nms = dict(nms_threshold=c["nms_threshold"], eta=c["eta"], top_k=c["top_k"] if c["top_k"] >= 0 else None)
    param = dict(num_classes=c["num_classes"], share_location=c["share_location"],
                 background_label_id=c["background_label_id"], nms_param=nms, code_type=code,
                 variance_encoded_in_target=c["variance_encoded_in_target"], keep_top_k=c["keep_top_k"],
                 confidence_threshold=c["confidence_threshold"])
    bottoms = []
    for i in range(3):
        x = ctx.input(i, lay.CAFFE)
        if i < 2 and len(ctx.in_shape(i)) > 2:
            x = ctx.add("Flatten", [x], f"flat{i}")
        bottoms.append(x)
    return ctx.out(ctx.add("DetectionOutput", bottoms, detection_output_param=param), lay.CAFFE)
