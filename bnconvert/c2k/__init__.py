"""Caffe -> Keras conversion: the engine that walks the inference graph and calls converters."""
from __future__ import annotations

import os

from .. import layout as lay
from .._lazy import keras
from ..caffe.bnpair import pair_batchnorm_scale
from ..caffe.graph import INPUT_TYPES, load_net
from ..errors import ConversionError, UnsupportedLayerError
from ..naming import keras_name, plan_names, unique_name
from ..progress import Progress
from ..recursion import call_deep
from ..registry import CAFFE_TO_KERAS
from ._context import LayerContext


class Namer:
    """Keras layer names as :class:`~bnconvert.naming.NamePlan` decides them; internal layers get
    names unique against every planned one."""

    def __init__(self, net):
        self.plan = plan_names(net)
        self.used = set()
        self.log = []  # names handed out, in order (to release those of a converter run that is redone)
        self.own_output = set()  # producers whose output became a separate layer: they take their fallback

    def _take(self, name):
        self.used.add(name)
        self.log.append(name)
        return name

    def unique(self, base):
        return self._take(unique_name(base, lambda n: n in self.used or n in self.plan.reserved))

    def input_name(self, bid):
        return self._take(self.plan.inputs[bid])

    def layer_name(self, layer, paired_scale=None, suffix=None):
        if suffix is None:
            plan = self.plan.fallback if layer.name in self.own_output else self.plan.layers
            name = plan.get(layer.name)
            if name is not None and name not in self.used:
                return self._take(name)
        return self.unique(keras_name(layer.name) + (f"_{suffix}" if suffix else ""))

    def release_since(self, mark, keep=()):
        """Free the names handed out after ``mark`` (a length of ``log``), except those in ``keep``."""
        for name in self.log[mark:]:
            if name not in keep:
                self.used.discard(name)
        self.log[mark:] = [n for n in self.log[mark:] if n in keep]

    def claim(self, name):
        """The planned output name for an Identity wrapper."""
        if name in self.used:
            raise ConversionError(f"internal: the output name '{name}' was taken by another layer")
        return self._take(name)


class Engine:
    def __init__(self, net, options):
        self.net = net
        self.options = options
        self.tensors = {}
        self.layouts = {}
        self._converted = {}
        self.used_blobs = set()
        self.relayout_names = set()
        self.warnings = []
        self.report = {}

    def warn(self, msg):
        self.warnings.append(msg)

    def tensor_in(self, bid, want):
        have = self.layouts[bid]
        if have == want:
            return self.tensors[bid]
        key = (bid, want)
        if key not in self._converted:
            name = self.namer.unique(keras_name(self.net.caffe_name[bid]) + f"_to_{want.kind}")
            self._converted[key] = relayout(self.tensors[bid], have, want, self.net.shapes[bid], name)
            self.relayout_names.add(name)
        return self._converted[key]


def relayout(x, have, want, caffe_shape, name):
    """Insert the Keras ops that move a tensor from one layout to another."""
    L = keras.layers
    if have.kind == "flat_hwc":
        c, h, w = have.chw
        x = L.Reshape((h, w, c), name=name + "_unflat")(x)
        x = L.Permute((3, 1, 2), name=name + "_chw")(x)
        return L.Reshape((c * h * w,), name=name)(x)
    if have.kind == "nhwc" and want.kind == "caffe":
        return L.Permute((3, 1, 2), name=name)(x)
    if have.kind == "caffe" and want.kind == "nhwc":
        return L.Permute((2, 3, 1), name=name)(x)
    raise ConversionError(f"internal: cannot move a tensor from layout {have} to {want}")


def check_supported(net, merged, path):
    missing = []
    for L in net.layers:
        if L.type in INPUT_TYPES or L.name in merged:
            continue
        if L.type not in CAFFE_TO_KERAS:
            missing.append((L.name, L.type))
    if missing:
        raise UnsupportedLayerError(missing, file=path)


