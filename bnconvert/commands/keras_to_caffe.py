"""``bnconvert keras2caffe``: convert a Keras model to a Caffe prototxt + caffemodel."""
from __future__ import annotations

import sys

from ._common import add_progress, add_verbosity, plural, print_warnings, progress_setting, report_bytes

HELP = "convert a Keras model (.keras/.h5) to a Caffe prototxt + caffemodel"
DESCRIPTION = """\
Convert a Keras 3 model to a Caffe deploy prototxt and caffemodel. Each BatchNormalization
becomes a BatchNorm (mean, variance, factor 1, use_global_stats: true) plus a Scale holding gamma
and beta. The Caffe net takes NCHW input named after the Keras input; its outputs are named after
the Keras output layers. Lambda layers and unknown custom objects are refused (safe mode).

Both outputs (and --report) are checked before any work: none may be the input model or the same
file as another. They are written as one unit: after a failure none of them is created or replaced.

examples:
  bnconvert keras2caffe model.keras -o net.prototxt net.caffemodel
  bnconvert keras2caffe model.h5 -o net.prototxt net.caffemodel --input-shape 1,3,224,224 --report r.json
  bnconvert keras2caffe mobilenet.keras -o net.prototxt net.caffemodel --target opencv
"""


def add_arguments(parser):
    parser.add_argument("model", help="the Keras model (.keras or .h5)")
    parser.add_argument("-o", "--output", nargs=2, required=True, metavar=("NET.prototxt", "WEIGHTS.caffemodel"),
                        help="where to write the net definition and the weights")
    parser.add_argument("--input-shape", metavar="N,C,H,W",
                        help="the input size in Caffe order (needed when the model's size is unknown; "
                             "the batch defaults to 1)")
    parser.add_argument("--report", metavar="FILE.json", help="write the conversion report as JSON")
    parser.add_argument("--target", choices=["caffe", "opencv"], default="caffe",
                        help="the runtime the files are for: caffe (BVLC Caffe, default) or opencv (OpenCV dnn: "
                             "ReLU6 as its ReLU6 layer, only layers and fields it loads; see README)")
    add_verbosity(parser)
    add_progress(parser)


def run(args):
    from ..cli import parse_shape
    from ..k2c import keras_to_caffe
    from ..outputs import OutputUnit, check_caffe_outputs

    shape = parse_shape(args.input_shape) if args.input_shape else None
    prototxt, caffemodel = args.output
    check_caffe_outputs(prototxt, caffemodel)
    outputs = [(prototxt, "file", "prototxt"), (caffemodel, "file", "caffemodel"), (args.report, "file", "report")]
    with OutputUnit(outputs, inputs=[args.model]) as unit:
        # keras_to_caffe's two files are staged into this unit, with the report, and written together.
        report = keras_to_caffe(args.model, prototxt, caffemodel, input_shape=shape,
                                progress=progress_setting(args), target=args.target)
        if args.report:
            unit.write_bytes(args.report, report_bytes(report))
        unit.commit()
    if not args.quiet:
        print(summary(report, verbose=args.verbose))
    print_warnings(report["warnings"], "keras2caffe", verbose=args.verbose, out=sys.stderr)
    return 0


def summary(report, verbose=0):
    ins = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in report["inputs"].items())
    outs = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in report["outputs"].items())
    lines = [f"wrote {report['prototxt']} and {report['caffemodel']}",
             f"  {plural(report['keras_layers'], 'Keras layer')} -> {plural(report['caffe_layers'], 'Caffe layer')}",
             f"  inputs: {ins}", f"  outputs: {outs}",
             f"  {plural(len(report['batchnorm']), 'BatchNorm+Scale pair')}, "
             f"{plural(len(report['dropped']), 'layer')} dropped"]
    if verbose:
        lines += [f"    {' -> '.join(map(str, b))}" for b in report["batchnorm"]]
        lines += [f"    dropped: {d}" for d in report["dropped"]]
    return "\n".join(lines)
