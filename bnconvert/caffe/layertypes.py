"""Which Caffe layer types the inference graph keeps, and which it drops, by type name alone.

Forks add their own data, loss and evaluation layers (SegNet's ``DenseImageData``, DeepLab's
``ImageSegData``, ``SegAccuracy`` and ``MatWrite``, ...). bnconvert does not need their schemas
to convert a net, because inference never runs them; it recognises them by name:

- a *data layer* (an input of the inference graph, whose shape comes from the prototxt or from
  ``--input-shape``): a type in :data:`INPUT_NAMES`, or any type whose name ends in ``Data``
  (CamelCase V2 names, e.g. ``DenseImageData``) or ``_DATA`` (V1 enum names, e.g. ``IMAGE_DATA``);
- a *dropped layer* (no part of inference): a type whose name ends in ``Loss`` / ``_LOSS`` or
  ``Accuracy`` / ``ACCURACY`` (``SoftmaxWithLoss``, ``SegAccuracy``, ...), or one of
  :data:`SINK_NAMES`, layers that only consume blobs (``Silence``, ``HDF5Output``, DeepLab's
  ``MatWrite``).

The tops of a data layer that no kept layer reads (labels, DeepLab's ``data_dim``) are dropped
with it (see :func:`bnconvert.caffe.graph.build_graph`).
"""
from __future__ import annotations

INPUT_NAMES = ("Input", "Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData",
               "AnnotatedData", "VideoData")
SINK_NAMES = ("Silence", "HDF5Output", "MatWrite", "SILENCE", "HDF5_OUTPUT")


class _DataTypes(frozenset):
    """The data-layer type names; ``in`` also matches the fork pattern ``*Data`` / ``*_DATA``."""

    def __contains__(self, t):
        return isinstance(t, str) and (frozenset.__contains__(self, t) or is_data_type(t))


def is_data_type(t):
    """True for a data layer's type: one of :data:`INPUT_NAMES`, ``*Data`` or ``*_DATA``."""
    t = str(t)
    return t in INPUT_NAMES or (len(t) > 4 and t.endswith("Data")) or t.endswith("_DATA") or t == "DATA"


def is_loss_type(t):
    """True for a layer type that inference drops: losses, accuracies and sinks."""
    t = str(t)
    return (t.endswith("Loss") or t.endswith("_LOSS") or t.endswith("Accuracy") or t.endswith("ACCURACY")
            or t in SINK_NAMES)


def is_dropped_for_parsing(t):
    """True for a layer whose unknown prototxt fields cannot change inference: a data layer
    (its shape comes from ``--input-shape`` when its fields do not give it) or a dropped layer."""
    return is_data_type(t) or is_loss_type(t)


INPUT_TYPES = _DataTypes(INPUT_NAMES)
DROPPED_TYPES = ("Accuracy", "Silence", "HDF5Output", "MatWrite")
