"""bnconvert: Caffe <-> Keras model conversion that gets BatchNorm right.

The public API (``caffe_to_keras``, ``keras_to_caffe``, ``verify``, ...) is imported lazily, so
``import bnconvert`` stays fast and does not load TensorFlow. The custom Keras layers that
converted models use are registered for serialization as soon as Keras is imported (before or
after bnconvert), so ``keras.saving.load_model`` needs nothing but ``import bnconvert``.
"""
from __future__ import annotations

import importlib
import sys

from .errors import (ConversionError, GraphError, OutputError, ParseError, ShapeError, UnsafeModelError,
                     UnsupportedLayerError, VerificationError, WeightMismatchError)

__version__ = "0.1.0"

_API = {
    "caffe_to_keras": "bnconvert.c2k",
    "convert_caffe": "bnconvert.c2k",
    "keras_to_caffe": "bnconvert.k2c",
    "verify": "bnconvert.verify",
    "keras_name": "bnconvert.naming",
    "load_net": "bnconvert.caffe.graph",
    "inspect_net": "bnconvert.inspect",
    "lint_net": "bnconvert.lint",
    "upgrade_files": "bnconvert.upgrade",
}

__all__ = sorted(_API) + ["ConversionError", "GraphError", "OutputError", "ParseError", "ShapeError",
                          "UnsafeModelError", "UnsupportedLayerError", "VerificationError", "WeightMismatchError", "__version__"]


def __getattr__(name):
    mod = _API.get(name)
    if mod is None:
        raise AttributeError(f"module 'bnconvert' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)


def _register_keras_layers():
    importlib.import_module("bnconvert.keras_layers")


class _KerasImportHook:
    """Registers bnconvert's Keras layers right after ``keras`` itself finishes importing.

    It stays on ``sys.meta_path`` until keras has really been executed: a mere look-up
    (``importlib.util.find_spec("keras")``, as the backend check does) must not disarm it.
    """

    _busy = False

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras" or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec("keras")
        finally:
            self._busy = False
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        orig_exec = loader.exec_module
        hook = self

        def exec_module(module, _orig=orig_exec):
            if hook in sys.meta_path:
                sys.meta_path.remove(hook)
            _orig(module)
            try:
                _register_keras_layers()
            except Exception:  # registration must never break importing keras
                pass

        spec.loader = _LoaderProxy(loader, exec_module)
        return spec


class _LoaderProxy:
    def __init__(self, loader, exec_module):
        self._loader = loader
        self.exec_module = exec_module

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def __getattr__(self, attr):
        return getattr(self._loader, attr)


import importlib.util  # noqa: E402

if "keras" in sys.modules:
    try:
        _register_keras_layers()
    except ImportError:
        pass
else:
    sys.meta_path.insert(0, _KerasImportHook())
    # Keras defaults to TensorFlow; with no backend chosen and TensorFlow absent, use an installed one.
    from .backend import pick_installed_backend as _pick

    _pick()
