"""The zero-copy caffemodel reader agrees with protobuf's own parse, and fails as cleanly."""
import numpy as np
import pytest

from helpers import need_shared

from bnconvert.caffe.fastblobs import blob_array, blob_bytes, read_caffemodel_blobs, split_caffemodel
from bnconvert.caffe.io import array_to_blob, blob_to_array, pb2, read_caffemodel
from bnconvert.errors import ConversionError, ParseError


def _compare(path):
    full = read_caffemodel(path)
    skel, store = read_caffemodel_blobs(path)
    layers_full = full.layer or full.layers
    layers_skel = skel.layer or skel.layers
    assert [lp.name for lp in layers_full] == [lp.name for lp in layers_skel]
    n = 0
    for i, (a, b) in enumerate(zip(layers_full, layers_skel)):
        assert len(a.blobs) == len(b.blobs)
        for j, (ba, bb) in enumerate(zip(a.blobs, b.blobs)):
            np.testing.assert_array_equal(blob_to_array(ba), blob_array(bb, store.get(i, j)))
            n += 1
    return n


def test_agrees_with_protobuf_on_real_caffe_files():
    root = need_shared("caffe-ref")
    total = sum(_compare(p) for p in sorted(root.glob("*/weights.caffemodel")))
    assert total > 100


def test_v1_legacy_double_and_unpacked_blobs(tmp_path):
    net = pb2().NetParameter(name="n")
    v1 = net.layers.add(name="ip", type=pb2().V1LayerParameter.INNER_PRODUCT)
    b = v1.blobs.add(num=1, channels=1, height=2, width=3)
    b.data.extend([1, 2, 3, 4, 5, 6])
    d = v1.blobs.add()
    d.shape.dim.append(2)
    d.double_data.extend([0.5, -1.5])
    p = tmp_path / "v1.caffemodel"
    p.write_bytes(net.SerializeToString())
    assert _compare(p) == 2
    # A float blob written unpacked (legal protobuf) stays in the skeleton and still reads right.
    raw = pb2().BlobProto()
    raw.shape.dim.append(3)
    payload = b"".join(b"\x2d" + np.float32(v).tobytes() for v in (1, 2, 3))  # field 5, fixed32, unpacked
    layer = pb2().LayerParameter(name="x", type="Scale")
    blob_msg = raw.SerializeToString() + payload
    data = pb2().NetParameter(name="u").SerializeToString() + _field(100, layer.SerializeToString() + _field(7, blob_msg))
    skel, store = split_caffemodel(bytearray(data))
    np.testing.assert_array_equal(blob_array(skel.layer[0].blobs[0], store.get(0, 0)), [1, 2, 3])


def _field(num, payload):
    from bnconvert.caffe.fastblobs import _encode_varint

    return _encode_varint((num << 3) | 2) + _encode_varint(len(payload)) + payload


def test_blob_bytes_equals_protobuf_serialization():
    a = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    ref = pb2().BlobProto()
    ref.shape.dim.extend(a.shape)
    ref.data.extend(a.ravel().tolist())
    assert blob_bytes(a) == ref.SerializeToString()
    assert array_to_blob(a).SerializeToString() == ref.SerializeToString()


@pytest.mark.parametrize("cut", [1, 7, 100, 1000, -5])
def test_truncated_files_are_parse_errors(tmp_path, cut):
    src = need_shared("caffe-ref") / "bn_factor" / "weights.caffemodel"
    data = src.read_bytes()
    p = tmp_path / "cut.caffemodel"
    p.write_bytes(data[:cut])
    try:
        read_caffemodel_blobs(p)
    except ConversionError as e:
        assert isinstance(e, ParseError) and str(p) in str(e)


# --- the wire forms protobuf accepts for a blob's values (issue 12 §6) --------------------------

def _blob_bytes(*fields, dims=(2, 3)):
    """A BlobProto's bytes from raw value fields (each (field, wire type, payload)), then its shape."""
    from bnconvert.caffe.wire import encode_varint, wrap

    out = b""
    for num, wt, payload in fields:
        out += (wrap(num, payload) if wt == 2 else encode_varint((num << 3) | wt) + payload)
    return out + wrap(7, wrap(1, b"".join(encode_varint(d) for d in dims)))


