"""``upgrade_files``: rewrite a Caffe net (and its weights) in the current V2 form.

- V1 ``layers {}`` become V2 ``layer {}``; ``input:`` + ``input_dim``/``input_shape`` become an Input layer;
  BatchNorm ``param {}`` blocks are dropped (:func:`bnconvert.caffe.upgrade.upgrade_net`);
- caffemodel blobs with legacy num/channels/height/width get a ``shape``: the shape the net expects
  (an InnerProduct V1 blob 1x1xOxK becomes OxK), or, when the net's shapes are unknown, the blob's
  rank for its layer type; a blob whose shape cannot be decided keeps its legacy fields.

Both phases' layers are kept: the whole NetParameter is upgraded, not the inference graph. The
upgrade is idempotent: upgrading its output again gives byte-identical files.
"""
from __future__ import annotations

from .caffe.graph import build_graph
from .caffe.io import (blob_shape, check_caffemodel_blobs, read_caffemodel, read_prototxt, write_caffemodel,
                       write_prototxt)
from .caffe.upgrade import upgrade_batchnorm, upgrade_input, upgrade_net, upgrade_v1
from .errors import ConversionError, ParseError
from .outputs import OutputUnit, check_caffe_outputs

_LEGACY = ("num", "channels", "height", "width")
_CONV = ("Convolution", "Deconvolution", "ConvolutionDepthwise", "DepthwiseConvolution")


def upgrade_files(prototxt_in, prototxt_out, caffemodel_in=None, caffemodel_out=None, input_shapes=None):
    """Upgrade ``prototxt_in`` (and ``caffemodel_in``) and write them atomically. Returns a report dict."""
    if (caffemodel_in is None) != (caffemodel_out is None):
        raise ConversionError("give both an input and an output caffemodel, or neither")
    check_caffe_outputs(prototxt_out, caffemodel_out)
    # Both outputs checked against the inputs and each other before anything is read; written as one unit.
    with OutputUnit([(prototxt_out, "file", "prototxt"), (caffemodel_out, "file", "caffemodel")],
                    inputs=[prototxt_in, caffemodel_in]) as unit:
        report = _upgrade(prototxt_in, prototxt_out, caffemodel_in, caffemodel_out, input_shapes)
        unit.commit()
    return report


def _upgrade(prototxt_in, prototxt_out, caffemodel_in, caffemodel_out, input_shapes):
    """Read, upgrade and write; the writes are staged in the caller's open OutputUnit."""
    net = read_prototxt(prototxt_in)
    changes = upgrade_net(net, prototxt_in)
    report = {"prototxt_in": str(prototxt_in), "prototxt_out": str(prototxt_out),
              "caffemodel_in": _str(caffemodel_in), "caffemodel_out": _str(caffemodel_out),
              "v1_layers": changes["v1_layers"], "input_layer": changes["input_layer"],
              "batchnorm_params_dropped": list(changes["batchnorm_params_dropped"]),
              "layers": len(net.layer), "caffemodel": None}
    model = None
    if caffemodel_in is not None:
        model = read_caffemodel(caffemodel_in)
        check_caffemodel_blobs(model, caffemodel_in)
        expected = expected_param_shapes(net, input_shapes, prototxt_in)
        report["caffemodel"] = upgrade_model(model, expected, caffemodel_in)
        write_caffemodel(model, caffemodel_out)
    write_prototxt(net, prototxt_out)
    m = report["caffemodel"] or {}
    report["changed"] = bool(report["v1_layers"] or report["input_layer"] or report["batchnorm_params_dropped"]
                             or m.get("v1_layers") or m.get("input_fields") or m.get("batchnorm_params_dropped")
                             or m.get("reshaped"))
    return report


def _str(p):
    return None if p is None else str(p)


def expected_param_shapes(net, input_shapes, path):
    """Layer name -> the weight shapes the net expects, from the TEST and TRAIN graphs that build."""
    out = {}
    for phase in ("TEST", "TRAIN"):
        try:
            g = build_graph(net, phase=phase, input_shapes=input_shapes, path=path)
        except ConversionError:
            continue
        for L in g.layers:
            shapes = getattr(L, "param_shapes", None)
            if shapes:
                out.setdefault(L.name, [tuple(s) for s in shapes])
    return out


def upgrade_model(model, expected, path):
    """Upgrade a caffemodel NetParameter in place; give legacy blobs a ``shape``. Returns a report."""
    rep = {"v1_layers": upgrade_v1(model, path), "input_fields": _upgrade_model_inputs(model, path),
           "batchnorm_params_dropped": upgrade_batchnorm(model), "reshaped": [], "kept_legacy": []}
    for lp in model.layer:
        for i, b in enumerate(lp.blobs):
            if b.HasField("shape") or not any(b.HasField(f) for f in _LEGACY):
                continue
            legacy = blob_shape(b)
            new, by = target_shape(lp, i, legacy, expected.get(lp.name))
            if new is None:
                rep["kept_legacy"].append({"layer": lp.name, "blob": i, "shape": list(legacy), "reason": by})
                continue
            for f in _LEGACY:
                b.ClearField(f)
            b.shape.SetInParent()
            b.shape.dim.extend(new)
            rep["reshaped"].append({"layer": lp.name, "blob": i, "from": list(legacy), "to": list(new), "by": by})
    return rep


def _upgrade_model_inputs(model, path):
    """Legacy input fields of a caffemodel: upgraded to an Input layer, or dropped (they hold no weights)."""
    if not (model.input or model.input_dim or model.input_shape):
        return False
    try:
        upgrade_input(model, path)
    except ParseError:
        for f in ("input", "input_dim", "input_shape"):
            model.ClearField(f)
    return True


def target_shape(lp, i, legacy, expected):
    """(new shape, how it was decided) for blob ``i`` of layer ``lp``; (None, reason) to keep it legacy."""
    if expected is not None:
        if i >= len(expected):
            return None, f"the net expects only {len(expected)} blob(s) for this layer"
        e = tuple(expected[i])
        if _pad4(e) == tuple(legacy):
            return e, "net"
        return None, f"legacy shape {tuple(legacy)} does not fit the net's expected {e}"
    rank = param_rank(lp, i)
    if rank is None:
        return None, f"the net's shapes are unknown and {lp.type} blob ranks are not known to bnconvert " \
                     "(pass --input-shape to let the net decide)"
    if any(d != 1 for d in legacy[:len(legacy) - rank]):
        return None, f"legacy shape {tuple(legacy)} does not reduce to {rank} axes"
    return tuple(legacy[len(legacy) - rank:]), "type"


def _pad4(shape):
    return (1,) * (4 - len(shape)) + tuple(shape) if len(shape) <= 4 else None


def param_rank(lp, i):
    """The number of axes of blob ``i`` of a layer of this type, where the type alone decides it."""
    t = lp.type
    if t in _CONV:
        return 4 if i == 0 else 1
    if t in ("InnerProduct", "Embed"):
        return 2 if i == 0 else 1
    if t in ("BatchNorm", "Normalize"):
        return 1
    if t == "PReLU":
        return 0 if lp.prelu_param.channel_shared else 1
    if t in ("Scale", "Bias") and len(lp.bottom) == 1:
        na = (lp.scale_param if t == "Scale" else lp.bias_param).num_axes
        return na if na >= 0 else None
    return None


__all__ = ["upgrade_files", "upgrade_model", "target_shape", "param_rank"]
