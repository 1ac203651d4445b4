"""SSD's PriorBox and DetectionOutput parameters, read and checked as weiliu89/caffe (branch ssd) does.

``prior_box_settings`` follows PriorBoxLayer::LayerSetUp, ``detection_output_settings`` follows
DetectionOutputLayer::LayerSetUp; every CHECK there is a ShapeError here. The shapes follow the
layers' Reshape, except DetectionOutput's top: Caffe's ``[1, 1, N, 7]`` has a data-dependent N, so
the converted net uses a fixed ``(num, rows, 7)`` (see :func:`detection_rows`).
No Keras import: the Keras layers (bnconvert.keras_layers.detection) take these settings as they are.
"""
from __future__ import annotations

import math

import numpy as np

CODE_TYPES = {1: "CORNER", 2: "CENTER_SIZE", 3: "CORNER_SIZE"}


def prior_aspect_ratios(aspect_ratio, flip):
    """Caffe's aspect_ratios_ (float32): 1 first, then each new ratio (and 1/ratio with flip); a ratio
    within 1e-6 of one already there is dropped."""
    ars = [np.float32(1.0)]
    for ar in aspect_ratio:
        ar = np.float32(ar)
        if any(abs(float(ar) - float(a)) < 1e-6 for a in ars):
            continue
        ars.append(ar)
        if flip:
            ars.append(np.float32(1.0 / float(ar)))
    return ars


def prior_box_settings(p, err):
    """The keyword arguments of ``CaffePriorBox`` for a ``prior_box_param``; raises ``err(...)`` where Caffe CHECKs."""
    if not len(p.min_size):
        raise err("must provide min_size (Caffe CHECKs min_size_size() > 0)")
    if any(m <= 0 for m in p.min_size):
        raise err(f"min_size must be positive. Received: {list(p.min_size)}")
    if len(p.max_size):
        if len(p.max_size) != len(p.min_size):
            raise err(f"max_size needs one value per min_size. Received: min_size {list(p.min_size)}, "
                      f"max_size {list(p.max_size)}")
        if any(mx <= mn for mn, mx in zip(p.min_size, p.max_size)):
            raise err(f"max_size must be greater than min_size. Received: min_size {list(p.min_size)}, "
                      f"max_size {list(p.max_size)}")
    var = list(p.variance)
    if len(var) > 1 and len(var) != 4:
        raise err(f"variance takes 1 or 4 values. Received: {var}")
    if any(v <= 0 for v in var):
        raise err(f"variance must be positive. Received: {var}")
    img_h, img_w = _pair(p, "img_size", "img_h", "img_w", err)
    step_h, step_w = _pair(p, "step", "step_h", "step_w", err)
    return dict(min_size=[float(m) for m in p.min_size], max_size=[float(m) for m in p.max_size],
                aspect_ratio=[float(a) for a in p.aspect_ratio], flip=bool(p.flip), clip=bool(p.clip),
                variance=[float(v) for v in var] or [0.1], img_h=int(img_h), img_w=int(img_w),
                step_h=float(step_h), step_w=float(step_w), offset=float(p.offset))


def _pair(p, both, h, w, err):
    """(h, w) from ``both`` or the ``h``/``w`` pair (not both); (0, 0) when unset."""
    if p.HasField(h) or p.HasField(w):
        if p.HasField(both):
            raise err(f"either {both} or {h}/{w} should be specified; not both")
        vh, vw = getattr(p, h), getattr(p, w)
        if vh <= 0 or vw <= 0:
            raise err(f"{h} and {w} should be larger than 0. Received: {h}={vh}, {w}={vw}")
        return vh, vw
    if p.HasField(both):
        v = getattr(p, both)
        if v <= 0:
            raise err(f"{both} should be larger than 0. Received: {v}")
        return v, v
    return 0, 0


def num_priors(settings):
    """Priors per feature-map cell: one per (min_size, aspect ratio), plus one per max_size."""
    ars = prior_aspect_ratios(settings["aspect_ratio"], settings["flip"])
    return len(ars) * len(settings["min_size"]) + len(settings["max_size"])


