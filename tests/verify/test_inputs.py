"""verify's input files (bnconvert/verify/inputs.py, image.py): bad ones are one clear line, exit 2."""
from __future__ import annotations

import os
import struct
import zlib

import numpy as np
import pytest

from helpers import need_shared


def _bn_factor():
    d = need_shared("caffe-ref/bn_factor")
    return d / "deploy.prototxt", d / "weights.caffemodel"


def _run(capsys, *args):
    from bnconvert.cli import main

    proto, weights = _bn_factor()
    rc = main(["verify", str(proto), str(weights), *map(str, args)])
    err = capsys.readouterr().err
    return rc, err


def test_pickled_npz_is_refused_safely(tmp_path, capsys):
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    bad = tmp_path / "evil.npz"
    np.savez(bad, data=np.array([Boom()], dtype=object))
    rc, err = _run(capsys, "--input", bad)
    assert rc == 2 and not marker.exists()
    assert err.count("\n") == 1 and "pickled Python objects" in err and "internal" not in err


def test_pickled_npy_is_refused_safely(tmp_path, capsys):
    bad = tmp_path / "evil.npy"
    np.save(bad, np.array([{"a": 1}], dtype=object))
    rc, err = _run(capsys, "--input", bad)
    assert rc == 2 and err.count("\n") == 1 and "pickled Python objects" in err


def _png(width, height):
    """A valid PNG header (IHDR) whose pixels would take width*height*3 bytes, with a tiny body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        chunk(b"IEND", b"")


def test_png_bomb_is_refused_from_its_header(tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(60000, 60000))
    rc, err = _run(capsys, "--input", bomb)
    assert rc == 2 and err.count("\n") == 1
    assert "60000x60000" in err and "decompression bomb" in err


def test_image_header_sizes(tmp_path):
    import cv2

    from bnconvert.verify.image import image_size

    img = np.zeros((17, 23, 3), np.uint8)
    for ext in (".png", ".jpg", ".bmp", ".ppm"):
        p = tmp_path / f"x{ext}"
        cv2.imwrite(str(p), img)
        assert image_size(p) == (23, 17), ext


def test_fifo_as_input_is_not_a_regular_file(tmp_path, capsys):
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this platform")
    fifo = tmp_path / "in.npy"
    os.mkfifo(fifo)
    rc, err = _run(capsys, "--input", fifo)
    assert rc == 2 and err.count("\n") == 1
    assert "not a regular file" in err and "does not exist" not in err


def test_missing_and_directory_inputs(tmp_path, capsys):
    rc, err = _run(capsys, "--input", tmp_path / "none.npy")
    assert rc == 2 and "not found" in err
    rc, err = _run(capsys, "--input", tmp_path)
    assert rc == 2 and "directory" in err


def test_report_never_overwrites_an_input(tmp_path, capsys):
    proto, weights = _bn_factor()
    x = tmp_path / "x.npy"
    np.save(x, np.load(proto.parent / "input.npz")["data"])
    before = x.read_bytes()
    rc, err = _run(capsys, "--input", x, "--report", x)
    assert rc == 2 and x.read_bytes() == before and err.count("\n") == 1
