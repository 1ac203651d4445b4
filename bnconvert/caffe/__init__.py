"""The Caffe side of bnconvert: reading, upgrading, the inference graph and shape inference.

Nothing in this package imports Keras or TensorFlow.
"""
from .io import read_prototxt, read_caffemodel, write_prototxt, write_caffemodel, blob_to_array, array_to_blob
from .graph import Net, Layer, build_graph, load_net

__all__ = [
    "read_prototxt", "read_caffemodel", "write_prototxt", "write_caffemodel",
    "blob_to_array", "array_to_blob", "Net", "Layer", "build_graph", "load_net",
]
