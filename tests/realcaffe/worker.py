"""Real BVLC pycaffe in a process of its own: the worker behind runtime.PyCaffe.

pycaffe is never imported into the test process: that would make ``caffe`` importable for every
later test of the session (bnconvert's verify looks for it), and a Caffe CHECK failure aborts its
process, which here fails one test only. The worker imports pycaffe once and serves requests.

    python worker.py         # first line out: REPLY + {"ok": true, "file": ..., "layer_types": [...]}
                             # (or {"ok": false, "error": ...} when 'import caffe' fails); then
                             # one JSON request a line on stdin, one REPLY line out for each:
    {"op": "forward", "prototxt": P, "caffemodel": M or null, "inputs": IN.npz, "out": OUT.npz}
    {"op": "parse", "prototxt": P}    # BVLC's own text parser: {"ok": true, "types": [...]}

forward sets the inputs by name (the input blobs are reshaped to the given arrays first) and saves
to OUT.npz every blob after the TEST-phase forward pass, in Caffe's blob order: an in-place blob
holds its final value. The Split layers' tops that Caffe inserts itself are left out.
"""
import json
import sys

import numpy as np

REPLY = "pycaffe-worker: "


def forward(caffe, prototxt, caffemodel, inputs, out):
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
    return {}


def parse(caffe, prototxt):
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    with open(prototxt) as f:
        net = text_format.Merge(f.read(), caffe_pb2.NetParameter())
    return {"types": sorted({L.type for L in net.layer})}


def answer(reply):
    print(REPLY + json.dumps(reply), flush=True)


def main():
    try:
        import caffe
    except Exception as e:  # ImportError, or protobuf's TypeError from a clashing schema
        answer({"ok": False, "error": f"{type(e).__name__}: {str(e)[:300]}"})
        return 1
    caffe.set_mode_cpu()
    answer({"ok": True, "file": caffe.__file__, "layer_types": sorted(caffe.layer_type_list())})
    ops = {"forward": forward, "parse": parse}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            answer({"ok": True, **ops[request.pop("op")](caffe, **request)})
        except Exception as e:  # a Python-level error (a text parse error included): report, serve on
            answer({"ok": False, "error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
