"""Reading and writing Caffe's text (.prototxt) and binary (.caffemodel) files."""
from __future__ import annotations

import numbers
import os
import stat
from pathlib import Path

import numpy as np

from .prototxt import enclosing_layer, parse_prototxt_text  # noqa: F401 (re-exported)
from ..errors import ParseError, ShapeError
from .wire import blob_bytes

# A blob with more elements than this is refused before anything is allocated (4 G floats).
MAX_BLOB_ELEMENTS = 1 << 32
# Files larger than this are refused from their size, before any byte is read. A caffemodel:
# Caffe's own kProtoReadBytesLimit (INT_MAX, 2 GiB - 1; Caffe cannot read a larger one). A
# prototxt: 128 MiB (a 10^5-layer net is ~10 MB of text; public prototxts are well under 1 MB).
MAX_CAFFEMODEL_BYTES = (1 << 31) - 1
MAX_PROTOTXT_BYTES = 128 << 20


def pb2():
    from .. import caffe_pb2

    return caffe_pb2


def readable_file(path, what, max_bytes=None):
    """``path`` as a Path, or a ParseError when it is missing, a directory, not a regular file
    (a FIFO, socket or device would block or never end), or larger than ``max_bytes``."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ParseError(f"{what} not found", file=path) from None
    except OSError as e:
        raise ParseError(f"cannot read {what}: {e.strerror}", file=path) from None
    check_regular(st, path, what, max_bytes)
    return p


def check_regular(st, path, what, max_bytes=None):
    """Refuse (from its ``os.stat`` result) a file that is not a regular file, or is too large."""
    if stat.S_ISDIR(st.st_mode):
        raise ParseError(f"{what} is a directory, not a file", file=path)
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a device, socket or other special file"
        raise ParseError(f"{what} is {kind}, not a regular file", file=path,
                         hint="save the data to a regular file and pass that")
    if max_bytes is not None and st.st_size > max_bytes:
        raise ParseError(f"{what} is {st.st_size:,} bytes, over bnconvert's limit of {max_bytes:,} bytes for a "
                         f"{what} (a corrupted or wrong file?)", file=path)


def open_regular(path, what, max_bytes=None):
    """Open ``path`` for reading (binary), refusing what :func:`readable_file` refuses.

    Opened without blocking and checked again on the open descriptor, so that a file swapped
    for a FIFO after the first check cannot hang the read.
    """
    p = readable_file(path, what, max_bytes)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise ParseError(f"cannot read {what}: {e.strerror}", file=path) from None
    f = os.fdopen(fd, "rb")
    try:
        check_regular(os.fstat(fd), path, what, max_bytes)
    except BaseException:
        f.close()
        raise
    return f


def _read_bytes(path, what, max_bytes=None):
    with open_regular(path, what, max_bytes) as f:
        try:
            return f.read()
        except OSError as e:
            raise ParseError(f"cannot read {what}: {e.strerror}", file=path) from None


def _decode_text(data, path):
    """Bytes -> str. Invalid UTF-8 inside ``#`` comments is tolerated (Caffe ignores comments);
    anywhere else it is a :class:`ParseError` with line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise ParseError("the file is UTF-16 text, not UTF-8", file=path, hint="re-save the file as UTF-8")
    out = []
    for lineno, raw in enumerate(data.split(b"\n"), 1):
        try:
            out.append(raw.decode("utf-8"))
            continue
        except UnicodeDecodeError as e:
            bad = e.start
        code, comment = _split_comment(raw)
        if bad < len(code):
            name, ltype = enclosing_layer(b"\n".join(data.split(b"\n")[:lineno]).decode("utf-8", "replace"), lineno)
            raise ParseError(f"not UTF-8 text: byte 0x{raw[bad]:02x} at line {lineno}, column {bad + 1}",
                             file=path, layer=name, layer_type=ltype, line=lineno, column=bad + 1,
                             hint="re-save the file as UTF-8 (or fix the name or string that holds this byte)")
        out.append(code.decode("utf-8") + comment.decode("utf-8", "replace"))
    return "\n".join(out)


def _split_comment(raw):
    """Split one line of bytes at its first ``#`` outside a quoted string."""
    quote = None
    i = 0
    while i < len(raw):
        c = raw[i:i + 1]
        if quote:
            if c == b"\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in (b'"', b"'"):
            quote = c
        elif c == b"#":
            return raw[:i], raw[i:]
        i += 1
    return raw, b""


