"""The Keras side of verify: which Keras tensor stands for each Caffe blob version, and running them.

A model converted here is probed through the conversion's own tensor table. A model loaded from
a file is matched by the names the conversion gives (:class:`~bnconvert.naming.NamePlan`): a net
output is the model output named after its blob, any other blob version the output of the Keras
layer planned for the Caffe layer that writes it. So in ``conv -> BatchNorm (in place)`` with
``conv`` a net output, Caffe's pre-BatchNorm ``conv`` is compared with the Conv2D (``conv_1``),
and its final value with the model output ``conv``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import layout as lay
from ..caffe.bnpair import pair_batchnorm_scale
from ..caffe.graph import INPUT_TYPES
from ..errors import ConversionError, VerificationError
from ..naming import keras_name, plan_names
from .device import to_device, where


@dataclass
class Probe:
    """A Keras tensor standing for one Caffe blob version, and how it is laid out."""

    tensor: object
    layout: lay.Layout


def keras_probes(net, keras_model, ref_vals, progress=None):
    """((model, probes by blob version id, input probes by Caffe input name), model description)."""
    if keras_model is None:
        from ..c2k import convert_net

        model, _, eng = convert_net(net, progress=progress)
        probes = {b: Probe(eng.tensors[b], eng.layouts[b]) for b in ref_vals if b in eng.tensors}
        inputs = {net.caffe_name[b]: Probe(eng.tensors[b], eng.layouts[b]) for b in net.inputs}
        return (model, probes, inputs), "converted from the Caffe files"
    model, desc = load_model(keras_model)
    inputs = model_inputs(model, net)
    by_output = {t._keras_history.operation.name: t for t in model.outputs}
    final = net.final_versions()
    exposed = [b for c, b in final.items() if keras_name(c) in by_output and b not in net.inputs]
    pairs = pair_batchnorm_scale(net)
    plan = plan_names(net, outputs=exposed or None, pairs=pairs)
    owner = {s.name: bn for bn, s in pairs.items()}
    probes, known = {}, {id(p.tensor): p.layout for p in inputs.values()}
    for L in net.layers:
        if L.type in INPUT_TYPES or L.name in pairs:
            continue
        for i, bid in enumerate(L.tops):
            if bid in ref_vals:
                t = _find_tensor(model, plan, by_output, net, L, i, bid, owner.get(L.name, L.name))
                if t is not None:
                    probes[bid] = Probe(t, infer_layout(t, net.shapes[bid], known))
                    known.setdefault(id(t), probes[bid].layout)
    return (model, probes, inputs), desc


def load_model(keras_model):
    import keras

    if isinstance(keras_model, (str, os.PathLike)):
        path = Path(keras_model)
        if path.is_dir():
            what = "a TensorFlow SavedModel directory" if (path / "saved_model.pb").is_file() else "a directory"
            raise VerificationError(f"the Keras model is {what}; verify reads Keras model files only (.keras or .h5), "
                                    f"since it needs the model's layers", file=path,
                                    hint="pass the .keras/.h5 file, or leave MODEL out to convert the Caffe files")
        if not path.exists():
            raise VerificationError(f"the Keras model {path} does not exist", file=path)
        from ..caffe.io import readable_file
        from ..errors import ParseError

        try:
            readable_file(path, "the Keras model")
        except ParseError as e:
            raise VerificationError(e.message, file=path, hint=e.hint) from None
        if path.suffix.lower() not in (".keras", ".h5", ".hdf5"):
            raise VerificationError(f"the Keras model must be a .keras or .h5 file. Received: '{path.suffix}'",
                                    file=path, hint="pass the model the conversion wrote, or leave MODEL out")
        try:
            return keras.saving.load_model(str(path), compile=False), str(path)
        except Exception as e:  # Keras raises many types for unreadable files
            msg = " ".join(str(e).split())[:300]
            raise VerificationError(f"cannot load the Keras model: {type(e).__name__}: {msg}", file=path) from None
    if not isinstance(keras_model, keras.Model):
        raise VerificationError(f"keras_model must be a keras.Model or a path. Received: {type(keras_model).__name__}")
    return keras_model, f"keras.Model '{keras_model.name}'"


def _find_tensor(model, plan, by_output, net, L, i, bid, owner):
    """The Keras tensor of top ``i`` of Caffe layer ``L`` by the naming plan, or None.

    Candidates whose size does not fit the blob are passed over (a model named otherwise).
    """
    size = int(np.prod(net.shapes[bid][1:]))
    if plan.outputs.get(bid) in by_output:
        return by_output[plan.outputs[bid]]
    names = [plan.layers.get(owner), plan.fallback.get(owner), keras_name(owner), keras_name(L.name)]
    for n in dict.fromkeys(n for n in names if n):
        try:
            layer = model.get_layer(n)
        except ValueError:
            continue
        out = layer.output
        if isinstance(out, (list, tuple)):
            if len(out) != len(L.tops):
                continue
            out = out[i]
        elif len(L.tops) != 1:
            continue
        if int(np.prod([d for d in out.shape[1:] if d is not None])) == size:
            return out
    return None


def model_inputs(model, net):
    """Caffe input name -> Probe of the Keras input fed with it; a wrong model is one clear line."""
    ins = list(model.inputs)
    names = [net.caffe_name[b] for b in net.inputs]
    by_name = {t._keras_history.operation.name: t for t in ins}
    out = {}
    for bid, n in zip(net.inputs, names):
        t = by_name.get(keras_name(n))
        if t is None and len(ins) == 1 == len(names):
            t = ins[0]
        if t is None:
            raise VerificationError(f"the Keras model does not fit the net: it has no input named '{keras_name(n)}' "
                                    f"for Caffe input '{n}'; its inputs are {sorted(by_name)}",
                                    hint="pass the Keras model converted from these Caffe files")
        _check_input_shape(t, n, net.shapes[bid])
        out[n] = Probe(t, infer_layout(t, net.shapes[bid]))
    if len(ins) != len(names):
        raise VerificationError(f"the Keras model does not fit the net: it has {len(ins)} inputs "
                                f"{sorted(by_name)}, the net {len(names)} {names}",
                                hint="pass the Keras model converted from these Caffe files")
    return out


def _check_input_shape(t, name, caffe_shape):
    ks = tuple(t.shape[1:])
    cs = tuple(int(d) for d in caffe_shape[1:])
    fits = (len(ks) == len(cs) and all(k is None or k == c for k, c in zip(ks, cs))) or \
           (len(ks) == 3 == len(cs) and all(k is None or k == c for k, c in zip(ks, (cs[1], cs[2], cs[0]))))
    if not fits:
        shown = "x".join("?" if k is None else str(k) for k in ks)
        raise VerificationError(f"the Keras model does not fit the net: its input '{t._keras_history.operation.name}' "
                                f"takes {shown} per sample, the net's input '{name}' is "
                                f"{'x'.join(map(str, cs))} (C,H,W; as NHWC {cs[1:] + cs[:1] if len(cs) == 3 else cs})",
                                hint="pass the Keras model converted from these Caffe files, or --input-shape")


def infer_layout(tensor, caffe_shape, known=None):
    """How a Keras tensor of a model we did not build stores a Caffe blob, judged by its shape.

    A 4-d tensor is NHWC when its shape is the blob's with the channels last; a flattened
    tensor made by Flatten/Reshape from an NHWC tensor (through same-shape layers) keeps H,W,C
    order; anything else is in Caffe's order. ``known`` (id of a Keras tensor -> its layout, for
    the tensors already matched to blobs) decides the flattened tensor's source where it is
    known: an SSD head's ``Permute`` to H,W,C becomes an Identity whose output is already in
    Caffe's order, so flattening it needs no reordering.
    """
    ks = tuple(tensor.shape[1:])
    cs = tuple(caffe_shape[1:])
    if len(ks) == 3 and len(cs) == 3:
        if ks == (cs[1], cs[2], cs[0]):
            return lay.NHWC
        return lay.CAFFE
    src = _flattened_from(tensor, known or {})
    if src is not None and int(np.prod(ks)) == int(np.prod(cs)):
        h, w, c = src
        if h * w > 1 and c > 1:
            return lay.flat_hwc(c, h, w)
    return lay.CAFFE


def _flattened_from(tensor, known):
    """(H, W, C) when ``tensor`` is an NHWC tensor flattened (maybe followed by same-shape layers)."""
    t = tensor
    for _ in range(64):
        op = t._keras_history.operation
        node = op._inbound_nodes[t._keras_history.node_index] if op._inbound_nodes else None
        parents = list(node.input_tensors) if node is not None else []
        if len(parents) != 1:
            return None
        p = parents[0]
        if tuple(p.shape) == tuple(t.shape):
            t = p
            continue
        if type(op).__name__ in ("Flatten", "Reshape") and len(p.shape) == 4:
            pop = p._keras_history.operation
            if type(pop).__name__ == "Permute":  # moved to Caffe's C,H,W order before flattening
                return None
            if id(p) in known and known[id(p)].kind != "nhwc":  # a blob held in Caffe's order
                return None
            return tuple(int(d) for d in p.shape[1:])
        return None
    return None


def run_probes(probes, net, feeds, dev, backend):
    """Run the model once, returning every probed blob version in Caffe's layout, and the device."""
    import keras

    model, blobs, inputs = probes
    order = list(blobs)
    uniq, index = [], {}
    for b in order:
        key = id(blobs[b].tensor)
        if key not in index:
            index[key] = len(uniq)
            uniq.append(blobs[b].tensor)
    probe_model = keras.Model(list(model.inputs), uniq)
    by_tensor = {id(p.tensor): (n, p) for n, p in inputs.items()}
    x = []
    for t in model.inputs:
        name, p = by_tensor[id(t)]
        x.append(to_device(lay.to_keras_array(feeds[name], p.layout), dev, backend))
    outs = _call(probe_model, x)
    ran_on = where(outs[0], dev, backend)
    vals = {}
    for b in order:
        a = np.asarray(keras.ops.convert_to_numpy(outs[index[id(blobs[b].tensor)]]))
        vals[b] = caffe_form(net, b, to_caffe(a, blobs[b].layout, net.shapes[b]))
    return vals, ran_on


