"""``bnconvert keras2caffe``: convert a Keras model to a Caffe prototxt + caffemodel."""
from __future__ import annotations

import json

HELP = "convert a Keras model (.keras/.h5) to a Caffe prototxt + caffemodel"
DESCRIPTION = """\
Convert a Keras 3 model to a Caffe deploy prototxt and caffemodel. Each BatchNormalization
becomes a BatchNorm (mean, variance, factor 1, use_global_stats: true) plus a Scale holding gamma
and beta. The Caffe net takes NCHW input named after the Keras input; its outputs are named after
the Keras output layers. Lambda layers and unknown custom objects are refused (safe mode).

examples:
  bnconvert keras2caffe model.keras -o net.prototxt net.caffemodel
  bnconvert keras2caffe model.h5 -o net.prototxt net.caffemodel --input-shape 1,3,224,224 --report r.json
"""


def add_arguments(parser):
    parser.add_argument("model", help="the Keras model (.keras or .h5)")
    parser.add_argument("-o", "--output", nargs=2, required=True, metavar=("NET.prototxt", "WEIGHTS.caffemodel"),
                        help="where to write the net definition and the weights")
    parser.add_argument("--input-shape", metavar="N,C,H,W",
                        help="the input size in Caffe order (needed when the model's size is unknown; "
                             "the batch defaults to 1)")
    parser.add_argument("--report", metavar="FILE.json", help="write the conversion report as JSON")
    parser.add_argument("--progress", action="store_true", default=None, help="show a progress bar")


def run(args):
    from ..cli import parse_shape
    from ..errors import OutputError
    from ..k2c import keras_to_caffe

    shape = parse_shape(args.input_shape) if args.input_shape else None
    prototxt, caffemodel = args.output
    report = keras_to_caffe(args.model, prototxt, caffemodel, input_shape=shape, progress=args.progress)
    if args.report:
        from ..caffe.io import atomic_write

        try:
            atomic_write(args.report, json.dumps(report, indent=2).encode("utf-8"))
        except OutputError:
            raise
    print(summary(report))
    return 0


def summary(report):
    ins = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in report["inputs"].items())
    outs = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in report["outputs"].items())
    lines = [f"wrote {report['prototxt']} and {report['caffemodel']}",
             f"  {report['keras_layers']} Keras layers -> {report['caffe_layers']} Caffe layers",
             f"  inputs: {ins}", f"  outputs: {outs}",
             f"  BatchNorm+Scale: {len(report['batchnorm'])}, dropped: {len(report['dropped'])}"]
    lines += [f"  warning: {w}" for w in report["warnings"]]
    return "\n".join(lines)
