"""Padding arithmetic shared by both directions: Caffe's symmetric pads versus TF's 'same'."""
from __future__ import annotations

import math


def tf_same_pads(size, kernel, stride, dilation=1):
    """TF's 'same' padding along one axis: (output size, pad before, pad after)."""
    k = (kernel - 1) * dilation + 1
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + k - size, 0)
    return out, total // 2, total - total // 2


def caffe_conv_out(size, kernel, stride, pad, dilation=1):
    return (size + 2 * pad - ((kernel - 1) * dilation + 1)) // stride + 1


def same_is_exact(size, kernel, stride, pad, dilation=1, caffe_out=None):
    """True if TF 'same' visits the same windows as Caffe with symmetric ``pad`` on this axis."""
    out, before, _ = tf_same_pads(size, kernel, stride, dilation)
    if caffe_out is None:
        caffe_out = caffe_conv_out(size, kernel, stride, pad, dilation)
    return out == caffe_out and before == pad


def valid_is_exact(size, kernel, stride, pad, dilation=1, caffe_out=None):
    """True if TF 'valid' (no padding) visits the same windows as Caffe."""
    if pad:
        return False
    k = (kernel - 1) * dilation + 1
    out = (size - k) // stride + 1
    if caffe_out is None:
        caffe_out = caffe_conv_out(size, kernel, stride, pad, dilation)
    return out == caffe_out


def choose_padding(spatial, kernel, stride, pad, dilation=(1, 1), caffe_out=None):
    """'valid' or 'same' when one reproduces Caffe exactly on both axes, else None."""
    outs = caffe_out or (None, None)
    if all(valid_is_exact(s, k, st, p, d, o) for s, k, st, p, d, o in zip(spatial, kernel, stride, pad, dilation, outs)):
        return "valid"
    if all(same_is_exact(s, k, st, p, d, o) for s, k, st, p, d, o in zip(spatial, kernel, stride, pad, dilation, outs)):
        return "same"
    return None
