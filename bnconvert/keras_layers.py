"""Keras layers for Caffe operations that have no exact built-in Keras equivalent.

Every layer is registered for serialization under the package name "bnconvert", so a converted
model loads with ``keras.saving.load_model(path)`` (safe mode included) after ``import bnconvert``.
All layers work on channels_last tensors as the converter lays them out.
"""
from __future__ import annotations

import numpy as np
import keras
from keras import ops

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


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffePooling2D(keras.layers.Layer):
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
        super().__init__(**kwargs)
        _check(method in ("max", "ave"), "`method` must be 'max' or 'ave'.", f"method={method!r}")
        self.method = method
        self.pool_size = tuple(int(v) for v in pool_size)
        self.strides = tuple(int(v) for v in strides)
        self.padding = tuple(int(v) for v in padding)
        self.ceil_mode = bool(ceil_mode)
        _check(all(p < k for p, k in zip(self.padding, self.pool_size)),
               "`padding` must be smaller than `pool_size`.", f"padding={self.padding}, pool_size={self.pool_size}")

    def _out(self, h, w):
        return tuple(caffe_pool_geometry(s, k, st, p, self.ceil_mode)
                     for s, k, st, p in zip((h, w), self.pool_size, self.strides, self.padding))

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
        return {**super().get_config(), "method": self.method, "pool_size": self.pool_size,
                "strides": self.strides, "padding": self.padding, "ceil_mode": self.ceil_mode}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeLRN(keras.layers.Layer):
    """Caffe's local response normalization on a channels_last tensor.

    ACROSS_CHANNELS: ``x / (k + alpha/n * sum_{n channels} x^2) ** beta``.
    WITHIN_CHANNEL: ``x / (1 + alpha/n^2 * sum_{n x n window} x^2) ** beta`` (Caffe ignores k here).

    Args:
        local_size: n, an odd window size.
        alpha: scale of the sum of squares.
        beta: exponent.
        k: additive constant (ACROSS_CHANNELS only).
        norm_region: "across_channels" or "within_channel".
    """

    def __init__(self, local_size=5, alpha=1.0, beta=0.75, k=1.0, norm_region="across_channels", **kwargs):
        super().__init__(**kwargs)
        _check(int(local_size) % 2 == 1, "`local_size` must be odd.", f"local_size={local_size}")
        _check(norm_region in ("across_channels", "within_channel"),
               "`norm_region` must be 'across_channels' or 'within_channel'.", f"norm_region={norm_region!r}")
        self.local_size, self.alpha, self.beta, self.k = int(local_size), float(alpha), float(beta), float(k)
        self.norm_region = norm_region

    def call(self, x):
        n = self.local_size
        half = (n - 1) // 2
        sq = ops.square(x)
        if self.norm_region == "across_channels":
            c = x.shape[-1]
            padded = ops.pad(sq, [[0, 0], [0, 0], [0, 0], [half, half]])
            total = padded[..., 0:c]
            for i in range(1, n):
                total = total + padded[..., i:i + c]
            scale = self.k + (self.alpha / n) * total
        else:
            padded = ops.pad(sq, [[0, 0], [half, half], [half, half], [0, 0]])
            mean = ops.average_pool(padded, (n, n), (1, 1), padding="valid")
            scale = 1.0 + self.alpha * mean
        return x * ops.power(scale, -self.beta)

    def get_config(self):
        return {**super().get_config(), "local_size": self.local_size, "alpha": self.alpha, "beta": self.beta,
                "k": self.k, "norm_region": self.norm_region}


