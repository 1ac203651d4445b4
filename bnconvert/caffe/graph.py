"""The inference graph of a Caffe net.

``build_graph`` applies Caffe's phase/stage/level rules, turns the input declarations into
input blobs, drops loss/accuracy/silence layers (and inputs only they used), renames in-place
tops so that every blob version is assigned once, and runs shape inference.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import GraphError, ParseError, ShapeError
from .io import check_shape, integer_shape, pb2, read_caffemodel, read_prototxt
from .upgrade import upgrade_net

# Which types are data layers (inputs) and which inference drops, by name: see layertypes.
from .layertypes import DROPPED_TYPES, INPUT_NAMES, INPUT_TYPES, is_loss_type  # noqa: F401 (re-exported)


@dataclass
class Layer:
    """One layer of the inference graph. ``bottoms``/``tops`` are blob version ids."""

    name: str
    type: str
    param: object  # caffe_pb2.LayerParameter
    bottoms: list
    tops: list
    index: int = 0
    blobs: list = field(default_factory=list)  # numpy arrays, once weights are attached
    top_shapes: list = field(default_factory=list)
    coord_offsets: tuple | None = None  # a param-less Crop's (h, w) offsets under crop_offsets="coordmap"

    def __repr__(self):
        return f"Layer({self.name!r}, {self.type!r}, {self.bottoms} -> {self.tops})"


@dataclass
class Net:
    name: str
    path: str | None
    phase: str
    layers: list
    inputs: list  # blob ids of the net inputs, in declaration order
    outputs: list  # blob ids of the net outputs
    shapes: dict  # blob id -> tuple (None if unknown)
    caffe_name: dict  # blob id -> Caffe blob name
    producer: dict  # blob id -> Layer
    consumers: dict  # blob id -> [Layer]
    dropped: list  # (layer name, type, reason)
    transforms: dict  # input blob -> dict of transform_param values
    param: object  # the upgraded NetParameter (all phases)
    upgrades: dict
    warnings: list = field(default_factory=list)
    unused_weights: list = field(default_factory=list)  # (layer, type, reason)
    weights_path: str | None = None

    def layer(self, name):
        for L in self.layers:
            if L.name == name:
                return L
        raise KeyError(name)

    def final_blob(self, caffe_name):
        """The id of the last version of a Caffe blob (what Caffe shows after the forward pass)."""
        last = None
        for bid, cname in self.caffe_name.items():
            if cname == caffe_name:
                last = bid
        if last is None:
            raise KeyError(caffe_name)
        return last

    def final_versions(self):
        out = {}
        for bid, cname in self.caffe_name.items():
            out[cname] = bid
        return out

    def warn(self, msg):
        self.warnings.append(msg)


# --- phase and stage rules -------------------------------------------------------------


def rule_met(rule, phase, level, stages):
    if rule.HasField("phase") and pb2().Phase.Name(rule.phase) != phase:
        return False
    if rule.HasField("min_level") and level < rule.min_level:
        return False
    if rule.HasField("max_level") and level > rule.max_level:
        return False
    if any(s not in stages for s in rule.stage):
        return False
    if any(s in stages for s in rule.not_stage):
        return False
    return True


def layer_included(layer, phase, level, stages):
    """Caffe's StateMeetsRule: include rules (any met), else exclude rules (none met)."""
    if layer.include:
        return any(rule_met(r, phase, level, stages) for r in layer.include)
    return not any(rule_met(r, phase, level, stages) for r in layer.exclude)


# --- inputs ----------------------------------------------------------------------------


