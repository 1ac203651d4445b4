"""Which Keras backend bnconvert runs on, decided before ``keras`` is imported.

Keras 3 runs on TensorFlow, JAX or PyTorch and picks one when it is first imported: the
``KERAS_BACKEND`` environment variable, else ``backend`` in ``$KERAS_HOME/keras.json``
(default ``~/.keras/keras.json``), else ``"tensorflow"``. bnconvert does not need TensorFlow,
so when no backend was chosen explicitly and the default one is not installed, it uses the
first installed one of tensorflow, jax, torch. An explicit ``KERAS_BACKEND`` is always obeyed;
if its package is missing, or no backend is installed at all, :func:`ensure_backend` raises a
one-line :class:`~bnconvert.errors.ConversionError` saying what to install or set.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys

from .errors import ConversionError

BACKENDS = ("tensorflow", "jax", "torch")
# What to install for each backend: a bnconvert extra where there is one.
INSTALL = {"tensorflow": "pip install 'bnconvert[tensorflow]' (or tensorflow-cpu)",
           "jax": "pip install 'bnconvert[jax]'", "torch": "pip install torch"}


def installed(name):
    """True when the backend's package can be imported (without importing it)."""
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def configured_backend():
    """(backend Keras would pick, whether it was set explicitly with KERAS_BACKEND)."""
    env = os.environ.get("KERAS_BACKEND")
    if env:
        return env, True
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            name = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):
        name = None
    return (name if isinstance(name, str) and name else "tensorflow"), False


def ensure_backend():
    """Make sure Keras will start on an installed backend; returns its name.

    Does nothing when Keras is already imported (its backend is fixed then). Otherwise, with no
    explicit ``KERAS_BACKEND`` and the default backend missing, sets ``KERAS_BACKEND`` to the first
    installed backend.
    """
    if "keras" in sys.modules and sys.modules["keras"] is not None:
        return sys.modules["keras"].config.backend()
    if not installed("keras"):
        raise ConversionError("Keras is not installed", hint="pip install bnconvert (it depends on keras)")
    name, explicit = configured_backend()
    if name in BACKENDS and installed(name):
        return name
    if explicit:
        if name not in BACKENDS:
            raise ConversionError(f"KERAS_BACKEND={name} is not a Keras backend bnconvert supports",
                                  hint="set KERAS_BACKEND to one of " + ", ".join(BACKENDS))
        raise ConversionError(f"KERAS_BACKEND={name}, but {name} is not installed",
                              hint=f"{INSTALL[name]}, or unset KERAS_BACKEND to use an installed backend")
    for other in BACKENDS:
        if installed(other):
            os.environ["KERAS_BACKEND"] = other
            return other
    raise ConversionError("no Keras backend is installed (TensorFlow, JAX or PyTorch)",
                          hint="pip install 'bnconvert[tensorflow]' or 'bnconvert[jax]', or install torch and "
                               "set KERAS_BACKEND=torch")


def pick_installed_backend():
    """:func:`ensure_backend` without the errors (for ``import bnconvert``): Keras reports them itself."""
    try:
        return ensure_backend()
    except ConversionError:
        return None


def require_tensorflow(what, file=None):
    """Raise a clear error when ``what`` (e.g. 'a SavedModel') needs TensorFlow and it is missing."""
    if not installed("tensorflow"):
        raise ConversionError(f"{what} needs TensorFlow, which is not installed", file=file,
                              hint=f"{INSTALL['tensorflow']}, or write a .keras file instead")