def _call(model, x):
    """Run a Keras model; its failure on the net's data is one line (a model that does not fit)."""
    try:
        outs = model(x if len(x) > 1 else x[0], training=False)
    except (ValueError, TypeError, RuntimeError, ConversionError) as e:
        msg = " ".join(str(e).split())[:300]
        raise VerificationError(f"the Keras model cannot run on the net's input: {type(e).__name__}: {msg}",
                                hint="pass the Keras model converted from these Caffe files") from None
    except Exception as e:  # backend errors (tf.errors.*, XlaRuntimeError) have no common base
        if type(e).__module__.split(".")[0] not in ("tensorflow", "jax", "jaxlib"):
            raise
        msg = " ".join(str(e).split())[:300]
        raise VerificationError(f"the Keras model cannot run on the net's input: {type(e).__name__}: {msg}",
                                hint="pass the Keras model converted from these Caffe files") from None
    return outs if isinstance(outs, (list, tuple)) else [outs]


def _frontier(net, bid, probes, ref_vals, memo):
    """The nearest blobs before ``bid`` that the layer check can feed with reference values."""
    if bid in memo:
        return memo[bid]
    L = net.producer[bid]
    out = []
    for b in L.bottoms:
        if b in net.inputs or (b in ref_vals and b in probes):
            found = [b]
        else:
            found = _frontier(net, b, probes, ref_vals, memo)
        out += [f for f in found if f not in out]
    memo[bid] = out
    return out


