"""Keras -> Caffe conversion: the engine that walks the (flattened) Keras graph and calls converters.

Keras tensors are NHWC, Caffe blobs NCHW; the engine tracks each tensor's layout (see
:mod:`bnconvert.layout`) and inserts Permute/Reshape layers only where a consumer needs another
order (for BVLC Caffe, which has no Permute, the exact Reshape/Slice/Concat form of
:mod:`bnconvert.k2c.transpose`). Every Keras layer's output becomes a Caffe blob named after the
layer, so the Caffe net's outputs are named after the Keras outputs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import layout as lay
from .._lazy import keras
from ..caffe.fastblobs import caffemodel_chunks
from ..caffe.io import array_to_blob, check_shape, integer_shape, pb2, write_net_files
from ..errors import ConversionError, ParseError, ShapeError, UnsafeModelError, UnsupportedLayerError
from ..naming import unique_name
from ..progress import Progress
from ..registry import KERAS_TO_CAFFE
from ._context import LayerContext, fill
from .targets import check_target, fork_layer_warnings, target_comment
from .transpose import permute_blob

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class Step:
    """One Keras layer call of the flattened graph (nested models expanded)."""

    layer: object
    node: object
    inputs: list
    outputs: list
    prefix: str
    out_shapes: list = None


# --- loading --------------------------------------------------------------------------------


def load_keras_model(path):
    """Load a .keras/.h5 model in safe mode; clear errors for SavedModels, Lambdas and custom objects."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    p = Path(path)
    if not p.exists():
        raise ParseError("Keras model not found", file=path)
    if p.is_dir():
        if (p / "saved_model.pb").exists():
            raise ParseError("this is a TensorFlow SavedModel; Keras 3 cannot load it as a Keras model (only as "
                             "an opaque keras.layers.TFSMLayer, which has no layers to convert)", file=path,
                             hint="re-save it from the code that builds it with model.save('model.keras')")
        raise ParseError("a directory that is not a SavedModel", file=path,
                         hint="pass a .keras or .h5 file")
    if p.suffix.lower() not in MODEL_SUFFIXES:
        raise ParseError(f"unknown model file type {p.suffix!r}", file=path, hint="pass a .keras or .h5 file")
    import bnconvert.keras_layers  # noqa: F401  (registers the custom layers of converted models)

    from ..recursion import call_deep
    from .modelfile import check_keras_archive, h5_layer_count, weights_mismatch

    depth = check_keras_archive(p) if p.suffix.lower() == ".keras" else h5_layer_count(p)
    try:
        return call_deep(depth, _load_quietly, str(p))
    except Exception as e:  # Keras raises ValueError/TypeError/OSError with long messages
        mismatch = weights_mismatch(str(e), path)
        if mismatch is not None:
            raise mismatch from None
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "lambda" in str(e).lower() or "unsafe" in str(e).lower():
            raise UnsafeModelError("the model contains a Lambda layer (arbitrary Python code); safe mode "
                                   "refuses to load it and bnconvert never executes it", file=path,
                                   hint="replace the Lambda with built-in layers") from None
        if "could not locate" in str(e).lower() or "unknown" in str(e).lower():
            raise UnsafeModelError(f"the model uses custom objects Keras cannot find: {msg[:300]}", file=path,
                                   hint="only built-in Keras layers and bnconvert's layers can be converted") \
                from None
        raise ParseError(f"cannot load the Keras model: {msg[:300]}", file=path) from None


def _load_quietly(path):
    """Keras's safe-mode load; its UserWarnings (e.g. about skipped containers) stay off stderr."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return keras.saving.load_model(path, compile=False, safe_mode=True)


# --- graph flattening ----------------------------------------------------------------------


def _functional(model, path):
    if isinstance(model, keras.Sequential):
        fn = getattr(model, "_functional", None)
        if fn is None:
            raise ConversionError(f"Sequential model '{model.name}' is not built (its input shape is unknown)",
                                  file=path, hint="give it a keras.Input first, or call it on data once")
        return fn
    return model


def _is_model(op):
    return isinstance(op, keras.Model)


def flatten_graph(model, path=None):
    """The model's layer calls in dependency order, nested models expanded. Returns (steps, inputs, outputs)."""
    steps = []
    root = _functional(model, path)
    if not hasattr(root, "_nodes_by_depth"):
        raise ConversionError(f"model '{model.name}' is a subclassed model with no layer graph", file=path,
                              hint="build it with the functional or Sequential API")

    def walk(fn, in_keys, prefix):
        alias = {id(t): k for t, k in zip(fn.inputs, in_keys)}
        for depth in sorted(fn._nodes_by_depth, reverse=True):
            for node in fn._nodes_by_depth[depth]:
                op = node.operation
                if isinstance(op, keras.layers.InputLayer):
                    continue
                ins = [alias.get(id(t), id(t)) for t in node.input_tensors]
                if _is_model(op):
                    outs = walk(_functional(op, path), ins, prefix + op.name + "/")
                    for t, k in zip(node.output_tensors, outs):
                        alias[id(t)] = k
                else:
                    steps.append(Step(op, node, ins, [id(t) for t in node.output_tensors], prefix))
        return [alias.get(id(t), id(t)) for t in fn.outputs]

    in_keys = [id(t) for t in root.inputs]
    out_keys = walk(root, in_keys, "")
    return steps, list(root.inputs), out_keys, list(root.outputs)


