"""``inspect_net``: what a Caffe net declares, layer by layer, with its BatchNorm details.

Nothing here imports TensorFlow or Keras: ``bnconvert inspect`` must answer quickly.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

from .caffe import bnpair
from .caffe.coordmap import crop_rows
from .caffe.graph import INPUT_TYPES, build_graph, is_loss_type, layer_included
from .caffe.io import blob_shape, pb2, read_caffemodel, read_prototxt
from .caffe.upgrade import upgrade_net, upgrade_v1
from .errors import GraphError, ShapeError
from .floats import shortest_float32

# --- reading -----------------------------------------------------------------------------


def read_net(prototxt, fields=None):
    """(raw NetParameter as written, upgraded copy, upgrades dict).

    ``fields``: a dict; if given, the prototxt is read leniently, to show every finding at once:
    ``fields["ignored"]`` gets the unknown fields of layers inference drops, ``fields["problems"]``
    the unknown fields of other layers and the non-repeated fields given twice (lists of
    :class:`~bnconvert.caffe.prototxt.FieldNote`), and the net is parsed without them.
    """
    if fields is None:
        raw = read_prototxt(prototxt)
    else:
        raw = read_prototxt(prototxt, ignored=fields.setdefault("ignored", []),
                            problems=fields.setdefault("problems", []))
    net_param = pb2().NetParameter()
    net_param.CopyFrom(raw)
    upgrades = upgrade_net(net_param, prototxt)
    return raw, net_param, upgrades


def read_weights(caffemodel):
    """The caffemodel's layers (V2 form) by name; the last one with blobs wins, as in Caffe."""
    model = read_caffemodel(caffemodel)
    upgrade_v1(model, caffemodel)
    by_name = {}
    for lp in model.layer:
        if len(lp.blobs) or lp.name not in by_name:
            by_name[lp.name] = lp
    return by_name


def phase_layers(net_param, phase, stages=(), level=0):
    """The LayerParameters included in ``phase``, in order (loss layers included)."""
    stages = set(stages) | set(net_param.state.stage)
    level = level or net_param.state.level
    return [lp for lp in net_param.layer if layer_included(lp, phase, level, stages)]


def is_deploy_net(net_param):
    """A net with no loss layer and no TRAIN-only layer is a deploy (inference-only) net."""
    train = {lp.name for lp in phase_layers(net_param, "TRAIN")}
    test = {lp.name for lp in phase_layers(net_param, "TEST")}
    return not (train - test) and not any(is_loss_type(lp.type) for lp in net_param.layer)


# --- BatchNorm / Scale pairing on the raw layer list ------------------------------------


def raw_paired_scale(layers, i):
    """The Scale paired with the BatchNorm ``layers[i]``, on a phase's raw layer list.

    Mirrors :func:`bnconvert.caffe.bnpair.paired_scale` without needing shapes: the Scale must be
    the only (non-loss) consumer of the BatchNorm's top, have one bottom, and use axis 1, num_axes 1.
    """
    top = layers[i].top[0] if layers[i].top else None
    users = []
    for lp in layers[i + 1:]:
        if top in lp.bottom and not is_loss_type(lp.type):
            users.append(lp)
        if top in lp.top:
            break
    if top is None or len(users) != 1:
        return None
    s = users[0]
    p = s.scale_param
    if s.type != "Scale" or len(s.bottom) != 1 or p.axis not in (1, -3) or p.num_axes != 1:
        return None
    return s


# --- inputs -------------------------------------------------------------------------------

# Data layer type -> its parameter message (fork types such as AnnotatedData use data_param).
_DATA_PARAMS = {"Data": "data_param", "ImageData": "image_data_param", "HDF5Data": "hdf5_data_param",
                "MemoryData": "memory_data_param", "WindowData": "window_data_param",
                "DummyData": "dummy_data_param", "AnnotatedData": "data_param",
                "ImageSegData": "image_data_param", "DenseImageData": "dense_image_data_param"}


