"""Caffe layers that move data without arithmetic: Slice, Crop, Tile, ShuffleChannel."""
from __future__ import annotations

import keras
from keras import ops

from ._common import PACKAGE, _check


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