def _data_shape(lp, top_index):
    """The shape a data layer's top would have, where the prototxt alone determines it."""
    t = lp.type
    if t == "Input":
        shapes = lp.input_param.shape
        if not shapes:
            return None
        s = shapes[0] if len(shapes) == 1 else (shapes[top_index] if top_index < len(shapes) else None)
        return tuple(int(d) for d in s.dim) if s is not None else None
    if t == "DummyData":
        p = lp.dummy_data_param
        if p.shape:
            i = 0 if len(p.shape) == 1 else top_index
            return tuple(int(d) for d in p.shape[i].dim) if i < len(p.shape) else None
        if p.num:
            fields = (p.num, p.channels, p.height, p.width)
            i = 0 if len(p.num) == 1 else top_index
            if any(i >= len(f) for f in fields):
                return None
            return tuple(int(f[i]) for f in fields)
        return None
    if t == "MemoryData":
        p = lp.memory_data_param
        return (p.batch_size, p.channels, p.height, p.width) if top_index == 0 else (p.batch_size,)
    if t == "ImageData":
        p, tp = lp.image_data_param, lp.transform_param
        c = 3 if p.is_color else 1
        if top_index == 1:
            return (p.batch_size,)
        if tp.crop_size:
            return (p.batch_size, c, tp.crop_size, tp.crop_size)
        if p.new_height and p.new_width:
            return (p.batch_size, c, p.new_height, p.new_width)
        return None
    if t in ("ImageSegData", "DenseImageData"):
        return _fork_image_shape(lp, top_index)
    if t == "Data" and top_index == 1:
        return (lp.data_param.batch_size,)
    if t == "HDF5Data" and top_index > 0:
        return None
    return None


def _fork_image_shape(lp, top_index):
    """The data top of DeepLab v2's ImageSegData (image_data_param) or SegNet/ENet's DenseImageData
    (dense_image_data_param), as their layer setup shapes it: N, C, then the crop (transform_param
    crop_size, else the fork's crop_height/crop_width), else the resize (new_height/new_width)."""
    if top_index != 0:
        return None
    seg = lp.type == "ImageSegData"
    p, tp = (lp.image_data_param, lp.transform_param) if seg else (lp.dense_image_data_param, lp.transform_param)
    c = 3 if p.is_color else 1
    crop_h, crop_w = (tp.crop_height, tp.crop_width) if seg else (p.crop_height, p.crop_width)
    if tp.crop_size:
        crop_h = crop_w = tp.crop_size
    h, w = (crop_h, crop_w) if crop_h and crop_w else (p.new_height, p.new_width)
    if not (p.batch_size and h and w):
        return None
    return (p.batch_size, c, h, w)


def _transform_dict(lp):
    if not lp.HasField("transform_param"):
        return None
    tp = lp.transform_param
    return {
        "scale": tp.scale, "mirror": tp.mirror, "crop_size": tp.crop_size,
        "mean_file": tp.mean_file or None, "mean_value": list(tp.mean_value),
        "force_color": tp.force_color, "force_gray": tp.force_gray,
    }


# --- graph building --------------------------------------------------------------------


