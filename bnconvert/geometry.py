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


# --- Keras -> Caffe -------------------------------------------------------------------------


def shift_kernel(before, after):
    """A one-hot depthwise kernel that zero-pads one axis by (before, after) exactly.

    Caffe convolutions pad symmetrically; a kernel of size |after - before| + 1 with the symmetric
    pad max(before, after) and its single 1 at tap ``pad - before`` copies ``x[i - before]``.
    Returns (kernel size, caffe pad, tap).
    """
    pad = max(before, after)
    return abs(after - before) + 1, pad, pad - before


def caffe_pool_out(size, kernel, stride, pad):
    """Caffe's (ceil-mode) pooled size along one axis, with its clip of a window starting in the padding."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if pad and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def caffe_ave_divisors(size, kernel, stride, pad, out):
    """Caffe's AVE divisor per output position on one axis (the padding counts, the overhang does not)."""
    starts = [i * stride - pad for i in range(out)]
    return [min(s + kernel, size + pad) - s for s in starts]


def window_counts(size, kernel, stride, before, out):
    """How many real (unpadded) elements each window of a padded pooling covers on one axis."""
    starts = [i * stride - before for i in range(out)]
    return [min(s + kernel, size) - max(s, 0) for s in starts]


def ref_pooling(size, target):
    """(kernel, stride) of a cheap pooling that turns ``size`` into exactly ``target`` with no rounding."""
    if target <= 1:
        return size, 1
    stride = max(1, (size - 1) // (target - 1))
    return size - (target - 1) * stride, stride
