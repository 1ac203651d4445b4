"""The small context object through which caffe->keras converters see the graph."""
from __future__ import annotations

import numpy as np

from .. import layout as lay
from .._lazy import keras
from ..errors import ConversionError


class LayerContext:
    """What one converter needs: its layer's parameters, blobs, inputs, shapes and names.

    Converters return a Keras tensor, a list of them (one per top), or ``(tensors, layouts)``
    when an output is not in the default layout for its rank.
    """

    def __init__(self, engine, layer, paired_scale=None):
        self._engine = engine
        self.layer = layer
        self.p = layer.param
        self.paired_scale = paired_scale
        self._used_blobs = set()
        self.net = engine.net

    # --- parameters and weights ---
    @property
    def name_(self):
        return self.layer.name

    def blob(self, i, layer=None):
        L = layer or self.layer
        if i >= len(L.blobs):
            raise self.error(f"needs weight blob {i} but the caffemodel has {len(L.blobs)}",
                             hint="check that the caffemodel belongs to this prototxt")
        self._engine.used_blobs.add((L.name, i))
        return L.blobs[i]

    # --- shapes and layouts ---
    def in_shape(self, i=0):
        return self.net.shapes[self.layer.bottoms[i]]

    def out_shape(self, i=0):
        L = self.paired_scale or self.layer
        return self.net.shapes[L.tops[i]]

    def layout(self, i=0):
        return self._engine.layouts[self.layer.bottoms[i]]

    def input(self, i=0, layout=None, any_layout=False):
        """Bottom ``i`` as a Keras tensor in ``layout`` (default: NHWC for 4-d, Caffe order otherwise).

        With ``any_layout=True`` the tensor comes as stored (see :meth:`layout`).
        """
        bid = self.layer.bottoms[i]
        if any_layout:
            return self._engine.tensors[bid]
        want = layout or lay.default_layout(len(self.in_shape(i)))
        return self._engine.tensor_in(bid, want)

    def inputs(self, layout=None):
        return [self.input(i, layout) for i in range(len(self.layer.bottoms))]

    def common_layout(self):
        """One layout all bottoms can share without a transpose where possible."""
        layouts = {self.layout(i) for i in range(len(self.layer.bottoms))}
        if len(layouts) == 1:
            (only,) = layouts
            if only.kind != "flat_hwc":
                return only
        return lay.default_layout(len(self.in_shape(0)))

    # --- naming, messages ---
    def name(self, suffix=None):
        return self._engine.namer.layer_name(self.layer, self.paired_scale, suffix)

    def warn(self, msg):
        self._engine.warn(f"layer '{self.layer.name}' ({self.layer.type}): {msg}")

    def error(self, msg, hint=None):
        return ConversionError(msg, file=self.net.path, layer=self.layer.name, layer_type=self.layer.type,
                               hint=hint)

    @property
    def keras(self):
        return keras

    @property
    def options(self):
        return self._engine.options


_INITIALIZERS = ("kernel_initializer", "depthwise_initializer", "bias_initializer", "alpha_initializer")


def apply(layer, inputs, weights=None):
    """Call a Keras layer on inputs, then set its weights (a list of numpy arrays).

    The variables are created zero-filled (their random initialization would be overwritten at
    once; for a VGG that is ~140 M random numbers), then the layer's own initializers are put
    back, so its config is unchanged.
    """
    if weights is None:
        return layer(inputs)
    saved = {a: getattr(layer, a) for a in _INITIALIZERS if getattr(layer, a, None) is not None}
    for a in saved:
        setattr(layer, a, keras.initializers.Zeros())
    try:
        out = layer(inputs)
    finally:
        for a, init in saved.items():
            setattr(layer, a, init)
    layer.set_weights([np.asarray(w, dtype=np.float32) for w in weights])  # no copy when already float32
    return out
