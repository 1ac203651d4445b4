"""Upgrades of old net definitions to the current V2 form, done in memory.

- V1 ``layers {}`` (enum types, blobs_lr/weight_decay) become V2 ``layer {}``;
- ``input:`` with ``input_dim:`` or ``input_shape {}`` becomes one Input layer;
- BatchNorm ``param {}`` blocks (needed before Caffe's 2016 change) are dropped.

Each step leaves an already-upgraded net unchanged, so the whole upgrade is idempotent.
"""
from __future__ import annotations

from ..errors import ParseError
from .io import pb2

# V1 LayerType enum name -> V2 type string.
V1_TYPES = {
    "NONE": "", "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL",
    "CONCAT": "Concat", "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution", "DATA": "Data", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN", "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}

# V2 type -> V1 enum name (for writing V1 files in tests and for the reverse look-up).
V2_TO_V1 = {v: k for k, v in V1_TYPES.items() if v}

_COMMON = {"name", "type", "bottom", "top", "blobs", "blobs_lr", "weight_decay", "include", "exclude",
           "loss_weight", "param", "blob_share_mode", "layer"}


def upgrade_v1_layer(v1, path=None):
    """One ``V1LayerParameter`` as a V2 ``LayerParameter``."""
    caffe_pb2 = pb2()
    out = caffe_pb2.LayerParameter()
    if v1.HasField("layer"):
        raise ParseError("V0-format layer definitions (a 'layer' inside 'layers') are not supported",
                         file=path, layer=v1.name or v1.layer.name,
                         hint="upgrade the net with Caffe's upgrade_net_proto_text tool first")
    out.name = v1.name
    try:
        type_name = caffe_pb2.V1LayerParameter.LayerType.Name(v1.type)
    except ValueError:
        raise ParseError(f"unknown V1 layer type number {v1.type}", file=path, layer=v1.name) from None
    out.type = V1_TYPES.get(type_name, type_name)
    out.bottom.extend(v1.bottom)
    out.top.extend(v1.top)
    out.blobs.extend(v1.blobs)
    out.include.extend(v1.include)
    out.exclude.extend(v1.exclude)
    out.loss_weight.extend(v1.loss_weight)
    n_params = max(len(v1.blobs_lr), len(v1.weight_decay), len(v1.param), len(v1.blob_share_mode))
    for i in range(n_params):
        ps = out.param.add()
        if i < len(v1.param):
            ps.name = v1.param[i]
        if i < len(v1.blob_share_mode):
            ps.share_mode = v1.blob_share_mode[i]
        if i < len(v1.blobs_lr):
            ps.lr_mult = v1.blobs_lr[i]
        if i < len(v1.weight_decay):
            ps.decay_mult = v1.weight_decay[i]
    for field, value in v1.ListFields():
        if field.name in _COMMON or field.name == "type":
            continue
        target = out.DESCRIPTOR.fields_by_name.get(field.name)
        if target is None or target.message_type is None:
            continue
        getattr(out, field.name).CopyFrom(value)
    return out


def upgrade_v1(net, path=None):
    """Move V1 ``layers`` into V2 ``layer`` (in place). Returns True if anything changed."""
    if not net.layers:
        return False
    if net.layer:
        raise ParseError("the net mixes V1 'layers' and V2 'layer' definitions", file=path,
                         hint="use one format throughout")
    new = [upgrade_v1_layer(v1, path) for v1 in net.layers]
    del net.layers[:]
    net.layer.extend(new)
    return True


def upgrade_input(net, path=None):
    """Turn legacy ``input``/``input_dim``/``input_shape`` into one Input layer named "input"."""
    if not net.input:
        if net.input_dim or net.input_shape:
            raise ParseError("input_dim/input_shape given without any 'input:' name", file=path)
        return False
    caffe_pb2 = pb2()
    n = len(net.input)
    shapes = []
    if net.input_shape and net.input_dim:
        raise ParseError("the net gives both input_shape and input_dim", file=path,
                         hint="keep only input_shape (input_dim is the deprecated form)")
    if net.input_shape:
        if len(net.input_shape) != n:
            raise ParseError(f"{n} inputs but {len(net.input_shape)} input_shape blocks", file=path)
        shapes = [list(s.dim) for s in net.input_shape]
    elif net.input_dim:
        if len(net.input_dim) != 4 * n:
            raise ParseError(f"{n} inputs need {4 * n} input_dim values, found {len(net.input_dim)}", file=path,
                             hint="give four input_dim lines (N, C, H, W) per input")
        dims = list(net.input_dim)
        shapes = [dims[4 * i:4 * i + 4] for i in range(n)]
    else:
        raise ParseError("'input:' declared without input_dim or input_shape", file=path,
                         hint="add input_shape { dim: N dim: C dim: H dim: W } or use --input-shape")
    taken = {lp.name for lp in net.layer}
    name, i = "input", 1
    while name in taken:  # Caffe calls it "input"; never clash with a layer of that name
        name, i = f"input_{i}", i + 1
    layer = caffe_pb2.LayerParameter(name=name, type="Input")
    layer.top.extend(net.input)
    for s in shapes:
        layer.input_param.shape.add().dim.extend(s)
    existing = list(net.layer)
    del net.layer[:]
    net.layer.append(layer)
    net.layer.extend(existing)
    net.ClearField("input")
    net.ClearField("input_dim")
    net.ClearField("input_shape")
    return True


def upgrade_batchnorm(net):
    """Drop BatchNorm ``param {}`` blocks, as Caffe's own upgrade does. Returns dropped layer names."""
    dropped = []
    for layer in net.layer:
        if layer.type == "BatchNorm" and len(layer.param):
            dropped.append(layer.name)
            layer.ClearField("param")
    return dropped


def upgrade_net(net, path=None):
    """Apply every upgrade in place. Returns a dict of what changed, for reports."""
    return {
        "v1_layers": upgrade_v1(net, path),
        "input_layer": upgrade_input(net, path),
        "batchnorm_params_dropped": upgrade_batchnorm(net),
    }
