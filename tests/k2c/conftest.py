"""Shared checks for the keras2caffe tests: convert, run the Caffe files in OpenCV, compare with Keras."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import assert_close


def opencv_net(deploy):
    """A copy of ``deploy`` OpenCV dnn can run: OpenCV lacks BVLC's Clip layer, so each Clip becomes
    max(min(x, hi), lo) from ReLU and Power layers (BVLC types OpenCV has), only for this check."""
    from bnconvert.caffe.io import pb2

    net = pb2().NetParameter()
    for L in deploy.layer:
        if L.type != "Clip":
            net.layer.add().CopyFrom(L)
            continue
        lo, hi = L.clip_param.min, L.clip_param.max
        chain = [("Power", dict(scale=-1.0, shift=hi)), ("ReLU", None), ("Power", dict(scale=-1.0, shift=hi))]
        if lo > -1e30:
            chain += [("Power", dict(shift=-lo)), ("ReLU", None), ("Power", dict(shift=lo))]
        bottom = L.bottom[0]
        for i, (t, p) in enumerate(chain):
            n = net.layer.add(name=L.name if i == len(chain) - 1 else f"{L.name}#clip{i}", type=t)
            n.bottom.append(bottom)
            bottom = L.top[0] if i == len(chain) - 1 else f"{L.name}#clip{i}"
            n.top.append(bottom)
            if p:
                for k, v in p.items():
                    setattr(n.power_param, k, v)
    return net


def run_converted(model, tmp_path, input_shape=None, seed=0, x=None, target="caffe"):
    """Convert ``model`` for ``target`` (an opencv export runs as written, a caffe one through
    :func:`opencv_net`); returns (keras outputs as NCHW arrays by output name, opencv outputs, report)."""
    import cv2

    from bnconvert import layout as lay
    from bnconvert.caffe.io import write_caffemodel, write_prototxt
    from bnconvert.k2c import convert

    deploy, weights, report = convert(model, input_shape=input_shape, target=target)
    write_prototxt(deploy, tmp_path / "net.prototxt")
    write_caffemodel(weights, tmp_path / "net.caffemodel")
    write_prototxt(deploy if target == "opencv" else opencv_net(deploy), tmp_path / "cv.prototxt")
    rng = np.random.default_rng(seed)
    if x is None:
        xs = [rng.standard_normal(report_shape).astype(np.float32) for report_shape in report["inputs"].values()]
    else:
        xs = [x]
    kx = [lay.to_keras_array(a, lay.default_layout(a.ndim)) for a in xs]
    kout = model(kx if len(kx) > 1 else kx[0], training=False)
    kout = kout if isinstance(kout, (list, tuple)) else [kout]
    kres = [lay.to_caffe_array(np.asarray(o), lay.default_layout(np.asarray(o).ndim)) for o in kout]
    cv = cv2.dnn.readNetFromCaffe(str(tmp_path / "cv.prototxt"), str(tmp_path / "net.caffemodel"))
    cv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    for name, a in zip(report["inputs"], xs):
        cv.setInput(a, name)
    names = list(report["outputs"])
    # OpenCV looks outputs up by layer name: the last layer writing each output top.
    writer = {t: layer.name for layer in deploy.layer for t in layer.top}
    cres = cv.forward([writer[n] for n in names])
    return dict(zip(names, kres)), dict(zip(names, [np.asarray(c) for c in cres])), report


@pytest.fixture
def check(tmp_path):
    """check(model, input_shape=None) asserts OpenCV running the converted net matches Keras."""

    def _check(model, input_shape=None, seed=0, x=None, target="caffe"):
        kres, cres, report = run_converted(model, tmp_path, input_shape, seed, x, target)
        for name in kres:
            ref = kres[name]
            got = cres[name].reshape(ref.shape) if cres[name].size == ref.size and cres[name].ndim != ref.ndim \
                else cres[name]
            assert_close(got, ref, name)
        return report

    return _check
