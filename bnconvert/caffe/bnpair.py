"""Pairing each BatchNorm with the Scale that holds its gamma and beta, through the graph."""
from __future__ import annotations


def paired_scale(net, bn):
    """The Scale layer that applies gamma/beta to ``bn``'s output, or None.

    The Scale must be the only consumer of the BatchNorm's top (in place or not), have a single
    bottom, and scale per channel (axis 1, num_axes 1).
    """
    top = bn.tops[0]
    users = net.consumers.get(top, [])
    if len(users) != 1 or top in net.outputs:
        return None
    s = users[0]
    if s.type != "Scale" or len(s.bottoms) != 1:
        return None
    p = s.param.scale_param
    shape = net.shapes.get(top)
    rank = len(shape) if shape else 4
    if p.axis % rank != 1 or p.num_axes != 1:
        return None
    return s


def pair_batchnorm_scale(net):
    """Map BatchNorm layer name -> its paired Scale layer, for every BatchNorm that has one."""
    pairs = {}
    for L in net.layers:
        if L.type == "BatchNorm":
            s = paired_scale(net, L)
            if s is not None:
                pairs[L.name] = s
    return pairs


def batchnorm_stats(bn):
    """(mean, variance, factor) of a BatchNorm with weights: the stored blobs divided by s.

    s == 0 gives zeros, as Caffe does (it scales by 0 when the factor is 0).
    """
    import numpy as np

    mean, var, s = bn.blobs[0], bn.blobs[1], float(np.asarray(bn.blobs[2]).ravel()[0])
    k = 0.0 if s == 0 else 1.0 / s
    with np.errstate(all="ignore"):  # overflow to inf / NaN is warned about per layer (weights.py)
        return (mean.astype(np.float64) * k).astype(np.float32), (var.astype(np.float64) * k).astype(np.float32), s


def use_global_stats(bn, phase):
    p = bn.param.batch_norm_param
    return p.use_global_stats if p.HasField("use_global_stats") else phase == "TEST"
