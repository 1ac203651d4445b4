"""The Caffe runtimes keras2caffe writes for (``--target``).

``caffe``: BVLC Caffe (master): every layer and field of its caffe.proto, e.g. ``Clip`` for ReLU6.
``opencv``: OpenCV dnn 4.x's Caffe importer, which parses the prototxt with its own schema and has
its own layer set: no ``Clip`` (ReLU6 becomes its ``ReLU6`` type, other clips ReLU/Power chains),
``Log`` ignores base/scale/shift (they become Power layers around it), no ``Threshold``, ``Reduction``,
``ArgMax`` or Caffe ``Tile``. Converters ask ``ctx.target`` and emit what that runtime computes exactly,
or refuse with the reason.

The prototxt keras2caffe writes starts with the line ``# bnconvert keras2caffe --target NAME``: a
comment, which every protobuf text parser (BVLC Caffe's, OpenCV's, protobuf's Python one) skips,
so the file loads as before, while ``bnconvert verify`` reads it to pick the matching reference
(:func:`recorded_target`).
"""
from __future__ import annotations

import os

from ..errors import ConversionError

MARK = "# bnconvert keras2caffe --target "
_HEAD_BYTES = 4096

TARGETS = {
    "caffe": "BVLC Caffe",
    "opencv": "OpenCV dnn (cv2.dnn.readNetFromCaffe)",
}


# Layer types keras2caffe can write that BVLC Caffe does not have: the forks that define them.
FORK_LAYERS = {
    "PriorBox": "weiliu89/caffe (SSD)",
    "DetectionOutput": "weiliu89/caffe (SSD)",
    "Normalize": "weiliu89/caffe (SSD)",
    "Permute": "weiliu89/caffe (SSD)",
    "Interp": "PSPNet's and DeepLab v2's Caffe",
    "Upsample": "SegNet's, ENet's and the YOLOv3 ports' Caffe",
    "ShuffleChannel": "the ShuffleNet Caffe ports",
}


def fork_layer_warnings(net, target):
    """For --target caffe: one warning per fork-only layer type the net holds (BVLC Caffe cannot load them;
    the fork's Caffe and OpenCV dnn can)."""
    if target != "caffe":
        return []
    found = {}
    for layer in net.layer:
        if layer.type in FORK_LAYERS:
            found.setdefault(layer.type, []).append(layer.name)
    return [f"{len(names)} {t} layer{'s' if len(names) != 1 else ''} ({', '.join(names[:3])}"
            f"{', ...' if len(names) > 3 else ''}): {t} is a layer of {FORK_LAYERS[t]}, not of BVLC Caffe; "
            f"run the files there or in OpenCV dnn (--target opencv)" for t, names in found.items()]


def check_target(target):
    if target not in TARGETS:
        raise ConversionError(f"unknown keras2caffe target {target!r}. Received: target={target!r}",
                              hint="use " + " or ".join(TARGETS))
    return target


def refuse(ctx, what):
    """The error for a construct the target runtime cannot compute: ``what`` says why."""
    return ctx.error(f"{what}, so --target {ctx.target} cannot hold this layer",
                     hint="use --target caffe" if ctx.target != "caffe" else None)


def target_comment(target):
    """The prototxt's first line, recording the target it was written for."""
    return f"{MARK}{check_target(target)}\n"


def recorded_target(prototxt):
    """The target a keras2caffe prototxt records in its leading comment lines, or None.

    Only the comment lines before the first field count (a mark further down is not ours).
    """
    if not isinstance(prototxt, (str, os.PathLike)):
        return None
    try:
        with open(prototxt, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except OSError:
        return None
    for line in head.decode("utf-8", "replace").lstrip("\ufeff").splitlines():
        line = line.strip()
        if line.startswith(MARK) and line[len(MARK):].strip() in TARGETS:
            return line[len(MARK):].strip()
        if line and not line.startswith("#"):
            return None
    return None