def build_graph(net_param, *, phase="TEST", level=0, stages=(), input_shapes=None, outputs=None,
                path=None, upgrades=None, crop_offsets="param"):
    """Build the inference graph of an (already upgraded) ``NetParameter``.

    Args:
        net_param: the NetParameter, upgraded to V2 form by :func:`upgrade_net`.
        phase: "TEST" (default) or "TRAIN".
        level, stages: Caffe's NetState level and stages (the net's own ``state`` adds to them).
        input_shapes: dict blob name -> N,C,H,W shape; overrides declared shapes and gives
            Data layers their shape. A single shape under key ``None`` applies to the only input.
        outputs: blob names to use as outputs instead of the unconsumed blobs.
        path: the prototxt path, for messages.
        crop_offsets: "param" (BVLC: a Crop without crop_param crops at offset 0) or "coordmap"
            (HED's fork: such a Crop's offsets come from the coordinate maps, see caffe/coordmap.py).
    """
    phase = str(phase).upper()
    if phase not in ("TEST", "TRAIN"):
        raise ParseError(f"phase must be TEST or TRAIN. Received: {phase!r}", file=path)
    if net_param.layers:
        raise ParseError("internal: build_graph needs an upgraded net", file=path)
    stages = set(stages) | set(net_param.state.stage)
    if net_param.state.HasField("level") and not level:
        level = net_param.state.level
    input_shapes = dict(input_shapes or {})

    if not net_param.layer:
        raise GraphError("the net has no layers (Caffe builds nothing from it)", file=path,
                         hint="pass the net definition (deploy.prototxt or train_val.prototxt)")
    dropped, kept = [], []
    for lp in net_param.layer:
        if len(lp.include) and len(lp.exclude):
            raise GraphError("Specify either include rules or exclude rules; not both (Caffe refuses this layer)",
                             file=path, layer=lp.name, layer_type=lp.type, hint="keep only the include or the "
                                                                                 "exclude rules")
        if not layer_included(lp, phase, level, stages):
            continue
        if is_loss_type(lp.type):
            dropped.append((lp.name, lp.type, "loss/accuracy/silence layer is not part of inference"))
            continue
        kept.append(lp)
    if not kept:
        raise GraphError(_nothing_included(net_param, phase, dropped), file=path,
                         hint="convert with the other --phase, or check the include/exclude rules")

    # Duplicate layer names are accepted, as Caffe does (see check_duplicate_names).

    # Inputs consumed only by dropped layers (labels) are dropped too.
    all_included = [lp for lp in net_param.layer if layer_included(lp, phase, level, stages)]
    consumed_by_kept = {b for lp in kept for b in lp.bottom}
    n_unnamed = sum(1 for lp in kept if lp.type in INPUT_TYPES
                    for ti, t in enumerate(lp.top) if not _unused_data_top(lp, ti, t, consumed_by_kept))
    single_shape = input_shapes.pop(None, None)

    version, caffe_name, producer, consumers, shapes = {}, {}, {}, {}, {}
    n_versions = {}  # Caffe blob name -> how many versions of it exist so far (in-place layers add one)
    later_producers = {}
    for lp in all_included:
        for t in lp.top:
            later_producers.setdefault(t, lp.name)
    layers, inputs, transforms = [], [], {}
    for idx, lp in enumerate(kept):
        if lp.type in INPUT_TYPES:
            if len(lp.bottom):
                raise GraphError(f"an input layer cannot have bottoms (it has {list(lp.bottom)})", file=path,
                                 layer=lp.name, layer_type=lp.type, hint="remove the bottom lines")
            tops = []
            for ti, t in enumerate(lp.top):
                if t not in consumed_by_kept and any(t in d.bottom for d in all_included if is_loss_type(d.type)):
                    dropped.append((f"{lp.name}:{t}", lp.type, "input used only by dropped loss/accuracy layers"))
                    continue
                if _unused_data_top(lp, ti, t, consumed_by_kept):
                    dropped.append((f"{lp.name}:{t}", lp.type, "top of a fork data layer that no kept layer reads "
                                                               "(a label or image size)"))
                    continue
                if t in version:
                    raise GraphError(f"top blob '{t}' is produced by more than one layer", file=path,
                                     layer=lp.name, layer_type=lp.type)
                shape = input_shapes.pop(t, None)
                if shape is None and single_shape is not None and n_unnamed == 1:
                    shape = single_shape
                    single_shape = None
                if shape is None:
                    shape = _data_shape(lp, ti)
                if shape is None:
                    raise ShapeError(f"the shape of input blob '{t}' is not declared", file=path, layer=lp.name,
                                     layer_type=lp.type,
                                     hint=f"pass --input-shape {t}=N,C,H,W (or input_shapes={{'{t}': (N, C, H, W)}})")
                shape = integer_shape(shape, f"the shape of input blob '{t}'", file=path, layer=lp.name,
                                      layer_type=lp.type, hint="give a sequence of positive integers")
                if not shape or any(d <= 0 for d in shape):
                    raise ShapeError(f"input blob '{t}' has an invalid shape {shape}", file=path, layer=lp.name,
                                     layer_type=lp.type, hint="every dimension must be positive")
                check_shape(shape, f"input blob '{t}'", file=path, layer=lp.name, layer_type=lp.type)
                version[t] = t
                caffe_name[t] = t
                shapes[t] = shape
                tops.append(t)
                inputs.append(t)
                tr = _transform_dict(lp)
                if tr and ti == 0:
                    transforms[t] = tr
            L = Layer(lp.name, lp.type, lp, [], tops, index=len(layers))
            L.top_shapes = [shapes[t] for t in tops]
            for t in tops:
                producer[t] = L
            layers.append(L)
            continue

        bottoms = []
        for b in lp.bottom:
            if b not in version:
                raise _undefined_bottom(b, lp, later_producers, dropped, phase, path)
            bottoms.append(version[b])
        if len(set(lp.top)) != len(lp.top):
            raise GraphError("the layer lists the same top twice", file=path, layer=lp.name, layer_type=lp.type)
        tops = []
        for ti, t in enumerate(lp.top):
            if t in version:
                if ti < len(lp.bottom) and lp.bottom[ti] == t:
                    bid = _new_version(t, n_versions, caffe_name)
                else:
                    other = producer[version[t]].name
                    raise GraphError(f"top blob '{t}' is also produced by layer '{other}' "
                                     f"(only an in-place layer, top == bottom at the same position, may reuse it)",
                                     file=path, layer=lp.name, layer_type=lp.type)
            else:  # a new blob; its id is its name, unless an in-place version already took it
                bid = t if t not in caffe_name else _new_version(t, n_versions, caffe_name)
            tops.append(bid)
        L = Layer(lp.name, lp.type, lp, bottoms, tops, index=len(layers))
        for b in bottoms:
            consumers.setdefault(b, []).append(L)
        for t, bid in zip(lp.top, tops):
            version[t] = bid
            caffe_name[bid] = t
            producer[bid] = L
        layers.append(L)

    if input_shapes:
        raise ShapeError(f"--input-shape names blob(s) {sorted(input_shapes)} that are not net inputs; "
                         f"the inputs are {inputs}", file=path)

    if outputs:
        outs = []
        for o in outputs:
            if o not in version:
                names = sorted(version)
                shown = ", ".join(names[:30]) + (f" and {len(names) - 30} more" if len(names) > 30 else "")
                raise GraphError(f"requested output blob '{o}' does not exist in phase {phase}; the blobs are: "
                                 f"{shown}", file=path)
            outs.append(version[o])
    else:
        unconsumed = [bid for bid in caffe_name if bid not in consumers]
        # Caffe keeps its remaining blobs in a std::set, so its outputs come in name order.
        outs = sorted(unconsumed, key=lambda b: caffe_name[b].encode("utf-8"))

    net = Net(name=net_param.name, path=str(path) if path else None, phase=phase, layers=layers, inputs=inputs,
              outputs=outs, shapes=shapes, caffe_name=caffe_name, producer=producer, consumers=consumers,
              dropped=dropped, transforms=transforms, param=net_param, upgrades=upgrades or {})
    if outputs:
        prune_to_outputs(net)
    from .coordmap import assign_crop_offsets
    from .shapes import infer_shapes

    assign_crop_offsets(net, crop_offsets)
    infer_shapes(net)
    check_duplicate_names(net)
    for note in (upgrades or {}).get("ignored_fields", ()):
        net.warn(note)
    return net


