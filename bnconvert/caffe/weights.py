"""Matching caffemodel blobs to the net's layers, by layer name, as Caffe's copy_from does."""
from __future__ import annotations

import math

import numpy as np

from ..errors import WeightMismatchError
from .fastblobs import blob_array, stored_shape
from .io import is_legacy_blob
from .upgrade import upgrade_v1

# Layers whose weights are never used at inference, or that have none.
_NO_WEIGHTS = {"Input", "Data", "ImageData", "HDF5Data", "MemoryData", "DummyData", "WindowData"}


def _legacy4(shape):
    s = tuple(shape)
    return (1,) * (4 - len(s)) + s if len(s) <= 4 else None


def _fit(arr, expected, legacy):
    """Reshape a loaded blob to the expected shape when Caffe would accept it."""
    if tuple(arr.shape) == tuple(expected):
        return arr
    if legacy and _legacy4(expected) == tuple(arr.shape):
        return arr.reshape(expected)
    if len(expected) == 0 and arr.size == 1:
        return arr.reshape(())
    return None


def attach_weights(net, model, model_path, *, allow_missing=False, store=None):
    """Copy each layer's blobs from the caffemodel ``model`` (a NetParameter) into ``net``.

    With ``store`` (from :func:`bnconvert.caffe.fastblobs.read_caffemodel_blobs`), ``model`` is the
    data-less skeleton and the blob values are zero-copy views taken from the store.

    A misshapen blob is an error naming the layer and both shapes. Layers that need weights and
    have none are an error listing all of them (unless ``allow_missing``). Caffemodel layers the
    net does not use are recorded in ``net.unused_weights``.
    """
    upgrade_v1(model, model_path)
    net.weights_path = str(model_path)
    by_name, position = {}, {}
    for pos, lp in enumerate(model.layer):  # upgrade_v1 keeps the layer order, so positions hold
        if lp.name in by_name and len(lp.blobs):
            net.warn(f"caffemodel has two layers named '{lp.name}'; the last one is used, as Caffe does")
        if len(lp.blobs) or lp.name not in by_name:
            by_name[lp.name] = lp
            position[lp.name] = pos
    used = set()
    missing = []
    for L in net.layers:
        src = by_name.get(L.name)
        expected = getattr(L, "param_shapes", None)
        if src is None or not len(src.blobs):
            if expected:
                missing.append((L.name, L.type))
            continue
        used.add(L.name)
        where = dict(file=model_path, layer=L.name, layer_type=L.type)
        if src.type and L.type and src.type != L.type:
            net.warn(f"layer '{L.name}' is {L.type} in the prototxt but {src.type} in the caffemodel")
        flats = [store.get(position[L.name], i) if store is not None else None for i in range(len(src.blobs))]
        if expected is not None and len(src.blobs) != len(expected):
            got = [tuple(stored_shape(b, f)) for b, f in zip(src.blobs, flats)]
            raise WeightMismatchError(
                f"the caffemodel has {len(src.blobs)} blob(s) for this layer {got} but the prototxt defines "
                f"{len(expected)} {[tuple(s) for s in expected]} (Caffe refuses this too)", **where,
                hint="check bias_term and that the caffemodel belongs to this prototxt")
        blobs = []
        for i, (b, flat) in enumerate(zip(src.blobs, flats)):
            if expected is not None:
                got = stored_shape(b, flat)
                if _fit(_ShapeOnly(got), expected[i], is_legacy_blob(b)) is None:
                    raise WeightMismatchError(
                        f"blob {i} has shape {tuple(got)} in the caffemodel but the prototxt needs {tuple(expected[i])}",
                        **where, hint="the caffemodel may belong to another net or another input size")
            arr = blob_array(b, flat, **where)
            if expected is not None:
                arr = _fit(arr, expected[i], is_legacy_blob(b))
            blobs.append(arr)
        L.blobs = blobs
    if missing and not allow_missing:
        raise _missing_error(missing, used, by_name, model_path)
    for n, t in missing:
        net.warn(f"layer '{n}' ({t}) has no weights in the caffemodel")
    warn_suspicious_values(net)
    net_names = {L.name for L in net.layers}
    all_names = {lp.name for lp in net.param.layer}
    for lp in model.layer:
        if not len(lp.blobs) or lp.name in used:
            continue
        if lp.name in net_names:
            reason = "not used"
        elif lp.name in all_names:
            reason = f"layer is not part of the {net.phase} inference graph"
        else:
            reason = "no layer of this name in the prototxt"
        net.unused_weights.append((lp.name, lp.type, reason))
        net.warn(f"caffemodel layer '{lp.name}' ({lp.type}, {len(lp.blobs)} blobs) is not converted: {reason}")


