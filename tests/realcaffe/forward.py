"""Forward nets in real BVLC pycaffe and save every blob: the worker process behind runtime.PyCaffe.
It runs apart from the tests, so a Caffe CHECK failure (which aborts the process) fails one test
only, and it is started once, so pycaffe is imported once.

    python forward.py        # then one JSON request a line on stdin:
                             # {"prototxt": ..., "caffemodel": ... or null, "inputs": IN.npz, "out": OUT.npz}

For each request it answers one line, REPLY + JSON ({"ok": true} or {"ok": false, "error": ...}), on
stdout. Inputs are set by name (the input blobs are reshaped to the given arrays first). OUT.npz holds
the value of every blob after the TEST-phase forward pass, in Caffe's blob order: an in-place blob
holds its final value. The Split layers' tops that Caffe inserts itself are left out.
"""
import json
import sys

import caffe
import numpy as np

REPLY = "pycaffe-forward: "


def forward(prototxt, caffemodel, inputs, out):
    if caffemodel is None:
        net = caffe.Net(prototxt, caffe.TEST)
    else:
        net = caffe.Net(prototxt, caffe.TEST, weights=caffemodel)
    with np.load(inputs) as feeds:
        arrays = {name: feeds[name] for name in feeds.files}
    for name, a in arrays.items():
        net.blobs[name].reshape(*a.shape)
    net.reshape()
    for name, a in arrays.items():
        net.blobs[name].data[...] = a
    net.forward()
    inserted = {t for name, layer in zip(net._layer_names, net.layers) if layer.type == "Split"
                for t in net.top_names[name]}
    np.savez(out, **{n: np.array(b.data) for n, b in net.blobs.items() if n not in inserted})


def main():
    caffe.set_mode_cpu()
    for line in sys.stdin:
        try:
            forward(**json.loads(line))
            reply = {"ok": True}
        except Exception as e:  # a Python-level error: report it and serve the next request
            reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(REPLY + json.dumps(reply), flush=True)


if __name__ == "__main__":
    main()
