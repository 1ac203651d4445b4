"""Comparing the Keras values with the reference's, blob by blob: the rows of the verify table.

Tolerance per blob: ``max|keras - ref| <= atol + rtol * max(1, max|ref|)``; the relative error
shown is ``max|keras - ref| / max(1, max|ref|)``.
"""
from __future__ import annotations

import numpy as np

from ..caffe.bnpair import pair_batchnorm_scale
from ..caffe.graph import INPUT_TYPES
from .result import NOT_COMPARABLE, BlobCheck


def shared_name_blobs(net):
    """The tops of layers whose name another layer also has (Caffe allows it; HED has five 'crop'), each with
    the reason it is not compared: the runtimes hand out a layer's outputs by layer name, and the Keras layer
    is found by it too, so such a blob cannot be paired unambiguously."""
    counts = {}
    for L in net.layers:
        if L.type not in INPUT_TYPES:
            counts[L.name] = counts.get(L.name, 0) + 1
    return {bid: (f"the layer name '{L.name}' is shared by {counts[L.name]} layers, and verify pairs a layer's "
                  f"reference and Keras values by its name")
            for L in net.layers if L.type not in INPUT_TYPES and counts[L.name] > 1 for bid in L.tops}


def compare(net, ref_vals, local_vals, e2e_vals, rtol, atol, not_comparable=None, row_order=None):
    """One :class:`BlobCheck` per reference blob version, in the net's layer order.

    ``local_vals`` are the Keras values of the layer check (None where it could not be made),
    ``e2e_vals`` those of the whole-model run, both by blob version id in Caffe's layout;
    ``not_comparable`` maps the blob versions where the reference is known not to be Caffe to
    the reason (their rows are marked so, never judged); ``row_order`` maps blob versions whose
    rows the reference writes in its own documented order to (function, note): the Keras values
    are put in that order before they are compared.
    """
    not_comparable, row_order = not_comparable or {}, row_order or {}
    pairs = pair_batchnorm_scale(net)
    paired_bn = {s.name: bn for bn, s in pairs.items()}
    rows = []
    for L in net.layers:
        if L.type in INPUT_TYPES:
            continue
        for bid in L.tops:
            if bid not in ref_vals:
                continue
            owner, typ = L.name, L.type
            if L.name in paired_bn:
                owner, typ = paired_bn[L.name], "BatchNorm+Scale"
            row = BlobCheck(net.caffe_name[bid], bid, owner, typ, tuple(int(d) for d in ref_vals[bid].shape),
                            is_output=bid in net.outputs)
            why = not_comparable.get(bid) or _unordered(L, ref_vals[bid])
            if why:
                row.status, row.note = NOT_COMPARABLE, why
            elif L.name in pairs:
                row.note = f"merged into the Keras layer of '{L.name}' with Scale '{pairs[L.name].name}'"
            elif bid not in e2e_vals:
                row.note = "no counterpart in the Keras model"
            else:
                local, e2e = local_vals.get(bid), e2e_vals[bid]
                if bid in row_order:
                    order, row.note = row_order[bid]
                    local, e2e = (None if local is None else order(local)), order(e2e)
                _fill(row, local, e2e, ref_vals[bid], rtol, atol)
                row.suspects = _suspects(net, bid, ref_vals, e2e_vals, paired_bn)
            rows.append(row)
    return rows


def _unordered(layer, ref):
    """Why a blob's order is not defined by Caffe, or "": DetectionOutput rows with equal scores.

    SSD's DetectionOutput ranks candidates with ``std::sort`` on the score (weiliu89/caffe,
    ``bbox_util.cpp``), which leaves the order of equal scores to the implementation; rows are
    never sorted here to make them agree, so such a blob is not compared.
    """
    if layer.type != "DetectionOutput" or ref.ndim != 4 or ref.shape[-1] != 7:
        return ""
    rows = ref.reshape(-1, 7)
    rows = rows[rows[:, 0] >= 0]
    for i in np.unique(rows[:, 0]):
        scores = rows[rows[:, 0] == i, 2]
        if len(np.unique(scores)) != len(scores):
            return "detections with equal scores: their order is left to std::sort (in Caffe and in OpenCV)"
    return ""


def _error(got, ref):
    """(max|got - ref| or inf, max(1, max|ref|), problem or "")."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    fin_r = np.isfinite(ref)
    scale = max(1.0, float(np.max(np.abs(ref[fin_r])))) if fin_r.any() else 1.0
    if got.shape != ref.shape:
        return float("inf"), scale, f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}"
    same_nonfinite = (got == ref) | (np.isnan(got) & np.isnan(ref))
    if np.any((np.isfinite(got) != fin_r) | (~fin_r & ~same_nonfinite)):
        return float("inf"), scale, "non-finite values differ"
    both = fin_r
    return (float(np.max(np.abs(got[both] - ref[both]))) if both.any() else 0.0), scale, ""


def _fill(row, local, e2e, ref, rtol, atol):
    e_err, scale, e_note = _error(e2e, ref)
    row.e2e_abs, row.e2e_rel, row.ref_max = e_err, e_err / scale, scale
    row.tol = atol + rtol * scale
    if local is not None:
        err, _, note = _error(local, ref)
        row.check = "layer"
    else:
        err, note = e_err, e_note
        row.check = "end-to-end"
    row.max_abs, row.max_rel = err, err / scale
    row.status = "ok" if err <= row.tol else "FAIL"
    if note:
        row.note = note
    if row.status == "ok" and row.is_output and e_err > row.tol:
        row.status = "FAIL"
        row.note = f"net output off end-to-end ({e_note or f'max abs error {e_err:.3g}'})"


def _suspects(net, bid, ref_vals, keras_vals, paired_bn):
    """The layers whose effect this row checks first: back through unchecked in-place versions."""
    chain = []
    b = bid
    while True:
        L = net.producer[b]
        name = paired_bn.get(L.name, L.name)
        if name not in chain:
            chain.insert(0, name)
        if L.name in paired_bn:  # the BatchNorm's own top is never compared separately
            bn = net.layer(paired_bn[L.name])
            b = bn.tops[0] if bn.tops else None
            L = bn
        prev = [x for x in L.bottoms if net.caffe_name.get(x) == net.caffe_name[b]]
        if not prev or prev[0] in net.inputs or (prev[0] in ref_vals and prev[0] in keras_vals):
            return chain
        b = prev[0]