def check_supported(steps, path):
    missing, seen = [], set()
    for s in steps:
        cls = type(s.layer).__name__
        if cls not in KERAS_TO_CAFFE and s.layer.name not in seen:
            seen.add(s.layer.name)
            missing.append((s.layer.name, cls))
    if missing:
        raise UnsupportedLayerError(missing, file=path, direction="keras2caffe")


def concrete_shapes(steps, inputs, shapes, path):
    """Fill ``step.out_shapes`` with concrete shapes at the chosen input size (batch included)."""
    from keras import KerasTensor

    conc = {id(t): KerasTensor(s, dtype=t.dtype) for t, s in zip(inputs, shapes)}
    for s in steps:
        feed = {id(t): conc[k] for t, k in zip(s.node.input_tensors, s.inputs)}
        args, kwargs = s.node.arguments.fill_in(feed)
        try:
            spec = s.layer.compute_output_spec(*args, **kwargs)
        except Exception as e:
            raise ConversionError(f"cannot compute the output shape at this input size: {e}", file=path,
                                  layer=s.layer.name, layer_type=type(s.layer).__name__) from None
        specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
        s.out_shapes = [tuple(int(d) for d in x.shape) for x in specs]
        for shape in s.out_shapes:  # before any converter allocates something of that size
            check_shape(shape, "output", file=path, layer=s.layer.name, layer_type=type(s.layer).__name__)
        for k, x in zip(s.outputs, specs):
            conc[k] = x


# --- the engine -----------------------------------------------------------------------------


class Engine:
    def __init__(self, path, target="caffe"):
        self.path = path
        self.target = check_target(target)
        self.net = pb2().NetParameter()
        self.blobs = {}
        self.layer_names, self.top_names, self.added = set(), set(), set()
        self._relayout = {}
        self.warnings, self.dropped = [], []
        self.consumers, self.output_keys = {}, set()
        self.batchnorm = []
        self.output_tops = {}  # tensor key -> a top already holding that output in Keras's order
        self.current_layer = None  # (name, type) of the Keras layer being converted, for refusals
        self.arrays = []  # float32 blobs of each layer of self.net, in order (kept out of the message)

    def warn(self, msg):
        self.warnings.append(msg)

    def unique_layer_name(self, name, prefix=""):
        base = name if name not in self.layer_names else f"{prefix}{name}"
        cand = unique_name(base, lambda n: n in self.layer_names or n in self.top_names)
        self.layer_names.add(cand)
        return cand

    def add_layer(self, name, type_, bottoms, tops, blobs, params):
        if name in self.added or (tops is None and name in self.top_names):
            name = unique_name(name, lambda n: n in self.added or n in self.top_names or n in self.layer_names)
        self.added.add(name)
        tops = [name] if tops is None else list(tops)
        L = self.net.layer.add(name=name, type=type_)
        L.bottom.extend(bottoms)
        L.top.extend(tops)
        for k, v in params.items():
            fill(getattr(L, k), v)
        self.arrays.append([np.asarray(b, np.float32) for b in blobs])
        self.layer_names.add(name)
        self.top_names.update(tops)
        return tops[0] if len(tops) == 1 else tops

    def materialize(self, b):
        """Emit a pending ZeroPadding2D (an exact one-hot depthwise convolution) and return the blob."""
        if b.pad is None:
            return b
        shape = lay.caffe_shape(b.shape, lay.NHWC)
        n, c, h, w = shape
        src_shape = (n, c, h - sum(b.pad[0]), w - sum(b.pad[1]))
        top = _pad_layer(self, b.top, src_shape, b.pad, b.pad_name)
        b.top, b.pad, b.pad_name = top, None, None
        return b

    def relayout(self, b, want):
        have = b.layout
        if have == want or (have.kind != "nhwc" and want.kind != "nhwc" and lay.same_element_order(b.shape, have)):
            return b.top
        key = (b.top, want.kind)
        if key in self._relayout:
            return self._relayout[key]
        base = f"{b.top}/to_{want.kind}"
        if have.kind == "flat_hwc":
            c, h, w = have.chw
            t = self.add_layer(base + "_unflat", "Reshape", [b.top], None, (), dict(
                reshape_param=dict(shape=dict(dim=[0, c, h, w]))))
            t = permute_blob(self, base + "_hwc", t, (b.shape[0], c, h, w), lay.NCHW_TO_NHWC)
            t = self.add_layer(base, "Flatten", [t], None, (), {})
        elif lay.same_element_order(b.shape, have if have.kind == "nhwc" else want):
            dims = [0] + list(b.shape[1:]) if want.kind == "caffe" else [0] + list(lay.caffe_shape(b.shape, want)[1:])
            t = self.add_layer(base, "Reshape", [b.top], None, (), dict(reshape_param=dict(shape=dict(dim=dims))))
        else:
            order = lay.caffe_permute_order(have, want)
            t = permute_blob(self, base, b.top, lay.caffe_shape(b.shape, have), order)
        self._relayout[key] = t
        return t


