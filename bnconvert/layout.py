"""All knowledge of memory layouts, shared by both conversion directions.

Caffe stores 4-d blobs as N,C,H,W; the converted Keras model keeps 4-d tensors channels_last
(N,H,W,C). Tensors of any other rank keep Caffe's axis order. A flattened NHWC tensor keeps
its H,W,C feature order (layout ``FlatHWC``) until something needs Caffe's C,H,W order: an
InnerProduct consumer reorders its weights instead, so the graph needs no transpose.

This module has no Keras import: it deals in numpy arrays, shapes and axis numbers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """How a Keras tensor stores a Caffe blob."""

    kind: str  # "nhwc", "caffe" or "flat_hwc"
    chw: tuple = ()  # for flat_hwc: the (C, H, W) that were flattened

    def __str__(self):
        return self.kind if not self.chw else f"{self.kind}{self.chw}"


NHWC = Layout("nhwc")
CAFFE = Layout("caffe")


def flat_hwc(c, h, w):
    return Layout("flat_hwc", (int(c), int(h), int(w)))


def default_layout(rank):
    """The layout a converter produces for a blob of this rank unless it says otherwise."""
    return NHWC if rank == 4 else CAFFE


# --- shapes and axes -------------------------------------------------------------------

NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


def keras_shape(caffe_shape, layout):
    """The Keras tensor shape that stores a Caffe blob shape in ``layout``."""
    s = tuple(caffe_shape)
    if layout.kind == "nhwc":
        if len(s) != 4:
            raise ValueError(f"NHWC layout needs a 4-d shape. Received: {s}")
        return (s[0], s[2], s[3], s[1])
    return s


def caffe_axis(axis, rank):
    """Caffe's canonical axis (negative axes count from the end), checked against rank."""
    a = int(axis)
    if a < 0:
        a += rank
    if not 0 <= a < rank:
        raise ValueError(f"axis {axis} is out of range for a {rank}-d blob. Received: axis={axis}")
    return a


def _caffe_axes_by_keras_axis(layout, rank):
    """Entry i is the Caffe axis that Keras axis i holds."""
    if layout.kind == "flat_hwc":
        raise ValueError("a flat_hwc tensor has no per-axis mapping; convert it to caffe layout first")
    return NCHW_TO_NHWC if layout.kind == "nhwc" else tuple(range(rank))


def keras_axis(axis, rank, layout):
    """The Keras tensor axis holding Caffe axis ``axis`` of a ``rank``-d blob in ``layout``."""
    return _caffe_axes_by_keras_axis(layout, rank).index(caffe_axis(axis, rank))


def caffe_to_keras_perm(layout):
    """The transpose taking a Caffe-ordered array to ``layout`` order (None for identity)."""
    return NCHW_TO_NHWC if layout.kind == "nhwc" else None


def to_keras_array(arr, layout):
    """A Caffe-ordered array (e.g. a blob value from Caffe) in the Keras tensor's layout."""
    perm = caffe_to_keras_perm(layout)
    if layout.kind == "flat_hwc":
        c, h, w = layout.chw
        return np.ascontiguousarray(arr.reshape(arr.shape[0], c, h, w).transpose(0, 2, 3, 1).reshape(arr.shape[0], -1))
    return np.ascontiguousarray(arr.transpose(perm)) if perm else arr


def to_caffe_array(arr, layout):
    """Inverse of :func:`to_keras_array`: a Keras tensor value in Caffe's axis order."""
    if layout.kind == "nhwc":
        return np.ascontiguousarray(arr.transpose(NHWC_TO_NCHW))
    if layout.kind == "flat_hwc":
        c, h, w = layout.chw
        return np.ascontiguousarray(arr.reshape(arr.shape[0], h, w, c).transpose(0, 3, 1, 2).reshape(arr.shape[0], -1))
    return arr


# --- weights ---------------------------------------------------------------------------


def conv_kernel_to_keras(w):
    """Caffe convolution weights O,I,kh,kw -> Keras Conv2D kernel kh,kw,I,O."""
    return np.ascontiguousarray(w.transpose(2, 3, 1, 0))


