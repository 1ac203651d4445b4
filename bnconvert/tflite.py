"""TFLite output: a converted Keras model as a TFLite flatbuffer, and running one.

The flatbuffer is made by TensorFlow's TFLite converter from the model's forward function, float32,
with no optimizations (no quantization) and TFLite built-in ops only, so any TFLite runtime runs it
without the Flex (TensorFlow ops) delegate. Its signature ``serving_default`` takes the model's
inputs by the Caffe input names and returns its outputs by the Keras output names (the Caffe
blob names, as in the SavedModel). The batch dimension stays dynamic.

Running uses ``ai_edge_litert`` (the maintained LiteRT interpreter) when it is installed, else
``tf.lite.Interpreter`` of the installed TensorFlow.
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings

import numpy as np

from .backend import require_tensorflow
from .errors import ConversionError, VerificationError


def check_can_write(path=None):
    """Fail early (before converting) when TFLite output cannot be written here."""
    require_tensorflow("TFLite output", file=path)
    import sys

    from .backend import configured_backend

    name = sys.modules["keras"].config.backend() if sys.modules.get("keras") else configured_backend()[0]
    if name != "tensorflow":
        raise ConversionError(f"TFLite conversion runs on the TensorFlow backend, but Keras runs on {name}",
                              file=path, hint="set KERAS_BACKEND=tensorflow (or unset it) for -o *.tflite")


def to_tflite(model, path=None):
    """The TFLite flatbuffer (bytes) computing ``model``; ``path`` only names the file in errors."""
    require_tensorflow("TFLite output", file=path)
    import keras

    if keras.config.backend() != "tensorflow":
        raise ConversionError(f"TFLite conversion runs on the TensorFlow backend, but Keras runs on "
                              f"{keras.config.backend()}", file=path,
                              hint="set KERAS_BACKEND=tensorflow (or unset it) for -o *.tflite")
    import tempfile

    import tensorflow as tf
    from keras.export import ExportArchive

    names = list(model.output_names)
    specs = [tf.TensorSpec((None,) + tuple(t.shape[1:]), t.dtype, name=_input_name(t)) for t in model.inputs]
    single = len(specs) == 1

    def serve(*xs):
        ys = model(xs[0] if single else list(xs), training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        return dict(zip(names, ys))

    # Through a SavedModel: the converter freezes its variables into constants and keeps the named
    # signature (a concrete function of the live model keeps resource variables it cannot fill).
    with tempfile.TemporaryDirectory(prefix="bnconvert-tflite-") as tmp:
        archive = ExportArchive()
        archive.track(model)
        archive.add_endpoint("serve", serve, input_signature=specs)
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        return _convert(converter, tf, path)


def _convert(converter, tf, path):
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    log = io.StringIO()
    try:
        with contextlib.redirect_stderr(log):
            return converter.convert()
    except Exception as e:  # the converter raises ConverterError with MLIR diagnostics
        ops = _unsupported_ops(str(e))
        what = f"ops TFLite has no built-in kernel for: {', '.join(ops)}" if ops else \
            str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ConversionError(f"the model cannot be written as TFLite: {what}", file=path,
                              hint="write .keras or a SavedModel instead (README: TFLite)") from None


def _input_name(t):
    return t._keras_history.operation.name if hasattr(t, "_keras_history") else t.name


def _unsupported_ops(text):
    ops = set()
    for line in text.splitlines():
        if "'tf." in line and ("not supported" in line or "failed to legalize" in line or "Select TF" in line):
            start = line.index("'tf.") + 1
            ops.add(line[start:line.index("'", start)])
    return sorted(ops)


def interpreter(path, preserve_all_tensors=False):
    """A TFLite interpreter for the flatbuffer at ``path`` (bytes are accepted too);
    ``preserve_all_tensors`` keeps every intermediate tensor readable after ``invoke``."""
    content = path if isinstance(path, (bytes, bytearray)) else None
    kw = dict(model_content=bytes(content)) if content is not None else dict(model_path=os.fspath(path))
    if preserve_all_tensors:
        kw["experimental_preserve_all_tensors"] = True
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            require_tensorflow("running a TFLite model")
        except ConversionError as e:
            raise VerificationError(f"{e.message}; or pip install ai-edge-litert", file=path) from None
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    try:
        with warnings.catch_warnings():  # "intended for debugging": that is what verify does
            warnings.simplefilter("ignore", UserWarning)
            return Interpreter(**kw)
    except (ValueError, RuntimeError) as e:
        raise VerificationError(f"not a TFLite model the interpreter can load: {str(e).splitlines()[0][:200]}",
                                file=None if content is not None else path) from None


def run_tflite(path, inputs):
    """Run the ``serving_default`` signature on ``inputs`` (dict name -> channels_last array).
    Returns the outputs as a dict name -> array."""
    interp = interpreter(path)
    key = _signature(interp, path)
    runner = interp.get_signature_runner(key)
    want = runner.get_input_details()
    missing = sorted(set(want) - set(inputs))
    if missing:
        raise VerificationError(f"the TFLite model's inputs {missing} were not given. Received: {sorted(inputs)}",
                                file=None if isinstance(path, (bytes, bytearray)) else path)
    feeds = {n: np.ascontiguousarray(inputs[n], np.float32) for n in want}
    for n, a in feeds.items():  # the batch dimension is dynamic
        if tuple(want[n]["shape"]) != a.shape:
            runner = None
            break
    if runner is None:
        for n, a in feeds.items():
            interp.resize_tensor_input(want[n]["index"], a.shape, strict=False)
        interp.allocate_tensors()
        runner = interp.get_signature_runner(key)
    return {k: np.asarray(v) for k, v in runner(**feeds).items()}


def _signature(interp, path):
    keys = list(interp.get_signature_list())
    if len(keys) != 1:
        raise VerificationError(f"expected a TFLite model with one signature. Received: {keys}",
                                file=None if isinstance(path, (bytes, bytearray)) else path)
    return keys[0]
