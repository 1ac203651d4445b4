"""``lint_net``: findings about a Caffe net's BatchNorm, Scale, phase and pooling set-up.

Each finding has a code, a severity (error / warning / info), the layer, a message about this
net and a short "why". Phase-dependent checks look at BOTH phases of the net as written (the
raw NetParameter, before BatchNorm param blocks are dropped), not only the inference graph.
Nothing here imports TensorFlow.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from types import SimpleNamespace

from .caffe import bnpair
from .caffe.graph import INPUT_TYPES, build_graph, is_loss_type
from .caffe.io import blob_to_array, pb2
from .caffe.upgrade import upgrade_input, upgrade_v1
from .errors import ConversionError
from .inspect import _DATA_PARAMS, _missing_input_shapes, check_input_names, is_deploy_net, phase_layers, raw_paired_scale, \
    read_net, read_weights

SEVERITIES = ("error", "warning", "info")

# code -> (severity, why). The docs (README.md (section "bnconvert lint")) explain each one at length.
CHECKS = {
    "BN-NO-SCALE": ("warning", "Caffe's BatchNorm only normalises; the learned gamma/beta live in a separate Scale "
                    "layer. Without one the layer works but has no affine part (gamma=1, beta=0): fine if "
                    "intended (as in Caffe's cifar10 BN example), a bug if a Scale was forgotten or renamed."),
    "BN-GLOBAL-STATS-TRAIN": ("warning", "With use_global_stats: true in TRAIN, the layer normalises with the "
                              "stored statistics and never updates them: the statistics are frozen during "
                              "training. Right for fine-tuning with frozen BN, wrong when training from scratch."),
    "BN-BATCH-STATS-TEST": ("error", "With use_global_stats: false at TEST/deploy time, Caffe normalises each "
                            "batch with its own mean and variance and ignores the stored statistics, so outputs "
                            "depend on what else is in the batch. A converted model uses the stored statistics "
                            "and will not match. Remove the line: TEST defaults to true."),
    "BN-PARAM-BLOCKS": ("warning", "param { lr_mult: 0 } blocks on BatchNorm were needed before Caffe PR #4704 "
                        "(Sept 2016). Since then the layer shields its statistics from the solver itself; "
                        "Caffe's upgrade rewrites exactly three blocks to lr_mult 0, and `bnconvert upgrade` "
                        "drops them."),
    "BN-PARAM-LR": ("error", "A BatchNorm param block with a non-zero lr_mult asks the solver to train the "
                    "statistics. Modern Caffe aborts on it ('Cannot configure batch normalization statistics "
                    "as layer parameters') unless there are exactly three blocks, which it silently forces to 0; "
                    "pre-2016 Caffe would corrupt the statistics."),
    "TWIN-DIFFERS": ("warning", "Caffe builds each phase as its own net and shares weights between layers of "
                     "the same name. Twins should differ only in their rules, use_global_stats and (for data "
                     "layers) the data source, batch size and mirroring; anything else means the net that is "
                     "tested (and converted) is not the net that was trained."),
    "BN-EPS": ("info", "Caffe adds eps to the variance; its default is 1e-5 while Keras's BatchNormalization "
               "defaults to 1e-3. A non-default eps is fine, but a converter must carry it (bnconvert does)."),
    "BN-NO-WEIGHTS": ("error", "The caffemodel has no blobs for this BatchNorm. Caffe would silently leave the "
                      "statistics at zero (factor 0) instead of failing; bnconvert refuses to convert it."),
    "BN-FACTOR-ZERO": ("warning", "Caffe stores mean and variance multiplied by the moving-average factor s "
                       "(blob 2). s = 0 means no statistics were ever accumulated: Caffe then uses mean 0 and "
                       "variance 0, i.e. y = x / sqrt(eps). Converters reproduce it, but it is rarely intended."),
    "BN-STATS-NONFINITE": ("error", "The stored statistics (or the factor) contain NaN or Inf: every output "
                           "of the layer becomes NaN/Inf. The training diverged or the file is corrupt."),
    "BN-VAR-NEGATIVE": ("error", "A variance is negative after dividing by the factor: sqrt(var + eps) is NaN "
                        "or wildly wrong. The statistics are corrupt."),
    "SCALE-FILLER": ("info", "Fillers only initialise a layer that gets no weights. In a deploy net they are "
                     "unused as long as the caffemodel has this layer; if it does not (a renamed layer), Caffe "
                     "silently uses the fillers instead of the trained gamma/beta."),
    "SCALE-FILLER-REINIT": ("error", "The caffemodel has no blobs for this Scale layer, so Caffe silently "
                            "initialises gamma and beta from the fillers (gamma=1, beta=0 by default): the "
                            "trained values are lost without any error. bnconvert refuses to convert it."),
    "POOL-ROUND-CONFLICT": ("error", "round_mode (BVLC, field 13) and ceil_mode (a fork field) are both set "
                            "and disagree: readers that know only one of them compute different output sizes."),
    "POOL-ROUND-BOTH": ("warning", "round_mode and ceil_mode are both set. They agree, but keep one: BVLC rejects "
                        "ceil_mode, and forks that put ceil_mode at field 13 read round_mode with the "
                        "opposite meaning."),
    "POOL-CEIL-MODE": ("warning", "ceil_mode is a fork field (BVLC PR #3057 descendants). BVLC Caffe rejects "
                       "the prototxt, and a binary net from such a fork stores it at field 13, where BVLC "
                       "reads round_mode with the opposite encoding (ceil_mode false = 0 = CEIL)."),
    "INPUT-SHAPE-UNKNOWN": ("info", "Data layers do not declare their image size; without --input-shape the "
                            "shape-based checks (pooling output sizes) are skipped."),
    "FIELD-UNKNOWN": ("error", "The schema (BVLC Caffe plus the fork fields bnconvert knows) has no such field "
                      "in a layer that inference keeps: a spelling error, or a fork field bnconvert does not "
                      "support. Caffe rejects the file; caffe2keras refuses it rather than guess."),
    "FIELD-REPEATED": ("error", "A non-repeated field is given twice in one message. Caffe's text parser refuses "
                       "the file (\"specified multiple times\"); which value was meant is unknown."),
    "FIELD-IGNORED": ("info", "An unknown field inside a layer that inference drops (a data, loss or accuracy "
                      "layer, of any fork). It cannot change the converted model, so it is ignored."),
    "NAME-DUPLICATE": ("info", "Several layers of one phase share a name. BVLC Caffe accepts this (Net::Init never "
                       "checks) and matches caffemodel weights by name, giving them to the first such layer; "
                       "bnconvert accepts it while at most one of them has weights, and gives the Keras layers "
                       "unique names."),
    "CROP-COORDMAP": ("warning", "A Crop without crop_param crops at offset 0 in BVLC Caffe, but HED's Caffe fork "
                      "(s9xie/hed), whose Crop has no parameters, aligns it through the layers' coordinate maps "
                      "at a non-zero offset. Which one is right depends on the Caffe that trained the weights: "
                      "convert HED-fork weights with --crop-offsets coordmap."),
    "GRAPH-BUILD": ("error", "The inference graph of the phase cannot be built, so Caffe could not load the "
                    "net either; the other checks ran on the net as written."),
}


@dataclass
class Finding:
    code: str
    severity: str
    layer: str | None
    message: str
    why: str

    def to_dict(self):
        return asdict(self)


def finding(code, layer, message, severity=None):
    sev, why = CHECKS[code]
    return Finding(code, severity or sev, layer, message, why)


@dataclass
class _Ctx:
    pre: object  # the net as written, in V2 form, BatchNorm param blocks kept
    phase: str
    layers: dict  # phase -> [LayerParameter]
    deploy: bool
    weights: dict | None
    net: object  # the phase's inference graph, or None


# --- BatchNorm checks ----------------------------------------------------------------------


def check_bn_scale(ctx):
    layers = ctx.layers[ctx.phase]
    out = []
    for i, lp in enumerate(layers):
        if lp.type == "BatchNorm" and raw_paired_scale(layers, i) is None:
            users = [u.name for u in layers[i + 1:] if lp.top and lp.top[0] in u.bottom]
            out.append(finding("BN-NO-SCALE", lp.name, f"no Scale layer follows it in {ctx.phase} (its output "
                               f"goes to {', '.join(users) or 'nothing'}): no learned gamma/beta - on purpose?"))
    return out


def check_bn_global_stats(ctx):
    out = []
    if not ctx.deploy:
        for lp in ctx.layers["TRAIN"]:
            p = lp.batch_norm_param
            if lp.type == "BatchNorm" and p.HasField("use_global_stats") and p.use_global_stats:
                out.append(finding("BN-GLOBAL-STATS-TRAIN", lp.name, "use_global_stats: true in the TRAIN phase: "
                                   "statistics are frozen during training"))
    for lp in ctx.layers["TEST"]:
        p = lp.batch_norm_param
        if lp.type == "BatchNorm" and p.HasField("use_global_stats") and not p.use_global_stats:
            where = "deploy net" if ctx.deploy else "TEST phase"
            out.append(finding("BN-BATCH-STATS-TEST", lp.name, f"use_global_stats: false in the {where}: "
                               "inference would use batch statistics"))
    return out


def check_bn_params(ctx):
    out = []
    for lp in ctx.pre.layer:
        if lp.type != "BatchNorm" or not len(lp.param):
            continue
        lrs = [ps.lr_mult for ps in lp.param]
        n = len(lrs)
        if any(lrs) and n != 3:
            out.append(finding("BN-PARAM-LR", lp.name, f"{n} param block(s) with lr_mult {lrs}: modern Caffe "
                               "aborts on a non-zero lr_mult"))
        else:
            extra = " (non-zero lr_mult, silently forced to 0 by Caffe's upgrade)" if any(lrs) else ""
            out.append(finding("BN-PARAM-BLOCKS", lp.name, f"{n} param block(s){extra}: unneeded since Caffe's "
                               "2016 BatchNorm upgrade; `bnconvert upgrade` removes them"))
    return out


def check_bn_eps(ctx):
    out = []
    for lp in _unique(ctx.pre.layer, "BatchNorm"):
        eps = lp.batch_norm_param.eps
        if not math.isclose(eps, 1e-5, rel_tol=1e-6):
            out.append(finding("BN-EPS", lp.name, f"eps = {eps:.6g} (Caffe's default is 1e-5, Keras's 1e-3): "
                               "the converter must carry it"))
    return out


def check_bn_stats(ctx):
    if ctx.weights is None:
        return []
    import numpy as np

    out = []
    for lp in ctx.layers[ctx.phase]:
        if lp.type != "BatchNorm":
            continue
        w = ctx.weights.get(lp.name)
        if w is None or len(w.blobs) < 3:
            out.append(finding("BN-NO-WEIGHTS", lp.name, "the caffemodel has no statistics for this layer"))
            continue
        blobs = [blob_to_array(b, layer=lp.name) for b in w.blobs[:3]]
        s = float(np.asarray(blobs[2]).ravel()[0])
        if not all(np.isfinite(b).all() for b in blobs):
            bad = [name for name, b in zip(("mean", "variance", "factor"), blobs) if not np.isfinite(b).all()]
            out.append(finding("BN-STATS-NONFINITE", lp.name, f"NaN/Inf in the stored {', '.join(bad)}"))
            continue
        if s == 0:
            out.append(finding("BN-FACTOR-ZERO", lp.name, "moving-average factor s = 0: mean and variance "
                               "are used as 0"))
            continue
        _, var, _ = bnpair.batchnorm_stats(SimpleNamespace(blobs=blobs))
        if (var < 0).any():
            out.append(finding("BN-VAR-NEGATIVE", lp.name, f"{int((var < 0).sum())} negative variance(s) after "
                               f"dividing by s = {s:.6g} (min {float(var.min()):.4g})"))
    return out


# --- Scale fillers ---------------------------------------------------------------------------


def _filler_text(f, default):
    if f.type == "constant":
        return f"constant {f.value:g}"
    return f"random ({f.type} filler)" if f.type else default


def check_scale_fillers(ctx):
    out = []
    for lp in ctx.layers[ctx.phase]:
        if lp.type != "Scale" or len(lp.bottom) != 1:
            continue
        p = lp.scale_param
        gamma = _filler_text(p.filler, "constant 1") if p.HasField("filler") else "constant 1"
        beta = _filler_text(p.bias_filler, "constant 0") if p.bias_term else None
        if ctx.weights is not None:
            w = ctx.weights.get(lp.name)
            if w is None or not len(w.blobs):
                out.append(finding("SCALE-FILLER-REINIT", lp.name, f"no blobs in the caffemodel: Caffe would set "
                                   f"gamma = {gamma}" + (f", beta = {beta}" if beta else "")))
        elif ctx.deploy and (p.HasField("filler") or p.HasField("bias_filler")):
            out.append(finding("SCALE-FILLER", lp.name, f"deploy net sets fillers (gamma {gamma}"
                               + (f", beta {beta}" if beta else "") + "): used only if weights are missing"))
    return out


# --- TRAIN/TEST twins -----------------------------------------------------------------------

_DATA_EXPECTED = ("source", "batch_size", "backend", "rand_skip", "shuffle", "prefetch")


def _normalised(lp):
    """A copy of ``lp`` without the fields twins are expected to differ in."""
    n = pb2().LayerParameter()
    n.CopyFrom(lp)
    n.ClearField("include")
    n.ClearField("exclude")
    n.batch_norm_param.ClearField("use_global_stats")
    if lp.type in INPUT_TYPES:
        field = _DATA_PARAMS.get(lp.type)
        if field:
            sub = getattr(n, field)
            for name in _DATA_EXPECTED:
                if name in sub.DESCRIPTOR.fields_by_name:
                    sub.ClearField(name)
        n.transform_param.ClearField("mirror")
    for name in ("batch_norm_param", "transform_param") + tuple(_DATA_PARAMS.values()):
        if n.HasField(name) and not getattr(n, name).ListFields():
            n.ClearField(name)
    return n


def field_diff(a, b, prefix=""):
    """Dotted paths of the fields whose values differ between two messages of one type."""
    names = {f.name for f, _ in a.ListFields()} | {f.name for f, _ in b.ListFields()}
    out = []
    for name in sorted(names):
        fd = a.DESCRIPTOR.fields_by_name[name]
        va, vb = getattr(a, name), getattr(b, name)
        repeated = not isinstance(va, (str, bytes, int, float)) and not hasattr(va, "ListFields")
        if fd.message_type is not None and not repeated:
            out += field_diff(va, vb, f"{prefix}{name}.")
        elif (list(va) if repeated else va) != (list(vb) if repeated else vb):
            out.append(prefix + name)
    return out


def check_twins(ctx):
    groups = {}
    for lp in ctx.pre.layer:
        groups.setdefault(lp.name, []).append(lp)
    out = []
    for name, group in groups.items():
        if len(group) < 2 or all(is_loss_type(lp.type) for lp in group):
            continue  # loss layers have no weights and are not converted
        if any(sum(1 for lp in ctx.layers[ph] if lp.name == name) > 1 for ph in ctx.layers):
            continue  # same-named layers of one phase are not twins (check_duplicate_names)
        first = _normalised(group[0])
        diffs = sorted({d for other in group[1:] for d in field_diff(first, _normalised(other))})
        if diffs:
            out.append(finding("TWIN-DIFFERS", name, f"{len(group)} layers named '{name}' (one per phase/stage) "
                               f"differ in: {', '.join(diffs)}"))
    return out


def check_duplicate_names(ctx):
    out = []
    for ph, layers in ctx.layers.items():
        counts = {}
        for lp in layers:
            if not is_loss_type(lp.type):
                counts.setdefault(lp.name, []).append(lp.type)
        for name, types in counts.items():
            if len(types) > 1:
                out.append(finding("NAME-DUPLICATE", name, f"{len(types)} layers of phase {ph} are named '{name}' "
                                   f"({', '.join(types)})"))
    return out


def field_findings(fields):
    """FIELD-* findings for the prototxt's unknown and repeated fields, all at once, with lines."""
    out = []
    for n in fields.get("problems", []):
        code = "FIELD-REPEATED" if n.kind == "duplicate" else "FIELD-UNKNOWN"
        out.append(finding(code, n.layer, n.describe()))
    for n in fields.get("ignored", []):
        out.append(finding("FIELD-IGNORED", n.layer, n.describe()))
    return out


