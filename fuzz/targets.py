"""Fuzz targets and mutators for the Caffe readers and the graph builder.

Shared by the quick property-based tests (tests/caffe/test_fuzz.py, hypothesis) and the long,
time-bounded run (fuzz/run.py). Each ``check_*`` function feeds one input through bnconvert and
returns None when the outcome is acceptable (a result, or a well-formed ConversionError), or a
one-line description of the bug otherwise. Mutators take a ``random.Random`` so that every
input can be reproduced from its seed.
"""
from __future__ import annotations

import os
import random
import re
import tempfile

from bnconvert.caffe.graph import build_graph, load_net
from bnconvert.caffe.io import pb2
from bnconvert.caffe.upgrade import upgrade_net
from bnconvert.errors import ConversionError

# A ConversionError carrying one of these came from a safety net, not from a real check.
_LEAKED = re.compile(r"\((IndexError|KeyError|ValueError|TypeError|ZeroDivisionError|OverflowError|"
                     r"AttributeError|RecursionError)\b")


def classify(fn, *args, **kwargs):
    """Run ``fn``; None if it returned or raised a well-formed ConversionError, else the bug."""
    try:
        fn(*args, **kwargs)
    except ConversionError as e:
        text = str(e)
        if _LEAKED.search(text):
            return f"ConversionError wraps a Python exception: {text[:300]}"
        if not e.file:
            return f"ConversionError without a file: {text[:300]}"
        if "\n" in text:
            return f"ConversionError message spans lines: {text[:300]!r}"
        return None
    except RecursionError as e:
        return f"RecursionError: {e}"
    except Exception as e:  # noqa: BLE001 - any other exception is the bug being hunted
        return f"{type(e).__name__}: {str(e)[:300]}"
    return None


# --- targets ------------------------------------------------------------------------------


def _tmpfile(data, suffix, tmpdir=None):
    fd, path = tempfile.mkstemp(suffix=suffix, dir=tmpdir)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def check_prototxt_bytes(data, tmpdir=None):
    """Read, upgrade and build the graph of a prototxt given as bytes."""
    path = _tmpfile(data, ".prototxt", tmpdir)
    try:
        return classify(load_net, path)
    finally:
        os.unlink(path)


def check_caffemodel_bytes(prototxt, data, tmpdir=None):
    """Load ``prototxt`` with a caffemodel given as bytes."""
    path = _tmpfile(data, ".caffemodel", tmpdir)
    try:
        return classify(load_net, prototxt, path)
    finally:
        os.unlink(path)


def check_net_param(net_param, path="fuzz.prototxt"):
    """Upgrade and build the graph of a NetParameter (random layer lists)."""
    def run():
        upgrades = upgrade_net(net_param, path)
        build_graph(net_param, path=path, upgrades=upgrades)

    return classify(run)


# --- mutators -----------------------------------------------------------------------------

INTERESTING_INTS = [0, 1, 2, 3, -1, -2, 7, 255, 256, 65535, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 63 - 1,
                    10 ** 6, 10 ** 12, 4000000000, 2000000000]
LAYER_TYPES = ["Convolution", "Deconvolution", "Pooling", "InnerProduct", "ReLU", "PReLU", "BatchNorm", "Scale",
               "Bias", "Eltwise", "Concat", "Slice", "Split", "Flatten", "Reshape", "Crop", "Permute", "Softmax",
               "ArgMax", "Reduction", "Tile", "Axpy", "Normalize", "Dropout", "LRN", "Input", "DummyData",
               "Data", "Silence", "SoftmaxWithLoss", "Accuracy", "Python", "ConvolutionDepthwise", "MVN"]
_INPUTS = ("Input", "DummyData", "Data")
# usual (bottoms, tops) per type; a tuple is a choice
_ARITY = {"Input": (0, 1), "DummyData": (0, (1, 2)), "Data": (0, (1, 2)), "Eltwise": ((2, 3), 1),
          "Concat": ((1, 2, 3), 1), "Crop": (2, 1), "Axpy": (3, 1), "Scale": ((1, 2), 1), "Bias": ((1, 2), 1),
          "Slice": (1, (1, 2, 3)), "Split": (1, (1, 2, 3)), "SoftmaxWithLoss": (2, (0, 1)), "Accuracy": (2, 1),
          "Silence": ((1, 2), 0), "Python": ((0, 1, 2), (1, 2)), "Pooling": (1, (1, 1, 2))}
