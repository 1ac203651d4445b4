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

Blobs stored unpacked (legal but rare) stay in the skeleton; ``store.get`` returns None for
them and ``blob_array`` falls back to :func:`bnconvert.caffe.io.blob_to_array`.
No Keras import.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import ParseError, ShapeError
from .io import (blob_shape, blob_to_array, check_caffemodel_head, check_shape, corrupted_caffemodel,
                 parse_caffemodel_bytes, pb2, readable_file)

_LAYER_FIELDS = {100: 7, 2: 6}  # NetParameter.layer -> LayerParameter.blobs; .layers (V1) -> .blobs
_DATA, _DOUBLE_DATA = 5, 8  # BlobProto packed float / packed double
_LEN = 2  # wire type of length-delimited fields


class _Truncated(Exception):
    pass


def _varint(buf, pos, end):
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise _Truncated(pos)
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def _encode_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _fields(buf, start, end):
    """Yield (field number, wire type, tag start, value start, value end) of one message."""
    pos = start
    while pos < end:
        tag_start = pos
        tag, pos = _varint(buf, pos, end)
        field, wt = tag >> 3, tag & 7
        if wt == 0:
            _, nxt = _varint(buf, pos, end)
        elif wt == 1:
            nxt = pos + 8
        elif wt == _LEN:
            n, pos = _varint(buf, pos, end)
            nxt = pos + n
        elif wt == 5:
            nxt = pos + 4
        else:  # groups (3/4) never occur in caffe.proto
            raise _Truncated(tag_start)
        if nxt > end or field == 0:
            raise _Truncated(tag_start)
        yield field, wt, tag_start, pos, nxt
        pos = nxt


def _wrap(field, payload):
    return _encode_varint((field << 3) | _LEN) + _encode_varint(len(payload)) + payload


def _strip_blob(buf, start, end):
    """(skeleton bytes of one BlobProto, its data as a flat float32 view or None)."""
    parts, data = [], None
    for field, wt, tag_start, v0, v1 in _fields(buf, start, end):
        if wt == _LEN and field == _DATA:
            data = np.frombuffer(buf, np.float32, (v1 - v0) // 4, v0) if (v1 - v0) % 4 == 0 else None
            if data is not None:
                continue
        elif wt == _LEN and field == _DOUBLE_DATA and (v1 - v0) % 8 == 0:
            if data is None:
                data = np.frombuffer(buf, np.float64, (v1 - v0) // 8, v0).astype(np.float32)
            continue
        parts.append(bytes(buf[tag_start:v1]))
    return b"".join(parts), data


def _strip_layer(buf, start, end, blobs_field):
    parts, arrays = [], []
    for field, wt, tag_start, v0, v1 in _fields(buf, start, end):
        if field == blobs_field and wt == _LEN:
            skel, data = _strip_blob(buf, v0, v1)
            parts.append(_wrap(field, skel))
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
        for field, wt, tag_start, v0, v1 in _fields(buf, 0, len(buf)):
            if field in _LAYER_FIELDS and wt == _LEN:
                skel, layer_arrays = _strip_layer(buf, v0, v1, _LAYER_FIELDS[field])
                parts.append(_wrap(field, skel))
                arrays.append(layer_arrays)
            else:
                parts.append(bytes(buf[tag_start:v1]))
    except _Truncated as e:
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
    p = readable_file(path, "caffemodel")
    try:
        with open(p, "rb") as f:
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


def blob_chunks(arr):
    """One serialized ``BlobProto`` (packed float32 ``data``, then ``shape``) as byte chunks.

    Joined, byte-identical to ``array_to_blob(arr).SerializeToString()``, without the Python
    list of every value that filling ``blob.data`` needs; the data chunk is the array's own
    memory (no copy when it is already contiguous little-endian float32).
    """
    a = np.ascontiguousarray(arr, dtype="<f4")
    dims = b"".join(_encode_varint(int(d)) for d in a.shape)
    chunks = [_encode_varint((_DATA << 3) | _LEN) + _encode_varint(a.nbytes), memoryview(a).cast("B")] \
        if a.size else []
    chunks.append(_wrap(7, _wrap(1, dims) if dims else b""))
    return chunks


def blob_bytes(arr):
    return b"".join(blob_chunks(arr))


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
            blobs.append([_encode_varint((7 << 3) | _LEN) + _encode_varint(n)] + chunks)
        body = lp.SerializeToString()
        size = len(body) + sum(len(c) for b in blobs for c in b)
        yield _encode_varint((100 << 3) | _LEN) + _encode_varint(size) + body
        for b in blobs:
            yield from b