def _unused_data_top(lp, ti, t, consumed_by_kept):
    """A fork data layer's extra top (its label, DeepLab's data_dim) that no kept layer reads:
    dropped with the layer's loss, since no shape for it is known. BVLC data layers keep theirs."""
    return ti > 0 and lp.type not in INPUT_NAMES and t not in consumed_by_kept


def check_duplicate_names(net):
    """Caffe accepts duplicate layer names (``Net::Init`` never checks them); its
    ``CopyTrainedLayersFrom`` gives a caffemodel layer's blobs to the *first* layer of that name.
    So two same-named layers are fine unless two of them hold weights: then which one the
    caffemodel's blobs belong to is ambiguous, and bnconvert refuses the net."""
    by_name = {}
    for L in net.layers:
        by_name.setdefault(L.name, []).append(L)
    for name, group in by_name.items():
        if len(group) < 2:
            continue
        with_weights = [L for L in group if getattr(L, "param_shapes", None)]
        if len(with_weights) > 1:
            types = ", ".join(f"{L.type} #{L.index}" for L in with_weights)
            raise GraphError(f"{len(with_weights)} layers with weights are named '{name}' ({types}): which of them "
                             f"a caffemodel's '{name}' blobs belong to is ambiguous (Caffe gives them to the first "
                             f"and leaves the others at their filler values)", file=net.path, layer=name,
                             layer_type=with_weights[1].type, hint="give the layers with weights unique names")
        net.warn(f"{len(group)} layers are named '{name}' ({', '.join(L.type for L in group)}); accepted as Caffe "
                 f"does, and given unique Keras names")


