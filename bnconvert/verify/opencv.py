"""The OpenCV dnn reference: an independent runtime for Caffe nets, told where it is not Caffe.

OpenCV runs the inference graph rewritten by :func:`~bnconvert.verify.refnet.opencv_net`, so that
its known differences from Caffe (Axpy, InnerProduct ``transpose``, phase rules) do not reach
the comparison. Fusion is turned off, so each layer's output is its own (with fusion on, OpenCV
folds BatchNorm/Scale/ReLU into the convolution before them). The net's outputs are checked
against a plain fused forward pass.
"""
from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from ..caffe.graph import INPUT_TYPES
from .refnet import opencv_net, opencv_weights
from .references import ReferenceRun, ReferenceUnavailable

RUNTIME = "OpenCV dnn"


def run_opencv(net, caffemodel, feeds):
    """Every blob version OpenCV dnn exposes, with all tops of a layer with several."""
    try:
        import cv2
    except ImportError:
        raise ReferenceUnavailable(RUNTIME, "OpenCV ('import cv2') is not importable",
                                   hint="pip install opencv-python-headless") from None
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise ReferenceUnavailable(RUNTIME, f"OpenCV {cv2.__version__} has no Caffe importer (OpenCV 5 removed it)",
                                   hint="pip install 'opencv-python-headless<5', install pycaffe, or pass "
                                        "--reference npz:REF.npz")
    text, transposed = opencv_net(net, {k: v.shape for k, v in feeds.items()})
    with tempfile.TemporaryDirectory(prefix="bnconvert-verify-") as tmp:
        proto = Path(tmp) / "net.prototxt"
        proto.write_text(text)
        weights = Path(caffemodel)
        if transposed:
            weights = Path(tmp) / "weights.caffemodel"
            weights.write_bytes(opencv_weights(caffemodel, transposed))
        try:
            values = _all_blobs(cv2, net, proto, weights, feeds)
            warnings = _cross_check(cv2, net, proto, weights, feeds, values)
        except cv2.error as e:
            raise ReferenceUnavailable(RUNTIME, cv_reason(e)) from None
    order = {L.tops[0]: (opencv_detection_order, OPENCV_ORDER_NOTE) for L in net.layers
             if L.type == "DetectionOutput" and L.tops and L.tops[0] in values}
    return ReferenceRun(values, "opencv dnn", f"OpenCV {cv2.__version__}", warnings, row_order=order)


def _open(cv2, proto, weights, feeds, fusion):
    cvnet = cv2.dnn.readNetFromCaffe(str(proto), str(weights))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    cvnet.enableFusion(fusion)
    for name, arr in feeds.items():
        cvnet.setInput(arr, name)
    return cvnet


def _all_blobs(cv2, net, proto, weights, feeds):
    """One run for every layer's first top; then, per layer with several tops, a run that stops there.

    OpenCV keeps only the first top of a requested layer from being reused by later in-place
    work, so the other tops are read from a run that ends at their layer.
    """
    cvnet = _open(cv2, proto, weights, feeds, fusion=False)
    have = set(cvnet.getLayerNames())
    layers = [L for L in net.layers if L.type not in INPUT_TYPES and L.name in have]
    values = {}
    for L, outs in zip(layers, cvnet.forwardAndRetrieve([L.name for L in layers])):
        if L.type == "DetectionOutput" and outs:
            outs = [caffe_detection_rows(np.asarray(outs[0]), feeds)] + list(outs[1:])
        # OpenCV's max pooling adds its mask as a second output, or leaves out a mask top no layer reads
        if len(outs) >= len(L.tops) or (L.type == "Pooling" and outs):
            values[L.tops[0]] = np.asarray(outs[0])
    for L in layers:
        if len(L.tops) > 1 and L.tops[0] in values:
            outs = cvnet.forwardAndRetrieve([L.name])[0]
            values.update({bid: np.asarray(o) for bid, o in zip(L.tops, outs)})
    return values


def caffe_detection_rows(out, feeds):
    """OpenCV's DetectionOutput top as Caffe writes it.

    OpenCV pads its [1, 1, rows, 7] top with all-zero rows, and writes only those when nothing is
    detected, where Caffe (weiliu89/caffe ``detection_output_layer.cpp``) has exactly the kept
    rows, or one ``[i, -1, -1, -1, -1, -1, -1]`` row per image. An all-zero row is never a
    detection (label 0 with score 0), so dropping them is exact.
    """
    if out.ndim != 4 or out.shape[-1] != 7:
        return out
    rows = out.reshape(-1, 7)
    rows = rows[np.any(rows != 0, axis=1)]
    if not len(rows):
        n = next(iter(feeds.values())).shape[0] if feeds else 1
        rows = np.full((n, 7), -1.0, np.float32)
        rows[:, 0] = np.arange(n)
    return rows.reshape(1, 1, -1, 7).astype(out.dtype)


OPENCV_ORDER_NOTE = "rows compared in OpenCV's order (each image's rows by descending score)"


def opencv_detection_order(dets):
    """Caffe's DetectionOutput top ``[1, 1, N, 7]`` in the row order OpenCV dnn writes.

    OpenCV (``detection_output_layer.cpp``, ``group_by_classes`` false by default) keeps the same
    rows per image as Caffe and writes each image's rows sorted by descending score over all
    labels, where Caffe groups them by label. A stable sort of Caffe's rows by score gives exactly
    OpenCV's order when an image's scores are distinct; where they tie, OpenCV's ``std::sort``
    leaves the order open (verify marks such a blob not comparable).
    """
    dets = np.asarray(dets)
    if dets.ndim != 4 or dets.shape[-1] != 7:
        return dets
    rows = dets.reshape(-1, 7)
    if len(rows) > 1 and np.any(np.diff(rows[:, 0]) < 0):
        return dets  # not Caffe's image-by-image form: left as it is, so the comparison shows it
    by_score = np.argsort(-rows[:, 2], kind="stable")
    order = by_score[np.argsort(rows[by_score, 0], kind="stable")]  # each image's rows stay together
    return rows[order].reshape(dets.shape)


def _cross_check(cv2, net, proto, weights, feeds, values):
    """The outputs of the per-layer run must equal those of OpenCV's normal (fused) run."""
    outs = [b for b in net.outputs if b in values]
    if not outs:
        return []
    layers = list(dict.fromkeys(net.producer[b].name for b in outs))
    res = dict(zip(layers, _open(cv2, proto, weights, feeds, fusion=True).forwardAndRetrieve(layers)))
    bad = []
    for bid in outs:
        L = net.producer[bid]
        got, ref = np.asarray(res[L.name][L.tops.index(bid)]), values[bid]
        if L.type == "DetectionOutput":
            got = caffe_detection_rows(got, feeds)
        scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
        if got.shape != ref.shape or float(np.max(np.abs(got - ref))) > 1e-4 * scale:
            bad.append(net.caffe_name[bid])
    return [f"OpenCV's fused and unfused runs disagree on output(s) {bad}"] if bad else []


def cv_reason(e):
    """The reason in an OpenCV error, without its source path and function (one line)."""
    text = " ".join(str(e).split())
    if "error:" in text:
        text = text.split("error:", 1)[1].strip()
    return re.sub(r" in function '[^']*'", "", text).replace(" > ", " ").strip()
