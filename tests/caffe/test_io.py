"""bnconvert.caffe.io: reading damaged text and binary files, blob limits, atomic writes."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from bnconvert.caffe import load_net
from bnconvert.caffe import io as cio
from bnconvert.errors import ConversionError, OutputError, ParseError, ShapeError

from ._nets import TINY, tiny_with_weights, write


def _layers(net):
    return [(lp.name, lp.type, list(lp.bottom), list(lp.top)) for lp in net.layer]


# --- text -------------------------------------------------------------------------------


@pytest.mark.parametrize("newline", [b"\r\n", b"\r"])
def test_crlf_and_cr_line_endings_read_like_lf(tmp_path, newline):
    lf = cio.read_prototxt(write(tmp_path, TINY, "lf.prototxt"))
    other = cio.read_prototxt(write(tmp_path, TINY.encode().replace(b"\n", newline), "crlf.prototxt"))
    assert _layers(other) == _layers(lf)


def test_utf8_bom_is_accepted(tmp_path):
    net = cio.read_prototxt(write(tmp_path, b"\xef\xbb\xbf" + TINY.encode()))
    assert net.name == "tiny"


def test_non_utf8_name_is_an_error_with_line_column_and_layer(tmp_path):
    text = TINY.encode().replace(b'name: "fc"', b'name: "f\xe9"')
    with pytest.raises(ParseError) as ei:
        cio.read_prototxt(write(tmp_path, text))
    e = ei.value
    assert (e.line, e.column) == (9, 17)
    assert "not UTF-8" in str(e) and "0xe9" in str(e) and "net.prototxt" in str(e)
    assert e.layer_type == "InnerProduct"


def test_non_utf8_inside_a_comment_is_tolerated(tmp_path):
    text = TINY.encode().replace(b'name: "tiny"', b'name: "tiny"  # caf\xe9 (latin-1 comment)')
    assert cio.read_prototxt(write(tmp_path, text)).name == "tiny"


def test_utf16_file_is_named_as_such(tmp_path):
    with pytest.raises(ParseError, match="UTF-16"):
        cio.read_prototxt(write(tmp_path, TINY.encode("utf-16")))


def test_binary_passed_as_prototxt(tmp_path):
    _, model = tiny_with_weights(tmp_path)
    with pytest.raises(ParseError, match="binary file"):
        cio.read_prototxt(model)


def test_syntax_error_gives_line_column_and_enclosing_layer(tmp_path):
    text = TINY.replace('pool: MAX kernel_size: 2', 'pool: MAX kernel_size 2')
    with pytest.raises(ParseError) as ei:
        cio.read_prototxt(write(tmp_path, text))
    e = ei.value
    assert e.line == 8 and e.column is not None
    assert (e.layer, e.layer_type) == ("pool1", "Pooling")
    assert "line 8, column" in str(e) and "layer 'pool1' (type Pooling)" in str(e)


def test_unknown_field_names_field_layer_and_fix(tmp_path):
    text = TINY.replace("num_output: 4", "num_output: 4 bogus_field: 3")
    with pytest.raises(ParseError) as ei:
        cio.read_prototxt(write(tmp_path, text))
    msg = str(ei.value)
    assert 'no field named "bogus_field"' in msg and "layer 'conv1' (type Convolution)" in msg
    assert ei.value.hint and "Fix:" in msg and ei.value.line == 4


def test_unknown_enum_names_value_and_layer(tmp_path):
    with pytest.raises(ParseError) as ei:
        cio.read_prototxt(write(tmp_path, TINY.replace("pool: MAX", "pool: MAXIMUM")))
    assert "MAXIMUM" in str(ei.value) and ei.value.layer == "pool1" and ei.value.line == 8


def test_error_outside_layers_names_no_layer(tmp_path):
    with pytest.raises(ParseError) as ei:
        cio.read_prototxt(write(tmp_path, "name: tiny\n" + TINY))
    assert ei.value.layer is None and ei.value.line == 1


def test_v1_enum_type_is_found_for_messages(tmp_path):
    text = 'layers {\n name: "c"\n type: CONVOLUTION\n convolution_param { num_output: x }\n}\n'
    with pytest.raises(ParseError) as ei:
        cio.read_prototxt(write(tmp_path, text))
    assert (ei.value.layer, ei.value.layer_type, ei.value.line) == ("c", "CONVOLUTION", 4)


def test_enclosing_layer_ignores_braces_in_strings_and_comments():
    text = 'layer { name: "a}{" # } {\n type: "X" }\nlayer {\n name: "b"\n type: "Y"\n}\n'
    assert cio.enclosing_layer(text, 2) == ("a}{", "X")
    assert cio.enclosing_layer(text, 5) == ("b", "Y")
    assert cio.enclosing_layer("name: 'x'\n", 1) == (None, None)


@pytest.mark.parametrize("make", [lambda p: None, lambda p: p.mkdir()])
def test_missing_file_or_directory(tmp_path, make):
    p = tmp_path / "x.prototxt"
    make(p)
    with pytest.raises(ParseError) as ei:
        cio.read_prototxt(p)
    assert str(p) in str(ei.value)


# --- binary ------------------------------------------------------------------------------


def test_empty_caffemodel(tmp_path):
    proto, _ = tiny_with_weights(tmp_path)
    empty = write(tmp_path, b"", "empty.caffemodel")
    with pytest.raises(ParseError, match="empty") as ei:
        load_net(proto, empty)
    assert ei.value.file == empty


def test_prototxt_passed_as_caffemodel(tmp_path):
    proto, _ = tiny_with_weights(tmp_path)
    with pytest.raises(ParseError, match="text prototxt"):
        cio.read_caffemodel(proto)


def test_caffemodel_cut_at_many_offsets(tmp_path):
    """Every strict prefix is an error, or (cut between whole layers) loads the same blobs."""
    proto, model = tiny_with_weights(tmp_path)
    data = open(model, "rb").read()
    full = {L.name: L.blobs for L in load_net(proto, model).layers}
    cut = str(tmp_path / "cut.caffemodel")
    errors = 0
    offsets = sorted(set(range(0, len(data), 4)) | set(range(max(0, len(data) - 16), len(data))))
    for n in offsets:
        with open(cut, "wb") as f:
            f.write(data[:n])
        try:
            net = load_net(proto, cut)
        except ConversionError as e:
            errors += 1
            assert e.file == cut, str(e)
            continue
        for L in net.layers:
            assert len(L.blobs) == len(full[L.name]), L.name
            for a, b in zip(L.blobs, full[L.name]):
                np.testing.assert_array_equal(a, b)
    assert errors >= len(offsets) - 5


def test_caffemodel_with_flipped_bytes(tmp_path):
    """Each byte flipped in turn: a ConversionError, or protobuf accepted it and every blob fits."""
    proto, model = tiny_with_weights(tmp_path)
    data = bytearray(open(model, "rb").read())
    bad = str(tmp_path / "bad.caffemodel")
    outcomes = {"error": 0, "loaded": 0}
    for i in range(0, len(data), 3):
        flipped = bytearray(data)
        flipped[i] ^= 0xFF
        with open(bad, "wb") as f:
            f.write(flipped)
        try:
            net = load_net(proto, bad)
        except ConversionError as e:
            outcomes["error"] += 1
            assert e.file == bad
            continue
        outcomes["loaded"] += 1
        for L in net.layers:
            assert [tuple(b.shape) for b in L.blobs] == [tuple(s) for s in L.param_shapes]
    assert outcomes["error"] > 0 and outcomes["loaded"] > 0, outcomes


def test_corrupted_layer_name_in_caffemodel_does_not_crash(tmp_path):
    proto, model = tiny_with_weights(tmp_path)
    data = open(model, "rb").read().replace(b"conv1", b"c\xffnv1", 1)
    bad = write(tmp_path, data, "bad.caffemodel")
    with pytest.raises(ConversionError) as ei:
        load_net(proto, bad)
    assert "conv1 (type Convolution)" in str(ei.value)


# --- blobs and limits ---------------------------------------------------------------------


def test_check_shape_refuses_absurd_and_negative():
    assert cio.check_shape((2, 3)) == 6
    with pytest.raises(ShapeError, match="1,000,000,000,000 elements"):
        cio.check_shape((10 ** 6, 10 ** 6))
    with pytest.raises(ShapeError, match="negative"):
        cio.check_shape((3, -1))


def test_blob_with_absurd_declared_shape_is_refused_before_allocation():
    blob = cio.pb2().BlobProto()
    blob.shape.dim.extend([10 ** 6, 10 ** 6])
    with pytest.raises(ShapeError, match="over the limit"):
        cio.blob_to_array(blob, layer="x", layer_type="Convolution")


def test_blob_count_mismatch_and_legacy_negative():
    blob = cio.array_to_blob(np.ones((2, 3), np.float32))
    del blob.data[-1]
    with pytest.raises(ShapeError, match=r"declares shape \(2, 3\) \(6 values\) but holds 5"):
        cio.blob_to_array(blob)
    legacy = cio.pb2().BlobProto(num=-1, channels=2, height=1, width=1)
    with pytest.raises(ShapeError, match="negative"):
        cio.blob_to_array(legacy)


# --- atomic writes ----------------------------------------------------------------------


def _leftovers(d):
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_atomic_write_replaces_and_respects_umask(tmp_path):
    p = tmp_path / "out.bin"
    p.write_bytes(b"old")
    old = os.umask(0o022)
    try:
        cio.atomic_write(p, b"new")
    finally:
        os.umask(old)
    assert p.read_bytes() == b"new" and _leftovers(tmp_path) == []
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_atomic_write_failure_in_rename_leaves_old_file(tmp_path, monkeypatch):
    p = tmp_path / "out.bin"
    p.write_bytes(b"old")

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cio.os, "replace", boom)
    with pytest.raises(OutputError, match="No space left") as ei:
        cio.atomic_write(p, b"new")
    assert ei.value.file == str(p)
    assert p.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_atomic_write_failure_mid_write_leaves_nothing(tmp_path):
    p = tmp_path / "new.bin"
    with pytest.raises(TypeError):
        cio.atomic_write(p, object())  # not bytes: fails inside write()
    assert not p.exists() and _leftovers(tmp_path) == []
    q = tmp_path / "old.bin"
    q.write_bytes(b"old")
    with pytest.raises(TypeError):
        cio.atomic_write(q, ["not", "bytes"])
    assert q.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_write_prototxt_of_unserializable_net_leaves_nothing(tmp_path, monkeypatch):
    p = tmp_path / "o.prototxt"
    monkeypatch.setattr(cio, "prototxt_text", lambda net: (_ for _ in ()).throw(ValueError("cannot serialize")))
    with pytest.raises(ValueError):
        cio.write_prototxt(cio.pb2().NetParameter(), p)
    assert not p.exists()


def test_output_in_missing_directory(tmp_path):
    p = tmp_path / "nope" / "out.caffemodel"
    with pytest.raises(OutputError, match="does not exist") as ei:
        cio.write_caffemodel(cio.pb2().NetParameter(), p)
    assert "mkdir -p" in str(ei.value) and not p.parent.exists()


def test_output_under_a_file_or_onto_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"x")
    with pytest.raises(OutputError, match="not a directory"):
        cio.atomic_write(f / "out.bin", b"data")
    with pytest.raises(OutputError, match="is a directory"):
        cio.atomic_write(tmp_path, b"data")
    assert f.read_bytes() == b"x" and _leftovers(tmp_path) == []


def test_output_in_read_only_directory(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: directory permissions do not stop writes")
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="cannot write"):
            cio.atomic_write(d / "out.bin", b"data")
        assert list(d.iterdir()) == []
    finally:
        d.chmod(0o755)