_BODY_TYPES = [t for t in LAYER_TYPES if t not in _INPUTS]
_NUM = re.compile(rb"-?\d+(\.\d+)?(e-?\d+)?")


def mutate_text(data, rng):
    """One to four structure-aware or byte-level mutations of prototxt text (bytes)."""
    for _ in range(rng.randint(1, 4)):
        data = rng.choice(_TEXT_MUTATORS)(data, rng)
    return data


def _m_number(data, rng):
    nums = list(_NUM.finditer(data))
    if not nums:
        return data
    m = rng.choice(nums)
    return data[:m.start()] + str(rng.choice(INTERESTING_INTS)).encode() + data[m.end():]


def _lines(data):
    return data.split(b"\n")


def _m_delete_line(data, rng):
    ls = _lines(data)
    if len(ls) > 1:
        del ls[rng.randrange(len(ls))]
    return b"\n".join(ls)


def _m_duplicate_line(data, rng):
    ls = _lines(data)
    i = rng.randrange(len(ls))
    ls.insert(rng.randrange(len(ls) + 1), ls[i])
    return b"\n".join(ls)


def _m_swap_lines(data, rng):
    ls = _lines(data)
    i, j = rng.randrange(len(ls)), rng.randrange(len(ls))
    ls[i], ls[j] = ls[j], ls[i]
    return b"\n".join(ls)


def _m_type(data, rng):
    types = list(re.finditer(rb'type: *"(\w*)"', data))
    if not types:
        return data
    m = rng.choice(types)
    return data[:m.start(1)] + rng.choice(LAYER_TYPES).encode() + data[m.end(1):]


def _m_blob_name(data, rng):
    names = list(re.finditer(rb'(bottom|top): *"([^"]*)"', data))
    if len(names) < 2:
        return data
    m, other = rng.choice(names), rng.choice(names)
    return data[:m.start(2)] + other.group(2) + data[m.end(2):]


def _m_bytes(data, rng):
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(3)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = bytes([rng.choice(b'{}:"#\r\n \x00\xff\xc3') if rng.random() < 0.7 else rng.randrange(256)])
        elif b:
            del b[min(pos, len(b) - 1)]
    return bytes(b)


def _m_truncate(data, rng):
    return data[:rng.randrange(len(data) + 1)]


def _m_crlf(data, rng):
    return data.replace(b"\n", b"\r\n") if rng.random() < 0.5 else data.replace(b"\n", b"\r")


def _m_field(data, rng):
    """Insert a field line that is valid protobuf but semantically odd."""
    extra = rng.choice([b"global_pooling: true", b"axis: 2", b"round_mode: FLOOR", b"ceil_mode: false",
                        b"engine: CUDNN", b"force_nd_im2col: true", b"pad: 3", b"num_output: 0", b"group: 3",
                        b"kernel_size: 0", b"stride: 0", b"dilation: 9", b"bias_term: false", b"top_k: 99",
                        b"slice_point: 1", b"offset: 5", b"order: 5", b"shape { dim: -1 dim: -1 }",
                        b"input_dim: 1000000", b"tiles: 0", b"num_axes: 7", b"end_axis: -9"])
    opens = [m.end() for m in re.finditer(rb"\{", data)]
    if not opens:
        return data + b"\n" + extra
    pos = rng.choice(opens)
    return data[:pos] + b" " + extra + b" " + data[pos:]


_TEXT_MUTATORS = [_m_number, _m_number, _m_delete_line, _m_duplicate_line, _m_swap_lines, _m_type, _m_type,
                  _m_blob_name, _m_bytes, _m_truncate, _m_crlf, _m_field, _m_field]


