"""Shape inference, computed exactly as Caffe computes it.

Each rule takes a layer and its bottom shapes and returns (top shapes, weight blob shapes).
Layer types without a rule get unknown (None) shapes, which propagate downstream.
"""
from __future__ import annotations

import math

from ..errors import GraphError, ShapeError
from . import ssd
from .io import check_shape

RULES = {}


def rule(*types):
    def deco(fn):
        for t in types:
            if t in RULES:
                raise ValueError(f"shape rule for {t!r} registered twice")
            RULES[t] = fn
        return fn

    return deco


class _Err:
    """Builds a layer's ShapeError, and records its warnings on the net (``err.warn``)."""

    def __init__(self, layer, path, net=None):
        self.layer, self.path, self.net = layer, path, net

    def __call__(self, msg, hint=None):
        return ShapeError(msg, file=self.path, layer=self.layer.name, layer_type=self.layer.type, hint=hint)

    def warn(self, msg):
        if self.net is not None:
            self.net.warn(f"layer '{self.layer.name}' ({self.layer.type}): {msg}")


# Blob counts Caffe's Layer::CheckBlobCounts enforces: type -> (min bottoms, max bottoms,
# min tops, max tops); None = no limit. "=" in the tops slot: as many tops as bottoms.
_ARITY = {
    "Convolution": (1, None, "=", None), "ConvolutionDepthwise": (1, None, "=", None),
    "DepthwiseConvolution": (1, None, "=", None), "Deconvolution": (1, None, "=", None),
    "Pooling": (1, 1, 1, 2), "InnerProduct": (1, 1, 1, 1), "Split": (1, 1, 1, None),
    "Slice": (1, 1, 1, None), "Eltwise": (2, None, 1, 1), "Concat": (1, None, 1, 1),
    "Crop": (2, 2, 1, 1), "Axpy": (3, 3, 1, 1), "Scale": (1, 2, 1, 1), "Bias": (1, 2, 1, 1),
    "Flatten": (1, 1, 1, 1), "Reshape": (1, 1, 1, 1), "Permute": (1, 1, 1, 1), "ArgMax": (1, 1, 1, 1),
    "Reduction": (1, 1, 1, 1), "Tile": (1, 1, 1, 1),
    "BN": (1, 1, 1, 1), "Interp": (1, 1, 1, 1), "Upsample": (1, 2, 1, 1),  # fork layers (c2k/resize.py)
    "PriorBox": (1, None, 1, 1), "DetectionOutput": (3, 4, 1, 1),  # SSD's PriorBox declares no bottom count
}


def check_arity(L, err):
    """Refuse a layer with a bottom/top count Caffe refuses (before any shape rule indexes them)."""
    if L.type in _ARITY:
        bmin, bmax, tmin, tmax = _ARITY[L.type]
    elif L.type in _SAME:
        bmin, bmax, tmin, tmax = 1, 1, 1, 1
    else:
        return
    nb, nt = len(L.bottoms), len(L.tops)
    if tmin == "=":
        tmin = tmax = nb
    if nb < bmin or (bmax is not None and nb > bmax) or nt < tmin or (tmax is not None and nt > tmax):
        def span(lo, hi):
            return str(lo) if lo == hi else (f"at least {lo}" if hi is None else f"{lo} to {hi}")
        raise GraphError(f"{L.type} takes {span(bmin, bmax)} bottom(s) and {span(tmin, tmax)} top(s), "
                         f"but this layer has {nb} bottom(s) and {nt} top(s)", file=err.path, layer=L.name,
                         layer_type=L.type)


def _pair(values, h_field, w_field, p, default, name, err):
    """Caffe's (value | value_h/value_w) convention for 2-d spatial parameters."""
    if p.HasField(h_field) or p.HasField(w_field):
        if len(values):
            raise err(f"give either {name} or {name}_h/{name}_w, not both")
        return int(getattr(p, h_field)), int(getattr(p, w_field))
    vals = list(values)
    if not vals:
        return default, default
    if len(vals) == 1:
        return int(vals[0]), int(vals[0])
    if len(vals) == 2:
        return int(vals[0]), int(vals[1])
    raise err(f"{name} has {len(vals)} values; only 2-d spatial layers are supported")