def _declaration(raw, lp):
    """How an input layer of the upgraded net was written in the original file."""
    if raw.input and lp.type == "Input" and list(lp.top) == list(raw.input):  # made by upgrade_input
        return "input + input_shape" if raw.input_shape else "input + input_dim"
    return f"{lp.type} layer" + (" (V1 'layers')" if raw.layers else "")


def _source(lp):
    field = _DATA_PARAMS.get(lp.type)
    if not field or not lp.HasField(field):
        return {}
    p = getattr(lp, field)
    out = {}
    for name in ("source", "batch_size", "backend"):
        if name in p.DESCRIPTOR.fields_by_name and p.HasField(name):
            v = getattr(p, name)
            out[name] = p.DESCRIPTOR.fields_by_name[name].enum_type.values_by_number[v].name \
                if p.DESCRIPTOR.fields_by_name[name].enum_type else v
    return out


def _transform(lp):
    if not lp.HasField("transform_param"):
        return None
    tp = lp.transform_param
    return {f.name: (v if isinstance(v, (str, bytes, int, float)) else list(v)) for f, v in tp.ListFields()}


def label_only(layers, blob):
    """True if only loss/accuracy layers consume ``blob`` (a label input)."""
    users = [lp for lp in layers if blob in lp.bottom]
    return bool(users) and all(is_loss_type(lp.type) for lp in users)


def describe_inputs(raw, layers, net, given):
    out = []
    for lp in layers:
        if lp.type not in INPUT_TYPES:
            continue
        for t in lp.top:
            if (t not in net.inputs) if net is not None else label_only(layers, t):
                continue  # a label consumed only by dropped loss layers
            shape = net.shapes.get(t) if net is not None else None
            source = "--input-shape" if (t in given or (None in given and shape is not None)) else "declared"
            out.append({"blob": t, "layer": lp.name, "type": lp.type, "declared_by": _declaration(raw, lp),
                        "shape": list(shape) if shape else None,
                        "shape_source": source if shape else "unknown",
                        "data": _source(lp), "transform": _transform(lp),
                        "include": rules_text(lp) or None})
    return out


def rules_text(lp):
    """'include TRAIN' / 'exclude stage=x' style summary of a layer's rules."""
    parts = []
    for kind, rules in (("include", lp.include), ("exclude", lp.exclude)):
        for r in rules:
            bits = []
            if r.HasField("phase"):
                bits.append(pb2().Phase.Name(r.phase))
            bits += [f"stage={s}" for s in r.stage] + [f"not_stage={s}" for s in r.not_stage]
            if r.HasField("min_level"):
                bits.append(f"min_level={r.min_level}")
            if r.HasField("max_level"):
                bits.append(f"max_level={r.max_level}")
            parts.append(f"{kind} " + ",".join(bits))
    return "; ".join(parts)


# --- layers -------------------------------------------------------------------------------


def _count(shapes):
    return sum(math.prod(s) for s in shapes) if shapes is not None else None


def _layer_row(name, type_, bottoms, tops, out_shapes, weight_shapes, supported):
    return {"name": name, "type": type_, "bottoms": bottoms, "tops": tops,
            "in_place": bool(set(bottoms) & set(tops)),
            "output_shapes": [list(s) if s else None for s in out_shapes],
            "params": _count(weight_shapes),
            "weight_shapes": [list(s) for s in weight_shapes] if weight_shapes is not None else None,
            "supported": supported}


def graph_rows(net, supported):
    rows = []
    for L in net.layers:
        if L.blobs:
            wshapes = [tuple(b.shape) for b in L.blobs]
        else:
            wshapes = getattr(L, "param_shapes", None)
        cname = net.caffe_name
        rows.append(_layer_row(L.name, L.type, [cname.get(b, b) for b in L.bottoms],
                               [cname.get(t, t) for t in L.tops], [net.shapes.get(t) for t in L.tops],
                               wshapes, supported(L.type)))
    return rows


