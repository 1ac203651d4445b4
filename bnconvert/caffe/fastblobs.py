"""Reading a caffemodel's weight blobs without copying them.

``NetParameter.ParseFromString`` materializes every float of a 500 MB caffemodel inside the
protobuf message, and ``np.asarray(blob.data)`` then copies it again. Here the file is read once
into a writable buffer; the protobuf wire format is walked to find each ``BlobProto``'s packed
``data`` (field 5) / ``double_data`` (field 8), which become ``np.frombuffer`` views on that
buffer. Everything else (names, types, shapes, layer parameters, V1 ``layers``) is kept in a
small "skeleton" ``NetParameter`` parsed by protobuf as usual, with the data fields left out.

Usage::

    skeleton, store = read_caffemodel_blobs(path)
    for i, lp in enumerate(skeleton.layer or skeleton.layers):
        for j, b in enumerate(lp.blobs):
            arr = blob_array(b, store.get(i, j))   # float32, the blob's declared shape

Values split over several fields, or stored unpacked (both legal protobuf, both rare), are
concatenated into a copy; ``double_data`` wins over ``data`` when it holds any values, as in
Caffe's ``Blob::FromProto``. A blob without values gets None from ``store.get``, and
``blob_array`` falls back to :func:`bnconvert.caffe.io.blob_to_array`. No Keras import.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ParseError, ShapeError
from .io import (MAX_CAFFEMODEL_BYTES, blob_shape, blob_to_array, check_caffemodel_head, check_shape,
                 corrupted_caffemodel, open_regular, parse_caffemodel_bytes, pb2)
from .wire import (BLOB_DATA, BLOB_DOUBLE_DATA, FIXED32, FIXED64, LEN, Truncated, blob_bytes, blob_chunks,
                   encode_varint, fields, wrap)

_LAYER_FIELDS = {100: 7, 2: 6}  # NetParameter.layer -> LayerParameter.blobs; .layers (V1) -> .blobs
# BlobProto value fields: (field, wire type) -> (dtype, bytes per value). A repeated field may come
# packed (one LEN field) or unpacked (one fixed-size field per value), split over any number of
# occurrences; protobuf concatenates them all, in order.
_VALUES = {(BLOB_DATA, LEN): ("<f4", 4), (BLOB_DATA, FIXED32): ("<f4", 4),
           (BLOB_DOUBLE_DATA, LEN): ("<f8", 8), (BLOB_DOUBLE_DATA, FIXED64): ("<f8", 8)}

# Kept importable from here (they moved to .wire so that io and fastblobs do not import each other).
_encode_varint, _wrap, _fields, _Truncated = encode_varint, wrap, fields, Truncated
__all__ = ["read_caffemodel_blobs", "split_caffemodel", "blob_array", "stored_shape", "BlobStore",
           "caffemodel_chunks", "blob_chunks", "blob_bytes"]


def _strip_blob(buf, start, end):
    """(skeleton bytes of one BlobProto, its values as a flat float32 array or None).

    The values are ``double_data`` when it holds any (as Caffe's ``Blob::FromProto`` does), else
    ``data``: a view on ``buf`` when they are one packed float field, a concatenated copy when
    they are split over several fields or stored unpacked. A field whose length is not a whole
    number of values stays in the skeleton, where protobuf's parser refuses it.
    """
    parts, pieces = [], {BLOB_DATA: [], BLOB_DOUBLE_DATA: []}
    for field, wt, tag_start, v0, v1 in fields(buf, start, end):
        kind = _VALUES.get((field, wt))
        if kind is not None and (v1 - v0) % kind[1] == 0:
            pieces[field].append(np.frombuffer(buf, kind[0], (v1 - v0) // kind[1], v0))
        else:
            parts.append(bytes(buf[tag_start:v1]))
    doubles = [a for a in pieces[BLOB_DOUBLE_DATA] if a.size]
    chosen = doubles or pieces[BLOB_DATA]
    if not chosen:
        data = None
    elif len(chosen) == 1 and not doubles:
        data = chosen[0]
    else:
        data = np.concatenate(chosen).astype(np.float32)
    return b"".join(parts), data


def _strip_layer(buf, start, end, blobs_field):
    parts, arrays = [], []
    for field, wt, tag_start, v0, v1 in fields(buf, start, end):
        if field == blobs_field and wt == LEN:
            skel, data = _strip_blob(buf, v0, v1)
            parts.append(wrap(field, skel))
            arrays.append(data)
        else:
            parts.append(bytes(buf[tag_start:v1]))
    return b"".join(parts), arrays


class BlobStore:
    """Flat float32 arrays by (layer position, blob position) in the caffemodel's layer list."""

    def __init__(self, buffer, arrays):
        self.buffer = buffer  # keeps the file contents alive for the views
        self._arrays = arrays

    def get(self, layer_pos, blob_pos):
        arrays = self._arrays[layer_pos] if layer_pos < len(self._arrays) else []
        return arrays[blob_pos] if blob_pos < len(arrays) else None

    @property
    def nbytes(self):
        return sum(a.nbytes for layer in self._arrays for a in layer if a is not None)


def split_caffemodel(buf, path="<bytes>"):
    """Split caffemodel bytes into (skeleton NetParameter, :class:`BlobStore`)."""
    parts, arrays = [], []
    try:
        for field, wt, tag_start, v0, v1 in fields(buf, 0, len(buf)):
            if field in _LAYER_FIELDS and wt == LEN:
                skel, layer_arrays = _strip_layer(buf, v0, v1, _LAYER_FIELDS[field])
                parts.append(wrap(field, skel))
                arrays.append(layer_arrays)
            else:
                parts.append(bytes(buf[tag_start:v1]))
    except Truncated as e:
        raise corrupted_caffemodel(path, len(buf), f"bad field near byte {e.args[0]}") from None
    return parse_caffemodel_bytes(b"".join(parts), path, len(buf)), BlobStore(buf, arrays)


def read_caffemodel_blobs(path):
    """Read a caffemodel as (skeleton NetParameter without blob data, :class:`BlobStore`).

    The skeleton has the same layers, in the same order, as ``io.read_caffemodel(path)`` (so
    V1 ``layers`` can be upgraded with ``upgrade_v1`` cheaply: their blobs hold no data), and
    the same errors for missing, empty, text and corrupted files.
    """
    buf = _read_into_buffer(path)
    check_caffemodel_head(buf, path)
    return split_caffemodel(buf, path)


def _read_into_buffer(path):
    """The whole file in one writable bytearray (the arrays are views on it: no second copy)."""
    try:
        with open_regular(path, "caffemodel", MAX_CAFFEMODEL_BYTES) as f:
            size = os.fstat(f.fileno()).st_size
            buf = bytearray(size)
            n = f.readinto(buf)
    except OSError as e:
        raise ParseError(f"cannot read caffemodel: {e.strerror}", file=path) from None
    if n != size:
        raise ParseError("caffemodel changed size while being read", file=path)
    return buf


def stored_shape(blob, flat):
    """The blob's shape; a blob without dims is 1-d with as many values as it stores."""
    has_dims = blob.HasField("shape") or any(blob.HasField(f) for f in ("num", "channels", "height", "width"))
    return blob_shape(blob) if has_dims or flat is None else (flat.size,)


def blob_array(blob, flat, **where):
    """The blob as a float32 array of its declared shape: a view on ``flat`` when given.

    Same shapes, checks and messages as :func:`bnconvert.caffe.io.blob_to_array`.
    """
    if flat is None:
        return blob_to_array(blob, **where)
    shape = stored_shape(blob, flat)
    count = check_shape(shape, "weight blob", **where)
    if flat.size != count:
        raise ShapeError(f"weight blob declares shape {shape} ({count} values) but holds {flat.size} values", **where)
    return flat.reshape(shape)


# --- writing ---------------------------------------------------------------------------


def caffemodel_chunks(net, layer_blobs):
    """The bytes of ``net`` (a NetParameter whose V2 layers hold no blobs) with layer ``i``'s
    blobs set to the arrays ``layer_blobs[i]``, as a sequence of chunks (write them in order).

    Protobuf allows a message's fields in any order, so each layer is its own serialization
    followed by its ``blobs`` fields; parsing the result gives the same message as filling
    the blobs with ``array_to_blob``. Peak memory: one layer's blobs, never the whole model.
    """
    head = pb2().NetParameter()
    head.CopyFrom(net)
    head.ClearField("layer")
    yield head.SerializeToString()
    layer_blobs = list(layer_blobs)
    for i, lp in enumerate(net.layer):
        blobs = []
        for a in (layer_blobs[i] if i < len(layer_blobs) else ()):
            chunks = blob_chunks(a)
            n = sum(len(c) for c in chunks)
            blobs.append([encode_varint((7 << 3) | LEN) + encode_varint(n)] + chunks)
        body = lp.SerializeToString()
        size = len(body) + sum(len(c) for b in blobs for c in b)
        yield encode_varint((100 << 3) | LEN) + encode_varint(size) + body
        for b in blobs:
            yield from b
