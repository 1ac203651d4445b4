"""SSD's detection layers (weiliu89/caffe, branch ssd): PriorBox and DetectionOutput.

``CaffePriorBox`` computes its boxes once, in numpy, when it is built (from the static feature-map
and image sizes) and returns them as a constant broadcast to the batch. ``CaffeDetectionOutput``
decodes the box predictions, runs Caffe's per-class greedy NMS (adaptive ``eta``, ``top_k``,
confidence threshold) and keeps the ``keep_top_k`` best, in keras.ops only.

Output form of CaffeDetectionOutput: Caffe's top is ``[1, 1, N, 7]`` with a data-dependent N (all
images' rows one after the other). Here it is ``(batch, rows, 7)``, ``rows`` = keep_top_k (or, with
keep_top_k -1, every candidate NMS could keep). Row ``[image_id, label, score, xmin, ymin, xmax, ymax]``;
image b's detections come first in Caffe's order (labels ascending; within a label, scores
descending, ties by prior index), then padding rows ``[-1, -1, 0, 0, 0, 0, 0]``.
:func:`caffe_detections` turns it back into Caffe's ``[1, 1, N, 7]``.
"""
from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from ..caffe.ssd import detection_rows, prior_aspect_ratios
from ._common import PACKAGE, _check

CODE_TYPES = ("CORNER", "CENTER_SIZE", "CORNER_SIZE")
FLT_MAX = float(np.finfo(np.float32).max)
PAD_ROW = (-1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0)


def prior_sizes(min_size, max_size, aspect_ratio, flip):
    """(width, height) of each prior of a cell, in Caffe's order. Caffe reads min/max_size as int."""
    sizes = []
    for s, mn in enumerate(min_size):
        mn = int(mn)
        sizes.append((float(mn), float(mn)))
        if max_size:
            side = math.sqrt(mn * int(max_size[s]))
            sizes.append((side, side))
        for ar in prior_aspect_ratios(aspect_ratio, flip):
            if abs(float(ar) - 1.0) < 1e-6:
                continue
            sizes.append((mn * math.sqrt(ar), mn / math.sqrt(ar)))
    return np.float32(sizes).astype(np.float64)