def _nothing_included(net_param, phase, dropped):
    n = len(net_param.layer)
    if dropped:
        return f"no layer of the net is part of inference in phase {phase}: the {len(dropped)} included " \
               f"layer(s) are all loss/accuracy/silence layers"
    return f"no layer of the net is included in phase {phase}: its include/exclude rules leave none of its " \
           f"{n} layer(s)"


def _new_version(name, n_versions, caffe_name):
    """A fresh blob id 'name#N' for a new version of Caffe blob ``name``, in O(1) (amortized)."""
    n = n_versions.get(name, 1)
    while f"{name}#{n}" in caffe_name:  # a Caffe blob may itself be named like 'x#1'
        n += 1
    n_versions[name] = n + 1
    return f"{name}#{n}"


def _undefined_bottom(b, lp, later_producers, dropped, phase, path):
    """The GraphError for a bottom that no earlier kept layer produces, saying why."""
    where = dict(file=path, layer=lp.name, layer_type=lp.type)
    other = later_producers.get(b)
    dropped_names = {d[0] for d in dropped}
    if other == lp.name:
        return GraphError(f"bottom blob '{b}' is produced only by this layer itself (a cycle)", **where,
                          hint="an in-place layer must list the blob as bottom and top, and some earlier "
                               "layer must produce it")
    if other in dropped_names:
        return GraphError(f"bottom blob '{b}' is produced only by layer '{other}', which is not part of "
                          f"inference (a loss/accuracy layer)", **where)
    if other is not None:
        return GraphError(f"bottom blob '{b}' is produced only by layer '{other}', which comes later "
                          f"(a cycle or a wrong layer order)", **where,
                          hint="Caffe runs layers in file order: move the producer before its consumers")
    return GraphError(f"bottom blob '{b}' is not produced by any layer in phase {phase}", **where,
                      hint="check the blob name, or the include/exclude rules of its producer")


def prune_to_outputs(net):
    """Keep only the layers the outputs depend on."""
    needed = set(net.outputs)
    keep = []
    for L in reversed(net.layers):
        if any(t in needed for t in L.tops) or L.type in INPUT_TYPES:
            keep.append(L)
            needed.update(L.bottoms)
    keep.reverse()
    net.layers = keep
    kept_ids = {id(L) for L in keep}
    for b in list(net.consumers):
        net.consumers[b] = [c for c in net.consumers[b] if id(c) in kept_ids]
        if not net.consumers[b]:
            del net.consumers[b]
    live = {t for L in keep for t in L.tops}
    for b in list(net.caffe_name):
        if b not in live:
            del net.caffe_name[b]
            net.producer.pop(b, None)
    for i, L in enumerate(keep):
        L.index = i


def parse_net(prototxt):
    """Read and upgrade a prototxt. Returns (NetParameter, upgrades dict)."""
    ignored = []
    net_param = read_prototxt(prototxt, ignored=ignored)
    upgrades = upgrade_net(net_param, prototxt)
    upgrades["ignored_fields"] = [n.describe(prototxt) for n in ignored]
    return net_param, upgrades


def load_net(prototxt, caffemodel=None, *, phase="TEST", input_shapes=None, outputs=None, stages=(), level=0,
             allow_missing_weights=False, crop_offsets="param"):
    """Read a prototxt (and optionally its caffemodel) into an inference :class:`Net`."""
    net_param, upgrades = parse_net(prototxt)
    net = build_graph(net_param, phase=phase, level=level, stages=stages, input_shapes=input_shapes,
                      outputs=outputs, path=prototxt, upgrades=upgrades, crop_offsets=crop_offsets)
    if caffemodel is not None:
        from .fastblobs import read_caffemodel_blobs
        from .weights import attach_weights

        skeleton, store = read_caffemodel_blobs(caffemodel)
        attach_weights(net, skeleton, caffemodel, allow_missing=allow_missing_weights, store=store)
    return net
