"""Small helpers shared by the caffe->keras converter tests: write a prototxt, give it random
weights, convert it, and run the Keras model, OpenCV dnn, or a numpy reference on the same inputs."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnconvert.c2k import convert_caffe
from bnconvert.testing import random_caffemodel, random_inputs, run_keras

from helpers import assert_close


def input_layer(name, shape):
    dims = " ".join(f"dim: {d}" for d in shape)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {dims} }} }} }}\n'


def proto(body, shape=(2, 3, 8, 8), inputs=None):
    """A prototxt: Input layer(s) (default one named "data") followed by ``body``."""
    inputs = inputs or {"data": shape}
    return 'name: "t"\n' + "".join(input_layer(n, s) for n, s in inputs.items()) + body


@dataclass
class Case:
    path: Path
    caffemodel: Path | None
    net: object
    model: object
    report: dict

    def blobs(self, layer):
        return self.net.layer(layer).blobs

    def run(self, inputs):
        """Keras outputs in Caffe layout, by Caffe blob name."""
        outs = run_keras(self.model, inputs, list(self.report["inputs"]))
        return dict(zip(self.report["outputs"], outs))

    def opencv(self, inputs, names=None):
        import cv2

        names = list(names or self.report["outputs"])
        # OpenCV addresses outputs by the name of the layer that last wrote a blob, and top index.
        where = []
        for n in names:
            bid = self.net.final_blob(n)
            layer = self.net.producer[bid]
            where.append((layer.name, layer.tops.index(bid)))
        layers = sorted({w[0] for w in where})
        args = [str(self.path)] + ([str(self.caffemodel)] if self.caffemodel else [])
        cvnet = cv2.dnn.readNetFromCaffe(*args)
        cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        for n, a in inputs.items():
            cvnet.setInput(np.ascontiguousarray(a, np.float32), n)
        res = dict(zip(layers, cvnet.forwardAndRetrieve(layers)))
        return {n: np.asarray(res[layer][i]) for n, (layer, i) in zip(names, where)}


def convert(tmp_path, text, *, input_shapes=None, outputs=None, seed=0, name="net.prototxt", **kwargs):
    """Write ``text``, give it random weights, and convert it. A net without weights gets no caffemodel."""
    path = Path(tmp_path) / name
    path.write_text(text)
    cm = path.with_suffix(".caffemodel")
    net = random_caffemodel(str(path), str(cm), seed=seed, input_shapes=input_shapes)
    if not any(L.blobs for L in net.layers):
        cm = None
    model, report = convert_caffe(str(path), str(cm) if cm else None, input_shapes=input_shapes, outputs=outputs,
                                  **kwargs)
    return Case(path, cm, net, model, report)


def inputs_for(case, seed=1, batch=None):
    return random_inputs(case.net, seed=seed, batch=batch)


def check_opencv(tmp_path, text, *, batch=None, seed=0, **kwargs):
    """Convert ``text`` and compare every output with OpenCV dnn's. Returns (case, inputs, keras outputs)."""
    case = convert(tmp_path, text, seed=seed, **kwargs)
    x = inputs_for(case, batch=batch)
    got = case.run(x)
    ref = case.opencv(x, got)
    for n in got:
        assert_close(got[n], ref[n], n)
    return case, x, got


def check_numpy(tmp_path, text, reference, *, batch=None, seed=0, **kwargs):
    """Convert ``text`` and compare its outputs with ``reference(case, inputs) -> {blob: array}``."""
    case = convert(tmp_path, text, seed=seed, **kwargs)
    x = inputs_for(case, batch=batch)
    got = case.run(x)
    ref = reference(case, x)
    assert set(ref) == set(got), f"outputs {sorted(got)} != reference {sorted(ref)}"
    for n in got:
        assert_close(got[n], ref[n], n)
    return case, x, got