def mutate_binary(data, rng):
    """Truncate, bit-flip, overwrite, insert or delete bytes of a caffemodel."""
    b = bytearray(data)
    op = rng.randrange(6)
    if op == 0:
        return bytes(b[:rng.randrange(len(b) + 1)])
    for _ in range(rng.randint(1, 8)):
        if not b:
            break
        pos = rng.randrange(len(b))
        if op == 1:
            b[pos] ^= 1 << rng.randrange(8)
        elif op == 2:
            b[pos] = rng.choice([0x00, 0xff, 0x7f, 0x80, rng.randrange(256)])
        elif op == 3:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 4:
            del b[pos:pos + rng.randint(1, 16)]
        else:  # a header region: the first bytes of the message hold names, tags and lengths
            b[rng.randrange(min(len(b), 64))] ^= 1 << rng.randrange(8)
    return bytes(b)


def random_net(rng, n_layers=None):
    """A random NetParameter: an Input layer, then layers of random types, params and wiring."""
    caffe_pb2 = pb2()
    net = caffe_pb2.NetParameter(name="fuzz")
    if rng.random() < 0.15:  # legacy input declaration
        net.input.append("data")
        net.input_dim.extend(rng.choice([[1, 3, 8, 8], [1, 2, 5, 7], [2, 4, 1, 1], [1, 4, 6, 6], [1, 3, 9, 9],
                                         [1, 1, 6, 6], [1, 3, -1, 8], [1, 0, 4, 4]]))
    else:
        inp = net.layer.add(name="data", type="Input")
        inp.top.append("data")
        valid = [[1, 3, 8, 8], [1, 4, 6, 6], [2, 6], [1, 6, 12, 10], [2, 4, 5, 5], [3], [1, 2, 7, 7]]
        inp.input_param.shape.add().dim.extend(rng.choice(valid) if rng.random() < 0.85 else rng.choice([[1, 3, 8, 8], [1, 4, 6, 6], [2, 6], [1, 6, 12, 10],
                                                           [2, 4, 5, 5], [3], [1, 3, 8, 8], [1, 2, 7, 7],
                                                           [1, 3, 10 ** 6, 10 ** 6],
                                                           [1, 8, 9, 9, 2], [1, 3, 0, 3]]))
    blobs = ["data"]
    for i in range(n_layers if n_layers is not None else rng.randint(1, 12)):
        # mostly well-formed wiring (so that deep layers are reached), sometimes broken on purpose
        name = f"l{i}" if rng.random() < 0.99 else rng.choice([f"l{max(i - 1, 0)}", "data"])
        ltype = rng.choice(LAYER_TYPES if rng.random() < 0.1 else _BODY_TYPES)
        L = net.layer.add(name=name, type=ltype)
        if rng.random() < 0.1:  # any count: Caffe's blob-count rules must catch what is wrong
            n_bottoms, n_tops = rng.randint(0, 3), rng.randint(0, 2)
        else:
            n_bottoms, n_tops = _ARITY.get(ltype, (1, 1))
            n_bottoms, n_tops = rng.choice(n_bottoms) if isinstance(n_bottoms, tuple) else n_bottoms, \
                rng.choice(n_tops) if isinstance(n_tops, tuple) else n_tops
        for _ in range(n_bottoms):
            L.bottom.append(rng.choice(blobs) if rng.random() < 0.99 else rng.choice(["nowhere", f"t{i + 1}"]))
        for j in range(n_tops):
            r = rng.random()
            if r < 0.75 or (r < 0.98 and j >= len(L.bottom)):
                L.top.append(f"t{i}_{j}" if j else f"t{i}")
            elif r < 0.98:
                L.top.append(L.bottom[j])  # in place
            else:
                L.top.append(rng.choice(blobs))  # usually a duplicate top: must be a GraphError
        _random_params(L, rng)
        if not ltype.endswith("Loss") and ltype not in ("Accuracy", "Silence") or rng.random() < 0.1:
            blobs.extend(L.top)
    return net