def _model_file(tmp_path, blob):
    layer = pb2().LayerParameter(name="ip", type="InnerProduct")
    data = _field(100, layer.SerializeToString() + _field(7, blob))
    p = tmp_path / "w.caffemodel"
    p.write_bytes(pb2().NetParameter(name="u").SerializeToString() + data)
    return p


def _both_readers(p):
    """(protobuf's array, the fast reader's array) of the only blob of ``p``."""
    ref = blob_to_array(read_caffemodel(p).layer[0].blobs[0])
    skel, store = read_caffemodel_blobs(p)
    return ref, blob_array(skel.layer[0].blobs[0], store.get(0, 0))


F = np.arange(6, dtype="<f4") + 0.25
D = (np.arange(6, dtype="<f8") - 7.125) * 1e-3


@pytest.mark.parametrize("fields", [
    [(5, 2, F[:2].tobytes()), (5, 2, F[2:].tobytes())],  # packed, split in two
    [(5, 2, F[:1].tobytes()), (5, 2, b""), (5, 2, F[1:4].tobytes()), (5, 2, F[4:].tobytes())],
    [(5, 5, F[0].tobytes()), (5, 2, F[1:5].tobytes()), (5, 5, F[5].tobytes())],  # mixed packed/unpacked
    [(5, 5, v.tobytes()) for v in F],  # all unpacked
], ids=["split", "split4", "mixed", "unpacked"])
def test_split_and_unpacked_values_concatenate_like_protobuf(tmp_path, fields):
    ref, fast = _both_readers(_model_file(tmp_path, _blob_bytes(*fields)))
    np.testing.assert_array_equal(ref, F.reshape(2, 3))
    np.testing.assert_array_equal(fast, ref)


@pytest.mark.parametrize("order", ["data_first", "double_first", "double_split"])
def test_double_data_wins_over_data_as_in_caffe(tmp_path, order):
    wrong = (F * 100).tobytes()  # Caffe's Blob::FromProto ignores `data` when double_data is non-empty
    fields = {"data_first": [(5, 2, wrong), (8, 2, D.tobytes())],
              "double_first": [(8, 2, D.tobytes()), (5, 2, wrong)],
              "double_split": [(8, 2, D[:4].tobytes()), (5, 2, wrong), (8, 1, D[4].tobytes()), (8, 1, D[5].tobytes())]}
    ref, fast = _both_readers(_model_file(tmp_path, _blob_bytes(*fields[order])))
    expected = D.astype(np.float32).reshape(2, 3)
    np.testing.assert_array_equal(ref, expected)
    np.testing.assert_array_equal(fast, expected)


def test_empty_double_data_falls_back_to_data(tmp_path):
    ref, fast = _both_readers(_model_file(tmp_path, _blob_bytes((8, 2, b""), (5, 2, F.tobytes()))))
    np.testing.assert_array_equal(fast, F.reshape(2, 3))
    np.testing.assert_array_equal(ref, fast)


@pytest.mark.parametrize("fields", [
    [(5, 2, F.tobytes()), (5, 2, F.tobytes())],  # the whole field given twice: 12 values for 2x3
    [(5, 2, F.tobytes()), (5, 5, F[0].tobytes())],
])
def test_duplicated_values_that_overflow_the_shape_are_an_error(tmp_path, fields):
    from bnconvert.errors import ShapeError

    p = _model_file(tmp_path, _blob_bytes(*fields))
    skel, store = read_caffemodel_blobs(p)
    with pytest.raises(ShapeError, match=r"declares shape \(2, 3\) \(6 values\) but holds (12|7) values"):
        blob_array(skel.layer[0].blobs[0], store.get(0, 0), file=p, layer="ip")
    with pytest.raises(ShapeError, match="but holds"):
        blob_to_array(read_caffemodel(p).layer[0].blobs[0], file=p, layer="ip")


def test_fastblobs_and_io_do_not_import_each_other():
    import ast
    from pathlib import Path

    import bnconvert.caffe as pkg

    root = Path(pkg.__file__).parent

    def imports(name):
        tree = ast.parse((root / f"{name}.py").read_text())
        return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1}

    assert "io" in imports("fastblobs") and "fastblobs" not in imports("io")
    assert not imports("wire")  # the wire-format leaf imports nothing of bnconvert
