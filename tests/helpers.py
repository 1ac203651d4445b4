"""The one shared assertion helper and paths used by every test module."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ZOO = SHARED / "zoo"
CAFFE_REF = SHARED / "caffe-ref"


def need_shared(sub=""):
    p = SHARED / sub
    if not p.exists():
        pytest.skip(f"{p} is not present (the shared test data sits beside the repository)")
    return p


def assert_close(actual, expected, name="output", rel=1e-4):
    """Shapes must match exactly; values within max|d| <= rel * max(1, max|expected|)."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != expected {expected.shape}"
    assert np.all(np.isfinite(actual)) == np.all(np.isfinite(expected)), f"{name}: non-finite values differ"
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    err = float(np.max(np.abs(actual - expected))) if expected.size else 0.0
    assert err <= rel * scale, f"{name}: max|diff| {err:.3g} > {rel:g} * {scale:.3g}"
    return err


def pb_varint(n):
    """A protobuf varint, written here independently of bnconvert's readers (for hand-built files)."""
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def pb_field(number, wire, payload):
    """One protobuf field: wire 0 (payload already a varint), 2 (length-delimited) or 5 (4 bytes)."""
    tag = pb_varint(number << 3 | wire)
    return tag + (pb_varint(len(payload)) + payload if wire == 2 else payload)