def _pad_layer(eng, top, shape_nchw, pads, name):
    from .. import geometry as geo

    c = shape_nchw[1]
    (kh, ph, th), (kw, pw, tw) = geo.shift_kernel(*pads[0]), geo.shift_kernel(*pads[1])
    w = np.zeros((c, 1, kh, kw), np.float32)
    w[:, :, th, tw] = 1.0
    return eng.add_layer(name, "Convolution", [top], None, [w], dict(convolution_param=dict(
        num_output=c, group=c, bias_term=False, kernel_h=kh, kernel_w=kw, pad_h=ph, pad_w=pw)))


def _input_shapes(inputs, input_shape, path):
    shapes = []
    given = input_shape if isinstance(input_shape, dict) else {None: input_shape} if input_shape else {}
    for t in inputs:
        name = t._keras_history.operation.name
        want = given.get(name, given.get(None) if len(inputs) == 1 else None)
        ks = list(t.shape)
        if want is not None:
            want = integer_shape(want, f"--input-shape of input '{name}'", file=path)
            if not want or any(d <= 0 for d in want):
                raise ShapeError(f"--input-shape {want} of input '{name}' must have positive dimensions", file=path)
            kwant = lay.keras_shape(want, lay.NHWC) if len(ks) == 4 and len(want) == 4 else want
            if len(kwant) != len(ks) or any(d is not None and d != g for d, g in zip(ks[1:], kwant[1:])):
                raise ConversionError(f"--input-shape {want} does not fit input '{name}' of Keras shape "
                                      f"{tuple(ks)} (give N,C,H,W)", file=path)
            ks = list(kwant)
        if ks[0] is None:
            ks[0] = 1
        if any(d is None for d in ks):
            raise ConversionError(f"input '{name}' has unknown dimensions {tuple(t.shape)}", file=path,
                                  hint="give the size with --input-shape N,C,H,W")
        shape = tuple(int(d) for d in ks)
        check_shape(shape, f"input '{name}' (Keras order)", file=path)
        shapes.append(shape)
    return shapes


def convert_model(model, input_shape=None, progress=None, path=None, target="caffe"):
    """Convert a ``keras.Model`` for ``target`` (see :mod:`bnconvert.k2c.targets`).
    Returns (deploy NetParameter, weights NetParameter, report)."""
    deploy, eng, report = _convert_engine(model, input_shape, progress, path, target)
    weights = pb2().NetParameter()
    weights.CopyFrom(eng.net)
    for L, arrays in zip(weights.layer, eng.arrays):
        for a in arrays:
            array_to_blob(a, L.blobs.add())
    return deploy, weights, report