def _listing(items, limit=8):
    items = list(items)
    text = ", ".join(items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _missing_error(missing, used, by_name, model_path):
    """One error listing every layer without weights, and what the caffemodel holds instead."""
    listing = _listing(f"{n} (type {t})" for n, t in missing)
    with_blobs = [n for n, lp in by_name.items() if len(lp.blobs)]
    if not used and with_blobs:
        return WeightMismatchError(
            f"no layer name matches: the prototxt's layers {listing} have no weights, and the caffemodel's "
            f"{len(with_blobs)} layer(s) with weights are named {_listing(with_blobs)}", file=model_path,
            hint="this caffemodel belongs to another net; pass the one trained with this prototxt")
    unmatched = [n for n in with_blobs if n not in used]
    extra = f"; unmatched caffemodel layers: {_listing(unmatched)}" if unmatched else ""
    return WeightMismatchError(f"no weights in the caffemodel for {len(missing)} layer(s): {listing}{extra}",
                               file=model_path,
                               hint="check that the caffemodel was trained with this prototxt (layers are matched "
                                    "by name), or rename the layers")


class _ShapeOnly:
    """Shape carrier so blob shapes can be checked before their data is copied."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.size = math.prod(self.shape)

    def reshape(self, shape):
        return _ShapeOnly(shape)


def warn_suspicious_values(net):
    """Warn (on ``net.warnings``, hence in ``--report``) about values that make Caffe's own output
    NaN or meaningless: NaN/infinite weights, and BatchNorm statistics, factors or eps that are
    NaN or negative. The model still converts: it computes what Caffe computes."""
    for L in net.layers:
        for i, b in enumerate(L.blobs):
            if L.type == "BatchNorm" and i > 0:
                continue  # the variance and the factor: checked (as statistics) below
            bad = int(b.size - np.count_nonzero(np.isfinite(b)))
            if bad:
                net.warn(f"layer '{L.name}' ({L.type}): weight blob {i} holds {bad} NaN or infinite value(s) "
                         f"of {b.size}; Caffe computes with them as they are")
        if L.type == "BatchNorm":
            for msg in _batchnorm_problems(L):
                net.warn(f"layer '{L.name}' (BatchNorm): {msg}")


def _batchnorm_problems(L):
    eps = float(L.param.batch_norm_param.eps)
    out = []
    if not eps >= 0:
        out.append(f"eps is {eps:g} (negative or NaN): where variance + eps < 0, Caffe's output is NaN")
    if len(L.blobs) < 3 or not np.asarray(L.blobs[2]).size:
        return out
    s = float(np.asarray(L.blobs[2]).ravel()[0])
    if not s >= 0:
        out.append(f"the moving-average factor (blob 2) is {s:g} (negative or NaN); the statistics are the "
                   f"blobs divided by it, as in Caffe")
        return out
    k = 0.0 if s == 0 else 1.0 / s
    with np.errstate(all="ignore"):  # what overflows or is NaN is reported here, not by numpy on stderr
        var = np.asarray(L.blobs[1], np.float64) * k
        n_nan, n_neg = int(np.isnan(var).sum()), int((var < 0).sum())
        stats = np.concatenate([np.asarray(L.blobs[0], np.float64).ravel() * k, var.ravel()]).astype(np.float32)
        n_inf = int(np.isinf(stats).sum())
    if n_nan or n_neg:
        out.append(f"the variance has {n_nan} NaN and {n_neg} negative value(s) of {var.size}; where "
                   f"variance + eps < 0 or NaN, Caffe's output is NaN")
    if n_inf:
        out.append(f"{n_inf} mean/variance value(s) overflow float32 once divided by the factor {s:g} "
                   f"(infinite in float32)")
    return out