def raw_rows(layers, weights, supported):
    rows = []
    for lp in layers:
        if is_loss_type(lp.type):
            continue
        w = weights.get(lp.name) if weights else None
        wshapes = [blob_shape(b) for b in w.blobs] if w is not None and len(w.blobs) else None
        rows.append(_layer_row(lp.name, lp.type, list(lp.bottom), list(lp.top), [None] * len(lp.top),
                               wshapes, supported(lp.type)))
    return rows


# --- BatchNorm ------------------------------------------------------------------------------


def _range(a):
    import numpy as np

    return [float(np.min(a)), float(np.max(a))] if a.size else None


def bn_row(lp, phase, scale_lp, blobs):
    p = lp.batch_norm_param
    row = {"layer": lp.name, "eps": shortest_float32(p.eps),
           "use_global_stats": bnpair.use_global_stats(SimpleNamespace(param=lp), phase),
           "use_global_stats_source": "explicit" if p.HasField("use_global_stats") else f"{phase} default",
           "moving_average_fraction": shortest_float32(p.moving_average_fraction),
           "scale": scale_lp.name if scale_lp is not None else None,
           "scale_bias": bool(scale_lp.scale_param.bias_term) if scale_lp is not None else None,
           "factor": None, "mean_range": None, "var_range": None}
    if blobs is not None and len(blobs) >= 3:
        mean, var, s = bnpair.batchnorm_stats(SimpleNamespace(blobs=blobs))
        row.update(factor=s, mean_range=_range(mean), var_range=_range(var))
    return row


def bn_rows_graph(net, phase):
    out = []
    for L in net.layers:
        if L.type == "BatchNorm":
            s = bnpair.paired_scale(net, L)
            out.append(bn_row(L.param, phase, s.param if s is not None else None, L.blobs or None))
    return out


def bn_rows_raw(layers, phase, weights):
    from .caffe.io import blob_to_array

    out = []
    for i, lp in enumerate(layers):
        if lp.type != "BatchNorm":
            continue
        w = weights.get(lp.name) if weights else None
        blobs = [blob_to_array(b, layer=lp.name) for b in w.blobs] if w is not None and len(w.blobs) else None
        out.append(bn_row(lp, phase, raw_paired_scale(layers, i), blobs))
    return out


# --- the whole report -------------------------------------------------------------------


def supported_types():
    from .registry import CAFFE_TO_KERAS

    return set(CAFFE_TO_KERAS.types())


def _missing_input_shapes(layers, given):
    """Input blobs whose shape neither the prototxt nor ``given`` supplies (a fork data layer's
    extra tops that no kept layer reads are dropped with it and need none)."""
    from .caffe.graph import _data_shape, _unused_data_top

    consumed = {b for lp in layers if not is_loss_type(lp.type) for b in lp.bottom}
    missing = []
    for lp in layers:
        if lp.type in INPUT_TYPES:
            for i, t in enumerate(lp.top):
                if t not in given and _data_shape(lp, i) is None and not _unused_data_top(lp, i, t, consumed):
                    missing.append(t)
    return missing


def field_row(note):
    """A :class:`~bnconvert.caffe.prototxt.FieldNote` as a report row."""
    return {"line": note.line, "column": note.column, "layer": note.layer, "type": note.layer_type,
            "field": note.field, "problem": note.kind, "message": note.describe()}


def check_input_names(layers, given, path):
    """A misspelt ``--input-shape`` name is an error, even when other inputs lack a shape."""
    tops = [t for lp in layers if lp.type in INPUT_TYPES for t in lp.top]
    unknown = sorted(n for n in given if n is not None and n not in tops)
    if unknown:
        raise ShapeError(f"--input-shape names blob(s) {unknown} that are not net inputs; the inputs are {tops}",
                         file=path)


