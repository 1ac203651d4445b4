"""Writing the inference graph back out as a plain deploy NetParameter.

The result has one Input layer per net input (Data layers and legacy input fields replaced),
only the layers of the chosen phase, no loss/accuracy layers and no include/exclude rules, so
runtimes that ignore phase rules (such as OpenCV dnn) read exactly the converted graph.
"""
from __future__ import annotations

from .graph import INPUT_TYPES
from .io import array_to_blob, pb2


def deploy_net_param(net, with_weights=False):
    """A ``NetParameter`` for ``net``'s inference graph (optionally carrying its blobs)."""
    out = pb2().NetParameter(name=net.name)
    inp = out.layer.add(name="input", type="Input")
    for bid in net.inputs:
        inp.top.append(net.caffe_name[bid])
        inp.input_param.shape.add().dim.extend(net.shapes[bid])
    for L in net.layers:
        if L.type in INPUT_TYPES:
            continue
        lp = out.layer.add()
        lp.CopyFrom(L.param)
        for f in ("include", "exclude", "blobs", "param"):
            lp.ClearField(f)
        lp.ClearField("bottom")
        lp.ClearField("top")
        lp.bottom.extend(net.caffe_name[b] for b in L.bottoms)
        lp.top.extend(net.caffe_name[t] for t in L.tops)
        if with_weights:
            for b in L.blobs:
                array_to_blob(b, lp.blobs.add())
    return out
