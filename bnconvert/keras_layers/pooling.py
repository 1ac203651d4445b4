"""Caffe pooling with its exact rounding and padding."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops

from ._common import PACKAGE, _check, caffe_pool_geometry


class _CaffeWindows(keras.layers.Layer):
    """Caffe's pooling windows, shared by the pooling layers (not used on its own).

    Args:
        pool_size: (kh, kw).
        strides: (sh, sw).
        padding: Caffe's symmetric (ph, pw), smaller than the window.
        ceil_mode: True to round output sizes up (Caffe's default), False to round down.
    """

    def __init__(self, pool_size, strides=(1, 1), padding=(0, 0), ceil_mode=True, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(int(v) for v in pool_size)
        self.strides = tuple(int(v) for v in strides)
        self.padding = tuple(int(v) for v in padding)
        self.ceil_mode = bool(ceil_mode)
        _check(all(p < k for p, k in zip(self.padding, self.pool_size)),
               "`padding` must be smaller than `pool_size`.", f"padding={self.padding}, pool_size={self.pool_size}")

    def _out(self, h, w):
        return tuple(caffe_pool_geometry(s, k, st, p, self.ceil_mode)
                     for s, k, st, p in zip((h, w), self.pool_size, self.strides, self.padding))

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
                "padding": self.padding, "ceil_mode": self.ceil_mode}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffePooling2D(_CaffeWindows):
    """Max or average pooling with Caffe's exact output size, padding and divisor.

    Caffe rounds the output size up by default, drops a last window that would start inside the
    padding, pads max pooling so the padding never wins, and divides an average by the window's
    area clipped to the padded input (padding counts, the ceil overhang does not).

    Args:
        method: "max" or "ave".
        pool_size: (kh, kw).
        strides: (sh, sw).
        padding: Caffe's symmetric (ph, pw).
        ceil_mode: True to round output sizes up (Caffe's default), False to round down.
    """

    def __init__(self, method, pool_size, strides=(1, 1), padding=(0, 0), ceil_mode=True, **kwargs):
        _check(method in ("max", "ave"), "`method` must be 'max' or 'ave'.", f"method={method!r}")
        super().__init__(pool_size, strides, padding, ceil_mode, **kwargs)
        self.method = method

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        oh, ow = self._out(h, w)
        return (n, oh, ow, c)

    def _divisor_scale(self, h, w, oh, ow):
        def axis(size, out, k, s, p):
            starts = np.arange(out) * s - p
            ends = np.minimum(starts + k, size + p)
            return (ends - starts).astype(np.float64)

        area = np.outer(axis(h, oh, self.pool_size[0], self.strides[0], self.padding[0]),
                        axis(w, ow, self.pool_size[1], self.strides[1], self.padding[1]))
        full = self.pool_size[0] * self.pool_size[1]
        scale = full / area
        return None if np.all(scale == 1.0) else scale.astype(np.float32)[None, :, :, None]

    def call(self, x):
        _, h, w, _ = x.shape
        oh, ow = self._out(h, w)
        (kh, kw), (sh, sw), (ph, pw) = self.pool_size, self.strides, self.padding
        extra_h = (oh - 1) * sh + kh - h - ph
        extra_w = (ow - 1) * sw + kw - w - pw
        if extra_h < 0:
            x = x[:, : h + extra_h]
            extra_h = 0
        if extra_w < 0:
            x = x[:, :, : w + extra_w]
            extra_w = 0
        pads = [[0, 0], [ph, extra_h], [pw, extra_w], [0, 0]]
        if self.method == "max":
            if ph or pw or extra_h or extra_w:
                x = ops.pad(x, pads, constant_values=float(np.finfo(np.float32).min))
            return ops.max_pool(x, self.pool_size, self.strides, padding="valid")
        if ph or pw or extra_h or extra_w:
            x = ops.pad(x, pads)
        y = ops.average_pool(x, self.pool_size, self.strides, padding="valid")
        scale = self._divisor_scale(h, w, oh, ow)
        return y if scale is None else y * ops.convert_to_tensor(scale, dtype=y.dtype)

    def get_config(self):
        return {**super().get_config(), "method": self.method}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeMaxPoolArgmax2D(_CaffeWindows):
    """Caffe's MAX Pooling with two tops: the pooled values and the argmax mask.

    The mask (float, as Caffe's top) is, per channel, the index ``h * W + w`` of the window's
    maximum in the flattened input plane. Windows are clipped to the input (padding never wins);
    the first maximum in raster order wins a tie, as Caffe's strict ``>`` scan from -FLT_MAX.

    Args:
        pool_size: (kh, kw).
        strides: (sh, sw).
        padding: Caffe's symmetric (ph, pw).
        ceil_mode: True to round output sizes up (Caffe's default), False to round down.
    """

    def compute_output_shape(self, input_shape):
        n, h, w, c = input_shape
        oh, ow = self._out(h, w)
        return [(n, oh, ow, c), (n, oh, ow, c)]

    def call(self, x):
        _, h, w, _ = x.shape
        oh, ow = self._out(h, w)
        (kh, kw), (sh, sw), (ph, pw) = self.pool_size, self.strides, self.padding
        span_h, span_w = (oh - 1) * sh + kh, (ow - 1) * sw + kw
        low = float(np.finfo(np.float32).min)
        padded = ops.pad(x, [[0, 0], [ph, max(0, span_h - h - ph)], [pw, max(0, span_w - w - pw)], [0, 0]],
                         constant_values=float("-inf"))
        best = ops.full_like(padded[:, :oh, :ow, :], low)
        arg = ops.full_like(best, -1.0)
        rows, cols = np.arange(oh) * sh - ph, np.arange(ow) * sw - pw
        for dy in range(kh):
            for dx in range(kw):
                cand = padded[:, dy:dy + (oh - 1) * sh + 1:sh, dx:dx + (ow - 1) * sw + 1:sw, :]
                index = ((rows + dy)[:, None] * w + (cols + dx)[None, :]).astype(np.float32)
                better = cand > best
                best = ops.where(better, cand, best)
                arg = ops.where(better, ops.convert_to_tensor(index[None, :, :, None], dtype=x.dtype), arg)
        return [best, arg]

