"""Random but realistic weights for a Caffe net, and runners for comparing outputs.

Used by the test suite, the benchmarks and the bundled samples. No Keras import.
"""
from __future__ import annotations

import numpy as np

from .caffe.graph import INPUT_TYPES, parse_net, build_graph
from .caffe.io import array_to_blob, pb2, write_caffemodel


def random_blobs(layer, shapes, rng, bn_factor=None):
    """Random blobs of the given shapes, realistic for the layer type.

    BatchNorm gets mean ~ N(0, 0.5), variance ~ U(0.5, 2) and a moving-average factor s != 1,
    stored as Caffe stores them (mean*s, variance*s, s). Scale gammas sit near 1.
    """
    t = layer.type
    if t == "BatchNorm":
        c = shapes[0][0]
        s = float(bn_factor if bn_factor is not None else rng.uniform(5.0, 60.0))
        mean = rng.normal(0, 0.5, c).astype(np.float32)
        var = rng.uniform(0.5, 2.0, c).astype(np.float32)
        return [mean * s, var * s, np.array([s], np.float32)]
    if t == "BN":  # the forks' BN: scale, shift (SegNet/ENet) [, mean, variance (PSPNet)], each 1xCx1x1
        shp = tuple(shapes[0])
        stats = [rng.uniform(0.6, 1.4, shp), rng.normal(0, 0.2, shp),
                 rng.normal(0, 0.5, shp), rng.uniform(0.5, 2.0, shp)]
        return [a.astype(np.float32) for a in stats[:len(shapes)]]
    out = []
    for i, shp in enumerate(shapes):
        shp = tuple(shp)
        if t in ("Scale", "Normalize") and i == 0:
            out.append(rng.uniform(0.6, 1.4, shp).astype(np.float32))
        elif t == "PReLU":
            out.append(rng.uniform(0.05, 0.3, shp).astype(np.float32))
        elif len(shp) >= 2:
            fan_in = int(np.prod(shp[1:])) if t != "InnerProduct" or not layer.param.inner_product_param.transpose \
                else shp[0]
            if t == "Deconvolution":
                fan_in = int(shp[0] * np.prod(shp[2:])) // max(1, layer.param.convolution_param.stride[0]
                                                              if layer.param.convolution_param.stride else 1) ** 2
            std = np.sqrt(2.0 / max(fan_in, 1))
            out.append(rng.normal(0, std, shp).astype(np.float32))
        else:
            out.append(rng.normal(0, 0.1, shp).astype(np.float32))
    return out


def random_caffemodel(prototxt, out_path, *, seed=0, input_shapes=None, phase="TEST", stages=(), bn_factor=None):
    """Write a caffemodel with random weights for every layer of ``prototxt``'s inference graph.

    Returns the :class:`~bnconvert.caffe.graph.Net` (with ``blobs`` filled).
    """
    net_param, upgrades = parse_net(prototxt)
    net = build_graph(net_param, phase=phase, stages=stages, input_shapes=input_shapes, path=prototxt,
                      upgrades=upgrades)
    rng = np.random.default_rng(seed)
    model = pb2().NetParameter(name=net.name)
    for L in net.layers:  # every layer, with or without blobs, as Caffe saves them
        lp = model.layer.add(name=L.name, type=L.type)
        if L.type in INPUT_TYPES or not getattr(L, "param_shapes", None):
            continue
        L.blobs = random_blobs(L, L.param_shapes, rng, bn_factor)
        for b in L.blobs:
            array_to_blob(b, lp.blobs.add())
    write_caffemodel(model, out_path)
    return net


def random_inputs(net, seed=0, batch=None):
    """Seeded N(0,1) inputs (NCHW float32) for every net input, by Caffe blob name."""
    rng = np.random.default_rng(seed)
    out = {}
    for bid in net.inputs:
        shape = list(net.shapes[bid])
        if batch is not None:
            shape[0] = batch
        out[net.caffe_name[bid]] = rng.standard_normal(shape).astype(np.float32)
    return out


def run_opencv(prototxt, caffemodel, inputs, outputs):
    """Forward the net in OpenCV dnn (an independent Caffe runtime). Returns {blob: NCHW array}."""
    import cv2

    cvnet = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    for name, arr in inputs.items():
        cvnet.setInput(np.ascontiguousarray(arr, dtype=np.float32), name)
    res = cvnet.forward(list(outputs))
    return {o: np.asarray(r) for o, r in zip(outputs, res)}


def run_keras(model, inputs, report_inputs):
    """Run a converted Keras model on NCHW inputs; returns its outputs in Caffe layout, by output name."""
    from . import layout as lay

    feeds = [lay.to_keras_array(inputs[n], lay.default_layout(inputs[n].ndim)) for n in report_inputs]
    outs = model(feeds if len(feeds) > 1 else feeds[0], training=False)
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    res = []
    for o in outs:
        a = np.asarray(o)
        res.append(lay.to_caffe_array(a, lay.default_layout(a.ndim)))
    return res
