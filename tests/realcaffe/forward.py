"""Forward a net in real BVLC pycaffe and save every blob; run by runtime.PyCaffe in a subprocess,
so that a Caffe CHECK failure (which aborts the process) fails one test, not the whole session.

    python forward.py PROTOTXT CAFFEMODEL|- INPUTS.npz OUT.npz

Inputs are set by name (the input blobs are reshaped to the given arrays first). OUT.npz holds the
value of every blob after the TEST-phase forward pass, in Caffe's blob order: an in-place blob holds
its final value. The Split layers' tops that Caffe inserts itself are left out.
"""
import sys

import caffe
import numpy as np


def main(prototxt, caffemodel, inputs, out):
    caffe.set_mode_cpu()
    if caffemodel == "-":
        net = caffe.Net(prototxt, caffe.TEST)
    else:
        net = caffe.Net(prototxt, caffe.TEST, weights=caffemodel)
    feeds = np.load(inputs)
    for name in feeds.files:
        net.blobs[name].reshape(*feeds[name].shape)
    net.reshape()
    for name in feeds.files:
        net.blobs[name].data[...] = feeds[name]
    net.forward()
    inserted = {t for name, layer in zip(net._layer_names, net.layers) if layer.type == "Split"
                for t in net.top_names[name]}
    np.savez(out, **{n: np.array(b.data) for n, b in net.blobs.items() if n not in inserted})


if __name__ == "__main__":
    main(*sys.argv[1:])