def conv_kernel_to_caffe(k):
    """Keras Conv2D kernel kh,kw,I,O -> Caffe O,I,kh,kw."""
    return np.ascontiguousarray(k.transpose(3, 2, 0, 1))


def depthwise_kernel_to_keras(w, channels):
    """Caffe depthwise weights (C*m),1,kh,kw -> Keras DepthwiseConv2D kernel kh,kw,C,m.

    Caffe's output channel o belongs to input channel o // m, the same order Keras uses.
    """
    o, _, kh, kw = w.shape
    m = o // channels
    return np.ascontiguousarray(w.reshape(channels, m, kh, kw).transpose(2, 3, 0, 1))


def depthwise_kernel_to_caffe(k):
    """Keras DepthwiseConv2D kernel kh,kw,C,m -> Caffe (C*m),1,kh,kw."""
    kh, kw, c, m = k.shape
    return np.ascontiguousarray(k.transpose(2, 3, 0, 1).reshape(c * m, 1, kh, kw))


def deconv_kernel_to_keras(w, group):
    """Caffe deconvolution weights Cin,Cout/g,kh,kw -> Keras Conv2DTranspose kernel kh,kw,Cout,Cin.

    Keras has no grouped transposed convolution, so groups become a block-diagonal kernel
    (the zero blocks add exact zeros).
    """
    cin, cout_g, kh, kw = w.shape
    cin_g = cin // group
    full = np.zeros((kh, kw, cout_g * group, cin), dtype=w.dtype)
    for g in range(group):
        blk = w[g * cin_g:(g + 1) * cin_g]  # cin_g, cout_g, kh, kw
        full[:, :, g * cout_g:(g + 1) * cout_g, g * cin_g:(g + 1) * cin_g] = blk.transpose(2, 3, 1, 0)
    return full


def deconv_kernel_to_caffe(k):
    """Keras Conv2DTranspose kernel kh,kw,Cout,Cin -> Caffe Cin,Cout,kh,kw (group 1)."""
    return np.ascontiguousarray(k.transpose(3, 2, 0, 1))


def _reverse_axes(a3):
    """``a3.transpose(2, 1, 0)`` as a new contiguous array, copied in cache-sized tiles.

    A one-shot transpose of a VGG fc6 kernel (25088 x 4096) strides through memory and takes
    seconds; tiles of 64 x 512 take a fraction of that.
    """
    n0, n1, n2 = a3.shape
    out = np.empty((n2, n1, n0), a3.dtype)
    for j in range(0, n1, 64):
        for k in range(0, n2, 512):
            out[k:k + 512, j:j + 64, :] = a3[:, j:j + 64, k:k + 512].transpose(2, 1, 0)
    return out


def _transpose2d(a):
    return _reverse_axes(a.reshape(a.shape[0], 1, a.shape[1])).reshape(a.shape[1], a.shape[0])


def fc_weights_to_keras(w, transpose=False, in_layout=CAFFE):
    """Caffe InnerProduct weights -> Keras Dense kernel (K, O).

    ``w`` is O,K (or K,O with ``transpose: true``). When the input is a flattened NHWC
    tensor (layout flat_hwc(C,H,W)), the K rows are reordered from C,H,W to H,W,C.
    """
    if in_layout.kind != "flat_hwc":
        return np.ascontiguousarray(w) if transpose else _transpose2d(w)
    c, h, wd = in_layout.chw
    if transpose:  # K,O with K in C,H,W order
        return _reverse_axes(_reverse_axes(w.reshape(c, h * wd, -1)).transpose(0, 2, 1)).reshape(c * h * wd, -1)
    # kernel[(y, x, ch), o] = w[o, (ch, y, x)]
    return _reverse_axes(w.reshape(w.shape[0], c, h * wd)).reshape(c * h * wd, w.shape[0])


def fc_weights_to_caffe(kernel, in_layout=CAFFE):
    """Keras Dense kernel (K, O) -> Caffe InnerProduct weights O,K in C,H,W order."""
    if in_layout.kind != "flat_hwc":
        return _transpose2d(kernel)
    c, h, w = in_layout.chw
    # weights[o, (ch, y, x)] = kernel[(y, x, ch), o]
    return _reverse_axes(kernel.reshape(h * w, c, kernel.shape[1])).reshape(kernel.shape[1], c * h * w)


