"""Deferred imports, so the CLI, inspect and lint start without loading TensorFlow."""
from __future__ import annotations

import importlib


class LazyModule:
    """A stand-in for a module that is imported the first time an attribute is read."""

    def __init__(self, name):
        self._name = name
        self._mod = None

    def _load(self):
        if self._mod is None:
            self._mod = importlib.import_module(self._name)
        return self._mod

    def __getattr__(self, attr):
        return getattr(self._load(), attr)

    def __repr__(self):
        return f"<lazy module {self._name}>"


keras = LazyModule("keras")
kl = LazyModule("bnconvert.keras_layers")