def prior_boxes(feature_hw, image_hw, min_size, max_size=(), aspect_ratio=(), flip=True, clip=False,
                variance=(0.1,), step_h=0.0, step_w=0.0, offset=0.5):
    """PriorBox's top (without the batch axis): a (2, H * W * priors * 4) float32 array of boxes
    [xmin, ymin, xmax, ymax] normalized by the image size, then their variances."""
    (lh, lw), (ih, iw) = feature_hw, image_hw
    f32 = np.float32
    if step_h == 0 or step_w == 0:
        step_h, step_w = f32(ih) / f32(lh), f32(iw) / f32(lw)
    cx = ((np.arange(lw, dtype=f32) + f32(offset)) * f32(step_w)).astype(np.float64)
    cy = ((np.arange(lh, dtype=f32) + f32(offset)) * f32(step_h)).astype(np.float64)
    wh = prior_sizes(min_size, max_size, aspect_ratio, flip)
    cx, cy = cx[None, :, None], cy[:, None, None]
    bw, bh = wh[None, None, :, 0], wh[None, None, :, 1]
    shape = (lh, lw, len(wh))
    boxes = np.stack([np.broadcast_to((cx - bw / 2) / iw, shape), np.broadcast_to((cy - bh / 2) / ih, shape),
                      np.broadcast_to((cx + bw / 2) / iw, shape), np.broadcast_to((cy + bh / 2) / ih, shape)],
                     axis=-1).astype(f32).reshape(-1)
    if clip:
        boxes = np.clip(boxes, f32(0), f32(1))
    var = np.float32(variance)
    var = np.full(boxes.shape, var[0], f32) if var.size == 1 else np.tile(var, boxes.size // 4)
    return np.stack([boxes, var])


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffePriorBox(keras.layers.Layer):
    """SSD's PriorBox: the prior boxes of one feature map, a constant built once from static sizes.

    Inputs: ``[feature, image]`` (NHWC; only their static H, W are read) or ``[feature]`` when
    ``img_h``/``img_w`` are given. Output: ``(batch, 2, H * W * priors * 4)``, each batch row equal to
    Caffe's single ``(1, 2, ...)`` row (boxes, then variances).

    Args:
        min_size: prior sizes in pixels (Caffe truncates each to an integer).
        max_size: one per min_size, adding a sqrt(min * max) square prior; or empty.
        aspect_ratio: extra ratios (duplicates dropped; 1 is always first).
        flip: also add 1/ratio for each ratio.
        clip: clip box coordinates to [0, 1].
        variance: 1 value or 4 (one per coordinate).
        img_h: image height (0: from the image input); with img_w.
        img_w: image width (0: from the image input).
        step_h: cell height in pixels (0: image height / feature height); with step_w.
        step_w: cell width in pixels (0: image width / feature width).
        offset: cell centre offset, in cells.
    """

    def __init__(self, min_size, max_size=(), aspect_ratio=(), flip=True, clip=False, variance=(0.1,), img_h=0,
                 img_w=0, step_h=0.0, step_w=0.0, offset=0.5, **kwargs):
        super().__init__(**kwargs)
        self.min_size = [float(m) for m in min_size]
        self.max_size = [float(m) for m in max_size]
        _check(self.min_size and all(m > 0 for m in self.min_size), "min_size must be positive values.", min_size)
        _check(not self.max_size or (len(self.max_size) == len(self.min_size)
                                     and all(b > a for a, b in zip(self.min_size, self.max_size))),
               "max_size must give one value per min_size, each greater than it.", max_size)
        self.aspect_ratio = [float(a) for a in aspect_ratio]
        self.flip, self.clip = bool(flip), bool(clip)
        self.variance = [float(v) for v in variance]
        _check(len(self.variance) in (1, 4) and all(v > 0 for v in self.variance),
               "variance must be 1 or 4 positive values.", variance)
        self.img_h, self.img_w = int(img_h), int(img_w)
        self.step_h, self.step_w = float(step_h), float(step_w)
        self.offset = float(offset)
        self._priors = None

    def priors(self, feature_hw, image_hw=None):
        """The (2, H * W * priors * 4) numpy array for a feature map (and image) size."""
        if self.img_h and self.img_w:
            image_hw = (self.img_h, self.img_w)
        _check(image_hw is not None, "PriorBox needs the image input or img_h/img_w.", image_hw)
        return prior_boxes(feature_hw, image_hw, self.min_size, self.max_size, self.aspect_ratio, self.flip,
                           self.clip, self.variance, self.step_h, self.step_w, self.offset)

    def build(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        for s in shapes:
            _check(len(s) == 4 and s[1] is not None and s[2] is not None,
                   "PriorBox inputs must be 4-d NHWC tensors with static height and width.", input_shape)
        image = tuple(shapes[1][1:3]) if len(shapes) > 1 else None
        self._priors = self.priors(tuple(shapes[0][1:3]), image)
        super().build(input_shape)

    def call(self, inputs):
        x = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        pri = ops.convert_to_tensor(self._priors)
        return ops.broadcast_to(pri[None], (ops.shape(x)[0],) + tuple(self._priors.shape))

    def compute_output_shape(self, input_shape):
        shapes = input_shape if isinstance(input_shape[0], (list, tuple)) else [input_shape]
        if self._priors is None:
            self.build(input_shape)
        return (shapes[0][0],) + tuple(self._priors.shape)

    def get_config(self):
        return {**super().get_config(), "min_size": self.min_size, "max_size": self.max_size,
                "aspect_ratio": self.aspect_ratio, "flip": self.flip, "clip": self.clip, "variance": self.variance,
                "img_h": self.img_h, "img_w": self.img_w, "step_h": self.step_h, "step_w": self.step_w,
                "offset": self.offset}


def decode_boxes(loc, prior, var, code_type, variance_encoded_in_target):
    """Caffe's DecodeBBox for every box: loc (..., P, 4) offsets, prior and var (P, 4). Returns the 4
    coordinates xmin, ymin, xmax, ymax, each (..., P), in Caffe's float32 order of operations."""
    l = [loc[..., i] for i in range(4)]
    if not variance_encoded_in_target:
        l = [var[:, i] * l[i] for i in range(4)]
    px1, py1, px2, py2 = (prior[:, i] for i in range(4))
    if code_type == "CORNER":
        return px1 + l[0], py1 + l[1], px2 + l[2], py2 + l[3]
    pw, ph = px2 - px1, py2 - py1
    if code_type == "CORNER_SIZE":
        return px1 + l[0] * pw, py1 + l[1] * ph, px2 + l[2] * pw, py2 + l[3] * ph
    cx, cy = l[0] * pw + (px1 + px2) / 2, l[1] * ph + (py1 + py2) / 2
    w, h = ops.exp(l[2]) * pw, ops.exp(l[3]) * ph
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def box_size(x1, y1, x2, y2):
    """Caffe's BBoxSize for normalized boxes: 0 for an inverted box."""
    return ops.where((x2 < x1) | (y2 < y1), 0.0, (x2 - x1) * (y2 - y1))


# NMS on candidate sets up to this many overlaps per image (classes x K x K) uses the overlap matrix.
MATRIX_NMS_LIMIT = 1 << 22


def overlap(a, b):
    """Caffe's JaccardOverlap (normalized boxes) of boxes ``a`` and ``b``: (x1, y1, x2, y2, size) tuples of
    broadcastable tensors; 0 unless the intersection has a positive width and height."""
    iw = ops.minimum(a[2], b[2]) - ops.maximum(a[0], b[0])
    ih = ops.minimum(a[3], b[3]) - ops.maximum(a[1], b[1])
    inter = iw * ih
    positive = (iw > 0) & (ih > 0)
    return ops.where(positive, inter / ops.where(positive, a[4] + b[4] - inter, 1.0), 0.0)


def nms_thresholds(nms_threshold, eta, k):
    """The adaptive threshold after m = 0..k kept boxes, in float32 as Caffe updates it: times eta
    after each kept box while it is above 0.5."""
    out, t = [], np.float32(nms_threshold)
    for _ in range(k + 1):
        out.append(t)
        if eta < 1 and t > 0.5:
            t = np.float32(t * np.float32(eta))
    return np.float32(out)


def nms_keep(boxes, sizes, valid, nms_threshold, eta):
    """Caffe's ApplyNMSFast on score-sorted candidates, for every (image, class) at once.

    boxes: 4 tensors (B, F, K) in descending score order; sizes (B, F, K); valid (B, F, K) the
    candidates above the confidence threshold (a prefix). Returns the kept mask (B, F, K).
    Candidate i is kept when its overlap with every kept earlier candidate is <= the adaptive
    threshold, which shrinks by ``eta`` after each kept box while above 0.5.
    """
    f, k = boxes[0].shape[1], boxes[0].shape[2]
    table = nms_thresholds(nms_threshold, eta, k)
    if f * k * k <= MATRIX_NMS_LIMIT:
        return _nms_fixed_point(tuple(boxes) + (sizes,), valid, table)
    return _nms_sequential(tuple(boxes) + (sizes,), valid, table)


def _nms_fixed_point(boxes, valid, table):
    """Greedy NMS as the fixed point of keep_i = valid_i and no kept j < i overlaps i above the
    threshold after the keeps before i. Each pass fixes at least one more position, so it ends in
    at most K passes (in practice a few) with exactly the greedy (sequential) result."""
    k = boxes[0].shape[-1]
    ov = overlap(tuple(t[..., :, None] for t in boxes), tuple(t[..., None, :] for t in boxes))  # (B, F, K, K)
    earlier = ops.convert_to_tensor(np.tri(k, k, -1, dtype=bool))
    thresholds = ops.convert_to_tensor(table)
    adaptive = bool(table[-1] != table[0])

    suppresses = ops.cast((ov > table[0]) & earlier, "float32")  # the fixed threshold's pairs, as 0/1

    def step(keep):
        if not adaptive:  # one batched matrix-vector product a pass
            hits = ops.matmul(suppresses, ops.cast(keep, "float32")[..., None])[..., 0]
            return valid & (hits < 0.5)
        before = ops.cumsum(ops.cast(keep, "int32"), axis=-1) - ops.cast(keep, "int32")
        thr = ops.take(thresholds, before)
        hit = (ov > thr[..., None]) & earlier & keep[..., None, :]
        return valid & ~ops.any(hit, axis=-1)

    def body(keep, changed, n):
        new = step(keep)
        return new, ops.any(new != keep), n + 1

    start = (valid, ops.convert_to_tensor(True), ops.convert_to_tensor(0, "int32"))
    keep, _, _ = ops.while_loop(lambda keep, changed, n: changed & (n <= k), body, start)
    return keep


def _nms_sequential(boxes, valid, table):
    """Greedy NMS one candidate at a time (memory O(K) per class), as Caffe's loop runs."""
    k = boxes[0].shape[-1]
    positions = ops.arange(k, dtype="int32")
    thresholds = ops.convert_to_tensor(table)
    n = ops.max(ops.sum(ops.cast(valid, "int32"), axis=-1))

    def body(i, keep, kept_count):
        cand = tuple(ops.take(t, i, axis=2)[..., None] for t in boxes)
        thr = ops.take(thresholds, kept_count)
        suppressed = ops.any(keep & (overlap(cand, boxes) > thr[..., None]), axis=-1)
        kept = ops.take(valid, i, axis=2) & ~suppressed
        keep = keep | (ops.equal(positions, i)[None, None, :] & kept[..., None])
        return i + 1, keep, kept_count + ops.cast(kept, "int32")

    none_kept = ops.cast(ops.zeros_like(boxes[0][..., 0]), "int32")
    start = (ops.convert_to_tensor(0, "int32"), ops.zeros_like(valid), none_kept)
    _, keep, _ = ops.while_loop(lambda i, keep, kept_count: i < n, body, start)
    return keep


@keras.saving.register_keras_serializable(package=PACKAGE)
class CaffeDetectionOutput(keras.layers.Layer):
    """SSD's DetectionOutput: decode, per-class NMS, keep_top_k; a fixed-size output (see the module doc).

    Inputs: ``[loc, conf, priors]``: loc (batch, P * L * 4) box offsets (L = 1 with share_location,
    else num_classes), conf (batch, P * num_classes) class probabilities, priors (any batch, 2, P * 4)
    as PriorBox gives them (the first row is used). Output: (batch, rows, 7).

    Args:
        num_classes: number of classes, background included.
        share_location: one box per prior for all classes (else one per class).
        background_label_id: class skipped by NMS (-1: none).
        nms_threshold: overlap above which a box is suppressed.
        top_k: candidates per class kept before NMS (-1: all).
        eta: adaptive NMS factor in (0, 1].
        code_type: "CORNER", "CENTER_SIZE" or "CORNER_SIZE".
        variance_encoded_in_target: the offsets are already scaled by the variances.
        keep_top_k: detections kept per image over all classes (-1: all).
        confidence_threshold: only scores above it are candidates (None: all, as Caffe's -FLT_MAX).
    """

    def __init__(self, num_classes, share_location=True, background_label_id=0, nms_threshold=0.3, top_k=-1,
                 eta=1.0, code_type="CORNER", variance_encoded_in_target=False, keep_top_k=-1,
                 confidence_threshold=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)
        _check(self.num_classes > 0, "num_classes must be positive.", num_classes)
        self.share_location = bool(share_location)
        self.background_label_id = int(background_label_id)
        self.nms_threshold = float(nms_threshold)
        _check(self.nms_threshold >= 0, "nms_threshold must be non negative.", nms_threshold)
        self.top_k = int(top_k)
        self.eta = float(eta)
        _check(0 < self.eta <= 1, "eta must be in (0, 1].", eta)
        _check(code_type in CODE_TYPES, f"code_type must be one of {CODE_TYPES}.", code_type)
        self.code_type = code_type
        self.variance_encoded_in_target = bool(variance_encoded_in_target)
        self.keep_top_k = int(keep_top_k)
        self.confidence_threshold = None if confidence_threshold is None else float(confidence_threshold)
        self.labels = [c for c in range(self.num_classes) if c != self.background_label_id]

    def _sizes(self, prior_shape):
        p = int(prior_shape[-1]) // 4
        per_class = p if self.top_k < 0 else min(self.top_k, p)
        return p, per_class, detection_rows(self.get_config(), p)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self._sizes(input_shape[2])[2], 7)

    def call(self, inputs):
        loc, conf, priors = inputs
        p, per_class, rows = self._sizes(priors.shape)
        classes, nloc = self.num_classes, 1 if self.share_location else self.num_classes
        _check(loc.shape[-1] == p * nloc * 4 and conf.shape[-1] == p * classes,
               f"loc must hold {p} x {nloc} x 4 values and conf {p} x {classes}.", (loc.shape, conf.shape))
        pri = ops.reshape(ops.cast(priors[0], "float32"), (2, p, 4))
        loc = ops.transpose(ops.reshape(ops.cast(loc, "float32"), (-1, p, nloc, 4)), (0, 2, 1, 3))
        coords = decode_boxes(loc, pri[0], pri[1], self.code_type, self.variance_encoded_in_target)  # 4 x (B, L, P)
        scores = ops.transpose(ops.reshape(ops.cast(conf, "float32"), (-1, p, classes)), (0, 2, 1))
        labels = np.int32(self.labels)
        if per_class == 0 or labels.size == 0:
            return self._padding(scores[:, 0, :1], rows)
        scores = ops.take(scores, labels, axis=1)  # (B, F, P)
        if not self.share_location:
            coords = [ops.take(c, labels, axis=1) for c in coords]
        top, idx = ops.top_k(scores, per_class)  # descending; equal scores: lower prior index first
        boxes = [ops.take_along_axis(c, idx, axis=2) for c in coords]  # c: (B, 1 or F, P), broadcast
        thr = -FLT_MAX if self.confidence_threshold is None else self.confidence_threshold
        keep = nms_keep(boxes, box_size(*boxes), top > thr, self.nms_threshold, self.eta)
        return self._select(top, boxes, keep, labels, per_class, rows)

    def _select(self, top, boxes, keep, labels, per_class, rows):
        """Rows of the kept candidates: the best ``keep_top_k`` (equal scores: lower label, then NMS
        order first), in Caffe's output order (labels ascending, NMS order within a label)."""
        total = len(labels) * per_class
        limit = min(self.keep_top_k if self.keep_top_k >= 0 else total, total)
        if limit == 0:  # keep_top_k: 0 keeps nothing
            return self._padding(top[:, 0, :1], rows)
        flat = ops.reshape(ops.where(keep, top, -np.inf), (-1, total))
        best, where = ops.top_k(flat, limit)
        chosen = best > -np.inf
        order = ops.sort(ops.where(chosen, where, where + total), axis=-1)
        chosen, where = order < total, ops.where(order < total, order, order - total)
        label = ops.take(ops.convert_to_tensor(labels.astype(np.float32)), where // per_class)
        vals = [ops.take_along_axis(ops.reshape(t, (-1, total)), where, axis=1) for t in [top] + boxes]
        image = ops.cumsum(ops.ones_like(vals[0][:, :1]), axis=0) - 1.0
        out = ops.stack([ops.broadcast_to(image, ops.shape(label)), label] + vals, axis=-1)
        out = ops.where(chosen[..., None], out, ops.convert_to_tensor(np.float32(PAD_ROW)))
        if rows > limit:
            out = ops.concatenate([out, self._padding(out[:, 0, :1], rows - limit)], axis=1)
        return out

    @staticmethod
    def _padding(like, rows):
        """(B, rows, 7) padding rows, B from ``like`` (B, 1)."""
        ones = ops.ones_like(like)[:, :, None]
        return ones * ops.convert_to_tensor(np.float32(PAD_ROW)) + ops.zeros((1, rows, 7))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "share_location": self.share_location,
                "background_label_id": self.background_label_id, "nms_threshold": self.nms_threshold,
                "top_k": self.top_k, "eta": self.eta, "code_type": self.code_type,
                "variance_encoded_in_target": self.variance_encoded_in_target, "keep_top_k": self.keep_top_k,
                "confidence_threshold": self.confidence_threshold}


def detection_model(num_priors, num_classes, **kwargs):
    """A keras.Model running DetectionOutput on SSD heads alone.

    Inputs ``loc`` (batch, P * L * 4), ``conf`` (batch, P * num_classes) and ``priors`` (batch, 2, P * 4),
    as the net's mbox_loc, mbox_conf_flatten and mbox_priorbox blobs hold them; kwargs as
    :class:`CaffeDetectionOutput`. Output (batch, rows, 7).
    """
    nloc = 1 if kwargs.get("share_location", True) else num_classes
    loc = keras.Input((num_priors * nloc * 4,), name="loc")
    conf = keras.Input((num_priors * num_classes,), name="conf")
    priors = keras.Input((2, num_priors * 4), name="priors")
    out = CaffeDetectionOutput(num_classes, name="detection_out", **kwargs)([loc, conf, priors])
    return keras.Model([loc, conf, priors], out, name="ssd_detection_output")


def caffe_detections(out):
    """bnconvert's (batch, rows, 7) detections as Caffe's [1, 1, N, 7] top: every image's valid rows
    in order; when no image has any, one ``[i, -1, -1, -1, -1, -1, -1]`` row per image, as Caffe writes."""
    out = np.asarray(out)
    rows = out[out[..., 0] >= 0]
    if not len(rows):
        rows = np.full((out.shape[0], 7), -1.0, np.float32)
        rows[:, 0] = np.arange(out.shape[0])
    return rows.reshape(1, 1, -1, 7).astype(np.float32)
