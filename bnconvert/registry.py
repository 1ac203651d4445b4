"""One registry of per-layer converters for each direction.

Converters register with ``@caffe_layer("Convolution")`` (Caffe -> Keras) or
``@keras_layer("Conv2D")`` (Keras -> Caffe). Registering a type twice is an error.
Converter modules import Keras lazily, so the registry can be read without TensorFlow.
"""
from __future__ import annotations

import importlib
import pkgutil


class Registry:
    def __init__(self, direction, package):
        self.direction = direction
        self._package = package
        self._handlers = {}
        self._docs = {}
        self._loaded = False

    def register(self, *types, doc=None):
        """Decorator registering ``fn`` for ``types``; ``doc`` (a string, or a dict by type) overrides
        the first docstring line shown in the supported-layer table."""

        def deco(fn):
            for t in types:
                if t in self._handlers:
                    raise ValueError(
                        f"{self.direction}: layer type {t!r} is registered twice "
                        f"({self._handlers[t].__module__}.{self._handlers[t].__name__} and "
                        f"{fn.__module__}.{fn.__name__})"
                    )
                self._handlers[t] = fn
                text = doc.get(t) if isinstance(doc, dict) else doc
                self._docs[t] = text or (fn.__doc__ or "").strip().split("\n")[0]
            return fn

        return deco

    def load(self):
        if not self._loaded:
            self._loaded = True
            pkg = importlib.import_module(self._package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self._package}.{info.name}")
        return self

    def get(self, layer_type):
        self.load()
        return self._handlers.get(layer_type)

    def __contains__(self, layer_type):
        self.load()
        return layer_type in self._handlers

    def types(self):
        self.load()
        return sorted(self._handlers)

    def doc(self, layer_type):
        self.load()
        return self._docs.get(layer_type, "")


# Family modules are every public module of these packages (conv.py, pooling.py, ...).
CAFFE_TO_KERAS = Registry("caffe2keras", "bnconvert.c2k")
KERAS_TO_CAFFE = Registry("keras2caffe", "bnconvert.k2c")

caffe_layer = CAFFE_TO_KERAS.register
keras_layer = KERAS_TO_CAFFE.register