def _convert_engine(model, input_shape=None, progress=None, path=None, target="caffe"):
    """The conversion itself: (deploy NetParameter, Engine with ``net`` and ``arrays``, report)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    steps, inputs, out_keys, outputs = flatten_graph(model, path)
    check_supported(steps, path)
    shapes = _input_shapes(inputs, input_shape, path)
    concrete_shapes(steps, inputs, shapes, path)
    eng = Engine(path, target)
    eng.net.name = model.name
    for s in steps:
        for k in s.inputs:
            eng.consumers.setdefault(k, []).append(s)
    eng.output_keys = set(out_keys)
    for t, shape in zip(inputs, shapes):
        step = Step(t._keras_history.operation, None, [], [id(t)], "", [shape])
        eng.blobs[id(t)] = KERAS_TO_CAFFE.get("InputLayer")(LayerContext(eng, step))
    bar = Progress(len(steps), "keras2caffe", enabled=progress)
    for s in steps:
        bar.step(s.layer.name)
        eng.current_layer = (s.layer.name, type(s.layer).__name__)
        ctx = LayerContext(eng, s)
        result = KERAS_TO_CAFFE.get(type(s.layer).__name__)(ctx)
        outs = result if isinstance(result, list) else [result]
        if len(outs) != len(s.outputs):
            raise ConversionError(f"internal: converter returned {len(outs)} outputs for {len(s.outputs)}",
                                  file=path, layer=s.layer.name)
        for k, b in zip(s.outputs, outs):
            eng.blobs[k] = b
    bar.close()
    out_names = _finish_outputs(eng, out_keys, outputs)
    for w in fork_layer_warnings(eng.net, eng.target):
        eng.warn(w)
    deploy = pb2().NetParameter()
    deploy.CopyFrom(eng.net)
    report = {
        "model": str(path) if path else model.name,
        "inputs": {L.top[0]: list(L.input_param.shape[0].dim) for L in eng.net.layer if L.type == "Input"},
        "outputs": out_names,
        "keras_layers": len(steps),
        "caffe_layers": len(eng.net.layer),
        "batchnorm": eng.batchnorm,
        "dropped": eng.dropped,
        "warnings": eng.warnings,
        "target": eng.target,
    }
    return deploy, eng, report


def _finish_outputs(eng, out_keys, outputs):
    """Name each Caffe output blob after its Keras output layer, in Caffe's NCHW order."""
    names = {}
    for k, t in zip(out_keys, outputs):
        b = eng.materialize(eng.blobs[k])
        want_name = t._keras_history.operation.name
        eng.current_layer = (want_name, type(t._keras_history.operation).__name__)
        top = eng.output_tops.get(k) or eng.relayout(
            b, lay.default_layout(len(b.shape)) if b.layout.kind != "flat_hwc" else lay.CAFFE)
        if top != want_name:
            if want_name in eng.top_names:
                want_name = eng.unique_layer_name(want_name)
            top = eng.add_layer(want_name, "Power", [top], None, (), {})
        shape = lay.caffe_shape(b.shape, lay.default_layout(len(b.shape)) if b.layout.kind == "nhwc" else lay.CAFFE)
        names[top] = list(shape)
    return names


def convert(model_or_path, input_shape=None, progress=None, target="caffe"):
    """Convert without writing: (deploy NetParameter, weights NetParameter, report)."""
    model, path = _load(model_or_path)
    return convert_model(model, input_shape, progress, path, target)


def _load(model_or_path):
    """(keras.Model, path or None) for a model object or a saved-model path."""
    path = None
    model = model_or_path
    if isinstance(model_or_path, (str, os.PathLike)):
        path = str(model_or_path)
        model = load_keras_model(path)
    if not isinstance(model, keras.Model):
        raise ConversionError(f"expected a keras.Model or a model file. Received: {type(model).__name__}")
    return model, path


def keras_to_caffe(model_or_path, prototxt_path, caffemodel_path, input_shape=None, progress=None, target="caffe"):
    """Convert a Keras model (object or .keras/.h5 path) to a Caffe prototxt + caffemodel. Returns the report.

    Args:
        model_or_path: a ``keras.Model`` or the path of a saved model.
        prototxt_path: where the deploy net definition is written.
        caffemodel_path: where the weights are written.
        input_shape: (N, C, H, W) of the input (or a dict input name -> shape); batch defaults to 1.
        progress: show a progress bar (default: on a terminal, for large models).
        target: the Caffe runtime the files are for: "caffe" (BVLC, default) or "opencv" (OpenCV dnn).
    """
    from ..outputs import check_outputs

    # Both outputs checked before any work: neither may be the input model, nor the two one file.
    check_outputs([(prototxt_path, "file", "prototxt"), (caffemodel_path, "file", "caffemodel")],
                  inputs=[model_or_path] if isinstance(model_or_path, (str, os.PathLike)) else ())
    model, path = _load(model_or_path)
    deploy, eng, report = _convert_engine(model, input_shape, progress, path, target)
    # Streamed from the arrays: no protobuf copy of the weights is ever built in memory.
    write_net_files(deploy, prototxt_path, caffemodel_chunks(eng.net, eng.arrays), caffemodel_path,
                    header=target_comment(eng.target))
    report.update(prototxt=str(prototxt_path), caffemodel=str(caffemodel_path))
    return report


__all__ = ["keras_to_caffe", "convert", "convert_model", "load_keras_model", "flatten_graph"]
