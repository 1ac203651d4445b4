"""The Caffe runtimes keras2caffe writes for (``--target``).

``caffe``: BVLC Caffe (master): every layer and field of its caffe.proto, e.g. ``Clip`` for ReLU6.
``opencv``: OpenCV dnn 4.x's Caffe importer, which parses the prototxt with its own schema and has
its own layer set: no ``Clip`` (ReLU6 becomes its ``ReLU6`` type, other clips ReLU/Power chains),
``Log`` ignores base/scale/shift (they become Power layers around it), no ``Threshold``, ``Reduction``,
``ArgMax`` or Caffe ``Tile``. Converters ask ``ctx.target`` and emit what that runtime computes exactly,
or refuse with the reason.
"""
from __future__ import annotations

from ..errors import ConversionError

TARGETS = {
    "caffe": "BVLC Caffe",
    "opencv": "OpenCV dnn (cv2.dnn.readNetFromCaffe)",
}


def check_target(target):
    if target not in TARGETS:
        raise ConversionError(f"unknown keras2caffe target {target!r}. Received: target={target!r}",
                              hint="use " + " or ".join(TARGETS))
    return target


def refuse(ctx, what):
    """The error for a construct the target runtime cannot compute: ``what`` says why."""
    return ctx.error(f"{what}, so --target {ctx.target} cannot hold this layer",
                     hint="use --target caffe" if ctx.target != "caffe" else None)
