"""Structural mutators: the layer count, the graph depth and the text nesting depth of a prototxt.

Byte- and token-level mutations (targets.mutate_text) rarely change how many layers a net has
or how deep it is; these do, on a parsed real prototxt, and give the text back:
  - a long chain (50..3,000 layers, in place or not) spliced in after a random layer, its
    consumers rewired to the chain's end;
  - a random layer repeated in place many times (the case that was quadratic);
  - a span of layers duplicated under new names (more layers, same wiring), or deleted;
  - a window of layers shuffled (producers after consumers);
  - deeply nested braces inside a layer (the text parser's recursion).
"""
from __future__ import annotations

from google.protobuf import text_format

from bnconvert.caffe.io import pb2

CHAIN_TYPES = ["ReLU", "TanH", "Sigmoid", "Dropout", "AbsVal", "Power", "BatchNorm", "Scale", "Split", "Flatten",
               "Softmax", "Reshape"]


def parse(data):
    """The NetParameter of prototxt bytes, or None when they do not parse."""
    net = pb2().NetParameter()
    try:
        text_format.Merge(data.decode("utf-8"), net)
    except Exception:  # noqa: BLE001 - a seed that does not parse is mutated as text instead
        return None
    return net


def mutate_structure(data, rng):
    """Prototxt bytes with one or two structural mutations (bytes returned unchanged if unparsable)."""
    net = parse(data)
    if net is None or not (net.layer or net.layers):
        return data
    if net.layers:  # V1: mutate in V1 form (the upgrade path is then part of the test)
        layers = net.layers
    else:
        layers = net.layer
    for _ in range(rng.randint(1, 2)):
        rng.choice(_OPS)(net, layers, rng)
    text = text_format.MessageToString(net).encode("utf-8")
    if rng.random() < 0.1:
        text = _nest(text, rng)
    return text


def _rebuild(layers, items):
    tmp = []
    for s in items:
        t = type(s)()
        t.CopyFrom(s)
        tmp.append(t)
    del layers[:]
    layers.extend(tmp)


def _chain(net, layers, rng):
    if not len(layers):
        return
    i = rng.randrange(len(layers))
    src = layers[i]
    if not len(src.top):
        return
    top = src.top[0]
    n = rng.choice([50, 200, 999, 1000, 1001, 2000, 3000])
    in_place = rng.random() < 0.5
    items = list(layers)
    chain, prev = [], top
    v1 = bool(net.layers)
    for k in range(n):
        lp = type(src)()
        lp.name = f"chain{i}_{k}"
        if v1:
            lp.type = lp.RELU
        else:
            lp.type = rng.choice(CHAIN_TYPES) if rng.random() < 0.2 else "ReLU"
        lp.bottom.append(prev)
        lp.top.append(prev if in_place else f"chain{i}_{k}")
        prev = lp.top[0]
        chain.append(lp)
    if not in_place:  # later consumers of `top` read the chain's end
        for later in items[i + 1:]:
            for j, b in enumerate(later.bottom):
                if b == top:
                    later.bottom[j] = prev
    _rebuild(layers, items[:i + 1] + chain + items[i + 1:])


def _repeat_in_place(net, layers, rng):
    if not len(layers):
        return
    i = rng.randrange(len(layers))
    src = layers[i]
    if len(src.top) != 1:
        return
    items = list(layers)
    copies = []
    for k in range(rng.choice([10, 100, 1000, 5000])):
        lp = type(src)()
        lp.CopyFrom(src)
        lp.name = f"{src.name}_rep{k}"
        del lp.bottom[:]
        lp.bottom.append(src.top[0])
        del lp.blobs[:]
        copies.append(lp)
    _rebuild(layers, items[:i + 1] + copies + items[i + 1:])


def _duplicate_span(net, layers, rng):
    if not len(layers):
        return
    i = rng.randrange(len(layers))
    j = min(len(layers), i + rng.randint(1, 20))
    items = list(layers)
    dup = []
    for times in range(rng.randint(1, 4)):
        for s in items[i:j]:
            lp = type(s)()
            lp.CopyFrom(s)
            lp.name = f"{s.name}_dup{times}"
            renamed = {t: f"{t}_dup{times}" for t in s.top if t not in s.bottom}
            for k, t in enumerate(lp.top):
                lp.top[k] = renamed.get(t, t)
            dup.append(lp)
    _rebuild(layers, items[:j] + dup + items[j:])


def _delete_span(net, layers, rng):
    if len(layers) < 2:
        return
    i = rng.randrange(len(layers))
    j = min(len(layers), i + rng.randint(1, max(1, len(layers) // 3)))
    items = list(layers)
    _rebuild(layers, items[:i] + items[j:])


def _shuffle_window(net, layers, rng):
    if len(layers) < 3:
        return
    i = rng.randrange(len(layers) - 1)
    j = min(len(layers), i + rng.randint(2, 8))
    items = list(layers)
    window = items[i:j]
    rng.shuffle(window)
    _rebuild(layers, items[:i] + window + items[j:])


_OPS = [_chain, _chain, _repeat_in_place, _duplicate_span, _delete_span, _shuffle_window]


def _nest(text, rng):
    """Deeply nested braces (an unknown field's sub-messages) inside the first layer block."""
    pos = text.find(b"{")
    if pos < 0:
        return text
    d = rng.choice([50, 500, 5000, 20000])
    name = rng.choice([b"include", b"transform_param", b"nest", b"shape"])
    return text[:pos + 1] + b" " + (name + b" { ") * d + b"}" * d + b" " + text[pos + 1:]