def run_local(probes, net, feeds, ref_vals, dev, backend):
    """The layer check: each probed blob from the reference values of the blobs before it."""
    import keras

    _, blobs, inputs = probes
    memo, vals = {}, {}
    by_input = {b: inputs[net.caffe_name[b]] for b in net.inputs}
    for bid, probe in blobs.items():
        sources, tensors, feed = _frontier(net, bid, blobs, ref_vals, memo), [], []
        for f in sources:
            p = by_input[f] if f in by_input else blobs[f]
            if any(p.tensor is t for t in tensors):
                continue
            value = feeds[net.caffe_name[f]] if f in by_input else ref_vals[f]
            dims = p.tensor.shape[1:]
            if None not in dims and value.size != int(np.prod(dims)) * value.shape[0]:
                tensors = None  # the reference's value does not fit this tensor: only the end-to-end check
                break
            tensors.append(p.tensor)
            feed.append(to_device(lay.to_keras_array(np.ascontiguousarray(value, np.float32), p.layout), dev,
                                  backend))
        if tensors is None:
            continue
        try:
            sub = keras.Model(tensors, probe.tensor)
        except ValueError:  # the Keras graph needs more than these blobs: only the end-to-end check
            continue
        out = _call(sub, feed)[0]
        vals[bid] = caffe_form(net, bid, to_caffe(np.asarray(keras.ops.convert_to_numpy(out)), probe.layout,
                                                  net.shapes[bid]))
    return vals


def caffe_form(net, bid, a):
    """A blob as Caffe writes it where the conversion's form differs by design: DetectionOutput's
    fixed (num, rows, 7) with padding rows becomes Caffe's [1, 1, N, 7] of the valid rows; a blob
    Caffe holds with one batch row whatever the batch (PriorBox's (1, 2, P) and its Concat), which
    the conversion gives every batch row, becomes that one row (only when the rows are all equal:
    otherwise it stays, and the shape check shows it)."""
    if net.producer[bid].type == "DetectionOutput":
        from ..keras_layers.detection import caffe_detections

        return caffe_detections(a)
    want = tuple(net.shapes.get(bid, ()))
    if want and want[0] == 1 and a.ndim == len(want) and a.shape[0] > 1 and a.shape[1:] == want[1:] \
            and (a == a[:1]).all():
        return a[:1]
    return a


def to_caffe(a, layout, caffe_shape):
    try:
        a = lay.to_caffe_array(a, layout)
    except ValueError:
        squeeze = [d for d in a.shape[1:] if d != 1] == [d for d in caffe_shape[1:] if d != 1]
        if a.ndim != len(caffe_shape) and squeeze and a.size == int(np.prod(caffe_shape)):
            return a.reshape(caffe_shape)  # the same axes but Caffe's unit ones (e.g. 1x1xNx7 detections)
        return a
    if a.shape != tuple(caffe_shape) and a.size == int(np.prod(caffe_shape)) and layout.kind != "nhwc":
        a = a.reshape(caffe_shape)  # e.g. Keras drops Caffe's trailing 1x1 axes
    return a
