"""Resizing layers of Caffe forks: DeepLab/PSPNet's Interp and SegNet/ENet's max-unpooling Upsample."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops

from ._common import PACKAGE, _check


def interp_taps(size_in, size_out, crop_offset, size_eff):
    """Source rows (i0, i1) and weights (w0, w1) of one axis of Interp's bilinear resize.

    Mirrors the fork's ``caffe_cpu_interp2``: the input region starts at ``crop_offset`` and has
    ``size_eff`` pixels; output pixel ``o`` samples it at ``o * (size_eff - 1) / (size_out - 1)``
    (corners aligned), all in float32; equal sizes copy the region.
    """
    o = np.arange(size_out)
    if size_eff == size_out:
        i0 = o + crop_offset
        return i0, i0, np.ones(size_out, np.float32), np.zeros(size_out, np.float32)
    ratio = np.float32(size_eff - 1) / np.float32(size_out - 1) if size_out > 1 else np.float32(0)
    pos = (ratio * o.astype(np.float32)).astype(np.float32)
    base = pos.astype(np.int64)  # truncation, as the C++ int conversion
    step = (base < size_eff - 1).astype(np.int64)
    w1 = (pos - base.astype(np.float32)).astype(np.float32)
    w0 = (np.float32(1) - w1).astype(np.float32)
    return base + crop_offset, base + step + crop_offset, w0, w1


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeInterp(keras.layers.Layer):
    """Bilinear resize with aligned corners, as the Interp layer of DeepLab v2 and PSPNet.

    The input is first cropped by ``-pad_beg`` pixels at the top/left and ``-pad_end`` at the
    bottom/right (the fork only supports non-positive pads; it offsets both axes by
    ``-pad_beg``), then resized to ``size`` with output pixel ``o`` sampling input position
    ``o * (in - 1) / (out - 1)``.

    Args:
        size: (height, width) of the output.
        pad_beg: non-positive padding at the beginning of each spatial axis.
        pad_end: non-positive padding at the end of each spatial axis.
    """

    def __init__(self, size, pad_beg=0, pad_end=0, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(v) for v in size)
        self.pad_beg, self.pad_end = int(pad_beg), int(pad_end)
        _check(len(self.size) == 2 and min(self.size) > 0, "`size` must be two positive integers.",
               f"size={size}")
        _check(self.pad_beg <= 0 and self.pad_end <= 0, "`pad_beg` and `pad_end` must be <= 0 (cropping).",
               f"pad_beg={pad_beg}, pad_end={pad_end}")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size[0], self.size[1], input_shape[3])

    def _axis(self, x, axis, size_in, size_out):
        eff = size_in + self.pad_beg + self.pad_end
        _check(eff > 0, "The input is smaller than the cropping.", f"input size {size_in}, "
               f"pad_beg={self.pad_beg}, pad_end={self.pad_end}")
        i0, i1, w0, w1 = interp_taps(size_in, size_out, -self.pad_beg, eff)
        shape = [1, 1, 1, 1]
        shape[axis] = size_out
        a, b = ops.take(x, i0, axis=axis), ops.take(x, i1, axis=axis)
        w0 = ops.convert_to_tensor(w0.reshape(shape), dtype=x.dtype)
        w1 = ops.convert_to_tensor(w1.reshape(shape), dtype=x.dtype)
        return a, b, w0, w1

    def call(self, x):
        _, h, w, _ = x.shape
        top, bottom, h0, h1 = self._axis(x, 1, h, self.size[0])
        t0, t1, w0, w1 = self._axis(top, 2, w, self.size[1])
        b0, b1, _, _ = self._axis(bottom, 2, w, self.size[1])
        return h0 * (w0 * t0 + w1 * t1) + h1 * (w0 * b0 + w1 * b1)

    def get_config(self):
        return {**super().get_config(), "size": self.size, "pad_beg": self.pad_beg, "pad_end": self.pad_end}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeMaxUnpool2D(keras.layers.Layer):
    """SegNet's/ENet's Upsample with a mask: max-unpooling by the indices of a max pooling.

    Called on ``[values, mask]`` (both N,H,W,C). ``mask`` holds, per channel, an index into the
    flattened ``size[0] * size[1]`` output plane (as CaffeMaxPoolArgmax2D produces it); each value
    is written there, every other output is 0. When two values name the same index the later one
    in raster order wins, as in the fork's loop.

    Args:
        size: (height, width) of the output.
    """

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = tuple(int(v) for v in size)
        _check(len(self.size) == 2 and min(self.size) > 0, "`size` must be two positive integers.",
               f"size={size}")

    def compute_output_shape(self, input_shape):
        shape = input_shape[0]
        return (shape[0], self.size[0], self.size[1], shape[3])

    def _one(self, args):
        values, mask = args  # (H, W, C) each
        h, w, c = values.shape
        plane = self.size[0] * self.size[1]
        idx = ops.cast(mask, "int32")
        seg = ops.reshape(idx * c + ops.arange(c, dtype="int32"), (-1,))
        order = ops.reshape(ops.arange(1, h * w + 1, dtype="int32"), (h, w, 1)) * ops.ones((1, 1, c), "int32")
        winner = ops.segment_max(ops.reshape(order, (-1,)), seg, num_segments=plane * c)
        winner = ops.reshape(winner, (plane, c))
        hit = winner > 0
        src = ops.where(hit, winner - 1, ops.zeros_like(winner))
        picked = ops.take_along_axis(ops.reshape(values, (h * w, c)), src, axis=0)
        out = ops.where(hit, picked, ops.zeros_like(picked))
        return ops.reshape(out, (self.size[0], self.size[1], c))

    def call(self, inputs):
        values, mask = inputs
        return ops.vectorized_map(self._one, (values, mask))

    def get_config(self):
        return {**super().get_config(), "size": self.size}
