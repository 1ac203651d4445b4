"""The protobuf wire format, as far as caffemodels need it: varints, fields, packed blobs.

A leaf module (it imports nothing from bnconvert), so that the caffemodel reader
(:mod:`bnconvert.caffe.fastblobs`) and the text/binary I/O (:mod:`bnconvert.caffe.io`) can both
use it without importing each other. No Keras import.
"""
from __future__ import annotations

import numpy as np

LEN = 2  # wire type of length-delimited fields (packed repeated fields, messages, strings)
FIXED32, FIXED64 = 5, 1  # wire types of one unpacked float / double
BLOB_DATA, BLOB_DOUBLE_DATA, BLOB_SHAPE = 5, 8, 7  # BlobProto field numbers


class Truncated(Exception):
    """The bytes end inside a field, or hold a tag protobuf cannot parse; ``args[0]``: the byte offset."""


def read_varint(buf, pos, end):
    value, shift = 0, 0
    while True:
        if pos >= end or shift > 63:
            raise Truncated(pos)
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7


def encode_varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def fields(buf, start, end):
    """Yield (field number, wire type, tag start, value start, value end) of one message."""
    pos = start
    while pos < end:
        tag_start = pos
        tag, pos = read_varint(buf, pos, end)
        field, wt = tag >> 3, tag & 7
        if wt == 0:
            _, nxt = read_varint(buf, pos, end)
        elif wt == FIXED64:
            nxt = pos + 8
        elif wt == LEN:
            n, pos = read_varint(buf, pos, end)
            nxt = pos + n
        elif wt == FIXED32:
            nxt = pos + 4
        else:  # groups (3/4) never occur in caffe.proto
            raise Truncated(tag_start)
        if nxt > end or field == 0:
            raise Truncated(tag_start)
        yield field, wt, tag_start, pos, nxt
        pos = nxt


def wrap(field, payload):
    """``payload`` as length-delimited field ``field``."""
    return encode_varint((field << 3) | LEN) + encode_varint(len(payload)) + payload


def blob_chunks(arr):
    """One serialized ``BlobProto`` (packed float32 ``data``, then ``shape``) as byte chunks.

    Joined, the bytes protobuf itself writes for a BlobProto with that ``data`` and ``shape``,
    without the Python list of every value that filling ``blob.data`` needs; the data chunk is
    the array's own memory (no copy when it is already contiguous little-endian float32).
    """
    a = np.ascontiguousarray(arr, dtype="<f4")
    dims = b"".join(encode_varint(int(d)) for d in a.shape)
    chunks = [encode_varint((BLOB_DATA << 3) | LEN) + encode_varint(a.nbytes), memoryview(a).cast("B")] \
        if a.size else []
    chunks.append(wrap(BLOB_SHAPE, wrap(1, dims) if dims else b""))
    return chunks


def blob_bytes(arr):
    return b"".join(blob_chunks(arr))
