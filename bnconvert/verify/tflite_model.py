"""A TFLite flatbuffer as verify's model: ``bnconvert verify NET WEIGHTS model.tflite``.

The outputs come from the model's signature, run from the input (end to end). Other blobs are
compared where the interpreter keeps a tensor for them: the Caffe files are converted (as
caffe2keras does) to learn which Keras layer makes each blob and in which layout, and the TFLite
tensor named after that layer (its first fused op; TensorFlow appends ``_1`` to the layer's name
scope) with the layer's output shape stands for the blob. Blobs whose layer was fused into another
op have no tensor of their own and are listed as having no counterpart.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .. import layout as lay
from ..errors import VerificationError
from ..naming import keras_name
from .probes import caffe_form, to_caffe
from .result import NOT_COMPARABLE


def is_tflite(model):
    return isinstance(model, (str, os.PathLike)) and Path(model).suffix.lower() == ".tflite"


def _layer_of(tensor_name):
    """The Keras layer whose op makes a TFLite tensor: 'model_1/conv1_1/convolution;...' -> 'conv1'."""
    parts = tensor_name.split(";", 1)[0].split("/")
    return re.sub(r"_\d+$", "", parts[1]) if len(parts) > 2 else None


def tflite_values(net, path, feeds, ref_vals, progress=None):
    """(values by blob version id in Caffe layout, {} (no layer check), description, where it ran,
    the blob versions read from the model's signature outputs).

    A signature output is the net's output, or a blob the conversion was told to output
    (``caffe2keras --outputs``, e.g. an SSD's heads beside its DetectionOutput), named
    ``keras_name(blob)``."""
    from ..c2k import convert_net
    from ..tflite import interpreter

    if not Path(path).is_file():
        raise VerificationError("the TFLite model does not exist", file=path)
    _, _, eng = convert_net(net, progress=progress)
    by_layer = {}
    for bid in ref_vals:
        t = eng.tensors.get(bid)
        if t is not None and bid not in net.inputs:
            by_layer.setdefault(t._keras_history.operation.name, []).append(bid)
    interp = interpreter(path, preserve_all_tensors=True)  # every intermediate tensor kept readable
    keys = list(interp.get_signature_list())
    if len(keys) != 1:
        raise VerificationError(f"expected a TFLite model with one signature. Received: {keys}", file=path)
    runner = interp.get_signature_runner(keys[0])
    ins = {n: d["index"] for n, d in runner.get_input_details().items()}
    outs = {n: d["index"] for n, d in runner.get_output_details().items()}
    del runner  # it must not hold the interpreter's buffers when the input is resized
    names = {net.caffe_name[b]: b for b in net.inputs}
    if set(ins) != set(names):
        raise VerificationError(f"the TFLite model's inputs {sorted(ins)} are not the net's {sorted(names)}",
                                file=path)
    for n, i in ins.items():  # the batch dimension is dynamic
        x = np.ascontiguousarray(lay.to_keras_array(feeds[n], eng.layouts[names[n]]), np.float32)
        interp.resize_tensor_input(i, x.shape, strict=False)
        ins[n] = (i, x)
    interp.allocate_tensors()
    for i, x in ins.values():
        interp.set_tensor(i, x)
    interp.invoke()
    values = {}
    for d in interp.get_tensor_details():
        layer = _layer_of(d["name"])
        for bid in by_layer.get(layer, ()):
            shape = tuple(int(s) for s in eng.tensors[bid].shape[1:])
            if tuple(int(s) for s in d["shape"][1:]) == shape and len(d["shape"]) == len(shape) + 1:
                values[bid] = _unit_axes(to_caffe(np.array(interp.get_tensor(d["index"])), eng.layouts[bid],
                                                  net.shapes[bid]), _shape(ref_vals, bid, net))
    signature = {}
    for bid in net.outputs:
        name = eng.tensors[bid]._keras_history.operation.name if bid in eng.tensors else None
        if name in outs:
            signature[bid] = outs[name]
    for caffe_name, bid in net.final_versions().items():
        if keras_name(caffe_name) in outs and bid in eng.tensors and bid not in net.inputs:
            signature.setdefault(bid, outs[keras_name(caffe_name)])
    for bid, index in signature.items():
        a = np.array(interp.get_tensor(index))
        if bid not in net.outputs and tuple(a.shape[1:]) != tuple(int(s) for s in eng.tensors[bid].shape[1:]):
            continue  # not in the layout this conversion gives the blob: left to the tensor read above
        values[bid] = _unit_axes(to_caffe(a, eng.layouts[bid], net.shapes[bid]), _shape(ref_vals, bid, net))
    values = {b: caffe_form(net, b, v) for b, v in values.items()}  # e.g. detections as Caffe's [1, 1, N, 7]
    judged = {b for b in signature if b in values}
    return values, {}, f"TFLite model {path}", "TFLite interpreter (CPU)", judged



def _shape(ref_vals, bid, net):
    ref = ref_vals.get(bid)
    return tuple(ref.shape) if ref is not None else tuple(net.shapes[bid])


def _unit_axes(a, caffe_shape):
    """Caffe's unit axes back (e.g. 1x1x100x7 detections that TFLite holds as 1x100x7)."""
    same = [d for d in a.shape if d != 1] == [d for d in caffe_shape if d != 1]
    return a.reshape(caffe_shape) if a.shape != tuple(caffe_shape) and same else a


def judge_rows(rows, judged=()):
    """TFLite gives no layer check (its intermediate tensors cannot be fed the reference's values), and
    a deep net's float32 noise end to end reaches ~1e-4 relative: as for a Keras model, the end-to-end
    error judges the net's outputs only, and the model's other signature outputs (``judged``, blob
    version ids). Other rows keep their end-to-end numbers, marked so."""
    for r in rows:
        if r.compared and not r.is_output and r.version not in judged:
            r.status = NOT_COMPARABLE
            r.note = "end-to-end error only: TFLite has no layer check; the net's outputs are judged"
    return rows
