"""Reading and writing Caffe's text (.prototxt) and binary (.caffemodel) files."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import OutputError, ParseError, ShapeError

# A blob with more elements than this is refused before anything is allocated (4 G floats).
MAX_BLOB_ELEMENTS = 1 << 32


def pb2():
    from .. import caffe_pb2

    return caffe_pb2


def _read_bytes(path, what):
    p = Path(path)
    if not p.exists():
        raise ParseError(f"{what} not found", file=path)
    if p.is_dir():
        raise ParseError(f"{what} is a directory, not a file", file=path)
    try:
        return p.read_bytes()
    except OSError as e:
        raise ParseError(f"cannot read {what}: {e.strerror}", file=path) from None


def parse_prototxt_text(text, path="<string>"):
    """Parse prototxt text into a ``NetParameter``."""
    from google.protobuf import text_format

    net = pb2().NetParameter()
    try:
        text_format.Merge(text, net, allow_unknown_extension=False)
    except text_format.ParseError as e:
        line, col = getattr(e, "_line", None), getattr(e, "_column", None)
        msg = str(e)
        # protobuf formats "line:col : message"; keep the message, state the position once.
        if ":" in msg and line is not None:
            msg = msg.split(" : ", 1)[-1]
        where = f"line {line + 1 if line is not None else '?'}, column {col + 1 if col is not None else '?'}"
        raise ParseError(f"syntax error at {where}: {msg}", file=path,
                         hint="check the field name and value against proto/caffe.proto") from None
    return net


def read_prototxt(path):
    """Read a text prototxt (V2 ``layer`` or legacy V1 ``layers``) into a ``NetParameter``."""
    data = _read_bytes(path, "prototxt")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ParseError(f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} (line {line})",
                         file=path, hint="re-save the file as UTF-8") from None
    if "\x00" in text:
        raise ParseError("contains NUL bytes: this looks like a binary file, not a prototxt", file=path,
                         hint="pass the .caffemodel as the second argument")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return parse_prototxt_text(text, path)


def read_caffemodel(path):
    """Read a binary caffemodel into a ``NetParameter`` (V2 ``layer`` or V1 ``layers``)."""
    from google.protobuf.message import DecodeError

    data = _read_bytes(path, "caffemodel")
    if not data:
        raise ParseError("caffemodel is empty", file=path)
    net = pb2().NetParameter()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ParseError(f"not a valid caffemodel (truncated or corrupted protobuf: {e})", file=path) from None
    if not net.layer and not net.layers:
        raise ParseError("caffemodel holds no layers (is this a prototxt or another file type?)", file=path)
    return net


# --- blobs -----------------------------------------------------------------------------


def blob_shape(blob):
    """The blob's shape: ``shape.dim`` when present, else the legacy 4-d num/channels/height/width."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if blob.HasField("num") or blob.HasField("channels") or blob.HasField("height") or blob.HasField("width"):
        return (int(blob.num), int(blob.channels), int(blob.height), int(blob.width))
    n = len(blob.data) or len(blob.double_data)
    return (n,)


def is_legacy_blob(blob):
    return not blob.HasField("shape")


def check_shape(shape, what="blob", **where):
    count = 1
    for d in shape:
        if d < 0:
            raise ShapeError(f"{what} has a negative dimension: {tuple(shape)}", **where)
        count *= d
    if count > MAX_BLOB_ELEMENTS:
        raise ShapeError(f"{what} shape {tuple(shape)} has {count} elements, over the limit of {MAX_BLOB_ELEMENTS}",
                         **where)
    return count


def blob_to_array(blob, **where):
    """A ``BlobProto`` as a float32 numpy array of its declared shape."""
    shape = blob_shape(blob)
    count = check_shape(shape, "weight blob", **where)
    if len(blob.data):
        arr = np.asarray(blob.data, dtype=np.float32)
    elif len(blob.double_data):
        arr = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    else:
        arr = np.zeros(0, np.float32)
    if arr.size != count:
        raise ShapeError(f"weight blob declares shape {shape} ({count} values) but holds {arr.size} values", **where)
    return arr.reshape(shape)


def array_to_blob(arr, blob=None):
    """Fill (or create) a ``BlobProto`` with ``arr`` as float32 data and a ``shape``."""
    if blob is None:
        blob = pb2().BlobProto()
    a = np.asarray(arr, dtype=np.float32)
    blob.shape.dim.extend(int(d) for d in a.shape)
    blob.data.extend(a.ravel().tolist())
    return blob


# --- writing ---------------------------------------------------------------------------


def atomic_write(path, data):
    """Write bytes to ``path`` through a temporary file in the same directory, then rename."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"output directory {parent} does not exist", file=path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputError(f"cannot write here: {e.strerror}", file=path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, p)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise OutputError(f"cannot write: {e.strerror}", file=path) from None
        raise


def prototxt_text(net):
    from google.protobuf import text_format

    return text_format.MessageToString(net, float_format=".9g")


def write_prototxt(net, path):
    """Write a ``NetParameter`` as text. Blobs are never written into a prototxt."""
    n = pb2().NetParameter()
    n.CopyFrom(net)
    for layer in n.layer:
        del layer.blobs[:]
    atomic_write(path, prototxt_text(n).encode("utf-8"))


def write_caffemodel(net, path):
    atomic_write(path, net.SerializeToString())
