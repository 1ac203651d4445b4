"""Folding inference BatchNorm (+ its Scale) into the preceding Convolution / InnerProduct.

Works on the Caffe-side graph (:class:`bnconvert.caffe.graph.Net` with weights attached), before
the Keras conversion, so the converted model simply has no BatchNormalization layers. For a
convolution ``y = W * x + b`` followed by ``z = gamma * (y - mean) / sqrt(var + eps) + beta``::

    a  = gamma / sqrt(var + eps)          (per output channel)
    W' = W * a,   b' = (b - mean) * a + beta

computed in float64 from the stored blobs (statistics divided by Caffe's factor s), then cast to
float32. A layer is folded only when the result is exactly the same function: the BatchNorm
uses its stored statistics in the net's phase, it is the only consumer of the convolution's
output, that output is not itself a net output, and the convolution's output channels are the
BatchNorm's channel axis. Folding is for deployment: a folded model cannot fine-tune its
BatchNorm statistics any more, so it is never done by default. No Keras import.
"""
from __future__ import annotations

import numpy as np

from .caffe.bnpair import paired_scale, use_global_stats
from .caffe.io import pb2

CONV_TYPES = ("Convolution", "ConvolutionDepthwise", "DepthwiseConvolution")
FOLDABLE = CONV_TYPES + ("InnerProduct",)


def fold_batchnorm(net):
    """Fold every foldable inference BatchNorm (and its paired Scale) into its producer.

    Args:
        net: a :class:`~bnconvert.caffe.graph.Net` with weights attached; changed in place.

    Returns:
        A list of ``(batchnorm_name, scale_name_or_None, folded_into_name)``, in net order.
    """
    folded = []
    for bn in [L for L in net.layers if L.type == "BatchNorm"]:
        target = foldable_producer(net, bn)
        if target is None:
            continue
        scale = paired_scale(net, bn)
        if scale is not None and not _scale_ready(scale):
            scale = None
        _fold_weights(target, bn, scale)
        _remove_layers(net, target, [bn] + ([scale] if scale is not None else []))
        folded.append((bn.name, scale.name if scale is not None else None, target.name))
    for i, L in enumerate(net.layers):
        L.index = i
    return folded


def foldable_producer(net, bn):
    """The Convolution / InnerProduct that ``bn`` can be folded into, or None."""
    if len(bn.bottoms) != 1 or len(bn.tops) != 1 or len(bn.blobs) != 3:
        return None
    if not use_global_stats(bn, net.phase):
        return None  # batch statistics: not a fixed affine map
    src = bn.bottoms[0]
    conv = net.producer.get(src)
    if conv is None or conv.type not in FOLDABLE or conv.tops != [src] or len(conv.bottoms) != 1:
        return None
    if not conv.blobs or src in net.outputs or [id(c) for c in net.consumers.get(src, [])] != [id(bn)]:
        return None
    if conv.type == "InnerProduct" and not _ip_channels_on_axis1(net, conv):
        return None
    return conv


def _ip_channels_on_axis1(net, ip):
    """An InnerProduct's outputs sit on axis 1 (the BatchNorm channel axis) when its axis is 1."""
    rank = len(net.shapes[ip.bottoms[0]])
    return ip.param.inner_product_param.axis % rank == 1


def _scale_ready(scale):
    p = scale.param.scale_param
    return len(scale.blobs) >= (2 if p.bias_term else 1)


def _bn_affine(bn, scale):
    """(a, c) in float64 with ``bn_scale(y) == a * y + c`` per channel."""
    mean, var, s = (np.asarray(b, np.float64).ravel() for b in bn.blobs)
    k = 0.0 if s[0] == 0 else 1.0 / s[0]
    mean, var = mean * k, var * k
    a = 1.0 / np.sqrt(var + float(bn.param.batch_norm_param.eps))
    c = -mean * a
    if scale is not None:
        gamma = np.asarray(scale.blobs[0], np.float64).ravel()
        beta = np.asarray(scale.blobs[1], np.float64).ravel() if scale.param.scale_param.bias_term else 0.0
        a, c = a * gamma, c * gamma + beta
    return a, c


def _fold_weights(conv, bn, scale):
    """Replace ``conv``'s blobs by the folded kernel and bias (adding a bias if it had none)."""
    a, c = _bn_affine(bn, scale)
    w = np.asarray(conv.blobs[0], np.float64)
    if conv.type == "InnerProduct" and conv.param.inner_product_param.transpose:
        w = w * a[None, :]  # K, O
    else:
        w = w * a.reshape((-1,) + (1,) * (w.ndim - 1))  # O first
    has_bias = _bias_term(conv)
    b = np.asarray(conv.blobs[1], np.float64).ravel() if has_bias else np.zeros_like(a)
    conv.blobs = [w.astype(np.float32), (b * a + c).astype(np.float32)]
    if not has_bias:
        _add_bias_term(conv, a.shape[0])


def _bias_term(layer):
    if layer.type == "InnerProduct":
        return layer.param.inner_product_param.bias_term
    return layer.param.convolution_param.bias_term


def _add_bias_term(layer, n):
    """Give the layer its own copy of its LayerParameter with bias_term on (net.param is unchanged)."""
    param = pb2().LayerParameter()
    param.CopyFrom(layer.param)
    if layer.type == "InnerProduct":
        param.inner_product_param.bias_term = True
    else:
        param.convolution_param.bias_term = True
    layer.param = param
    if getattr(layer, "param_shapes", None):
        layer.param_shapes = list(layer.param_shapes[:1]) + [(n,)]


def _remove_layers(net, conv, removed):
    """Drop ``removed`` (BatchNorm, Scale) and let their readers read ``conv``'s top instead."""
    c, last = conv.tops[0], removed[-1].tops[0]
    users = net.consumers.pop(last, [])
    for U in users:
        U.bottoms = [c if b == last else b for b in U.bottoms]
    if users:
        net.consumers[c] = users
    else:
        net.consumers.pop(c, None)
    if last in net.outputs:
        net.outputs = [c if o == last else o for o in net.outputs]
        net.caffe_name[c] = net.caffe_name[last]  # the output keeps its Caffe name
    for L in removed:
        for t in L.tops:
            for table in (net.caffe_name, net.producer, net.shapes, net.consumers):
                table.pop(t, None)
    gone = {id(L) for L in removed}
    net.layers = [L for L in net.layers if id(L) not in gone]
