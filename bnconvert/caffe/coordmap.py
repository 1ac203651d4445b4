"""Crop offsets from coordinate maps, the rule of HED's Caffe fork (s9xie/hed).

BVLC's ``Crop`` takes its offsets from ``crop_param`` (0 when none is given). The Caffe fork that
HED was trained with has no ``crop_param``: its ``Crop`` layer aligns bottom 0 to bottom 1 through
the net's coordinate maps (``crop_layer.cpp``, ``util/coords.hpp``). Every spatial layer maps a
position in its bottom to one in its top, per axis, as ``top = a * bottom + b``:

- Convolution, Pooling: ``a = 1/stride``, ``b = (pad - (kernel - 1) / 2) / stride``;
- Deconvolution: ``a = stride``, ``b = (kernel - 1) / 2 - pad``;
- pointwise layers, Split, Slice, Concat, Eltwise, LRN, MVN, Softmax: the identity;
- Crop: ``a = 1``, ``b = -offset``.

The fork walks back from bottom 0 through first bottoms to the net input, then from bottom 1
(also through first bottoms) to the first blob on that path, composes the maps of the layers
between, and crops at ``-b`` of the map from bottom 0 to bottom 1, which must have ``a == 1`` and
an integer ``b <= 0``. In-place layers are passed over (the fork looks a blob up by its first
producer). BVLC's ``python/caffe/coord_map.py`` (used to write FCN's ``crop_param``) composes
the same maps; it also knows dilation, BatchNorm, Scale, Bias and ELU, which the fork lacks, and
they are honoured here in the same way. Arithmetic is exact (fractions); the fork's float check
accepts exactly the integer results.
"""
from __future__ import annotations

from fractions import Fraction

from ..errors import GraphError

MODES = ("param", "coordmap")

IDENTITY_TYPES = frozenset({
    "AbsVal", "BNLL", "Dropout", "Exp", "Log", "Power", "ReLU", "PReLU", "Sigmoid", "TanH", "Threshold",
    "Concat", "Eltwise", "MVN", "Softmax", "Split", "Slice", "LRN",
    "BatchNorm", "Scale", "Bias", "ELU",  # pass-through in BVLC's coord_map.py; absent from the fork
})

IDENTITY = ((Fraction(1), Fraction(0)), (Fraction(1), Fraction(0)))


class NoCoordMap(Exception):
    """A layer on the walk has no coordinate map, or the walk cannot align the bottoms."""


def compose(outer, inner):
    """``outer(inner(x))`` per axis."""
    return tuple((a1 * a2, a1 * b2 + b1) for (a1, b1), (a2, b2) in zip(outer, inner))


def inverse(m):
    return tuple((1 / a, -b / a) for a, b in m)


def filter_map(kernel, stride, pad):
    """Top -> bottom map of a sliding window (Deconvolution's bottom -> top map)."""
    return tuple((Fraction(s), Fraction(k - 1, 2) - p) for k, s, p in zip(kernel, stride, pad))


class _BadGeometry(NoCoordMap):
    """An invalid kernel/stride/pad on the walk; shape inference reports it on its own layer."""


def _err(msg, hint=None):
    """The ``err`` callback of the shapes helpers."""
    return _BadGeometry(msg)


def layer_map(L, crop_offsets):
    """The bottom -> top coordinate map of layer ``L`` (``crop_offsets``: offsets of earlier Crops)."""
    from .shapes import conv_geometry, crop_offsets as param_offsets, pooling_geometry

    t = L.type
    if t in IDENTITY_TYPES:
        return IDENTITY
    if t in ("Convolution", "Deconvolution"):
        k, s, pd, d = conv_geometry(L.param.convolution_param, _err)
        k = tuple((kk - 1) * dd + 1 for kk, dd in zip(k, d))
        m = filter_map(k, s, pd)
        return m if t == "Deconvolution" else inverse(m)
    if t == "Pooling":
        if L.param.pooling_param.global_pooling:
            raise NoCoordMap(f"layer '{L.name}' (Pooling): global pooling has no fixed coordinate map")
        # The window does not depend on the input size; a large placeholder passes the fit check.
        k, s, pd, _, _ = pooling_geometry(L, (1, 1, 1 << 20, 1 << 20), _err)
        return inverse(filter_map(k, s, pd))
    if t == "Crop":
        offs = crop_offsets.get(L.index) or param_offsets(L, 4)[2:]
        return tuple((Fraction(1), Fraction(-o)) for o in offs)
    raise NoCoordMap(f"layer '{L.name}' ({t}) has no coordinate map")


def _canonical(net, bid):
    """The blob version that an in-place chain started from (the fork sees one blob)."""
    while True:
        p = net.producer.get(bid)
        if p is None or not p.bottoms:
            return bid
        i = p.tops.index(bid)
        if i < len(p.bottoms) and net.caffe_name[p.bottoms[i]] == net.caffe_name[bid]:
            bid = p.bottoms[i]
        else:
            return bid