def _random_params(L, rng):
    def small():
        return rng.choice([0, 1, 1, 2, 3, 5, 2 ** 31, 10 ** 9])

    t = L.type
    if t in ("Convolution", "Deconvolution", "ConvolutionDepthwise"):
        p = L.convolution_param
        p.num_output = rng.choice([1, 2, 4, 6, 0, 2000000000])
        p.kernel_size.append(small())
        if rng.random() < 0.3:
            p.stride.append(small())
        if rng.random() < 0.3:
            p.pad.append(small())
        if rng.random() < 0.2:
            p.group = rng.choice([1, 2, 3])
        if rng.random() < 0.1:
            p.axis = rng.choice([0, 2, -1])
        if rng.random() < 0.1:
            p.engine = p.CUDNN
            p.dilation.append(2)
    elif t == "Pooling":
        p = L.pooling_param
        if rng.random() < 0.2:
            p.global_pooling = True
            if rng.random() < 0.5:
                p.pad = 1
        else:
            p.kernel_size = small()
            p.stride = rng.choice([1, 2, 3, 0])
            if rng.random() < 0.3:
                p.pad = rng.choice([0, 1, 2])
        if rng.random() < 0.2:
            p.ceil_mode = rng.random() < 0.5
        if rng.random() < 0.2:
            p.round_mode = rng.choice([p.CEIL, p.FLOOR])
        p.pool = rng.choice([p.MAX, p.AVE])
        if rng.random() < 0.2:
            p.engine = p.CUDNN
    elif t == "InnerProduct":
        L.inner_product_param.num_output = rng.choice([1, 10, 0, 2000000000])
        L.inner_product_param.axis = rng.choice([1, 1, 0, 3, -1, 9])
    elif t in ("Concat", "Softmax", "Flatten", "Slice", "Reduction", "Tile", "Crop", "ArgMax", "Scale", "Bias"):
        sub = {"Concat": "concat_param", "Softmax": "softmax_param", "Flatten": "flatten_param",
               "Slice": "slice_param", "Reduction": "reduction_param", "Tile": "tile_param",
               "Crop": "crop_param", "ArgMax": "argmax_param", "Scale": "scale_param", "Bias": "bias_param"}[t]
        getattr(L, sub).axis = rng.choice([0, 1, 2, 3, -1, -5, 7])
        if t == "Slice" and rng.random() < 0.5:
            L.slice_param.slice_point.extend(sorted(rng.sample(range(0, 6), rng.randint(1, 3))))
        if t == "Tile":
            L.tile_param.tiles = rng.choice([0, 1, 2, 10 ** 9])
        if t == "Crop" and rng.random() < 0.5:
            L.crop_param.offset.extend([rng.choice([0, 1, 5])] * rng.randint(1, 4))
        if t == "ArgMax":
            L.argmax_param.top_k = rng.choice([1, 2, 100])
        if t in ("Scale", "Bias") and rng.random() < 0.5:
            getattr(L, sub).num_axes = rng.choice([-2, -1, 0, 1, 5])
    elif t == "Reshape":
        L.reshape_param.shape.dim.extend(rng.choice([[0, -1], [-1, -1], [1, 2, 3], [0, 0, 0, 0, 0], [-3], [0, 10 ** 12]]))
    elif t == "Permute":
        L.permute_param.order.extend(rng.choice([[0, 2, 3, 1], [0, 0], [5], [3, 2, 1, 0]]))
    elif t == "DummyData":
        L.dummy_data_param.shape.add().dim.extend(rng.choice([[1, 3, 4, 4], [-1], [10 ** 7, 10 ** 7]]))


def seed_files(root):
    """The real prototxts and caffemodels to mutate: (zoo prototxts, [(prototxt, caffemodel)])."""
    import glob

    zoo = sorted(glob.glob(os.path.join(root, "zoo", "*", "*.prototxt")))
    pairs = []
    for d in sorted(glob.glob(os.path.join(root, "caffe-ref", "*", ""))):
        p = d + "deploy.prototxt" if os.path.exists(d + "deploy.prototxt") else d + "train_test_input.prototxt"
        if os.path.exists(p) and os.path.exists(d + "weights.caffemodel"):
            pairs.append((p, d + "weights.caffemodel"))
    return zoo, pairs


def random_text(rng):
    """Random prototxt-like text built from Caffe's tokens."""
    toks = [b"layer", b"layers", b"{", b"}", b"name:", b"type:", b"bottom:", b"top:", b'"a"', b'"b"', b'"Input"',
            b'"Convolution"', b"input_param", b"shape", b"dim:", b"1", b"-1", b"3", b"convolution_param",
            b"num_output:", b"kernel_size:", b"input:", b"input_dim:", b"\n", b"#", b"CONVOLUTION", b"\xff", b"\r\n"]
    return b" ".join(rng.choice(toks) for _ in range(rng.randint(0, 60)))
