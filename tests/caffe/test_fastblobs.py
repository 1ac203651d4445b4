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
