"""Element-wise Caffe layers: unary functions, Scale, Eltwise, broadcasting."""
from __future__ import annotations

import numpy as np
import keras
from keras import ops

from ._common import PACKAGE, _check

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
