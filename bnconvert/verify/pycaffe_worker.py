"""Run a net in pycaffe and save every top after every layer (run as a script, in its own process).

verify runs pycaffe apart from itself: Caffe ends the process on a failed CHECK (an unknown
layer type, a weight of the wrong shape), and its protobuf schema would share one process with
bnconvert's. This file imports nothing of bnconvert.

    python pycaffe_worker.py NET.prototxt WEIGHTS.caffemodel PHASE INPUTS.npz OUT.npz

writes ``OUT.npz`` (arrays named ``<layer index>:<top index>``) and prints one JSON line:
the layer names, their top names and the Caffe version, or ``{"error": ...}``.
"""
import json
import sys


def main(argv):
    prototxt, caffemodel, phase, inputs, out = argv[1:6]
    try:
        import numpy as np
        import caffe
        caffe.Net  # noqa: B018  (another module named caffe has no Net)
    except Exception as e:  # pycaffe missing or broken: a message, not a crash
        print(json.dumps({"error": "import", "message": f"{type(e).__name__}: {e}"}))
        return 3
    caffe.set_mode_cpu()
    net = caffe.Net(prototxt, caffemodel, getattr(caffe, phase))
    with np.load(inputs, allow_pickle=False) as z:
        for name in z.files:
            arr = z[name]
            net.blobs[name].reshape(*arr.shape)
            net.blobs[name].data[...] = arr
    net.reshape()
    blobs, tops = {}, []
    for i, lname in enumerate(net._layer_names):
        net._forward(i, i)
        names = list(net.top_names[lname])
        tops.append(names)
        for j, top in enumerate(names):
            blobs[f"{i}:{j}"] = np.array(net.blobs[top].data, copy=True)
    np.savez(out, **blobs)
    print(json.dumps({"layers": list(net._layer_names), "tops": tops,
                      "version": str(getattr(caffe, "__version__", "unknown version"))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