# --- pooling rounding -----------------------------------------------------------------------


def check_crop_offsets(ctx):
    from .caffe.coordmap import crop_rows

    if ctx.net is None:
        return []
    return [finding("CROP-COORDMAP", r["layer"], f"no crop_param: BVLC crops at offset 0, HED's fork at "
                    f"{tuple(r['coordmap_offsets'])} ({r['bottom']} to the size of {r['reference']})")
            for r in crop_rows(ctx.net)
            if r["source"].startswith("no crop_param") and r["coordmap_offsets"] and any(r["coordmap_offsets"])]


def _pool_sizes(ctx, lp):
    """(floor size, ceil size) of a pooling layer in the phase graph, or None if unknown."""
    from .caffe.shapes import _Err, pooling_geometry

    if ctx.net is None:
        return None
    try:
        node = ctx.net.layer(lp.name)
    except KeyError:
        return None
    x = ctx.net.shapes.get(node.bottoms[0]) if node.bottoms else None
    if x is None or len(x) != 4:
        return None
    sizes = []
    for ceil in (False, True):
        q = pb2().LayerParameter()
        q.CopyFrom(lp)
        q.pooling_param.ClearField("ceil_mode")
        q.pooling_param.round_mode = q.pooling_param.CEIL if ceil else q.pooling_param.FLOOR
        L = SimpleNamespace(param=q, name=lp.name, type=lp.type)
        try:
            sizes.append(pooling_geometry(L, x, _Err(L, None))[3])
        except ConversionError:
            return None
    return tuple(sizes)