def conv_geometry(p, err):
    """(kh, kw), (sh, sw), (ph, pw), (dh, dw) of a ConvolutionParameter."""
    k = _pair(p.kernel_size, "kernel_h", "kernel_w", p, None, "kernel_size", err)
    if k[0] is None:
        raise err("convolution has no kernel_size")
    s = _pair(p.stride, "stride_h", "stride_w", p, 1, "stride", err)
    pd = _pair(p.pad, "pad_h", "pad_w", p, 0, "pad", err)
    d = list(p.dilation) or [1]
    if len(d) > 2:
        raise err("dilation has more than 2 values")
    d = (int(d[0]), int(d[-1]))
    if min(k) <= 0 or min(s) <= 0 or min(d) <= 0 or min(pd) < 0:
        raise err(f"invalid convolution geometry: kernel {k}, stride {s}, pad {pd}, dilation {d}")
    return k, s, pd, d


def _need4(shape, err, what="bottom"):
    if len(shape) != 4:
        raise err(f"{what} must be 4-d (N,C,H,W), got shape {tuple(shape)}")


@rule("Convolution", "ConvolutionDepthwise", "DepthwiseConvolution")
def _conv(L, ins, err):
    p = L.param.convolution_param
    x = _same_bottoms(ins, err)
    _need4(x, err)
    _conv_checks(p, err)
    k, s, pd, d = conv_geometry(p, err)
    n, c, h, w = x
    group = c if L.type != "Convolution" else (p.group or 1)
    if c % group or p.num_output % group:
        raise err(f"group {group} must divide both input channels {c} and num_output {p.num_output}")
    oh = (h + 2 * pd[0] - (d[0] * (k[0] - 1) + 1)) // s[0] + 1
    ow = (w + 2 * pd[1] - (d[1] * (k[1] - 1) + 1)) // s[1] + 1
    if oh <= 0 or ow <= 0:
        raise err(f"output would be {oh}x{ow}: the kernel does not fit the {h}x{w} input")
    params = [(p.num_output, c // group, k[0], k[1])] + ([(p.num_output,)] if p.bias_term else [])
    return [(n, p.num_output, oh, ow)] * len(ins), params


def _same_bottoms(ins, err):
    """Caffe's convolutions accept several bottoms (one top each, shared weights) of one shape."""
    for y in ins[1:]:
        if tuple(y) != tuple(ins[0]):
            raise err(f"all bottoms must have the same shape: {tuple(ins[0])} vs {tuple(y)}")
    return ins[0]


def _conv_checks(p, err):
    """Fields of ConvolutionParameter that change the result are refused or warned about."""
    if p.axis != 1:
        raise err(f"convolution axis {p.axis} is not supported (only axis 1, the channel axis)",
                  hint="transpose the input so that channels are axis 1")
    if p.num_output == 0:
        raise err("num_output must be positive. Received: 0")
    # force_nd_im2col only picks Caffe's N-d im2col code path; the result is identical.
    if p.engine == p.CUDNN and any(v > 1 for v in p.dilation):
        err.warn("engine CUDNN with dilation > 1 is refused by Caffe built with cuDNN; "
                 "converted with the CAFFE engine's (dilated) semantics")


@rule("Deconvolution")
def _deconv(L, ins, err):
    p = L.param.convolution_param
    x = _same_bottoms(ins, err)
    _need4(x, err)
    _conv_checks(p, err)
    k, s, pd, d = conv_geometry(p, err)
    n, c, h, w = x
    group = p.group or 1
    if c % group or p.num_output % group:
        raise err(f"group {group} must divide both input channels {c} and num_output {p.num_output}")
    oh = s[0] * (h - 1) + d[0] * (k[0] - 1) + 1 - 2 * pd[0]
    ow = s[1] * (w - 1) + d[1] * (k[1] - 1) + 1 - 2 * pd[1]
    if oh <= 0 or ow <= 0:
        raise err(f"output would be {oh}x{ow}")
    params = [(c, p.num_output // group, k[0], k[1])] + ([(p.num_output,)] if p.bias_term else [])
    return [(n, p.num_output, oh, ow)] * len(ins), params


def pooling_geometry(L, x, err):
    """Kernel, stride, pad and output size of a Pooling layer, as Caffe computes them."""
    p = L.param.pooling_param
    n, c, h, w = x
    if p.global_pooling:
        if p.HasField("kernel_size") or p.HasField("kernel_h") or p.HasField("kernel_w"):
            raise err("global_pooling and kernel_size cannot both be set", hint="remove kernel_size")
        return (h, w), (1, 1), (0, 0), (1, 1), True
    if p.HasField("kernel_size"):
        if p.HasField("kernel_h") or p.HasField("kernel_w"):
            raise err("give either kernel_size or kernel_h/kernel_w, not both")
        k = (p.kernel_size, p.kernel_size)
    elif p.HasField("kernel_h") and p.HasField("kernel_w"):
        k = (p.kernel_h, p.kernel_w)
    else:
        raise err("pooling needs kernel_size (or kernel_h and kernel_w), or global_pooling")
    pd = (p.pad_h, p.pad_w) if (p.HasField("pad_h") or p.HasField("pad_w")) else (p.pad, p.pad)
    s = (p.stride_h, p.stride_w) if (p.HasField("stride_h") or p.HasField("stride_w")) else (p.stride, p.stride)
    if min(k) <= 0 or min(s) <= 0:
        raise err(f"invalid pooling geometry: kernel {k}, stride {s}")
    if pd[0] >= k[0] or pd[1] >= k[1]:
        raise err(f"pad {pd} must be smaller than the kernel {k}")
    ceil = pooling_ceil(L, err)
    oh, ow = (_pool_out(size, kk, ss, pp, ceil) for size, kk, ss, pp in zip((h, w), k, s, pd))
    if oh <= 0 or ow <= 0:
        raise err(f"output would be {oh}x{ow}: the kernel {k} does not fit the {h}x{w} input")
    return k, s, pd, (oh, ow), False


def _pool_out(size, k, s, pad, ceil):
    """Caffe's pooled size, in exact integer arithmetic (ceil or floor of (size+2p-k)/s, plus 1)."""
    num = size + 2 * pad - k
    out = (-(-num // s) if ceil else num // s) + 1
    # Caffe clips a last window that would start inside the bottom/right padding.
    if pad and (out - 1) * s >= size + pad:
        out -= 1
    return out


def _pool_checks(L, x, err):
    """Warn about PoolingParameter fields that are ignored or whose effect depends on the engine."""
    p = L.param.pooling_param
    if p.global_pooling:
        pads = (p.pad, p.pad_h, p.pad_w)
        strides = [v for f, v in (("stride", p.stride), ("stride_h", p.stride_h), ("stride_w", p.stride_w))
                   if p.HasField(f)]
        if any(pads):
            err.warn("pad is ignored with global_pooling (BVLC Caffe refuses pad != 0 here; a fork that "
                     "accepts it may pool over a padded window): converted as an unpadded global pooling")
        if any(v != 1 for v in strides):
            err.warn("stride is ignored with global_pooling (the output is 1x1 either way)")
        return
    if p.engine == p.CUDNN and p.pool == p.AVE and len(L.tops) == 1:
        k, s, pd, (oh, ow), _ = pooling_geometry(L, x, err)
        over = any((o - 1) * st + kk > size + 2 * pp for o, st, kk, size, pp in zip((oh, ow), s, k, x[2:], pd))
        if over:
            err.warn("engine CUDNN average pooling divides the overhanging last window by the full kernel "
                     "size, while the CAFFE engine divides by the part inside the padded input: "
                     "converted with the CAFFE engine's semantics, the last row/column may differ "
                     "from a cuDNN-run Caffe")


def pooling_ceil(L, err=None):
    """True if the layer rounds output sizes up (Caffe's default)."""
    p = L.param.pooling_param
    has_round = p.HasField("round_mode")
    has_ceil = p.HasField("ceil_mode")
    if has_round and has_ceil:
        ceil_r = p.round_mode == p.CEIL
        if ceil_r != p.ceil_mode and err is not None:
            raise err("both round_mode and ceil_mode are set and they disagree",
                      hint="keep only one of them")
        return ceil_r
    if has_ceil:
        return bool(p.ceil_mode)
    return p.round_mode == p.CEIL


@rule("Pooling")
def _pool(L, ins, err):
    x = ins[0]
    _need4(x, err)
    _, _, _, (oh, ow), _ = pooling_geometry(L, x, err)
    _pool_checks(L, x, err)
    return [(x[0], x[1], oh, ow)] * len(L.tops), []


def _axis(a, rank, err):
    if a < -rank or a >= rank:
        raise err(f"axis {a} is out of range for a {rank}-d blob")
    return a % rank


@rule("InnerProduct")
def _ip(L, ins, err):
    p = L.param.inner_product_param
    x = ins[0]
    a = _axis(p.axis, len(x), err)
    k = math.prod(x[a:])
    wshape = (k, p.num_output) if p.transpose else (p.num_output, k)
    return [tuple(x[:a]) + (p.num_output,)], [wshape] + ([(p.num_output,)] if p.bias_term else [])


_SAME = ("ReLU", "PReLU", "ELU", "Sigmoid", "TanH", "AbsVal", "BNLL", "Power", "Exp", "Log", "Threshold", "Clip",
         "Swish", "Dropout", "LRN", "Softmax", "BatchNorm", "MVN", "ReLU6", "ShuffleChannel", "Scale", "Bias",
         "Normalize", "HardSigmoid", "Mish")


@rule(*_SAME)
def _same(L, ins, err):
    x = ins[0]
    t = L.type
    params = []
    if t == "BatchNorm":
        if len(x) < 2:
            raise err(f"BatchNorm needs at least 2 axes, got shape {tuple(x)}")
        params = [(x[1],), (x[1],), (1,)]
    elif t == "PReLU":
        if len(x) < 2 and not L.param.prelu_param.channel_shared:
            raise err(f"PReLU needs a channel axis, got shape {tuple(x)}")
        params = [()] if L.param.prelu_param.channel_shared else [(x[1],)]
    elif t in ("Scale", "Bias"):
        p = L.param.scale_param if t == "Scale" else L.param.bias_param
        if len(ins) == 1:
            a = _axis(p.axis, len(x), err)
            na = p.num_axes
            if na < -1:
                raise err(f"num_axes must be >= -1. Received: {na}")
            end = len(x) if na == -1 else a + na
            if end > len(x):
                raise err(f"axis {p.axis} with num_axes {na} runs past the {len(x)}-d bottom")
            pshape = tuple(x[a:end])
            params = [pshape]
            if t == "Scale" and p.bias_term:
                params.append(pshape)
        else:
            y = ins[1]
            a = _axis(p.axis, len(x), err)
            if tuple(x[a:a + len(y)]) != tuple(y):
                raise err(f"second bottom shape {tuple(y)} does not match bottom shape {tuple(x)} at axis {a}")
            if t == "Scale" and p.bias_term:
                params = [tuple(y)]
    elif t == "Normalize":
        if len(x) < 2:
            raise err(f"Normalize needs a channel axis, got shape {tuple(x)}")
        params = [(1,)] if L.param.norm_param.channel_shared else [(x[1],)]
    elif t == "Softmax":
        _axis(L.param.softmax_param.axis, len(x), err)
    elif t == "LRN":
        _lrn_checks(L.param.lrn_param, x, err)
    return [tuple(x)], params


def _lrn_checks(p, x, err):
    """Caffe's LRNLayer::LayerSetUp and Reshape CHECKs."""
    if p.local_size % 2 != 1:
        raise err(f"LRN only supports odd values for local_size (Caffe CHECKs this). Received: {p.local_size}")
    if len(x) != 4:
        raise err(f"LRN needs a 4-d bottom (num, channels, height, width). Received: shape {tuple(x)}")


@rule("Split")
def _split(L, ins, err):
    return [tuple(ins[0])] * len(L.tops), []


@rule("Eltwise")
def _eltwise(L, ins, err):
    first = tuple(ins[0])
    for s in ins[1:]:
        if tuple(s) != first:
            raise err(f"Eltwise bottoms differ in shape: {first} vs {tuple(s)}")
    p = L.param.eltwise_param
    if len(p.coeff) and len(p.coeff) != len(ins):
        raise err(f"Eltwise has {len(p.coeff)} coeffs for {len(ins)} bottoms")
    return [first], []


@rule("Axpy")
def _axpy(L, ins, err):
    a, x, y = (tuple(v) for v in ins)
    if x != y:
        raise err(f"Axpy's second and third bottoms differ in shape: {x} vs {y}")
    if len(a) < 2 or a[:2] != x[:2] or any(d != 1 for d in a[2:]):
        raise err(f"Axpy's first bottom {a} must be N x C (x 1 x 1) of the bottom {x}")
    return [x], []


@rule("Concat")
def _concat(L, ins, err):
    p = L.param.concat_param
    x = ins[0]
    a = p.concat_dim if p.HasField("concat_dim") else p.axis
    a = _axis(a, len(x), err)
    out = list(x)
    for s in ins[1:]:
        if len(s) != len(x) or any(s[i] != x[i] for i in range(len(x)) if i != a):
            raise err(f"Concat bottoms {tuple(x)} and {tuple(s)} differ outside axis {a}")
        out[a] += s[a]
    return [tuple(out)], []


@rule("Slice")
def _slice(L, ins, err):
    p = L.param.slice_param
    x = ins[0]
    a = _axis(p.slice_dim if p.HasField("slice_dim") else p.axis, len(x), err)
    n = len(L.tops)
    pts = list(p.slice_point)
    if pts:
        if len(pts) != n - 1:
            raise err(f"{len(pts)} slice points for {n} tops")
        bounds = [0] + pts + [x[a]]
        if any(bounds[i] >= bounds[i + 1] for i in range(n)):
            raise err(f"slice points {pts} are not increasing within 0..{x[a]}")
    else:
        if x[a] % n:
            raise err(f"axis {a} of size {x[a]} does not split evenly into {n} tops")
        bounds = [i * (x[a] // n) for i in range(n + 1)]
    outs = []
    for i in range(n):
        s = list(x)
        s[a] = bounds[i + 1] - bounds[i]
        outs.append(tuple(s))
    return outs, []


def slice_bounds(L, x):
    p = L.param.slice_param
    a = (p.slice_dim if p.HasField("slice_dim") else p.axis) % len(x)
    n = len(L.tops)
    pts = list(p.slice_point)
    bounds = [0] + pts + [x[a]] if pts else [i * (x[a] // n) for i in range(n + 1)]
    return a, bounds


@rule("Flatten")
def _flatten(L, ins, err):
    p = L.param.flatten_param
    x = ins[0]
    a = _axis(p.axis, len(x), err)
    e = _axis(p.end_axis, len(x), err)
    if e < a:
        raise err(f"end_axis {p.end_axis} comes before axis {p.axis}")
    return [tuple(x[:a]) + (math.prod(x[a:e + 1]),) + tuple(x[e + 1:])], []


def reshape_shape(L, x, err):
    p = L.param.reshape_param
    dims = list(p.shape.dim)
    rank = len(x)
    start = p.axis if p.axis >= 0 else rank + p.axis + 1
    if not 0 <= start <= rank:
        raise err(f"reshape axis {p.axis} is out of range for a {rank}-d blob")
    na = p.num_axes
    end = rank if na == -1 else start + na
    if na < -1 or end > rank:
        raise err(f"reshape num_axes {na} is out of range")
    out = list(x[:start])
    infer = None
    for i, d in enumerate(dims):
        if d == 0:
            if start + i >= rank:
                raise err(f"shape dim {i} is 0 (copy) but the bottom has no axis {start + i}")
            out.append(x[start + i])
        elif d == -1:
            if infer is not None:
                raise err("reshape has more than one -1 dimension")
            infer = len(out)
            out.append(1)
        elif d < -1:
            raise err(f"reshape dimension {d} is invalid")
        else:
            out.append(int(d))
    out += list(x[end:])
    total = math.prod(x)
    known = math.prod(out)
    if infer is not None:
        if known == 0 or total % known:
            raise err(f"cannot infer the -1 dimension: {total} elements into {out}")
        out[infer] = total // known
    if math.prod(out) != total:
        raise err(f"reshape to {tuple(out)} changes the element count ({total})")
    return tuple(out)


@rule("Reshape")
def _reshape(L, ins, err):
    return [reshape_shape(L, ins[0], err)], []


@rule("Crop")
def _crop(L, ins, err):
    if len(ins) != 2:
        raise err("Crop needs two bottoms (the blob to crop and the reference)")
    x, ref = ins
    p = L.param.crop_param
    if len(x) != len(ref):
        raise err(f"Crop bottoms have different ranks: {tuple(x)} and {tuple(ref)}")
    a = _axis(p.axis, len(x), err)
    if len(p.offset) not in (0, 1, len(x) - a):
        raise err(f"crop has {len(p.offset)} offsets; give 0, 1 or {len(x) - a} (one per cropped axis)")
    offs = crop_offsets(L, len(x))
    out = list(x)
    for i in range(a, len(x)):
        if offs[i] + ref[i] > x[i]:
            raise err(f"crop of axis {i} at offset {offs[i]} to size {ref[i]} runs past size {x[i]}")
        out[i] = ref[i]
    return [tuple(out)], []


def crop_offsets(L, rank):
    p = L.param.crop_param
    a = p.axis % rank
    offs = [0] * rank
    o = list(p.offset)
    for i in range(a, rank):
        if len(o) == 1:
            offs[i] = o[0]
        elif len(o) > 1:
            offs[i] = o[i - a]
    if getattr(L, "coord_offsets", None) is not None:  # HED's fork (see coordmap.py)
        offs[-2:] = L.coord_offsets
    return offs


def permute_order(L, rank):
    order = list(L.param.permute_param.order)
    for i in range(rank):
        if i not in order:
            order.append(i)
    return order


@rule("Permute")
def _permute(L, ins, err):
    x = ins[0]
    order = permute_order(L, len(x))
    if sorted(order) != list(range(len(x))):
        raise err(f"permute order {list(L.param.permute_param.order)} is not a permutation of {len(x)} axes")
    return [tuple(x[i] for i in order)], []


@rule("ArgMax")
def _argmax(L, ins, err):
    p = L.param.argmax_param
    x = ins[0]
    if p.top_k < 1:
        raise err(f"top_k must not be less than 1. Received: {p.top_k}")
    if p.HasField("axis"):
        a = _axis(p.axis, len(x), err)
        if p.top_k > x[a]:
            raise err(f"top_k {p.top_k} is larger than axis size {x[a]}")
        s = list(x)
        s[a] = p.top_k
        return [tuple(s)], []
    if p.top_k > math.prod(x[1:]):
        raise err(f"top_k {p.top_k} is larger than the {math.prod(x[1:])} values per item of bottom shape "
                  f"{tuple(x)} (Caffe CHECKs top_k <= count(1))")
    s = [1] * max(len(x), 3)
    s[0] = x[0]
    s[2] = p.top_k
    if p.out_max_val:
        s[1] = 2
    return [tuple(s)], []


@rule("Reduction")
def _reduction(L, ins, err):
    x = ins[0]
    a = _axis(L.param.reduction_param.axis, len(x), err)
    return [tuple(x[:a])], []


@rule("Tile")
def _tile(L, ins, err):
    p = L.param.tile_param
    x = list(ins[0])
    a = _axis(p.axis, len(x), err)
    if p.tiles < 1:
        raise err(f"tiles must be >= 1. Received: {p.tiles}")
    x[a] *= p.tiles
    return [tuple(x)], []


@rule("PriorBox")
def _prior_box(L, ins, err):
    return [ssd.prior_box_shape(L.param.prior_box_param, ins, err)], []


@rule("DetectionOutput")
def _detection_output(L, ins, err):
    return [ssd.detection_output_shape(L.param.detection_output_param, ins, err)], []


# --- fork layers: BN (SegNet/ENet/PSPNet), Interp (DeepLab v2/PSPNet), Upsample (SegNet/ENet/YOLOv3 ports)

def bn_blob_count(L):
    """2 (SegNet/ENet: scale, shift) or 4 (PSPNet: scale, shift, mean, variance) when the
    prototxt tells which fork's BN this is, else None (the caffemodel's blob count decides)."""
    p = L.param.bn_param
    if p.HasField("bn_mode") or p.HasField("scale_filler") or p.HasField("shift_filler"):
        return 2
    if any(p.HasField(f) for f in ("slope_filler", "bias_filler", "momentum", "eps", "frozen", "engine")):
        return 4
    if len(L.param.param) > 2:  # Caffe refuses more param specs than blobs: only PSPNet's BN has more than 2
        return 4
    return None


@rule("BN")
def _bn(L, ins, err):
    x = ins[0]
    if len(x) != 4:
        raise err(f"BN needs a 4-d bottom (num, channels, height, width). Received: shape {tuple(x)}")
    n = bn_blob_count(L)
    return [tuple(x)], None if n is None else [(1, x[1], 1, 1)] * n


def interp_size(L, x, err):
    """Interp's output (height, width), by the fork's precedence of shrink/zoom/height+width."""
    p = L.param.interp_param
    if p.pad_beg > 0 or p.pad_end > 0:
        raise err(f"Interp supports only non-positive pad_beg/pad_end (cropping). "
                  f"Received: pad_beg={p.pad_beg}, pad_end={p.pad_end}")
    eff = [d + p.pad_beg + p.pad_end for d in x[2:]]
    shrink, zoom = p.HasField("shrink_factor"), p.HasField("zoom_factor")
    if (shrink and p.shrink_factor < 1) or (zoom and p.zoom_factor < 1):
        raise err(f"shrink_factor and zoom_factor must be >= 1. Received: shrink_factor={p.shrink_factor}, "
                  f"zoom_factor={p.zoom_factor}")
    if shrink:
        eff_out = [(d - 1) // p.shrink_factor + 1 for d in eff]
    if shrink and not zoom:
        out = eff_out
    elif zoom and not shrink:
        out = [d + (d - 1) * (p.zoom_factor - 1) for d in eff]
    elif p.HasField("height") and p.HasField("width"):
        out = [p.height, p.width]
    elif shrink and zoom:
        out = [d + (d - 1) * (p.zoom_factor - 1) for d in eff_out]
    else:
        raise err("Interp needs zoom_factor, shrink_factor, or both height and width")
    if min(eff) <= 0 or min(out) <= 0:
        raise err(f"Interp output {out[0]}x{out[1]} from an effective input {eff[0]}x{eff[1]}: both must be positive")
    return tuple(out)


@rule("Interp")
def _interp(L, ins, err):
    x = ins[0]
    _need4(x, err)
    return [(x[0], x[1]) + interp_size(L, x, err)], []


def upsample_size(L, ins, err):
    """Upsample's output (height, width): YOLOv3 ports (one bottom) multiply by ``scale``;
    SegNet/ENet (data and mask bottoms) take upsample_h/w, else scale(_h/_w) minus pad_out_h/w."""
    p = L.param.upsample_param
    x = ins[0]
    if len(ins) == 1:
        s = p.scale if p.HasField("scale") else 1  # the YOLOv3 ports' default
        if s < 1:
            raise err(f"scale must be >= 1. Received: {s}")
        return x[2] * s, x[3] * s
    if tuple(ins[1]) != tuple(x):
        raise err(f"the mask bottom {tuple(ins[1])} must have the shape of the data bottom {tuple(x)}")
    if p.HasField("upsample_h") and p.HasField("upsample_w"):
        if p.upsample_h <= 1 or p.upsample_w <= 1:
            raise err(f"upsample_h and upsample_w must be > 1. Received: {p.upsample_h}x{p.upsample_w}")
        return p.upsample_h, p.upsample_w
    if p.HasField("scale_h") != p.HasField("scale_w") or (p.HasField("scale_h") and p.HasField("scale")):
        raise err("give upsample_h and upsample_w, or scale, or scale_h and scale_w (without scale)")
    sh, sw = (p.scale_h, p.scale_w) if p.HasField("scale_h") else (p.scale, p.scale)
    if sh <= 1 or sw <= 1:
        raise err(f"the scale must be > 1. Received: {sh}x{sw}")
    if (p.pad_out_h and sh != 2) or (p.pad_out_w and sw != 2):
        raise err("pad_out_h/pad_out_w need a scale of 2")
    return x[2] * sh - int(p.pad_out_h), x[3] * sw - int(p.pad_out_w)


@rule("Upsample")
def _upsample(L, ins, err):
    x = ins[0]
    _need4(x, err)
    return [(x[0], x[1]) + tuple(upsample_size(L, ins, err))], []


def infer_shapes(net):
    """Fill ``net.shapes`` and each layer's ``top_shapes`` and ``param_shapes``.

    Blob counts, top shapes and weight shapes are all checked before anything of that size
    exists: a zero, negative or absurd dimension is a :class:`ShapeError` naming the layer.
    """
    for L in net.layers:
        err = _Err(L, net.path, net)
        if not L.bottoms:
            L.param_shapes = []
            if len(L.top_shapes) != len(L.tops):  # a non-input layer without bottoms: unknown
                L.top_shapes = [net.shapes.get(t) for t in L.tops]
                for t in L.tops:
                    net.shapes.setdefault(t, None)
            continue
        check_arity(L, err)
        ins = [net.shapes.get(b) for b in L.bottoms]
        fn = RULES.get(L.type)
        if fn is None or any(s is None for s in ins):
            outs, params = [None] * len(L.tops), None
        else:
            outs, params = _apply(fn, L, ins, err)
        L.top_shapes = list(outs)
        L.param_shapes = params
        for t, s in zip(L.tops, outs):
            net.shapes[t] = s


def _apply(fn, L, ins, err):
    try:
        outs, params = fn(L, ins, err)
    except (IndexError, KeyError, ValueError, TypeError, ZeroDivisionError, OverflowError) as e:
        # A rule met a combination it does not handle: report it as this layer's problem.
        raise err(f"cannot infer the output shape from bottoms {[tuple(s) for s in ins]} "
                  f"({type(e).__name__}: {e})") from None
    if len(outs) != len(L.tops):
        raise err(f"the layer has {len(L.tops)} top(s) but {L.type} produces {len(outs)}")
    for s in outs:
        check_shape(s, "top blob", file=err.path, layer=L.name, layer_type=L.type)
        if any(d <= 0 for d in s):
            raise err(f"top shape {s} has a zero or negative dimension")
    for i, s in enumerate(params or []):
        check_shape(s, f"weight blob {i}", file=err.path, layer=L.name, layer_type=L.type)
        if any(d <= 0 for d in s):
            raise err(f"weight blob {i} would have shape {tuple(s)}, with a zero or negative dimension")
    return outs, params
