"""Caffe's float32 fields (eps, moving_average_fraction, ...) shown as the shortest decimal that is
the same float32: ``1e-05``, not the float64 reading ``9.999999747378752e-06``."""
from __future__ import annotations

import numpy as np


def float32_text(x):
    """The shortest text of ``x`` read as a float32: '1e-05', '0.999', '0.001'."""
    return str(np.float32(x))


def shortest_float32(x):
    """``x`` as the Python float of its shortest float32 text (JSON then writes it the same way)."""
    return float(float32_text(x))


__all__ = ["float32_text", "shortest_float32"]
