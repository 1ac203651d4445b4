"""``verify()``: run a Caffe net and its Keras model side by side and compare them blob by blob."""
from __future__ import annotations

import json
import os

import numpy as np

from ..caffe.graph import load_net
from ..errors import VerificationError
from ..outputs import check_outputs, write_files
from .compare import compare, shared_name_blobs
from .device import backend_name, select_device
from .html_report import render_html
from .inputs import resolve_input
from .probes import keras_probes, run_local, run_probes
from .references import reference_values
from .result import VerifyResult
from .tflite_model import is_tflite, judge_rows, tflite_values

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 0.0


def verify(prototxt, caffemodel, keras_model=None, *, input=None, reference="auto", reference_blobs=None,
           device="auto", batch=None, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, report=None, html=None,
           input_shapes=None, phase="TEST", seed=0, tf32=False, mean=None, scale=None, channel_order=None,
           resize=None, progress=None, crop_offsets="param"):
    """Compare a Caffe net and its Keras model blob by blob.

    Args:
        prototxt, caffemodel: the Caffe net and its weights.
        keras_model: a ``keras.Model``, a saved ``.keras``/``.h5`` path, or None to convert the
            Caffe files first.
        input: None (seeded random data in the net's input shape), a ``.npy`` (NCHW) / ``.npz``
            (arrays by input name) / image path, a numpy array, or a dict of arrays by input name.
        reference: "auto" (pycaffe if importable and able to run the net, else OpenCV), "caffe"
            (pycaffe only), "opencv", or "npz:PATH" (blobs stored from a real Caffe run, by blob
            name; an ``input.npz`` beside it is the default input).
        reference_blobs: a dict blob name -> NCHW array to compare against instead of running a
            reference (the final value of each blob, as Caffe shows it after the forward pass).
        device: "auto" (the GPU when the Keras backend sees one), "gpu" or "cpu".
        batch: the batch size of the random input (default: the net's).
        rtol, atol: per-blob tolerance ``max|d| <= atol + rtol * max(1, max|ref|)``.
        report, html: paths to write the JSON report and an HTML page with the error plot.
        input_shapes: dict input name -> N,C,H,W (as for conversion).
        tf32: leave TensorFloat-32 (JAX: default matmul precision) on for the GPU run; by default
            it is turned off for the check.
        mean, scale, channel_order ("bgr"/"rgb"), resize ((H, W)): image preprocessing; defaults
            come from the input layer's transform_param (Caffe order: BGR).
        progress: show the conversion's progress bar (None: on a terminal, for large nets).
        crop_offsets: offsets of a Crop without crop_param, as for conversion: "param" (BVLC Caffe,
            offset 0) or "coordmap" (HED's fork; the reference is handed them as crop_param).

    Returns:
        a :class:`~bnconvert.verify.result.VerifyResult`.
    """
    rtol, atol = _check_tolerance(rtol, atol)
    given = [x for x in (prototxt, caffemodel, keras_model, input) if isinstance(x, (str, os.PathLike))]
    outputs = [(report, "file", "the JSON report"), (html, "file", "the HTML page")]
    check_outputs(outputs, inputs=given)
    proto_net = load_net(prototxt, phase=phase, input_shapes=input_shapes, crop_offsets=crop_offsets)
    feeds, input_desc, ref_path = resolve_input(proto_net, input, reference, reference_blobs, batch, seed,
                                                dict(mean=mean, scale=scale, channel_order=channel_order,
                                                     resize=resize))
    shapes = dict(input_shapes or {})
    shapes.pop(None, None)
    shapes.update({n: a.shape for n, a in feeds.items()})
    net = load_net(prototxt, caffemodel, phase=phase, input_shapes=shapes, crop_offsets=crop_offsets)
    ref = reference_values(net, prototxt, caffemodel, feeds, reference, reference_blobs, ref_path)
    shared = shared_name_blobs(net)
    ref.not_comparable.update(shared)
    probe_vals = {b: v for b, v in ref.values.items() if b not in shared}  # never fed to a layer check
    backend = backend_name()
    dev = select_device(device, backend)
    if is_tflite(keras_model):  # a TFLite flatbuffer: its interpreter instead of Keras (tflite_model.py)
        keras_vals, local_vals, model_desc, ran_on, judged = tflite_values(net, keras_model, feeds, probe_vals,
                                                                           progress)
    else:
        with dev.scope(tf32):
            probes, model_desc = keras_probes(net, keras_model, probe_vals, progress=progress)
            keras_vals, ran_on = run_probes(probes, net, feeds, dev, backend)
            local_vals = run_local(probes, net, feeds, probe_vals, dev, backend)
    rows = compare(net, ref.values, local_vals, keras_vals, rtol, atol, ref.not_comparable, ref.row_order)
    if is_tflite(keras_model):
        judge_rows(rows, judged)
    first = next((r for r in rows if r.status == "FAIL"), None)
    if not any(r.compared for r in rows):
        raise VerificationError("no blob of the net has a counterpart in the Keras model to compare",
                                file=prototxt, hint="name the Keras layers keras_name(<Caffe layer name>)")
    result = VerifyResult(passed=first is None, rows=rows, first_divergent=first, reference=ref.name,
                          reference_version=ref.version, backend=backend, device=ran_on,
                          device_kind=dev.kind, tf32=dev.tf32_state(tf32), input=input_desc, rtol=rtol, atol=atol,
                          prototxt=str(prototxt), caffemodel=str(caffemodel), keras_model=model_desc,
                          warnings=list(ref.warnings), reference_reason=ref.reason)
    files = [(report, (json.dumps(result.to_dict(), indent=2, default=_json_default) + "\n").encode("utf-8"))]
    files.append((html, render_html(result).encode("utf-8")))
    write_files([(p, data) for p, data in files if p], inputs=given)
    return result


def _check_tolerance(rtol, atol):
    try:
        rtol, atol = float(rtol), float(atol)
    except (TypeError, ValueError):
        raise VerificationError(f"rtol and atol must be numbers. Received: rtol={rtol!r}, atol={atol!r}") from None
    if not (rtol >= 0 and atol >= 0):
        raise VerificationError(f"rtol and atol must be >= 0. Received: rtol={rtol}, atol={atol}")
    return rtol, atol


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)
