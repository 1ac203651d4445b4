"""``bnconvert inspect``: the layer table, inputs and BatchNorm details of a Caffe net."""
from __future__ import annotations

import json

from ._common import add_crop_offsets, add_input_shape, add_verbosity, aggregate_warnings, print_warnings
from ._text import describe_upgrades, table

HELP = "show a Caffe net's inputs, layers, shapes, BatchNorm details and unsupported layers"
DESCRIPTION = """\
Show what a Caffe net declares: how its inputs are declared, the layer table (name, type,
bottoms -> tops, output shape, parameter count, weight shapes), the layers dropped from the
inference graph, every BatchNorm (eps, use_global_stats as it resolves in the phase,
moving_average_fraction, the paired Scale and its bias) and the layers no converter supports.
With a caffemodel, BatchNorm rows also show the factor s and the range of mean and variance
after dividing by s. Does not load TensorFlow.

Every unknown prototxt field is listed at once, with its line, layer and type: those inside
layers that inference drops (data, loss, accuracy layers of any fork) are ignored, the others
are errors that caffe2keras refuses (exit code 1; 0 otherwise, 2 if the input cannot be read).

examples:
  bnconvert inspect deploy.prototxt
  bnconvert inspect train_val.prototxt --input-shape data=1,3,227,227 --phase TRAIN
  bnconvert inspect deploy.prototxt weights.caffemodel --json
"""


