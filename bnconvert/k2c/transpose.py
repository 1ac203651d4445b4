"""Moving a blob's axes: Caffe ``Permute`` where the target has it, exact BVLC-only layers otherwise.

BVLC Caffe has no ``Permute`` layer (it is in weiliu89/caffe's SSD fork and in OpenCV dnn). The
axis orders keras2caffe needs are rotations of the non-batch axes, ``(0, k+1, ..., r-1, 1, ..., k)``:
per sample, the transpose of an ``A x B`` matrix (``A`` = the product of axes 1..k, ``B`` of the
others). For ``--target caffe`` that becomes, with no arithmetic at all, so exactly:

- ``Reshape`` to ``[N, A, B, 1]``;
- ``Slice`` into ``A`` pieces ``[N, 1, B, 1]`` along axis 1, ``Concat`` along axis 3 into
  ``[N, 1, B, A]`` (element ``(b, a)`` at ``b * A + a``), or, when ``B < A``, ``Slice`` into ``B``
  pieces ``[N, A, 1, 1]`` along axis 2 and ``Concat`` along axis 1 into ``[N, B * A, 1, 1]``;
- ``Reshape`` to the permuted shape.

Any other order is refused for that target, naming the Keras layer.
"""
from __future__ import annotations

import math

from ..errors import ConversionError

MAX_PIECES = 4096  # Slice tops one transpose may use


def rotation_split(order):
    """k when ``order`` is ``(0, k+1, ..., r-1, 1, ..., k)`` with 0 < k < r-1, else None."""
    r = len(order)
    for k in range(1, r - 1):
        if tuple(order) == (0,) + tuple(range(k + 1, r)) + tuple(range(1, k + 1)):
            return k
    return None


def permute_blob(eng, name, bottom, shape, order):
    """The top holding Caffe blob ``bottom`` (shape ``shape``) with its axes in ``order``."""
    order = [int(d) for d in order]
    if eng.target != "caffe":
        return eng.add_layer(name, "Permute", [bottom], None, (), dict(permute_param=dict(order=order)))
    k = rotation_split(order)
    if k is None:
        raise _refusal(eng, f"it would need a Permute with order {order}, which is not a transpose of two axis "
                            f"groups")
    a, b = math.prod(shape[1:k + 1]), math.prod(shape[k + 1:])
    dims = [0] + [int(shape[i]) for i in order[1:]]
    if a == 1 or b == 1:  # the same element order
        return eng.add_layer(name, "Reshape", [bottom], None, (), dict(reshape_param=dict(shape=dict(dim=dims))))
    if min(a, b) > MAX_PIECES:
        raise _refusal(eng, f"it would need a Permute of a {a}x{b} matrix per sample; the exact Slice+Concat "
                            f"form would take {min(a, b)} Slice tops (more than {MAX_PIECES})")
    t = eng.add_layer(f"{name}/mat", "Reshape", [bottom], None, (),
                      dict(reshape_param=dict(shape=dict(dim=[0, a, b, 1]))))
    axis, cat_axis, n = (1, 3, a) if a <= b else (2, 1, b)
    pieces = [eng.unique_layer_name(f"{name}/part{i}") for i in range(n)]
    eng.add_layer(f"{name}/slice", "Slice", [t], pieces, (), dict(slice_param=dict(axis=axis)))
    t = eng.add_layer(f"{name}/cat", "Concat", pieces, None, (), dict(concat_param=dict(axis=cat_axis)))
    return eng.add_layer(name, "Reshape", [t], None, (), dict(reshape_param=dict(shape=dict(dim=dims))))


def _refusal(eng, why):
    layer, layer_type = eng.current_layer or (None, None)
    return ConversionError(f"BVLC Caffe has no Permute layer and {why}, so --target caffe cannot hold this layer",
                           file=eng.path, layer=layer, layer_type=layer_type,
                           hint="use --target opencv (OpenCV dnn has Permute)")
