"""Benchmark-only monkeypatches that measure proposed fixes in files the benchmark does not own.

``install("fastblobs")``: caffemodels are read with :mod:`bnconvert.caffe.fastblobs` (weights are
zero-copy views on the file buffer) instead of ``NetParameter.ParseFromString`` + ``np.asarray``.
The real integration belongs in ``bnconvert/caffe/weights.py`` / ``graph.py`` (see
docs/performance.md); this patch reaches the same code path without editing them: the skeleton
NetParameter is upgraded from V1 up front, and ``weights.blob_to_array`` / ``blob_shape`` look
each blob message up in a table of its data views (upb returns the same Python object for the
same sub-message while a reference is held, which the table does).

``install("fclayout")``: ``bnconvert.layout.fc_weights_to_keras`` reorders a flattened
C,H,W InnerProduct kernel to H,W,C with a cache-tiled transpose into a preallocated array
instead of ``w.T.reshape(...).transpose(...).reshape(...)`` (two strided full copies).

``install("apply")``: ``bnconvert.c2k._context.apply`` without the ``astype("float32")`` copy
of every weight array (``np.asarray(w, np.float32)`` copies only when the dtype differs).
"""
from __future__ import annotations

import numpy as np


def install(names):
    for name in names:
        {"fastblobs": _fastblobs, "apply": _apply, "fclayout": _fclayout}[name]()


def _fastblobs():
    from bnconvert.caffe import fastblobs, graph, io, upgrade, weights

    table = {}

    def read_caffemodel(path):
        skeleton, store = fastblobs.read_caffemodel_blobs(path)
        if hasattr(io, "_fix_names"):
            io._fix_names(skeleton)
        upgrade.upgrade_v1(skeleton, path)  # cheap: the blobs hold no data
        table.clear()
        for i, lp in enumerate(skeleton.layer):
            for j, b in enumerate(lp.blobs):
                table[id(b)] = (b, store.get(i, j))
        table["store"] = store
        return skeleton

    def blob_to_array(blob, **where):
        entry = table.get(id(blob))
        flat = entry[1] if entry is not None and entry[0] is blob else None
        return fastblobs.blob_array(blob, flat, **where)

    def blob_shape(blob):
        entry = table.get(id(blob))
        flat = entry[1] if entry is not None and entry[0] is blob else None
        return fastblobs.stored_shape(blob, flat)

    graph.read_caffemodel = read_caffemodel
    weights.blob_to_array = blob_to_array
    weights.blob_shape = blob_shape


def _apply():
    from bnconvert.c2k import _context

    def apply(layer, inputs, weights=None):
        out = layer(inputs)
        if weights is not None:
            layer.set_weights([np.asarray(w, dtype=np.float32) for w in weights])
        return out

    from bnconvert.registry import CAFFE_TO_KERAS

    CAFFE_TO_KERAS.load()  # the converter modules bind ``apply`` at import: rebind it in each
    import sys

    old = _context.apply
    for name, mod in list(sys.modules.items()):
        if name.startswith("bnconvert.c2k") and getattr(mod, "apply", None) is old:
            mod.apply = apply


def fc_weights_to_keras_tiled(w, transpose=False, in_layout=None):
    """Same result as layout.fc_weights_to_keras, transposed in (64 x 512) tiles."""
    from bnconvert import layout as lay

    in_layout = in_layout or lay.CAFFE
    if transpose or in_layout.kind != "flat_hwc":
        return _ORIG_FC(w, transpose, in_layout)
    c, h, wd = in_layout.chw
    o = w.shape[0]
    w3 = w.reshape(o, c, h * wd)
    out = np.empty((h * wd, c, o), w.dtype)
    for c0 in range(0, c, 64):
        for o0 in range(0, o, 512):
            out[:, c0:c0 + 64, o0:o0 + 512] = w3[o0:o0 + 512, c0:c0 + 64, :].transpose(2, 1, 0)
    return out.reshape(c * h * wd, o)


_ORIG_FC = None


def _fclayout():
    global _ORIG_FC
    from bnconvert import layout

    if _ORIG_FC is None:
        _ORIG_FC = layout.fc_weights_to_keras
    layout.fc_weights_to_keras = fc_weights_to_keras_tiled
