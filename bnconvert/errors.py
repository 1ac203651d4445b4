"""The exception hierarchy of bnconvert.

Every failure the tool can diagnose is a :class:`ConversionError`. Its message names the
file, the layer (name and type) and the problem, plus a fix where one is known, so the CLI
can print it as one line and exit with code 2::

    ConversionError                 base class; .file .layer .layer_type .hint
    +-- ParseError                  unreadable prototxt/caffemodel/Keras file (.line .column)
    |   +-- UnsafeModelError        a Keras file that would run code (Lambda, unknown objects)
    +-- GraphError                  duplicate names, undefined bottoms, cycles, wrong arity
    +-- ShapeError                  zero/negative/absurd dimensions, shapes that do not fit
    +-- WeightMismatchError         missing weights, misshapen blobs, wrong blob counts
    +-- UnsupportedLayerError       layers without a converter (.layers, all at once)
    +-- OutputError                 an output file cannot be written (nothing is left behind)
    +-- VerificationError           the verification pass cannot run
"""
from __future__ import annotations


class ConversionError(Exception):
    """Base class of every error bnconvert reports to users.

    Args:
        message: what went wrong.
        file: the file being read or written, if any.
        layer: the Caffe or Keras layer name, if the problem belongs to one.
        layer_type: the layer's type.
        hint: how to fix it, if known.
    """

    def __init__(self, message, *, file=None, layer=None, layer_type=None, hint=None):
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.layer = layer
        self.layer_type = layer_type
        self.hint = hint

    def __str__(self):
        parts = []
        if self.file:
            parts.append(self.file)
        if self.layer is not None:
            parts.append(f"layer '{self.layer}'" + (f" (type {self.layer_type})" if self.layer_type else ""))
        text = ": ".join(parts + [str(self.message).rstrip(".")])
        if self.hint:
            text += f". Fix: {self.hint}"
        # One line on stderr, whatever a wrapped library put into its message.
        return " ".join(text.split("\n"))


class ParseError(ConversionError):
    """A prototxt, caffemodel or Keras file could not be read.

    Args:
        line, column: 1-based position of a text syntax error, when known.
        (the other arguments as for :class:`ConversionError`)
    """

    def __init__(self, message, *, line=None, column=None, **kwargs):
        super().__init__(message, **kwargs)
        self.line = line
        self.column = column


class UnsafeModelError(ParseError):
    """A model file was refused because loading it could execute code (safe mode)."""


class GraphError(ConversionError):
    """The net's topology is broken: duplicate names, undefined bottoms, cycles."""


class ShapeError(ConversionError):
    """A shape is invalid, absurd, or cannot be inferred."""


class WeightMismatchError(ConversionError):
    """The weights do not fit the net: missing, extra with no home, or misshapen blobs."""


class UnsupportedLayerError(ConversionError):
    """One or more layers have no converter. ``layers`` lists (name, type) pairs, all at once."""

    def __init__(self, layers, *, file=None, direction="caffe2keras"):
        self.layers = list(layers)
        listing = ", ".join(f"{n} (type {t})" for n, t in self.layers)
        noun = "layer" if len(self.layers) == 1 else "layers"
        super().__init__(
            f"unsupported {noun} {listing}",
            file=file,
            hint="see the supported-layer table in README.md",
        )
        self.direction = direction


class OutputError(ConversionError):
    """An output file could not be written."""


class VerificationError(ConversionError):
    """The verification pass could not run (e.g. no GPU for --device gpu)."""