def check_pooling(ctx):
    out = []
    for lp in _unique(ctx.pre.layer, "Pooling"):
        p = lp.pooling_param
        has_round, has_ceil = p.HasField("round_mode"), p.HasField("ceil_mode")
        if has_round and has_ceil:
            ceil_r = p.round_mode == p.CEIL
            mode = f"round_mode: {p.RoundMode.Name(p.round_mode)}, ceil_mode: {str(p.ceil_mode).lower()}"
            code = "POOL-ROUND-CONFLICT" if ceil_r != p.ceil_mode else "POOL-ROUND-BOTH"
            if code == "POOL-ROUND-CONFLICT":
                mode += (f": BVLC rounds {'up' if ceil_r else 'down'}, ceil_mode forks round "
                         f"{'up' if p.ceil_mode else 'down'}; bnconvert refuses the net")
            out.append(finding(code, lp.name, mode))
        elif has_ceil:
            out.append(_ceil_mode_finding(ctx, lp))
    return out


def _ceil_mode_finding(ctx, lp):
    ceil = lp.pooling_param.ceil_mode
    sizes = _pool_sizes(ctx, lp)
    text = f"ceil_mode: {str(ceil).lower()} (fork field)"
    if ceil:
        return finding("POOL-CEIL-MODE", lp.name, text + ": same rounding as BVLC's default, but BVLC rejects "
                       "the field", severity="info")
    if sizes is None:
        return finding("POOL-CEIL-MODE", lp.name, text + ": floor rounding; BVLC would round up (output size "
                       "unknown here: pass --input-shape)")
    (fh, fw), (ch, cw) = sizes
    if sizes[0] == sizes[1]:
        return finding("POOL-CEIL-MODE", lp.name, text + f": floor and ceil both give {fh}x{fw} here",
                       severity="info")
    return finding("POOL-CEIL-MODE", lp.name, text + f": floor gives {fh}x{fw}, BVLC's ceil would give {ch}x{cw}")