def read_prototxt(path, *, ignored=None, problems=None):
    """Read a text prototxt (V2 ``layer`` or legacy V1 ``layers``) into a ``NetParameter``.

    Accepts a UTF-8 byte-order mark and CRLF or CR line endings. ``ignored`` and ``problems``:
    as for :func:`bnconvert.caffe.prototxt.parse_prototxt_text` (unknown fields of dropped
    layers tolerated and reported; every finding reported instead of raised).
    """
    data = _read_bytes(path, "prototxt", MAX_PROTOTXT_BYTES)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if b"\x00" in data and data[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        raise ParseError("contains NUL bytes: this looks like a binary file, not a prototxt", file=path,
                         hint="pass the .caffemodel as the second argument")
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    text = _decode_text(data, path)
    return parse_prototxt_text(text, path, ignored=ignored, problems=problems)


def _looks_like_text(data):
    head = data[:256]
    if any(b < 32 and b not in (9, 10, 13) or b > 126 for b in head):
        return False
    start = head.lstrip()
    return start[:1] == b"#" or any(start.startswith(k) for k in (b"name", b"layer", b"input", b"state"))


def read_caffemodel(path):
    """Read a binary caffemodel into a ``NetParameter`` (V2 ``layer`` or V1 ``layers``).

    Empty, truncated and corrupted files are a :class:`ParseError`. Protobuf accepts some
    corrupted bytes as a valid message; what such a parse yields is caught later, when the
    blobs are matched against the net's expected shapes (:func:`weights.attach_weights`).
    """
    data = _read_bytes(path, "caffemodel", MAX_CAFFEMODEL_BYTES)
    check_caffemodel_head(data, path)
    return parse_caffemodel_bytes(data, path, len(data))


def check_caffemodel_head(data, path):
    """Refuse an empty file, or a text file passed where the binary caffemodel belongs."""
    if not data:
        raise ParseError("caffemodel is empty (0 bytes)", file=path, hint="download or copy the file again")
    if _looks_like_text(bytes(data[:256])):
        raise ParseError("this is a text prototxt, not a binary caffemodel", file=path,
                         hint="pass the prototxt first and the .caffemodel second")


def corrupted_caffemodel(path, size, detail):
    return ParseError(f"not a valid caffemodel: truncated or corrupted protobuf ({size} bytes; {detail})",
                      file=path, hint="download or copy the file again; check it is a .caffemodel")


def parse_caffemodel_bytes(data, path, size):
    """Parse (the bytes of) a caffemodel into a ``NetParameter`` that holds layers, with names as text.

    ``size`` is the file's size, for the message.
    """
    from google.protobuf.message import DecodeError

    net = pb2().NetParameter()
    try:
        net.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError, TypeError, OverflowError, RecursionError) as e:
        raise corrupted_caffemodel(path, size, str(e) or type(e).__name__) from None
    if not net.layer and not net.layers:
        raise ParseError("caffemodel holds no layers (is this a prototxt or another file type?)", file=path)
    _fix_names(net)
    return net


def _fix_names(net):
    """Binary protobuf does not validate UTF-8: a corrupted name comes back as bytes. Make it text
    (invalid bytes shown as U+FFFD) so that names compare and print like every other name."""
    for msg in [net, *net.layer, *net.layers]:
        for field in ("name", "type"):
            value = getattr(msg, field, "")
            if isinstance(value, bytes):
                setattr(msg, field, value.decode("utf-8", "replace"))


# --- blobs -----------------------------------------------------------------------------


