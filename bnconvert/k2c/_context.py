"""The small context object through which keras->caffe converters emit Caffe layers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import geometry as geo
from .. import layout as lay
from ..errors import ConversionError


@dataclass
class Blob:
    """A Keras tensor as the Caffe net holds it.

    ``top`` is the Caffe blob name, ``shape`` the concrete Keras shape (batch included) and
    ``layout`` how the Caffe blob orders it. A ZeroPadding2D output that is not emitted yet has
    ``pad`` = ((top, bottom), (left, right)) over the unpadded blob ``top``; a consumer can fold it
    into its own padding, any other consumer makes the engine emit it (see :meth:`LayerContext.input`).
    """

    top: str
    shape: tuple
    layout: lay.Layout
    nonneg: bool = False
    pad: tuple | None = None
    pad_name: str | None = None


def fill(msg, values):
    """Set protobuf fields from a dict (nested dicts for messages, lists for repeated fields)."""
    for k, v in values.items():
        if v is None:
            continue
        if isinstance(v, dict):
            fill(getattr(msg, k), v)
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], dict):
            for item in v:
                fill(getattr(msg, k).add(), item)
        elif isinstance(v, (list, tuple)):
            getattr(msg, k).extend(v)
        else:
            setattr(msg, k, v)
    return msg


class LayerContext:
    """What one converter needs: the Keras layer, its config and weights, its inputs as Caffe blobs.

    Converters emit layers with :meth:`add` and return a :class:`Blob` (or a list, one per output)
    made with :meth:`out`.
    """

    def __init__(self, engine, step):
        self._engine = engine
        self.step = step
        self.layer = step.layer
        self.config = step.layer.get_config()
        self.base = engine.unique_layer_name(step.layer.name, step.prefix)

    # --- inputs ---
    def in_blob(self, i=0):
        return self._engine.blobs[self.step.inputs[i]]

    def in_shape(self, i=0):
        return self.in_blob(i).shape

    def out_shape(self, i=0):
        return self.step.out_shapes[i]

    def layout(self, i=0):
        return self.in_blob(i).layout

    @property
    def target(self):
        """The Caffe runtime being written for: "caffe" (BVLC) or "opencv" (see k2c/targets.py)."""
        return self._engine.target

    @property
    def n_inputs(self):
        return len(self.step.inputs)

    def input(self, i=0, want=None):
        """Bottom ``i`` as a Caffe top in layout ``want`` (default: NHWC for 4-d, Caffe order otherwise)."""
        b = self._engine.materialize(self.in_blob(i))
        want = want or lay.default_layout(len(b.shape))
        return self._engine.relayout(b, want)

    def source(self, i=0):
        """Bottom ``i`` without a pending ZeroPadding2D: (NCHW top, ((t, b), (l, r)) zero pads)."""
        b = self.in_blob(i)
        if b.pad is not None:
            return b.top, b.pad
        return self.input(i, lay.NHWC), ((0, 0), (0, 0))

    def consumers(self, i=0):
        """The steps (Keras layers) that read output ``i`` of this layer."""
        return self._engine.consumers.get(self.step.outputs[i], [])

    def is_output(self, i=0):
        return self.step.outputs[i] in self._engine.output_keys

    # --- emitting ---
    def add(self, type_, bottoms, suffix=None, tops=None, blobs=(), **params):
        """Append a Caffe layer; returns its top name (or the list of tops)."""
        name = self.base if suffix is None else f"{self.base}/{suffix}"
        return self._engine.add_layer(name, type_, bottoms, tops, blobs, params)

    def out(self, top, layout=None, i=0, nonneg=False):
        shape = self.out_shape(i)
        return Blob(top, shape, layout or lay.default_layout(len(shape)), nonneg)

    def pad_nchw(self, top, shape_nchw, pads, suffix):
        """Zero-pad an NCHW top by ((t, b), (l, r)) exactly: a depthwise one-hot convolution."""
        from . import _pad_layer

        return _pad_layer(self._engine, top, shape_nchw, pads, f"{self.base}/{suffix}")

    def ref(self, top, hw, target, suffix):
        """A top with spatial size ``target`` made from ``top`` (spatial size ``hw``), for Crop's reference."""
        (kh, sh), (kw, sw) = geo.ref_pooling(hw[0], target[0]), geo.ref_pooling(hw[1], target[1])
        return self.add("Pooling", [top], suffix, pooling_param=dict(
            pool=0, kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw))

    def activation(self, top, act, layout, suffix=None):
        """Apply a fused Keras activation (a name like 'relu') to ``top``; returns (top, nonneg)."""
        from .activation import emit_activation

        return emit_activation(self, top, act, layout, suffix)

    # --- weights, messages ---
    @property
    def weights(self):
        return [np.asarray(w, np.float32) for w in self.layer.get_weights()]

    def warn(self, msg):
        self._engine.warn(f"layer '{self.layer.name}' ({type(self.layer).__name__}): {msg}")

    def error(self, msg, hint=None):
        return ConversionError(msg, file=self._engine.path, layer=self.layer.name,
                               layer_type=type(self.layer).__name__, hint=hint)

    def need_4d(self, i=0):
        if len(self.in_shape(i)) != 4:
            raise self.error(f"needs a 4-d (N,H,W,C) input. Received: shape {self.in_shape(i)}")

    def check_channels_last(self):
        if self.config.get("data_format", "channels_last") != "channels_last":
            raise self.error("data_format='channels_first' is not supported",
                             hint="rebuild the model with channels_last (the Keras default)")
