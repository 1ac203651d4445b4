"""Numpy references for the fork layers, written from each fork's source (NCHW, float32).

- Interp: DeepLab v2 / PSPNet ``interp_layer.cpp`` (output size) and ``util/interp.cpp``
  (``caffe_cpu_interp2``, non-packed): float32 ratio (in-1)/(out-1), truncated source index,
  neighbour clamped at the last row/column, cropping by -pad_beg at the top/left of both axes.
- Pooling MAX with a mask top: BVLC ``pooling_layer.cpp``: windows clipped to the input, a strict
  ``>`` scan from -FLT_MAX in raster order, the mask holds ``h * W + w``.
- Upsample: SegNet/ENet ``upsample_layer.cpp`` (zero top, ``top[mask[i]] = bottom[i]`` in order)
  and the YOLOv3 port's (``top[h, w] = bottom[h / s, w / s]``).
- BN: SegNet/ENet ``bn_layer.cpp`` INFERENCE (``scale * x + shift``) and PSPNet's (stored mean and
  variance, ``(x - mean) / sqrt(var + eps) * scale + shift``).
"""
from __future__ import annotations

import numpy as np

F32 = np.float32


def interp_size(shape, *, height=None, width=None, zoom=None, shrink=None, pad_beg=0, pad_end=0):
    h, w = (d + pad_beg + pad_end for d in shape[2:])
    if shrink is not None and zoom is None:
        return (h - 1) // shrink + 1, (w - 1) // shrink + 1
    if zoom is not None and shrink is None:
        return h + (h - 1) * (zoom - 1), w + (w - 1) * (zoom - 1)
    if height is not None and width is not None:
        return height, width
    h, w = (h - 1) // shrink + 1, (w - 1) // shrink + 1
    return h + (h - 1) * (zoom - 1), w + (w - 1) * (zoom - 1)


def interp(x, out_h, out_w, pad_beg=0, pad_end=0):
    x = np.asarray(x, F32)
    n, c, H, W = x.shape
    h1, w1 = H + pad_beg + pad_end, W + pad_beg + pad_end
    y0 = x0 = -pad_beg
    if (h1, w1) == (out_h, out_w):
        return x[:, :, y0:y0 + h1, x0:x0 + w1].copy()
    rh = F32(h1 - 1) / F32(out_h - 1) if out_h > 1 else F32(0)
    rw = F32(w1 - 1) / F32(out_w - 1) if out_w > 1 else F32(0)
    out = np.zeros((n, c, out_h, out_w), F32)
    for a in range(out_h):
        hr = F32(rh * F32(a))
        hi = int(hr)
        hp = 1 if hi < h1 - 1 else 0
        l1 = F32(hr - F32(hi))
        l0 = F32(1) - l1
        for b in range(out_w):
            wr = F32(rw * F32(b))
            wi = int(wr)
            wp = 1 if wi < w1 - 1 else 0
            m1 = F32(wr - F32(wi))
            m0 = F32(1) - m1
            r, q = y0 + hi, x0 + wi
            out[:, :, a, b] = l0 * (m0 * x[:, :, r, q] + m1 * x[:, :, r, q + wp]) + \
                l1 * (m0 * x[:, :, r + hp, q] + m1 * x[:, :, r + hp, q + wp])
    return out


def max_pool_with_mask(x, k, s, p, out_hw):
    x = np.asarray(x, F32)
    n, c, H, W = x.shape
    oh, ow = out_hw
    top = np.full((n, c, oh, ow), -np.finfo(F32).max, F32)
    mask = np.full((n, c, oh, ow), -1, F32)
    for a in range(oh):
        for b in range(ow):
            hs, ws = a * s[0] - p[0], b * s[1] - p[1]
            he, we = min(hs + k[0], H), min(ws + k[1], W)
            for h in range(max(hs, 0), he):
                for w in range(max(ws, 0), we):
                    v = x[:, :, h, w]
                    better = v > top[:, :, a, b]
                    top[:, :, a, b] = np.where(better, v, top[:, :, a, b])
                    mask[:, :, a, b] = np.where(better, F32(h * W + w), mask[:, :, a, b])
    return top, mask


def unpool(x, mask, out_h, out_w):
    n, c = x.shape[:2]
    out = np.zeros((n, c, out_h * out_w), F32)
    xs, ms = x.reshape(n, c, -1), mask.reshape(n, c, -1).astype(np.int64)
    for i in range(xs.shape[2]):  # in order: a later index overwrites an earlier one, as the fork's loop
        np.put_along_axis(out, ms[:, :, i:i + 1], xs[:, :, i:i + 1], axis=2)
    return out.reshape(n, c, out_h, out_w)


def upsample_nearest(x, scale):
    return np.repeat(np.repeat(np.asarray(x, F32), scale, axis=2), scale, axis=3)


def bn_inference(x, scale, shift):
    return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)


def bn_pspnet(x, scale, shift, mean, var, eps=1e-5):
    r = lambda a: np.asarray(a, F32).reshape(1, -1, 1, 1)  # noqa: E731
    return (x - r(mean)) / np.sqrt(r(var) + F32(eps)) * r(scale) + r(shift)
