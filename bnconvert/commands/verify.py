"""``bnconvert verify``: compare a Caffe net and its Keras model blob by blob (the GPU verification pass)."""
from __future__ import annotations

from ._common import add_crop_offsets, add_input_shape, add_progress, add_verbosity, print_warnings, progress_setting

HELP = "run a Caffe net and its Keras model side by side and compare every blob (exit 0 ok, 1 off, 2 bad input)"
DESCRIPTION = """\
Run the Caffe net in a reference runtime (pycaffe when importable, else OpenCV dnn, or blobs
stored from a real Caffe run with --reference npz:REF.npz) and the Keras model (converted first
when MODEL is not given; or a Keras model whose Caffe export NET/WEIGHTS is) on the GPU when the
Keras backend sees one, with TensorFloat-32 off, and compare every blob that has a counterpart.

Each blob gets a layer check (its Keras layers fed with the reference's values of the blobs before
them: the status) and an end-to-end error (the whole model run from the input). The first blob
out of tolerance names the likely culprit layer.

Where a reference is known to differ from Caffe on a layer, the net it runs is rewritten so that
it computes Caffe's value (OpenCV: Axpy, InnerProduct transpose, pooling round_mode), or the blob
is marked "not comparable" with the reason. --reference caffe runs pycaffe only, in a process of
its own; auto falls back to OpenCV (with a warning) when pycaffe cannot run the net.

Exit status: 0 every blob within tolerance, 1 some blob is not, 2 bad input or no run possible.

examples:
  bnconvert verify deploy.prototxt weights.caffemodel
  bnconvert verify deploy.prototxt weights.caffemodel model.keras --input cat.jpg --report verify.json
  bnconvert verify deploy.prototxt weights.caffemodel --reference npz:ref.npz --input input.npz
  KERAS_BACKEND=jax bnconvert verify deploy.prototxt weights.caffemodel --device gpu --html verify.html
"""


def add_arguments(parser):
    parser.add_argument("prototxt", help="the net definition (.prototxt)")
    parser.add_argument("caffemodel", help="the weights (.caffemodel)")
    parser.add_argument("model", nargs="?", help="the Keras model (.keras/.h5) or a TFLite model (.tflite); converted "
                                                 "from the Caffe files when left out")
    parser.add_argument("--input", metavar="FILE", help="a .npy (NCHW), .npz (arrays by input name) or image; "
                                                         "default: seeded random data in the net's input shape")
    parser.add_argument("--reference", default="auto", metavar="auto|caffe|opencv|npz:PATH",
                        help="the reference runtime (default auto: pycaffe if importable and able to run the net, "
                             "else OpenCV; caffe: pycaffe only)")
    parser.add_argument("--device", default="auto", choices=["auto", "gpu", "cpu"],
                        help="where the Keras model runs (default auto: the GPU when there is one)")
    parser.add_argument("--tf32", action="store_true",
                        help="leave TensorFloat-32 on for the GPU run (it is turned off by default)")
    parser.add_argument("--batch", type=int, metavar="N", help="batch size of the random input")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input (default 0)")
    parser.add_argument("--rtol", type=float, default=1e-4, help="relative tolerance (default 1e-4)")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    parser.add_argument("--report", metavar="FILE.json", help="write the JSON report here")
    parser.add_argument("--html", metavar="FILE.html", help="write an HTML page with the per-blob error plot")
    add_input_shape(parser, help="shape of an input blob (repeatable)")
    parser.add_argument("--phase", default="TEST", type=str.upper, choices=["TEST", "TRAIN"])
    parser.add_argument("--mean", metavar="B,G,R", help="image mean per channel (default: transform_param)")
    parser.add_argument("--scale", type=float, help="image scale (default: transform_param, else 1)")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--rgb", dest="channel_order", action="store_const", const="rgb",
                       help="feed image channels as RGB")
    order.add_argument("--bgr", dest="channel_order", action="store_const", const="bgr",
                       help="feed image channels as BGR (Caffe's order; the default)")
    parser.add_argument("--resize", metavar="H,W", help="resize the image to H,W (default: the net's input size)")
    add_crop_offsets(parser)
    parser.add_argument("--all", action="store_true", help="also list the blobs that were not compared (as -v)")
    add_progress(parser)
    add_verbosity(parser)


def run(args):
    from ..cli import parse_input_shapes, parse_shape
    from ..verify import verify

    try:
        mean = [float(x) for x in args.mean.split(",")] if args.mean else None
    except ValueError:
        from ..errors import VerificationError

        raise VerificationError(f"--mean needs numbers separated by commas (B,G,R). Received: {args.mean!r}") from None
    resize = parse_shape(args.resize) if args.resize else None
    if resize is not None and len(resize) != 2:
        from ..errors import VerificationError

        raise VerificationError(f"--resize needs H,W. Received: {args.resize!r}")
    result = verify(args.prototxt, args.caffemodel, args.model, input=args.input, reference=args.reference,
                    device=args.device, batch=args.batch, rtol=args.rtol, atol=args.atol, report=args.report,
                    html=args.html, input_shapes=parse_input_shapes(args.input_shape), phase=args.phase,
                    seed=args.seed, tf32=args.tf32, mean=mean, scale=args.scale, channel_order=args.channel_order,
                    resize=resize, progress=progress_setting(args),
                    crop_offsets=args.crop_offsets)
    print_warnings(result.warnings, "verify", verbose=args.verbose)
    if args.quiet:
        return 0 if result.passed else 1
    print(result.table(all_rows=args.all or args.verbose > 0))
    print()
    print(result.summary())
    return 0 if result.passed else 1
