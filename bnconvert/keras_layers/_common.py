"""Helpers shared by bnconvert's custom Keras layers."""
from __future__ import annotations

import numpy as np

PACKAGE = "bnconvert"


def _check(cond, msg, received):
    if not cond:
        raise ValueError(f"{msg} Received: {received}")


def caffe_pool_geometry(size, kernel, stride, pad, ceil_mode):
    """Caffe's pooled size along one axis, with its clip of a window starting in the padding."""
    rnd = np.ceil if ceil_mode else np.floor
    out = int(rnd((size + 2 * pad - kernel) / stride)) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out
