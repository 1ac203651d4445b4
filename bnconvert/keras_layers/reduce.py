"""Caffe's Reduction and ArgMax."""
from __future__ import annotations

import keras
from keras import ops

from ._common import PACKAGE, _check


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
