"""The public mapping from Caffe layer and blob names to Keras layer names.

Keras names may not contain '/' (and some other characters misbehave in saved files), while
Caffe names often do (e.g. ``conv1/dw``, ``inception_3a/1x1``). :func:`keras_name` maps each
character outside ``[A-Za-z0-9_.-]`` to ``_``, and prefixes names that would start with a
character Keras rejects; it is a pure function, so the Keras name of any Caffe blob can be
computed from the Caffe name alone.
"""
from __future__ import annotations

import re

_BAD = re.compile(r"[^A-Za-z0-9_.\-]")


def keras_name(caffe_name):
    """The Keras layer name for a Caffe layer or blob name.

    Examples: ``conv1/dw`` -> ``conv1_dw``; ``inception_3a/5x5_reduce`` -> ``inception_3a_5x5_reduce``;
    ``1x1`` -> ``1x1``; an empty name -> ``_``.
    """
    n = _BAD.sub("_", str(caffe_name))
    if not n:
        return "_"
    if n[0] in ".-":
        n = "_" + n
    return n


def unique_name(base, taken):
    """``base``, or ``base_1``, ``base_2``, ... : the first that ``taken(name)`` says is free."""
    name, i = base, 1
    while taken(name):
        name = f"{base}_{i}"
        i += 1
    return name
