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


class NamePlan:
    """The Keras name of every Caffe input, output and layer of a net, decided once.

    The rules, applied in the net's layer order:

    - an input is named ``keras_name`` of its blob; a net output likewise, and nothing else ever
      takes an input's or an output's name;
    - the layer that produces an output (for a BatchNorm merged with its Scale, the BatchNorm's
      Keras layer) carries the output's name when it has one top; if the converted output then
      needs a relayout (or the layer has several tops) the output is a separate layer of that
      name and the producer takes its ``fallback`` name;
    - every other layer is named ``keras_name`` of the Caffe layer, made unique with ``_1``,
      ``_2``, ... against all names decided before and all input and output names.

    Internal layers (padding, relayouts, ...) take names unique against every planned name, so
    they never shift a planned one.

    Attributes:
        inputs, outputs: blob id -> Keras name.
        layers: Caffe layer name (the BatchNorm of a merged pair) -> Keras layer name.
        fallback: the same for output producers, when the output becomes a layer of its own.
        reserved: every planned name.
    """

    def __init__(self, net, outputs=None, pairs=None):
        from .caffe.bnpair import pair_batchnorm_scale
        from .caffe.graph import INPUT_TYPES

        pairs = pair_batchnorm_scale(net) if pairs is None else pairs
        owner_of = {s.name: bn for bn, s in pairs.items()}  # a merged Scale's layer is its BatchNorm's
        outputs = list(net.outputs if outputs is None else outputs)
        self.inputs, self.outputs, self.layers, self.fallback = {}, {}, {}, {}
        taken = set()
        for bid in net.inputs:
            self.inputs[bid] = unique_name(keras_name(net.caffe_name[bid]), taken.__contains__)
            taken.add(self.inputs[bid])
        counts = {}
        for L in net.layers:
            counts[L.name] = counts.get(L.name, 0) + 1
        out_owner = {}
        for bid in outputs:
            if bid in self.inputs:
                continue
            self.outputs[bid] = unique_name(keras_name(net.caffe_name[bid]), taken.__contains__)
            taken.add(self.outputs[bid])
            producer = net.producer[bid]
            if len(producer.tops) == 1 and counts[producer.name] == 1:  # (a same-named one: see below)
                out_owner[owner_of.get(producer.name, producer.name)] = self.outputs[bid]
        for L in net.layers:
            if L.type in INPUT_TYPES or L.name in owner_of:
                continue
            if L.name in self.layers:
                # Caffe accepts same-named layers: the first has the plan's name, the others are
                # named keras_name + _1, _2, ... by the engine when it reaches them.
                continue
            own = unique_name(keras_name(L.name), taken.__contains__)
            taken.add(own)
            if L.name in out_owner:
                self.layers[L.name], self.fallback[L.name] = out_owner[L.name], own
            else:
                self.layers[L.name] = own
        self.reserved = taken

    def layer(self, caffe_layer_name):
        """The Keras name planned for a Caffe layer (the BatchNorm of a merged pair), or None."""
        return self.layers.get(caffe_layer_name)


def plan_names(net, outputs=None, pairs=None):
    """The :class:`NamePlan` of ``net`` (``outputs``: the blob ids exposed, default the net's)."""
    return NamePlan(net, outputs, pairs)
