"""Numpy references for SSD's PriorBox and DetectionOutput, written loop by loop from weiliu89/caffe
(branch ssd): prior_box_layer.cpp Forward_cpu, detection_output_layer.cpp Forward_cpu and
bbox_util.cpp (DecodeBBox, JaccardOverlap, BBoxSize, GetMaxScoreIndex, ApplyNMSFast). Scalar
float32 arithmetic in the source's order; deliberately not vectorized, so it shares no code with
bnconvert's layers. Also the synthetic SSD inputs the tests use."""
from __future__ import annotations

import math

import numpy as np

f32 = np.float32


def prior_box(layer_hw, img_hw, min_size, max_size=(), aspect_ratio=(), flip=True, clip=False, variance=(),
              step_h=0.0, step_w=0.0, offset=0.5):
    """PriorBox's top (1, 2, H*W*priors*4); img_hw is img_h/img_w or the image bottom's size."""
    ars = [f32(1.0)]
    for ar in aspect_ratio:
        ar = f32(ar)
        if any(abs(ar - a) < 1e-6 for a in ars):
            continue
        ars.append(ar)
        if flip:
            ars.append(f32(1.0 / float(ar)))
    lh, lw = layer_hw
    ih, iw = img_hw
    if step_h == 0 or step_w == 0:
        step_w, step_h = f32(f32(iw) / f32(lw)), f32(f32(ih) / f32(lh))
    out = []

    def put(cx, cy, bw, bh):
        out.extend([(float(cx) - bw / 2.0) / iw, (float(cy) - bh / 2.0) / ih,
                    (float(cx) + bw / 2.0) / iw, (float(cy) + bh / 2.0) / ih])

    for h in range(lh):
        for w in range(lw):
            cx, cy = f32((f32(w) + f32(offset)) * f32(step_w)), f32((f32(h) + f32(offset)) * f32(step_h))
            for s, mn in enumerate(min_size):
                mn = int(mn)
                put(cx, cy, float(f32(mn)), float(f32(mn)))
                if max_size:
                    side = float(f32(math.sqrt(mn * int(max_size[s]))))
                    put(cx, cy, side, side)
                for ar in ars:
                    if abs(ar - 1.0) < 1e-6:
                        continue
                    put(cx, cy, float(f32(mn * math.sqrt(ar))), float(f32(mn / math.sqrt(ar))))
    boxes = np.float32(out)
    if clip:
        boxes = np.minimum(np.maximum(boxes, f32(0)), f32(1))
    var = list(variance) or [0.1]
    v = np.full(boxes.size, var[0], f32) if len(var) == 1 else np.float32(var * (boxes.size // 4))
    return np.stack([boxes, v])[None]


def _size(b):
    x1, y1, x2, y2 = b[:4]
    if x2 < x1 or y2 < y1:
        return f32(0)
    return f32(f32(x2 - x1) * f32(y2 - y1))


def decode(prior, var, loc, code_type, encoded):
    """DecodeBBox: returns (xmin, ymin, xmax, ymax, size)."""
    px1, py1, px2, py2 = (f32(v) for v in prior)
    l = [f32(v) for v in loc]
    if not encoded:
        l = [f32(f32(var[i]) * l[i]) for i in range(4)]
    if code_type == "CORNER":
        b = [px1 + l[0], py1 + l[1], px2 + l[2], py2 + l[3]]
    elif code_type == "CORNER_SIZE":
        pw, ph = f32(px2 - px1), f32(py2 - py1)
        b = [px1 + f32(l[0] * pw), py1 + f32(l[1] * ph), px2 + f32(l[2] * pw), py2 + f32(l[3] * ph)]
    else:
        pw, ph = f32(px2 - px1), f32(py2 - py1)
        pcx, pcy = f32(f32(px1 + px2) / f32(2)), f32(f32(py1 + py2) / f32(2))
        cx, cy = f32(f32(l[0] * pw) + pcx), f32(f32(l[1] * ph) + pcy)
        w, h = f32(f32(np.exp(l[2])) * pw), f32(f32(np.exp(l[3])) * ph)
        b = [cx - w / f32(2), cy - h / f32(2), cx + w / f32(2), cy + h / f32(2)]
    b = [f32(v) for v in b]
    return tuple(b) + (_size(b),)


def jaccard(a, b):
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return f32(0)
    iw = f32(min(a[2], b[2]) - max(a[0], b[0]))
    ih = f32(min(a[3], b[3]) - max(a[1], b[1]))
    if iw > 0 and ih > 0:
        inter = f32(iw * ih)
        return f32(inter / f32(f32(a[4] + b[4]) - inter))
    return f32(0)


def nms_fast(boxes, scores, score_threshold, nms_threshold, eta, top_k):
    cand = [(scores[i], i) for i in range(len(scores)) if scores[i] > score_threshold]
    cand = sorted(cand, key=lambda t: -t[0])  # a stable sort, as std::stable_sort
    if -1 < top_k < len(cand):
        cand = cand[:top_k]
    adaptive = f32(nms_threshold)
    kept = []
    for _, idx in cand:
        keep = True
        for k in kept:
            if not keep:
                break
            keep = jaccard(boxes[idx], boxes[k]) <= adaptive
        if keep:
            kept.append(idx)
        if keep and eta < 1 and adaptive > 0.5:
            adaptive = f32(adaptive * f32(eta))
    return kept


def detection_output(loc, conf, prior, num_classes, share_location=True, background_label_id=0, nms_threshold=0.3,
                     top_k=-1, eta=1.0, code_type="CORNER", variance_encoded_in_target=False, keep_top_k=-1,
                     confidence_threshold=None):
    """DetectionOutput's top [1, 1, N, 7] for loc (num, P*L*4), conf (num, P*C), prior (1, 2, P*4)."""
    num, p = loc.shape[0], prior.shape[2] // 4
    nloc = 1 if share_location else num_classes
    pb, pv = prior[0, 0].reshape(p, 4), prior[0, 1].reshape(p, 4)
    thr = -np.finfo(np.float32).max if confidence_threshold is None else f32(confidence_threshold)
    rows = []
    for i in range(num):
        lp, cs = loc[i].reshape(p, nloc, 4), conf[i].reshape(p, num_classes)
        decoded = {}
        for c in range(nloc):
            label = -1 if share_location else c
            if not share_location and label == background_label_id:  # the GPU path's rule; the CPU path
                continue  # also skips label -1 with background_label_id -1, then aborts (LOG(FATAL))
            decoded[label] = [decode(pb[j], pv[j], lp[j, c], code_type, variance_encoded_in_target) for j in range(p)]
        indices, num_det = {}, 0
        for c in range(num_classes):
            if c == background_label_id:
                continue
            boxes = decoded[-1 if share_location else c]
            indices[c] = nms_fast(boxes, cs[:, c], thr, nms_threshold, eta, top_k)
            num_det += len(indices[c])
        if keep_top_k > -1 and num_det > keep_top_k:
            pairs = [(cs[j, c], c, j) for c in sorted(indices) for j in indices[c]]
            pairs = sorted(pairs, key=lambda t: -t[0])[:keep_top_k]
            indices = {}
            for _, c, j in pairs:
                indices.setdefault(c, []).append(j)
        for c in sorted(indices):
            boxes = decoded[-1 if share_location else c]
            for j in indices[c]:
                rows.append([i, c, cs[j, c]] + list(boxes[j][:4]))
    if not rows:
        rows = [[i] + [-1] * 6 for i in range(num)]
    return np.float32(rows).reshape(1, 1, -1, 7)


def softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def heads(prior, num, num_classes, nloc=1, seed=0, loc_std=0.5, logit_std=2.5, quantize=None):
    """Synthetic SSD heads for a prior blob: loc (num, P*nloc*4) offsets and conf (num, P*C) softmax
    probabilities spread enough that several classes pass a threshold; ``quantize`` rounds the scores
    to a grid (equal scores test the tie order)."""
    rng = np.random.default_rng(seed)
    p = prior.shape[2] // 4
    loc = rng.normal(0, loc_std, (num, p * nloc * 4)).astype(np.float32)
    conf = softmax(rng.normal(0, logit_std, (num, p, num_classes)))
    if quantize:
        conf = (np.round(conf / quantize) * quantize).astype(np.float32)
    return loc, conf.reshape(num, -1)


def synthetic_image(h, w, seed=0):
    """A (1, 3, h, w) float image with a sky/ground background and a few filled rectangles and discs."""
    rng = np.random.default_rng(seed)
    img = np.zeros((3, h, w), np.float32)
    img[:, : h // 2] = np.float32([200, 170, 120])[:, None, None]
    img[:, h // 2:] = np.float32([70, 110, 60])[:, None, None]
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(6):
        color = rng.uniform(0, 255, 3).astype(np.float32)[:, None]
        y0, x0 = rng.integers(0, h - h // 5), rng.integers(0, w - w // 5)
        if rng.random() < 0.5:
            y1, x1 = y0 + rng.integers(h // 10, h // 3), x0 + rng.integers(w // 10, w // 3)
            mask = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
        else:
            r = rng.integers(min(h, w) // 12, min(h, w) // 5)
            mask = (yy - y0) ** 2 + (xx - x0) ** 2 < r * r
        img[:, mask] = color
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return img[None]