def prior_box_shape(p, ins, err):
    """PriorBox's top: (1, 2, H * W * num_priors * 4) from bottom 0's H, W."""
    s = prior_box_settings(p, err)
    feat = ins[0]
    if len(feat) != 4:
        raise err(f"bottom 0 must be a 4-d feature map. Received: shape {tuple(feat)}")
    if (s["img_h"] == 0 or s["img_w"] == 0) and (len(ins) < 2 or len(ins[1]) != 4):
        raise err("without img_size (or img_h/img_w) the image size comes from a 4-d bottom 1, which this "
                  "layer does not have")
    return (1, 2, feat[2] * feat[3] * num_priors(s) * 4)


def detection_output_settings(p, err):
    """The keyword arguments of ``CaffeDetectionOutput`` for a ``detection_output_param``."""
    if not p.HasField("num_classes"):
        raise err("must specify num_classes")
    nms = p.nms_param
    if nms.nms_threshold < 0:
        raise err(f"nms_threshold must be non negative. Received: {nms.nms_threshold}")
    if not 0 < nms.eta <= 1:
        raise err(f"eta must be in (0, 1]. Received: {nms.eta}")
    if p.code_type not in CODE_TYPES:
        raise err(f"unknown code_type. Received: {p.code_type}")
    return dict(num_classes=int(p.num_classes), share_location=bool(p.share_location),
                background_label_id=int(p.background_label_id), nms_threshold=float(nms.nms_threshold),
                top_k=int(nms.top_k) if nms.HasField("top_k") else -1, eta=float(nms.eta),
                code_type=CODE_TYPES[p.code_type], variance_encoded_in_target=bool(p.variance_encoded_in_target),
                keep_top_k=int(p.keep_top_k),
                confidence_threshold=float(p.confidence_threshold) if p.HasField("confidence_threshold") else None)


def detection_rows(settings, priors):
    """Rows per image of the fixed-size output: keep_top_k, or (with keep_top_k -1) every candidate
    NMS could keep (foreground classes x min(top_k, priors)); at least 1."""
    c, bg = settings["num_classes"], settings["background_label_id"]
    fg = c - (1 if 0 <= bg < c else 0)
    per_class = priors if settings["top_k"] < 0 else min(settings["top_k"], priors)
    if settings["keep_top_k"] >= 0:
        return max(1, settings["keep_top_k"])
    return max(1, fg * per_class)


def detection_output_shape(p, ins, err):
    """DetectionOutput's top in bnconvert's fixed form: (num, rows, 7)."""
    s = detection_output_settings(p, err)
    loc, conf, prior = ins[0], ins[1], ins[2]
    if len(prior) < 3 or prior[1] != 2 or prior[2] % 4:
        raise err(f"bottom 2 must be PriorBox output (1, 2, num_priors * 4). Received: shape {tuple(prior)}")
    n = prior[2] // 4
    loc_classes = 1 if s["share_location"] else s["num_classes"]
    if loc[0] != conf[0]:
        raise err(f"loc and conf bottoms have different num. Received: {loc[0]} and {conf[0]}")
    # Caffe CHECKs channels() (axis 1) against these counts, so every later axis must be 1
    if len(loc) < 2 or loc[1] != n * loc_classes * 4 or math.prod(loc[2:]) != 1:
        raise err(f"number of priors must match number of location predictions: bottom 0 {tuple(loc)} needs "
                  f"{n} priors x {loc_classes} x 4 = {n * loc_classes * 4} channels")
    if len(conf) < 2 or conf[1] != n * s["num_classes"] or math.prod(conf[2:]) != 1:
        raise err(f"number of priors must match number of confidence predictions: bottom 1 {tuple(conf)} needs "
                  f"{n} priors x {s['num_classes']} classes = {n * s['num_classes']} channels")
    return (loc[0], detection_rows(s, n), 7)