def _unique(layers, type_):
    seen = set()
    for lp in layers:
        if lp.type == type_ and lp.name not in seen:
            seen.add(lp.name)
            yield lp


# --- driver -----------------------------------------------------------------------------------

ALL_CHECKS = (check_bn_scale, check_bn_global_stats, check_bn_params, check_twins, check_bn_eps, check_bn_stats,
              check_scale_fillers, check_pooling, check_duplicate_names, check_crop_offsets)


def _as_written(raw, path):
    """The net as written, in V2 form (V1 and input fields upgraded, BatchNorm param blocks kept)."""
    pre = pb2().NetParameter()
    pre.CopyFrom(raw)
    upgrade_v1(pre, path)
    upgrade_input(pre, path)
    return pre


def _graph(net_param, phase, stages, input_shapes, path, upgrades, layers):
    """(net or None, findings about why there is none)."""
    try:
        return build_graph(net_param, phase=phase, stages=stages, input_shapes=input_shapes, path=path,
                           upgrades=upgrades), []
    except ConversionError as e:
        missing = [] if None in input_shapes else _missing_input_shapes(layers, input_shapes)
        if missing:
            return None, [finding("INPUT-SHAPE-UNKNOWN", None, f"no shape for input(s) {', '.join(missing)}: "
                                  "pass --input-shape NAME=N,C,H,W")]
        staged = sorted({s for lp in net_param.layer for r in list(lp.include) + list(lp.exclude) for s in r.stage})
        hint = f" (the net has stage rules: try --stage {staged[0]})" if staged and not stages else ""
        return None, [finding("GRAPH-BUILD", None, f"the {phase} graph cannot be built: {e.message}{hint}")]


