"""``bnconvert upgrade``: rewrite a Caffe net (and its weights) in the current V2 form."""
from __future__ import annotations

import json
from pathlib import Path

from ._common import add_input_shape, add_verbosity, plural
from ._text import describe_upgrades, table

HELP = "upgrade a V1/legacy Caffe net and caffemodel to V2 with shaped blobs (idempotent)"
DESCRIPTION = """\
Rewrite a Caffe net in the current V2 form: V1 'layers' become 'layer', input/input_dim or
input_shape become an Input layer, BatchNorm param blocks are dropped, and caffemodel blobs with
legacy num/channels/height/width get a 'shape' (the shape the net expects, e.g. an InnerProduct
V1 blob 1x1xOxK becomes OxK). Both phases' layers are kept. Files are written atomically, and
upgrading an upgraded net gives byte-identical files.

examples:
  bnconvert upgrade old.prototxt -o new.prototxt
  bnconvert upgrade old.prototxt old.caffemodel -o new.prototxt new.caffemodel
  bnconvert upgrade -o new.prototxt old.prototxt

No output is ever an input (nor both outputs one file); both are checked before any work and
written as one unit: if either cannot be written, neither is created or replaced.
"""


def add_arguments(parser):
    parser.add_argument("prototxt", nargs="?", help="the net definition to upgrade")
    parser.add_argument("caffemodel", nargs="?", help="its weights (optional)")
    parser.add_argument("-o", "--output", nargs="+", required=True, metavar="OUT",
                        help="OUT.prototxt [OUT.caffemodel] (the caffemodel name defaults to OUT.caffemodel "
                             "next to OUT.prototxt). Written before the inputs (upgrade -o OUT IN) it is "
                             "followed by the inputs")
    add_input_shape(parser, help="input shape for nets with Data layers, so blob shapes come from the net")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    add_verbosity(parser)


def split_paths(inputs, outputs):
    """(prototxt_in, caffemodel_in, [outputs]) from the positionals and the -o list.

    ``-o`` takes one or two names, so when it comes first it also swallows the inputs: with no
    positionals, ``-o A B`` is OUT IN, ``-o A B C`` is OUT IN IN.caffemodel (an output caffemodel
    needs an input one) and ``-o A B C D`` is OUT OUT.caffemodel IN IN.caffemodel."""
    from ..errors import ConversionError

    given = [i for i in inputs if i is not None]
    if not given:
        n = len(outputs)
        if n < 2:
            raise ConversionError("the input prototxt is missing",
                                  hint="bnconvert upgrade IN.prototxt [IN.caffemodel] -o OUT.prototxt [OUT.caffemodel]")
        if n > 4:
            raise ConversionError("too many paths: expected OUT.prototxt [OUT.caffemodel] IN.prototxt [IN.caffemodel]")
        k = 2 if n == 4 else 1
        outputs, given = outputs[:k], outputs[k:]
    if len(outputs) > 2:
        raise ConversionError("-o takes OUT.prototxt and optionally OUT.caffemodel, nothing more",
                              hint="put -o after the inputs, or give both inputs after it")
    return given[0], (given[1] if len(given) > 1 else None), outputs


def run(args):
    from ..cli import parse_input_shapes
    from ..errors import ConversionError
    from ..upgrade import upgrade_files

    prototxt, caffemodel, outputs = split_paths([args.prototxt, args.caffemodel], args.output)
    out_model = None
    if caffemodel is not None:
        out_model = outputs[1] if len(outputs) == 2 else str(Path(outputs[0]).with_suffix(".caffemodel"))
    elif len(outputs) == 2:
        raise ConversionError("an output caffemodel was named but no input caffemodel was given")
    report = upgrade_files(prototxt, outputs[0], caffemodel, out_model,
                           input_shapes=parse_input_shapes(args.input_shape))
    if not args.quiet:
        print(json.dumps(report, indent=2) if args.json else render(report, verbose=args.verbose))
    return 0


def render(rep, verbose=0):
    out = [f"{rep['prototxt_in']} -> {rep['prototxt_out']}: "
           + ("; ".join(describe_upgrades(rep)) or "already up to date") + f" ({plural(rep['layers'], 'layer')})"]
    if verbose and rep.get("batchnorm_params_dropped"):
        out.append("BatchNorm param blocks dropped from: " + ", ".join(rep["batchnorm_params_dropped"]))
    m = rep["caffemodel"]
    if m is not None:
        out.append(f"{rep['caffemodel_in']} -> {rep['caffemodel_out']}: "
                   + ("; ".join(describe_upgrades(m)) or "already up to date"))
        rows = [[r["layer"], str(r["blob"]), _s(r["from"]), _s(r["to"]), r["by"]] for r in m["reshaped"]]
        if rows:
            out.append(table(["layer", "blob", "legacy shape", "shape", "decided by"], rows))
        if m["kept_legacy"]:
            out.append("kept in legacy form:")
            out.append(table(["layer", "blob", "shape", "reason"],
                             [[k["layer"], str(k["blob"]), _s(k["shape"]), k["reason"]] for k in m["kept_legacy"]]))
    return "\n".join(out)


def _s(shape):
    return "x".join(str(d) for d in shape) or "scalar"
