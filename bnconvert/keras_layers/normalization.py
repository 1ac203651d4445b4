"""Caffe's normalization layers: LRN, MVN, Normalize."""
from __future__ import annotations

import keras
from keras import ops

from ._common import PACKAGE, _check


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
