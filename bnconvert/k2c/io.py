"""The model's inputs."""
from __future__ import annotations

from .. import layout as lay
from ..registry import keras_layer


@keras_layer("InputLayer")
def input_layer(ctx):
    """Input with input_param shape N,C,H,W (4-d) or the Keras shape (other ranks); batch from --input-shape or 1."""
    shape = ctx.out_shape(0)
    lo = lay.default_layout(len(shape))
    top = ctx.add("Input", [], input_param=dict(shape=[dict(dim=list(lay.caffe_shape(shape, lo)))]))
    return ctx.out(top, lo)