def lint_net(prototxt, caffemodel=None, phase="TEST", input_shapes=None, stages=()):
    """Lint a Caffe net (and optionally its weights). Returns a list of :class:`Finding`, errors first.

    ``phase`` selects the graph used for graph-level checks (Scale pairing, weights, pooling sizes);
    the phase-rule checks (use_global_stats, TRAIN/TEST twins, param blocks) always cover both phases.
    """
    phase = phase.upper()
    fields = {}
    raw, net_param, upgrades = read_net(prototxt, fields)
    pre = _as_written(raw, prototxt)
    given = dict(input_shapes or {})
    layers = {ph: phase_layers(pre, ph, stages) for ph in ("TRAIN", "TEST")}
    check_input_names(layers[phase], given, prototxt)
    net, findings = _graph(net_param, phase, stages, given, prototxt, upgrades, layers[phase])
    findings = field_findings(fields) + findings
    weights = read_weights(caffemodel) if caffemodel is not None else None
    ctx = _Ctx(pre=pre, phase=phase, layers=layers, deploy=is_deploy_net(pre), weights=weights, net=net)
    for check in ALL_CHECKS:
        findings.extend(check(ctx))
    return sorted(findings, key=lambda f: SEVERITIES.index(f.severity))


def has_errors(findings):
    return any(f.severity == "error" for f in findings)


__all__ = ["lint_net", "Finding", "CHECKS", "SEVERITIES", "has_errors"]