def inspect_net(prototxt, caffemodel=None, phase="TEST", input_shapes=None, stages=(), crop_offsets="param"):
    """Describe a Caffe net: inputs, layers, BatchNorm details and unsupported layers.

    When the graph cannot be built (an input's shape is unknown, or a blob is missing in this
    phase), the layer table comes from the parsed NetParameter with unknown shapes and
    ``notes`` says why, instead of failing. ``crop_offsets`` is as for
    :func:`bnconvert.caffe.graph.build_graph`; ``crops`` lists each Crop's offsets.
    """
    phase = phase.upper()
    fields = {}
    raw, net_param, upgrades = read_net(prototxt, fields)
    given = dict(input_shapes or {})
    layers = phase_layers(net_param, phase, stages)
    check_input_names(layers, given, prototxt)
    types = supported_types()

    def supported(t):
        return t in types or t in INPUT_TYPES

    notes, net = [], None
    if fields["problems"]:
        notes.append(f"{len(fields['problems'])} field problem(s) in layers that inference keeps (listed under "
                     f"field_errors): caffe2keras refuses the net until they are fixed; what follows was read "
                     f"without those fields")
    try:
        net = build_graph(net_param, phase=phase, stages=stages, input_shapes=given, path=prototxt,
                          upgrades=upgrades, crop_offsets=crop_offsets)
    except (ShapeError, GraphError) as e:
        missing = [t for t in _missing_input_shapes(layers, given) if None not in given]
        if missing:
            notes.append("input shape unknown for " + ", ".join(missing) + ": pass "
                         + " ".join(f"--input-shape {t}=N,C,H,W" for t in missing) + " to see shapes")
        else:
            notes.append(f"the {phase} graph cannot be built ({e.message}); layers listed as parsed")
    weights = None
    if caffemodel is not None:
        if net is not None:
            from .caffe.weights import attach_weights

            attach_weights(net, read_caffemodel(caffemodel), caffemodel, allow_missing=True)
        else:
            weights = read_weights(caffemodel)

    if net is not None:
        rows, bns = graph_rows(net, supported), bn_rows_graph(net, phase)
        dropped = [{"layer": n, "type": t, "reason": r} for n, t, r in net.dropped]
        outputs = [net.caffe_name[b] for b in net.outputs]
    else:
        rows, bns = raw_rows(layers, weights, supported), bn_rows_raw(layers, phase, weights)
        dropped = [{"layer": lp.name, "type": lp.type, "reason": "loss/accuracy/silence layer is not part of "
                    "inference"} for lp in layers if is_loss_type(lp.type)]
        outputs = None
    unsupported = [{"layer": r["name"], "type": r["type"]} for r in rows if not r["supported"]]
    counts = [r["params"] for r in rows]
    return {
        "net": net_param.name, "prototxt": str(prototxt),
        "weights": str(caffemodel) if caffemodel is not None else None,
        "phase": phase, "stages": sorted(stages), "format": "V1" if raw.layers else "V2",
        "upgrades": {"v1_layers": upgrades["v1_layers"], "input_layer": upgrades["input_layer"],
                     "batchnorm_params_dropped": list(upgrades["batchnorm_params_dropped"])},
        "graph_built": net is not None,
        "inputs": describe_inputs(raw, layers, net, given),
        "layers": rows,
        "total_params": None if any(c is None for c in counts) else sum(counts),
        "outputs": outputs,
        "dropped": dropped,
        "batchnorm": bns,
        "crops": crop_rows(net) if net is not None else [],
        "unsupported": unsupported,
        "unsupported_types": sorted({u["type"] for u in unsupported}),
        "converters_available": bool(types),
        "ignored_fields": [field_row(n) for n in fields["ignored"]],
        "field_errors": [field_row(n) for n in fields["problems"]],
        "notes": notes,
        "warnings": list(net.warnings) if net is not None else [],
    }


__all__ = ["inspect_net", "raw_paired_scale", "phase_layers", "is_deploy_net", "read_net", "read_weights"]