def convert_net(net, *, on_batch_stats="convert", progress=None):
    """Build a ``keras.Model`` from a :class:`~bnconvert.caffe.graph.Net` with weights attached.

    Returns (model, report, engine).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    pairs = pair_batchnorm_scale(net)
    merged = {s.name: net.layer(bn) for bn, s in pairs.items()}  # scale name -> its BatchNorm
    check_supported(net, merged, net.path)
    missing_shapes = [L.name for L in net.layers if any(s is None for s in L.top_shapes)]
    if missing_shapes:
        raise ConversionError(f"cannot infer the shapes of layer(s) {missing_shapes[:5]}", file=net.path)

    eng = Engine(net, {"on_batch_stats": on_batch_stats})
    eng.namer = Namer(net)
    inputs = []
    for bid in net.inputs:
        shape = net.shapes[bid]
        lo = lay.default_layout(len(shape))
        t = keras.Input(shape=lay.keras_shape(shape, lo)[1:], name=eng.namer.input_name(bid))
        eng.tensors[bid], eng.layouts[bid] = t, lo
        inputs.append(t)

    bar = Progress(len(net.layers), "caffe2keras", enabled=progress)
    for L in net.layers:
        bar.step(L.name)
        if L.type in INPUT_TYPES or L.name in merged:
            continue
        scale = pairs.get(L.name)
        tops = (scale or L).tops
        outs, layouts = _convert_layer(eng, L, scale)
        for bid, t, lo in zip(tops, outs, layouts):
            eng.tensors[bid], eng.layouts[bid] = t, lo
    bar.close()

    outputs = []
    for bid in net.outputs:
        t = eng.tensor_in(bid, lay.default_layout(len(net.shapes[bid])))
        want = eng.namer.plan.outputs.get(bid) or keras_name(net.caffe_name[bid])
        if t._keras_history.operation.name != want:
            t = keras.layers.Identity(name=eng.namer.claim(want))(t)
        outputs.append(t)
    # Keras maps the graph recursively, one level per layer: deep nets get room (bnconvert.recursion).
    model = call_deep(len(net.layers), keras.Model, inputs if len(inputs) != 1 else inputs[0],
                      outputs if len(outputs) != 1 else outputs[0], name=keras_name(net.name or "caffe_net"))

    for L in net.layers:
        for i in range(len(L.blobs)):
            if (L.name, i) not in eng.used_blobs:
                eng.warn(f"weight blob {i} of layer '{L.name}' ({L.type}) was not used by the conversion")
    report = build_report(net, pairs, eng)
    return model, report, eng


def _convert_layer(eng, L, scale):
    """Run the converter of ``L``: its output tensors and their layouts.

    When the layer carries a net output's name but its output needs a relayout, the relayout
    must be the layer of that name: the converter runs again with the layer on its fallback name.
    """
    tops = (scale or L).tops
    mark, n_warn = len(eng.namer.log), len(eng.warnings)
    for again in (False, True):
        result = CAFFE_TO_KERAS.get(L.type)(LayerContext(eng, L, paired_scale=scale))
        outs, layouts = _normalize_result(result, len(tops), L, eng.net.path)
        layouts = [lo if lo is not None else lay.default_layout(len(eng.net.shapes[b]))
                   for b, lo in zip(tops, layouts or [None] * len(tops))]
        out_name = next((eng.namer.plan.outputs[b] for b, lo in zip(tops, layouts)
                         if b in eng.namer.plan.outputs and lo != lay.default_layout(len(eng.net.shapes[b]))), None)
        if again or out_name is None or out_name not in eng.namer.log[mark:]:
            return outs, layouts
        eng.namer.release_since(mark, keep=eng.relayout_names)
        eng.namer.own_output.add(L.name)
        del eng.warnings[n_warn:]
    return outs, layouts


def _normalize_result(result, n, L, path):
    layouts = None
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], (list, tuple)) \
            and all(x is None or isinstance(x, lay.Layout) for x in result[1]):
        result, layouts = result
    outs = list(result) if isinstance(result, (list, tuple)) else [result]
    if len(outs) != n:
        raise ConversionError(f"{n} tops, but its converter gives {len(outs)}: this form of the layer is not supported",
                              file=path, layer=L.name, layer_type=L.type,
                              hint="remove the extra tops if nothing reads them")
    return outs, layouts


def build_report(net, pairs, eng):
    from ..caffe.bnpair import batchnorm_stats

    bns = [L for L in net.layers if L.type == "BatchNorm"]
    factors, eps, maf = {}, set(), set()
    for L in bns:
        p = L.param.batch_norm_param
        eps.add(float(p.eps))
        maf.add(float(p.moving_average_fraction))
        if L.blobs:
            factors[L.name] = batchnorm_stats(L)[2]
    converted = [L for L in net.layers if L.type not in INPUT_TYPES]
    return {
        "prototxt": net.path,
        "caffemodel": net.weights_path,
        "phase": net.phase,
        "inputs": {net.caffe_name[b]: list(net.shapes[b]) for b in net.inputs},
        "outputs": {net.caffe_name[b]: list(net.shapes[b]) for b in net.outputs},
        "layers_converted": len(converted) - len(pairs),
        "caffe_layers": len(converted),
        "batchnorm_scale_pairs": [[bn, s.name] for bn, s in pairs.items()],
        "batchnorm_without_scale": [L.name for L in bns if L.name not in pairs],
        "batchnorm_eps": sorted(eps),
        "moving_average_fractions": sorted(maf),
        "batchnorm_factors": factors,
        "dropped": [list(d) for d in net.dropped],
        "unused_weights": [list(u) for u in net.unused_weights],
        "upgrades": {k: v for k, v in net.upgrades.items() if v},
        "warnings": list(net.warnings) + eng.warnings,
    }


def convert_caffe(prototxt, caffemodel, input_shapes=None, outputs=None, *, phase="TEST", stages=(),
                  on_batch_stats="convert", progress=None, crop_offsets="param"):
    """Convert a Caffe prototxt + caffemodel. Returns (keras.Model, report dict).

    Args:
        prototxt: path of the net definition (V2 or legacy V1).
        caffemodel: path of the trained weights.
        input_shapes: dict input blob name -> (N, C, H, W); needed for Data layers, and to
            convert at another input size.
        outputs: blob names to expose as outputs (default: the blobs no layer consumes).
        phase: "TEST" (default) or "TRAIN"; selects layers by include/exclude rules.
        on_batch_stats: what to do with a BatchNorm that uses batch statistics in ``phase``
            (``use_global_stats: false``): "convert" (warn, use the stored statistics) or "error".
        crop_offsets: offsets of a Crop without crop_param: "param" (BVLC Caffe, offset 0) or
            "coordmap" (HED's Caffe fork: from the coordinate maps; see bnconvert/caffe/coordmap.py).
    """
    if on_batch_stats not in ("convert", "error"):
        raise ConversionError(f"on_batch_stats must be 'convert' or 'error'. Received: {on_batch_stats!r}")
    net = load_net(prototxt, caffemodel, phase=phase, input_shapes=input_shapes, outputs=outputs, stages=stages,
                   crop_offsets=crop_offsets)
    model, report, _ = convert_net(net, on_batch_stats=on_batch_stats, progress=progress)
    return model, report


def caffe_to_keras(prototxt, caffemodel, input_shapes=None, outputs=None, **kwargs):
    """Convert a Caffe model to a channels_last ``keras.Model`` (see :func:`convert_caffe`)."""
    return convert_caffe(prototxt, caffemodel, input_shapes, outputs, **kwargs)[0]