def broadcast_shape_for(param_shape, axis, rank, layout):
    """Reshape target for a per-axis parameter (Scale/Bias/PReLU blob) to broadcast in Keras.

    ``param_shape`` covers Caffe axes ``axis .. axis+len-1`` of a ``rank``-d blob. Returns the
    Keras-side shape (without batch) and the transpose to apply to the parameter first.
    """
    a = caffe_axis(axis, rank) if rank else 0
    n = len(param_shape)
    caffe_full = [1] * rank
    for i, d in enumerate(param_shape):
        caffe_full[a + i] = d
    if layout.kind == "nhwc":
        kshape = [caffe_full[i] for i in NCHW_TO_NHWC]
        perm = [NCHW_TO_NHWC.index(a + i) for i in range(n)]
        order = sorted(range(n), key=lambda i: perm[i])
        return tuple(kshape[1:]), tuple(order)
    return tuple(caffe_full[1:]), tuple(range(n))


# --- Keras -> Caffe helpers ---------------------------------------------------------------


def caffe_shape(keras_shape, layout):
    """The Caffe blob shape that stores a Keras tensor shape in ``layout`` (inverse of keras_shape)."""
    s = tuple(keras_shape)
    if layout.kind == "nhwc":
        if len(s) != 4:
            raise ValueError(f"NHWC layout needs a 4-d shape. Received: {s}")
        return (s[0], s[3], s[1], s[2])
    return s


def caffe_axis_of(keras_axis_, rank, layout):
    """The Caffe blob axis holding Keras tensor axis ``keras_axis_`` (negative axes count from the end)."""
    return _caffe_axes_by_keras_axis(layout, rank)[caffe_axis(keras_axis_, rank)]


def same_element_order(keras_shape, layout):
    """True when the Caffe blob holds the Keras tensor's elements in the same memory order."""
    if layout.kind == "caffe":
        return True
    if layout.kind == "nhwc":
        _, h, w, c = keras_shape
        return h * w == 1 or c == 1
    c, h, w = layout.chw
    return h * w == 1 or c == 1


def caffe_permute_order(have, want):
    """The Caffe ``Permute`` order moving a 4-d blob from layout ``have`` to ``want`` (nhwc <-> caffe)."""
    if have.kind == "nhwc" and want.kind == "caffe":
        return NCHW_TO_NHWC
    if have.kind == "caffe" and want.kind == "nhwc":
        return NHWC_TO_NCHW
    raise ValueError(f"no single permute moves a tensor from {have} to {want}")


def keras_perm_to_caffe(perm, rank, have, want):
    """Caffe ``Permute`` order for the Keras transpose ``perm`` (batch axis included).

    The input blob is in layout ``have``, the output blob in layout ``want``.
    """
    src = NHWC_TO_NCHW if have.kind == "nhwc" else tuple(range(rank))  # blob axis j = keras axis src[j]
    dst = NHWC_TO_NCHW if want.kind == "nhwc" else tuple(range(rank))
    return tuple(src.index(perm[dst[i]]) for i in range(rank))


def params_to_caffe(values, layout):
    """A per-feature parameter vector of a Keras tensor (feature order of ``layout``) in Caffe order."""
    v = np.asarray(values)
    if layout.kind == "flat_hwc":
        return to_caffe_array(v.reshape(1, -1), layout).reshape(v.shape)
    return v


def keras_param_to_caffe(param, rank, layout):
    """A parameter broadcast against a Keras tensor (shape without batch) as (caffe axis, caffe blob).

    The non-1 dimensions must form one contiguous run of Caffe axes; returns None otherwise.
    """
    p = np.asarray(param)
    full = (1,) * (rank - 1 - p.ndim) + p.shape
    arr = p.reshape((1,) + full)
    if layout.kind == "nhwc":
        arr = arr.transpose(NHWC_TO_NCHW)
    shape = arr.shape
    big = [i for i in range(1, rank) if shape[i] != 1]
    if not big:
        return 1, arr.reshape(1)
    a, b = big[0], big[-1] + 1
    if big != list(range(a, b)):
        return None
    return a, arr.reshape(shape[a:b])