def add_common(parser, weights=True):
    parser.add_argument("prototxt", help="the net definition (.prototxt, V1 or V2)")
    if weights:
        parser.add_argument("caffemodel", nargs="?", help="optional weights (.caffemodel)")
    parser.add_argument("--phase", default="TEST", type=str.upper, choices=["TEST", "TRAIN"],
                        help="the phase whose graph is shown (default TEST)")
    parser.add_argument("--stage", action="append", default=[], metavar="STAGE",
                        help="a NetState stage for include/exclude rules (repeatable)")
    add_input_shape(parser, help="shape of an input blob (needed for Data layers; repeatable)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_verbosity(parser)


def add_arguments(parser):
    add_common(parser)
    add_crop_offsets(parser)


def run(args):
    from ..cli import parse_input_shapes
    from ..inspect import inspect_net

    report = inspect_net(args.prototxt, args.caffemodel, phase=args.phase,
                         input_shapes=parse_input_shapes(args.input_shape), stages=tuple(args.stage),
                         crop_offsets=args.crop_offsets)
    if args.quiet:
        print_warnings(report["warnings"], "inspect")
    elif args.json:
        print(json.dumps(report, indent=2))
    else:
        print(render(report, verbose=args.verbose))
    return 1 if report["field_errors"] else 0


# --- text rendering ---------------------------------------------------------------------------


def shape_text(s):
    return "?" if s is None else "x".join(str(d) for d in s) or "scalar"


def _num(n):
    return "?" if n is None else f"{n:,}"


def _g(x):
    return "-" if x is None else f"{x:.6g}"


def _range(r):
    return "-" if r is None else f"[{r[0]:.4g}, {r[1]:.4g}]"


def render(rep, verbose=0):
    out = [f"net {rep['net'] or '(unnamed)'}: {rep['prototxt']}" + (f" + {rep['weights']}" if rep["weights"] else ""),
           f"phase {rep['phase']}" + (f", stages {', '.join(rep['stages'])}" if rep["stages"] else "")
           + f", format {rep['format']}" + _upgrade_text(rep["upgrades"])]
    out += ["", "Inputs", _inputs(rep["inputs"])]
    total = _num(rep["total_params"])
    out += ["", f"Layers ({len(rep['layers'])}, {total} parameters)", _layers(rep["layers"])]
    if rep["outputs"]:
        out.append("  outputs: " + ", ".join(rep["outputs"]))
    if rep["dropped"]:
        out += ["", "Dropped from the inference graph",
                table(["layer", "type", "reason"], [[d["layer"], d["type"], d["reason"]] for d in rep["dropped"]])]
    if rep["batchnorm"]:
        out += ["", f"BatchNorm ({len(rep['batchnorm'])})", _batchnorm(rep["batchnorm"])]
    if rep.get("crops"):
        out += ["", f"Crop ({len(rep['crops'])})", _crops(rep["crops"])]
    out += ["", _unsupported(rep)]
    for title, key in (("Field errors (caffe2keras refuses these)", "field_errors"),
                       ("Ignored fields (in layers that inference drops)", "ignored_fields")):
        if rep[key]:
            out += ["", f"{title}: {len(rep[key])}", _fields(rep[key])]
    warnings = rep["warnings"] if verbose else aggregate_warnings(rep["warnings"])
    for title, items in (("Notes", rep["notes"]), ("Warnings", warnings)):
        if items:
            out += ["", title] + [f"  - {n}" for n in items]
    return "\n".join(out)


def _fields(rows):
    def what(r):
        return r["message"].split(": ")[-1] if r["problem"] == "unknown" else r["message"].split("): ", 1)[-1]

    return table(["line", "layer", "type", "field", "problem"],
                 [[str(r["line"]), r["layer"] or "-", r["type"] or "-", r["field"], what(r)] for r in rows])


def _upgrade_text(u):
    done = describe_upgrades(u)
    return f" (upgraded in memory: {'; '.join(done)})" if done else ""


def _inputs(inputs):
    if not inputs:
        return "  (none in this phase)"
    rows = []
    for i in inputs:
        extra = ", ".join(f"{k}={v}" for k, v in i["data"].items())
        if i["transform"]:
            extra += ("; " if extra else "") + "transform: " + ", ".join(f"{k}={v}" for k, v in i["transform"].items())
        shape = shape_text(i["shape"]) + ("" if i["shape_source"] == "declared" else f" ({i['shape_source']})")
        rows.append([i["blob"], i["layer"], i["declared_by"], shape, extra or "-"])
    return table(["blob", "layer", "declared by", "shape", "details"], rows)


def _layers(layers):
    rows = []
    for i, L in enumerate(layers):
        flow = ", ".join(L["bottoms"]) + " -> " + ", ".join(L["tops"]) if L["bottoms"] else "-> " + ", ".join(L["tops"])
        ws = ", ".join(shape_text(s) for s in L["weight_shapes"]) if L["weight_shapes"] else (
            "-" if L["weight_shapes"] == [] else "?")
        rows.append([str(i), L["name"], L["type"] + ("" if L["supported"] else " *"), flow,
                     ", ".join(shape_text(s) for s in L["output_shapes"]), _num(L["params"]), ws])
    return table(["#", "name", "type", "bottoms -> tops", "output shape", "params", "weight shapes"], rows)


def _batchnorm(bns):
    rows = []
    for b in bns:
        ugs = ("true" if b["use_global_stats"] else "false") + ("" if b["use_global_stats_source"] == "explicit"
                                                                 else " (default)")
        scale = b["scale"] or "(none)"
        bias = "-" if b["scale_bias"] is None else ("yes" if b["scale_bias"] else "no")
        rows.append([b["layer"], _g(b["eps"]), ugs, _g(b["moving_average_fraction"]), scale, bias,
                     _g(b["factor"]), _range(b["mean_range"]), _range(b["var_range"])])
    return table(["layer", "eps", "use_global_stats", "ma_fraction", "scale", "bias", "factor s",
                  "mean/s range", "var/s range"], rows)


def _crops(crops):
    rows = [[c["layer"], c["bottom"], c["reference"], str(c["axis"]), ", ".join(map(str, c["offsets"])),
             c["source"], "-" if c["coordmap_offsets"] is None else ", ".join(map(str, c["coordmap_offsets"]))]
            for c in crops]
    return table(["layer", "bottom", "reference", "axis", "offsets", "from", "coordinate-map offsets"], rows)


def _unsupported(rep):
    if not rep["unsupported"]:
        return "Every layer has a converter."
    counts = {}
    for u in rep["unsupported"]:
        counts.setdefault(u["type"], []).append(u["layer"])
    head = f"Unsupported layers ({len(rep['unsupported'])}, marked *): no caffe2keras converter for these types"
    if not rep["converters_available"]:
        head += " (no converters are installed yet)"
    rows = [[t, str(len(names)), ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")]
            for t, names in sorted(counts.items())]
    return head + "\n" + table(["type", "count", "layers"], rows)
