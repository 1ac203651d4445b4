"""Input files that are not regular files, or are absurdly large, are refused before any byte is
read (issue 12 §6, issue 14 "Scale"); ``upgrade`` validates blobs before it writes anything."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT

from ._nets import TINY, tiny_with_weights, write
from bnconvert.caffe import io as cio
from bnconvert.caffe.fastblobs import read_caffemodel_blobs
from bnconvert.errors import ParseError, ShapeError


def _cli(*args, timeout=120):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "bnconvert", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _error_line(r, command):
    lines = [ln for ln in r.stderr.strip().splitlines() if f"bnconvert {command}: error:" in ln]
    assert r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr, (r.returncode, r.stderr)
    return lines[0]


@pytest.fixture
def fifo(tmp_path):
    p = tmp_path / "pipe"
    os.mkfifo(p)
    return p


def test_fifo_refused_by_every_reader(fifo):
    # Nothing ever writes into the FIFO: a reader that opened it would block forever.
    for read in (cio.read_prototxt, cio.read_caffemodel, read_caffemodel_blobs):
        with pytest.raises(ParseError, match=r"is a FIFO \(named pipe\), not a regular file"):
            read(fifo)


def test_character_device_refused():
    with pytest.raises(ParseError, match="device, socket or other special file"):
        cio.read_prototxt("/dev/zero")  # would never end
    with pytest.raises(ParseError, match="device, socket or other special file"):
        read_caffemodel_blobs("/dev/zero")


@pytest.mark.parametrize("which", ["prototxt", "caffemodel"])
def test_fifo_refused_at_once_by_the_commands(tmp_path, fifo, which):
    proto, model = tiny_with_weights(tmp_path)
    p, m = (fifo, model) if which == "prototxt" else (proto, fifo)
    runs = {"caffe2keras": _cli("caffe2keras", p, m, "-o", tmp_path / "m.keras"),
            "inspect": _cli("inspect", p, m),
            "upgrade": _cli("upgrade", p, m, "-o", tmp_path / "u.prototxt", tmp_path / "u.caffemodel")}
    for command, r in runs.items():  # (a hang would be a subprocess.TimeoutExpired)
        assert "not a regular file" in _error_line(r, command) and str(fifo) in r.stderr
    assert not any(tmp_path.glob("u.*")) and not (tmp_path / "m.keras").exists()


def _sparse(path, size):
    with open(path, "wb") as f:
        f.truncate(size)  # a hole: no disk space, no data
    return path


@pytest.mark.parametrize("what", ["prototxt", "caffemodel"])
def test_100_gib_sparse_file_refused_from_its_size(tmp_path, what):
    p = _sparse(tmp_path / f"huge.{what}", 100 << 30)
    limit = cio.MAX_PROTOTXT_BYTES if what == "prototxt" else cio.MAX_CAFFEMODEL_BYTES
    readers = [cio.read_prototxt] if what == "prototxt" else [cio.read_caffemodel, read_caffemodel_blobs]
    for read in readers:
        with pytest.raises(ParseError, match=f"107,374,182,400 bytes, over bnconvert's limit of {limit:,}"):
            read(p)


def test_100_gib_sparse_caffemodel_refused_by_caffe2keras(tmp_path):
    proto = write(tmp_path, TINY, "tiny.prototxt")
    p = _sparse(tmp_path / "huge.caffemodel", 100 << 30)
    r = _cli("caffe2keras", proto, p, "-o", tmp_path / "m.keras")
    assert "over bnconvert's limit" in _error_line(r, "caffe2keras")


def test_limits_are_caffes_and_documented():
    assert cio.MAX_CAFFEMODEL_BYTES == 2 ** 31 - 1  # Caffe's kProtoReadBytesLimit (INT_MAX)
    readme = (ROOT / "README.md").read_text()
    assert "2 GiB" in readme and "128 MiB" in readme


def test_a_file_at_the_limit_is_read(tmp_path):
    proto = write(tmp_path, TINY + "#" * 1000 + "\n", "t.prototxt")
    assert cio.read_prototxt(proto).name == "tiny"


# --- upgrade validates the caffemodel before writing --------------------------------------------


def _bad_blob(tmp_path, fn):
    proto, model = tiny_with_weights(tmp_path)
    net = cio.read_caffemodel(model)
    fn(next(lp for lp in net.layer if lp.name == "fc").blobs[0])
    cio.write_caffemodel(net, model)
    return proto, model


@pytest.mark.parametrize("damage, needle", [
    (lambda b: b.shape.dim.__setitem__(0, 10 ** 12), "over the limit"),
    (lambda b: b.shape.dim.__setitem__(0, -5), "negative dimension"),
    (lambda b: b.data.__delitem__(slice(-3, None)), "but holds"),
], ids=["absurd", "negative", "short"])
def test_upgrade_refuses_what_caffe2keras_refuses_and_writes_nothing(tmp_path, damage, needle):
    from bnconvert.upgrade import upgrade_files

    proto, model = _bad_blob(tmp_path, damage)
    before = open(model, "rb").read()
    with pytest.raises(ShapeError, match=needle) as e:
        upgrade_files(proto, tmp_path / "u.prototxt", model, tmp_path / "u.caffemodel")
    assert "layer 'fc'" in str(e.value) and model in str(e.value)
    assert not (tmp_path / "u.prototxt").exists() and not (tmp_path / "u.caffemodel").exists()
    assert open(model, "rb").read() == before
    r = _cli("upgrade", proto, model, "-o", tmp_path / "u.prototxt", tmp_path / "u.caffemodel")
    assert needle in _error_line(r, "upgrade") and not any(tmp_path.glob("u.*"))


def test_check_caffemodel_blobs_accepts_good_files(tmp_path):
    _, model = tiny_with_weights(tmp_path)
    cio.check_caffemodel_blobs(cio.read_caffemodel(model), model)
    blob = cio.array_to_blob(np.ones((2, 3), np.float32))
    assert cio.blob_to_array(blob).shape == (2, 3)
