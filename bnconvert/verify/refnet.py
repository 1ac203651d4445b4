"""The net handed to a reference runtime: exactly the layers the conversion keeps.

A deploy prototxt may still hold Accuracy or loss layers, TRAIN-only layers or Data layers;
the conversion drops or replaces them, and a runtime given the file as written would run a
different net (or fail on a missing ``label``). So the reference runs the inference graph
itself: an Input layer per net input (in the shape verify feeds), then every kept layer with
its phase rules applied. A Crop whose offsets come from HED's coordinate maps
(``crop_offsets="coordmap"``) gets them as ``crop_param``, so BVLC's Crop in either runtime crops
where the fork does. For OpenCV dnn, which is known to differ from Caffe on some layers,
the net is rewritten so that it computes what Caffe computes (see :func:`opencv_net`).
"""
from __future__ import annotations

import re

from ..caffe.graph import INPUT_TYPES
from ..caffe.io import pb2, prototxt_text


_ROUND_FLOOR = re.compile(r"^(\s*)round_mode: FLOOR$", re.M)
_ROUND_CEIL = re.compile(r"^\s*round_mode: CEIL\n", re.M)


def inference_net(net, shapes):
    """The ``NetParameter`` of the inference graph (``shapes``: input name -> N,C,H,W)."""
    n = pb2().NetParameter()
    n.name = net.name or "net"
    names = {L.name for L in net.layers if L.type not in INPUT_TYPES}
    for bid in net.inputs:
        cname = net.caffe_name[bid]
        lp = n.layer.add()
        lp.name = cname if cname not in names else f"{cname}__input"
        lp.type = "Input"
        lp.top.append(cname)
        lp.input_param.shape.add().dim.extend(int(d) for d in shapes[cname])
    for L in net.layers:
        if L.type in INPUT_TYPES:
            continue
        lp = n.layer.add()
        lp.CopyFrom(L.param)
        del lp.include[:]
        del lp.exclude[:]
        del lp.blobs[:]
        if L.coord_offsets is not None:  # HED's fork (crop_offsets="coordmap"): its offsets, said explicitly
            lp.crop_param.axis = 2
            lp.crop_param.offset.extend(int(o) for o in L.coord_offsets)
    return n


def caffe_net(net, shapes):
    """Prototxt text for BVLC Caffe (pycaffe): the inference graph as it is."""
    return prototxt_text(inference_net(net, shapes))


def opencv_net(net, shapes):
    """Prototxt text for OpenCV dnn, and the InnerProduct layers whose weights must be transposed.

    Where OpenCV is known to differ from Caffe:

    - Axpy (SENet's fork): Caffe computes ``a * x + y`` for bottoms ``(a, x, y)``
      (hujie-frank/SENet ``axpy_layer.cpp``: the top starts as a copy of bottom 2, then
      ``caffe_axpy`` adds ``a * bottom 1``); OpenCV computes ``a * y + x``. ``x`` and ``y`` have
      the same shape (Caffe checks it), so handing OpenCV the bottoms ``(a, y, x)`` makes it
      compute Caffe's value exactly.
    - InnerProduct with ``transpose: true``: OpenCV ignores the flag and reads the K x N weight
      as if it were N x K. The layer is handed over without the flag, and its weight is given
      transposed (see :func:`opencv_weights`).
    - LRN with ``norm_region: WITHIN_CHANNEL``: OpenCV's differs from Caffe's. Caffe computes it
      with its own Power, Pooling and Eltwise layers (``lrn_layer.cpp``: ``x * (1 + alpha *
      AVE-pool(x^2, kernel local_size, pad (local_size - 1) / 2))^-beta``), which OpenCV runs as
      Caffe does, so OpenCV is handed those layers.
    - Pooling ``round_mode`` (BVLC Caffe's field 13): OpenCV's schema has ``ceil_mode`` (a bool)
      there instead and cannot read the prototxt; ``round_mode: FLOOR`` becomes
      ``ceil_mode: false`` (CEIL is the default of both).
    """
    n = inference_net(net, shapes)
    layers = []
    for lp in n.layer:
        layers += _lrn_within_channel(lp) if lp.type == "LRN" and lp.lrn_param.norm_region == 1 else [lp]
    del n.layer[:]
    n.layer.extend(layers)
    transposed = []
    for lp in n.layer:
        if lp.type == "Axpy" and len(lp.bottom) == 3:
            lp.bottom[1], lp.bottom[2] = lp.bottom[2], lp.bottom[1]
        elif lp.type == "InnerProduct" and lp.inner_product_param.transpose:
            lp.inner_product_param.transpose = False
            transposed.append(lp.name)
    text = _ROUND_CEIL.sub("", prototxt_text(n))
    return _ROUND_FLOOR.sub(r"\1ceil_mode: false", text), transposed


def _lrn_within_channel(lp):
    """Caffe's own decomposition of a WITHIN_CHANNEL LRN (see :func:`opencv_net`)."""
    L = pb2().LayerParameter
    p, x, name = lp.lrn_param, lp.bottom[0], lp.name
    square = L(name=f"{name}__square", type="Power", bottom=[x], top=[f"{name}__square"])
    square.power_param.power = 2.0
    pool = L(name=f"{name}__pool", type="Pooling", bottom=[square.top[0]], top=[f"{name}__pool"])
    pool.pooling_param.pool = pool.pooling_param.AVE
    pool.pooling_param.kernel_size = p.local_size
    pool.pooling_param.pad = (p.local_size - 1) // 2
    power = L(name=f"{name}__power", type="Power", bottom=[pool.top[0]], top=[f"{name}__power"])
    power.power_param.power, power.power_param.scale, power.power_param.shift = -p.beta, p.alpha, 1.0
    prod = L(name=name, type="Eltwise", bottom=[x, power.top[0]], top=list(lp.top))
    prod.eltwise_param.operation = prod.eltwise_param.PROD
    return [square, pool, power, prod]


def opencv_weights(caffemodel, transposed):
    """The caffemodel's bytes with the weight of each layer in ``transposed`` stored N x K.

    Only those blobs are touched: their elements are reordered as stored in the file (``data``
    or ``double_data``), so the reference still reads every weight itself.
    """
    import numpy as np

    m = pb2().NetParameter()
    with open(caffemodel, "rb") as f:
        m.ParseFromString(f.read())
    for lp in list(m.layer) + list(m.layers):
        if lp.name not in transposed or not lp.blobs:
            continue
        b = lp.blobs[0]
        dims = list(b.shape.dim) or [d for d in (b.num, b.channels, b.height, b.width)]
        k = int(np.prod(dims[:-1])) if len(dims) > 1 else 1
        field = "double_data" if len(b.double_data) else "data"
        vals = np.asarray(getattr(b, field))
        if vals.size != k * dims[-1]:
            continue  # a misshapen blob: left for the runtime to refuse
        t = vals.reshape(k, dims[-1]).T.reshape(-1)
        del getattr(b, field)[:]
        getattr(b, field).extend(t.tolist())
        b.ClearField("num"), b.ClearField("channels"), b.ClearField("height"), b.ClearField("width")
        b.shape.ClearField("dim")
        b.shape.dim.extend([int(dims[-1]), int(k)])
    return m.SerializeToString()