def blob_shape(blob):
    """The blob's shape: ``shape.dim`` when present, else the legacy 4-d num/channels/height/width."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if blob.HasField("num") or blob.HasField("channels") or blob.HasField("height") or blob.HasField("width"):
        return (int(blob.num), int(blob.channels), int(blob.height), int(blob.width))
    n = len(blob.double_data) or len(blob.data)
    return (n,)


def is_legacy_blob(blob):
    return not blob.HasField("shape")


def check_shape(shape, what="blob", **where):
    """Return the element count of ``shape``; refuse negative dimensions and absurd sizes.

    Called before anything of that shape is allocated. Counts are Python ints, so a
    10^12-element shape is refused, never wrapped around.
    """
    count = 1
    for d in shape:
        d = int(d)
        if d < 0:
            raise ShapeError(f"{what} has a negative dimension: {tuple(shape)}", **where)
        count *= d
    if count > MAX_BLOB_ELEMENTS:
        raise ShapeError(f"{what} shape {tuple(shape)} has {count:,} elements, over the limit of "
                         f"{MAX_BLOB_ELEMENTS:,} (absurd dimensions: a corrupted file or a typo?)", **where)
    return count


def integer_shape(shape, what="shape", **where):
    """``shape`` as a tuple of Python ints; a ShapeError for anything that is not a whole number
    (a float such as 17.9 is refused, never truncated) or not a sequence."""
    try:
        dims = tuple(shape)
    except TypeError:
        raise ShapeError(f"{what} must be a sequence of integers. Received: {shape!r}", **where) from None
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise ShapeError(f"{what} must be whole numbers. Received: {dims!r} ({d!r} is {type(d).__name__})",
                             **where)
    return tuple(int(d) for d in dims)


def blob_to_array(blob, **where):
    """A ``BlobProto`` as a float32 numpy array of its declared shape."""
    shape = blob_shape(blob)
    count = check_shape(shape, "weight blob", **where)
    if len(blob.double_data):  # as Caffe's Blob::FromProto: double_data wins when it holds values
        arr = np.asarray(blob.double_data, dtype=np.float64).astype(np.float32)
    elif len(blob.data):
        arr = np.asarray(blob.data, dtype=np.float32)
    else:
        arr = np.zeros(0, np.float32)
    if arr.size != count:
        raise ShapeError(f"weight blob declares shape {shape} ({count} values) but holds {arr.size} values", **where)
    return arr.reshape(shape)


def check_caffemodel_blobs(model, path):
    """Refuse a caffemodel (a parsed NetParameter) with a blob of absurd or negative dimensions,
    or whose values do not fill its declared shape: the checks :func:`blob_to_array` makes when
    converting, made without copying any values (for ``upgrade``, before it writes anything)."""
    for lp in [*model.layer, *model.layers]:
        ltype = lp.type if isinstance(lp.type, str) else None
        where = dict(file=path, layer=lp.name, layer_type=ltype)
        for i, b in enumerate(lp.blobs):
            shape = blob_shape(b)
            count = check_shape(shape, f"weight blob {i}", **where)
            n = len(b.double_data) or len(b.data)
            if n != count:
                raise ShapeError(f"weight blob {i} declares shape {shape} ({count} values) but holds {n} values",
                                 **where, hint="the caffemodel is truncated or corrupted; download or copy it again")


def array_to_blob(arr, blob=None):
    """Fill (or create) a ``BlobProto`` with ``arr`` as float32 data and a ``shape``."""
    if blob is None:
        blob = pb2().BlobProto()
    # Parsing the packed bytes is ~10x faster than extending `data` with a Python list of floats.
    blob.MergeFromString(blob_bytes(arr))
    return blob


# --- writing ---------------------------------------------------------------------------


# Output checks and atomic writing live in bnconvert/outputs.py; re-exported for existing callers.
from ..outputs import atomic_write, write_files  # noqa: E402,F401


def prototxt_text(net):
    from google.protobuf import text_format

    return text_format.MessageToString(net)  # floats print as the shortest repr that round-trips


def prototxt_bytes(net):
    """A ``NetParameter`` as prototxt text (UTF-8). Blobs are never written into a prototxt."""
    n = pb2().NetParameter()
    n.CopyFrom(net)
    for layer in n.layer:
        del layer.blobs[:]
    return prototxt_text(n).encode("utf-8")


def write_prototxt(net, path):
    """Write a ``NetParameter`` as text, atomically."""
    atomic_write(path, prototxt_bytes(net))


def write_caffemodel(net, path):
    """Write a ``NetParameter`` as a binary caffemodel, atomically."""
    atomic_write(path, net.SerializeToString())


def write_net_files(net, prototxt_path, weights, caffemodel_path, header=""):
    """Write a prototxt and its caffemodel as one unit: if either cannot be produced or written,
    neither output is created or replaced. ``weights`` is a NetParameter or an iterable of the
    caffemodel's byte chunks (see :func:`bnconvert.caffe.fastblobs.caffemodel_chunks`); ``header``
    is written before the prototxt's text (comment lines, e.g. keras2caffe's target)."""
    data_of_weights = [weights.SerializeToString()] if hasattr(weights, "SerializeToString") else weights
    write_files([(prototxt_path, header.encode("utf-8") + prototxt_bytes(net)), (caffemodel_path, data_of_weights)])