_UNARY_OPS = ("abs", "bnll", "power", "exp", "log", "threshold", "clip", "swish")


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeUnary(keras.layers.Layer):
    """An elementwise Caffe layer with parameters: AbsVal, BNLL, Power, Exp, Log, Threshold, Clip, Swish.

    Args:
        op: one of "abs", "bnll", "power", "exp", "log", "threshold", "clip", "swish".
        power, scale, shift: Power ``(shift + scale*x)**power``; Exp and Log also use scale/shift.
        base: Exp/Log base; -1 means e.
        threshold: Threshold outputs 1 where ``x > threshold``, else 0.
        min_value, max_value: Clip bounds.
        beta: Swish ``x * sigmoid(beta*x)``.
    """

    def __init__(self, op, power=1.0, scale=1.0, shift=0.0, base=-1.0, threshold=0.0, min_value=0.0,
                 max_value=0.0, beta=1.0, **kwargs):
        super().__init__(**kwargs)
        _check(op in _UNARY_OPS, f"`op` must be one of {_UNARY_OPS}.", f"op={op!r}")
        _check(base == -1.0 or base > 0, "`base` must be positive or -1 (for e).", f"base={base}")
        self.op = op
        self.power, self.scale, self.shift = float(power), float(scale), float(shift)
        self.base, self.threshold = float(base), float(threshold)
        self.min_value, self.max_value, self.beta = float(min_value), float(max_value), float(beta)

    def _affine(self, x):
        y = x if self.scale == 1.0 else x * self.scale
        return y if self.shift == 0.0 else y + self.shift

    def call(self, x):
        op = self.op
        if op == "abs":
            return ops.abs(x)
        if op == "bnll":
            return ops.where(x > 0, x + ops.log1p(ops.exp(-x)), ops.log1p(ops.exp(x)))
        if op == "power":
            y = self._affine(x)
            if self.power == 1.0:
                return y
            if self.power == 2.0:
                return ops.square(y)
            return ops.power(y, self.power)
        if op == "exp":
            y = self._affine(x)
            return ops.exp(y if self.base == -1.0 else y * float(np.log(self.base)))
        if op == "log":
            y = ops.log(self._affine(x))
            return y if self.base == -1.0 else y / float(np.log(self.base))
        if op == "threshold":
            return ops.cast(x > self.threshold, x.dtype)
        if op == "clip":
            return ops.clip(x, self.min_value, self.max_value)
        return x * ops.sigmoid(x * self.beta)

    def get_config(self):
        return {**super().get_config(), "op": self.op, "power": self.power, "scale": self.scale,
                "shift": self.shift, "base": self.base, "threshold": self.threshold,
                "min_value": self.min_value, "max_value": self.max_value, "beta": self.beta}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeScale(keras.layers.Layer):
    """A learned elementwise scale (and optional bias) broadcast over a tensor: Caffe's Scale/Bias.

    Args:
        param_shape: the parameter's shape, broadcastable against the input without its batch axis.
        use_scale: whether the layer multiplies by a learned ``scale``.
        use_bias: whether the layer adds a learned ``bias``.
    """

    def __init__(self, param_shape, use_scale=True, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        _check(use_scale or use_bias, "at least one of `use_scale` and `use_bias` must be True.",
               f"use_scale={use_scale}, use_bias={use_bias}")
        self.param_shape = tuple(int(d) for d in param_shape)
        self.use_scale, self.use_bias = bool(use_scale), bool(use_bias)

    def build(self, input_shape):
        if self.use_scale:
            self.scale = self.add_weight(name="scale", shape=self.param_shape, initializer="ones")
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=self.param_shape, initializer="zeros")

    def call(self, x):
        if self.use_scale:
            x = x * self.scale
        if self.use_bias:
            x = x + self.bias
        return x

    def get_config(self):
        return {**super().get_config(), "param_shape": self.param_shape, "use_scale": self.use_scale,
                "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BroadcastTo(keras.layers.Layer):
    """Reshape the second input so it broadcasts against the first, then combine them.

    Used for Caffe's two-bottom Scale (``x * y`` with y covering axes ``axis..``), two-bottom
    Bias (``x + y``) and Axpy.

    Args:
        target_shape: the shape (without batch) y takes before broadcasting.
        op: "mul" for ``x * y``, "add" for ``x + y``, "axpy" for ``a * x + y`` with inputs (a, x, y).
    """

    def __init__(self, target_shape, op="mul", **kwargs):
        super().__init__(**kwargs)
        _check(op in ("mul", "add", "axpy"), "`op` must be 'mul', 'add' or 'axpy'.", f"op={op!r}")
        self.target_shape = tuple(int(d) for d in target_shape)
        self.op = op

    def call(self, inputs):
        if self.op in ("mul", "add"):
            x, y = inputs
            y = ops.reshape(y, (-1,) + self.target_shape)
            return x * y if self.op == "mul" else x + y
        a, x, y = inputs
        return ops.reshape(a, (-1,) + self.target_shape) * x + y

    def compute_output_shape(self, input_shapes):
        return tuple(input_shapes[1] if self.op == "axpy" else input_shapes[0])

    def get_config(self):
        return {**super().get_config(), "target_shape": self.target_shape, "op": self.op}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeEltwise(keras.layers.Layer):
    """Caffe's Eltwise SUM with coefficients: ``sum_i coeff_i * x_i``.

    Args:
        coeffs: one coefficient per input.
    """

    def __init__(self, coeffs, **kwargs):
        super().__init__(**kwargs)
        self.coeffs = tuple(float(c) for c in coeffs)

    def call(self, inputs):
        _check(len(inputs) == len(self.coeffs), "the number of inputs must match `coeffs`.",
               f"{len(inputs)} inputs, coeffs={self.coeffs}")
        y = None
        for c, x in zip(self.coeffs, inputs):
            term = x if c == 1.0 else x * c
            y = term if y is None else y + term
        return y

    def compute_output_shape(self, input_shapes):
        return tuple(input_shapes[0])

    def get_config(self):
        return {**super().get_config(), "coeffs": self.coeffs}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeSlice(keras.layers.Layer):
    """Split a tensor along one axis at the given boundaries (Caffe's Slice), returning a list.

    Args:
        axis: the Keras axis to slice.
        bounds: the boundaries, from 0 to the axis size.
    """

    def __init__(self, axis, bounds, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)
        self.bounds = tuple(int(b) for b in bounds)

    def call(self, x):
        outs = []
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            idx = [slice(None)] * len(x.shape)
            idx[self.axis] = slice(lo, hi)
            outs.append(x[tuple(idx)])
        return outs

    def compute_output_shape(self, input_shape):
        shapes = []
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            s = list(input_shape)
            s[self.axis] = hi - lo
            shapes.append(tuple(s))
        return shapes

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "bounds": self.bounds}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeCrop(keras.layers.Layer):
    """Crop the first input to the shape of the second from the given offsets (Caffe's Crop).

    Args:
        offsets: per Keras axis (batch axis included) start offsets; the sizes come from the
            reference input on the axes listed in ``axes``.
        axes: the Keras axes that are cropped.
    """

    def __init__(self, offsets, axes, **kwargs):
        super().__init__(**kwargs)
        self.offsets = tuple(int(o) for o in offsets)
        self.axes = tuple(int(a) for a in axes)

    def call(self, inputs):
        x, ref = inputs
        idx = [slice(None)] * len(x.shape)
        for a in self.axes:
            idx[a] = slice(self.offsets[a], self.offsets[a] + ref.shape[a])
        return x[tuple(idx)]

    def compute_output_shape(self, input_shapes):
        s = list(input_shapes[0])
        for a in self.axes:
            s[a] = input_shapes[1][a]
        return tuple(s)

    def get_config(self):
        return {**super().get_config(), "offsets": self.offsets, "axes": self.axes}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeReduce(keras.layers.Layer):
    """Caffe's Reduction (SUM, ASUM, SUMSQ, MEAN over all trailing axes, times coeff), or ArgMax.

    Args:
        op: "sum", "asum", "sumsq", "mean" or "argmax"/"maxval" (ArgMax along ``axes[0]``).
        axes: the Keras axes reduced.
        coeff: multiplier of the result (Reduction).
        top_k: ArgMax's k.
    """

    def __init__(self, op, axes, coeff=1.0, top_k=1, **kwargs):
        super().__init__(**kwargs)
        _check(op in ("sum", "asum", "sumsq", "mean", "argmax", "maxval"), "unknown `op`.", f"op={op!r}")
        self.op, self.axes, self.coeff, self.top_k = op, tuple(int(a) for a in axes), float(coeff), int(top_k)

    def call(self, x):
        if self.op in ("argmax", "maxval"):
            a = self.axes[0]
            xt = ops.moveaxis(x, a, -1)
            vals, idx = ops.top_k(xt, self.top_k, sorted=True)
            y = ops.cast(idx, x.dtype) if self.op == "argmax" else vals
            return ops.moveaxis(y, -1, a)
        if self.op == "asum":
            x = ops.abs(x)
        elif self.op == "sumsq":
            x = ops.square(x)
        y = ops.mean(x, axis=self.axes) if self.op == "mean" else ops.sum(x, axis=self.axes)
        return y if self.coeff == 1.0 else y * self.coeff

    def get_config(self):
        return {**super().get_config(), "op": self.op, "axes": self.axes, "coeff": self.coeff, "top_k": self.top_k}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeMVN(keras.layers.Layer):
    """Caffe's mean-variance normalization over the given axes.

    Args:
        axes: the Keras axes to normalize over (spatial, or spatial and channel with across_channels).
        normalize_variance: divide by the standard deviation too.
        eps: added to the standard deviation (Caffe adds it after the square root).
    """

    def __init__(self, axes, normalize_variance=True, eps=1e-9, **kwargs):
        super().__init__(**kwargs)
        self.axes, self.normalize_variance, self.eps = tuple(int(a) for a in axes), bool(normalize_variance), float(eps)

    def call(self, x):
        mean = ops.mean(x, axis=self.axes, keepdims=True)
        y = x - mean
        if self.normalize_variance:
            var = ops.mean(ops.square(y), axis=self.axes, keepdims=True)
            y = y / (ops.sqrt(var) + self.eps)
        return y

    def get_config(self):
        return {**super().get_config(), "axes": self.axes, "normalize_variance": self.normalize_variance,
                "eps": self.eps}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeNormalize(keras.layers.Layer):
    """SSD's Normalize: L2-normalize each position across channels (or the whole sample), then scale.

    Args:
        across_spatial: normalize over H, W and C together instead of over C per position.
        channel_shared: one scale for all channels.
        eps: added to the sum of squares before the square root.
    """

    def __init__(self, across_spatial=True, channel_shared=True, eps=1e-10, **kwargs):
        super().__init__(**kwargs)
        self.across_spatial, self.channel_shared, self.eps = bool(across_spatial), bool(channel_shared), float(eps)

    def build(self, input_shape):
        shape = (1,) if self.channel_shared else (input_shape[-1],)
        self.scale = self.add_weight(name="scale", shape=shape, initializer="ones")

    def call(self, x):
        axes = (1, 2, 3) if self.across_spatial else (3,)
        norm = ops.sqrt(ops.sum(ops.square(x), axis=axes, keepdims=True) + self.eps)
        return x / norm * self.scale

    def get_config(self):
        return {**super().get_config(), "across_spatial": self.across_spatial,
                "channel_shared": self.channel_shared, "eps": self.eps}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ShuffleChannel(keras.layers.Layer):
    """ShuffleNet's channel shuffle on a channels_last tensor.

    Args:
        group: the number of groups the channels are split into before interleaving.
    """

    def __init__(self, group, **kwargs):
        super().__init__(**kwargs)
        self.group = int(group)

    def call(self, x):
        _, h, w, c = x.shape
        _check(c % self.group == 0, "channels must divide evenly into `group`.", f"channels={c}, group={self.group}")
        y = ops.reshape(x, (-1, h, w, self.group, c // self.group))
        y = ops.transpose(y, (0, 1, 2, 4, 3))
        return ops.reshape(y, (-1, h, w, c))

    def get_config(self):
        return {**super().get_config(), "group": self.group}


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeTile(keras.layers.Layer):
    """Repeat a tensor ``tiles`` times along one axis (Caffe's Tile).

    Args:
        axis: the Keras axis to tile.
        tiles: the number of copies.
    """

    def __init__(self, axis, tiles, **kwargs):
        super().__init__(**kwargs)
        _check(int(tiles) >= 1, "`tiles` must be at least 1.", f"tiles={tiles}")
        self.axis, self.tiles = int(axis), int(tiles)

    def call(self, x):
        reps = [1] * len(x.shape)
        reps[self.axis] = self.tiles
        return ops.tile(x, reps)

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "tiles": self.tiles}