def _step(net, bid):
    """The canonical first bottom of ``bid``'s producer, or None at an input."""
    p = net.producer.get(bid)
    if p is None or not p.bottoms:
        return None
    return _canonical(net, p.bottoms[0])


def _map_to(net, bid, stop, crop_offsets):
    m = IDENTITY
    while bid != stop:
        m = compose(m, layer_map(net.producer[bid], crop_offsets))
        bid = _step(net, bid)
    return m


def coord_crop_offsets(net, L, crop_offsets):
    """HED's (offset_h, offset_w) for Crop layer ``L``; raises NoCoordMap when the fork would fail."""
    b0, b1 = (_canonical(net, b) for b in L.bottoms[:2])
    path, bid = {b0}, b0
    while (bid := _step(net, bid)) is not None:
        path.add(bid)
    inter = b1
    while inter not in path:
        inter = _step(net, inter)
        if inter is None:
            raise NoCoordMap("its bottoms are not connected through first bottoms")
    m0, m1 = _map_to(net, b0, inter, crop_offsets), _map_to(net, b1, inter, crop_offsets)
    crop = compose(m1, inverse(m0))
    offs = []
    for axis, (a, b) in zip("hw", crop):
        if a != 1:
            raise NoCoordMap(f"the bottoms differ in scale along {axis} ({a} per pixel)")
        if b > 0 or b.denominator != 1:
            raise NoCoordMap(f"the offset along {axis} would be {-b}, not a non-negative integer")
        offs.append(int(-b))
    return tuple(offs)


def assign_crop_offsets(net, mode):
    """Give every param-less Crop its offsets by ``mode``; warn where the other reading differs.

    ``mode`` "param" (BVLC) keeps ``crop_param``; "coordmap" (HED's fork) computes the offsets of
    Crops without ``crop_param``. Sets ``L.coord_offsets`` and returns {layer index: (h, w)}.
    """
    if mode not in MODES:
        raise GraphError(f"crop offsets must be one of {', '.join(MODES)}. Received: {mode!r}", file=net.path)
    found, differ = {}, []
    for L in net.layers:
        if L.type != "Crop" or L.param.HasField("crop_param") or len(L.bottoms) != 2:
            continue
        try:
            found[L.index] = coord_crop_offsets(net, L, found)
        except _BadGeometry:
            continue  # infer_shapes, which runs next, refuses the faulty layer itself
        except NoCoordMap as e:
            if mode == "coordmap":
                raise GraphError(f"HED's coordinate-map crop offsets cannot be computed: {e}", file=net.path,
                                 layer=L.name, layer_type=L.type,
                                 hint="convert without --crop-offsets coordmap (BVLC's offset 0)") from None
            continue
        if mode == "coordmap":
            L.coord_offsets = found[L.index]
        elif any(found[L.index]):
            differ.append(f"'{L.name}' at {found[L.index]}")
    if differ:
        net.warn(f"{len(differ)} Crop layer(s) without crop_param crop at offset (0, 0) as BVLC Caffe does (used "
                 f"here); HED's Caffe fork (s9xie/hed) aligns them through the coordinate maps instead: "
                 f"{', '.join(differ)}. If the weights come from that fork, convert with --crop-offsets coordmap "
                 f"(crop_offsets='coordmap')")
    return found


def crop_rows(net):
    """One row per Crop layer: its bottoms, the offsets used and where they come from, and the
    coordinate-map offsets (HED's fork for a param-less Crop; what BVLC's coord_map.py would write
    into crop_param otherwise), None where they cannot be computed, with the reason."""
    from .shapes import crop_offsets as used_offsets

    rows, fork = [], {}
    for L in net.layers:
        if L.type != "Crop" or len(L.bottoms) != 2:
            continue
        offs, why = None, None
        try:
            offs = coord_crop_offsets(net, L, fork)
        except NoCoordMap as e:
            why = str(e)
        if offs is not None and not L.param.HasField("crop_param"):
            fork[L.index] = offs  # what later param-less Crops compose with, as in assign_crop_offsets
        rank = len(net.shapes[L.bottoms[0]] or ()) or 4
        axis = L.param.crop_param.axis % rank
        source = ("crop_param" if L.param.HasField("crop_param") else
                  "coordinate maps (HED's fork)" if L.coord_offsets is not None else "no crop_param: 0 (BVLC)")
        rows.append({"layer": L.name, "bottom": net.caffe_name[L.bottoms[0]],
                     "reference": net.caffe_name[L.bottoms[1]], "axis": axis,
                     "offsets": list(used_offsets(L, rank)[axis:]), "source": source,
                     "coordmap_offsets": None if offs is None else list(offs),
                     "coordmap_problem": why})
    return rows
