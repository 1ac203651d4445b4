"""bnconvert caffe2keras: convert a Caffe prototxt + caffemodel to a Keras model."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..caffe.io import check_output_path
from ..cli import parse_input_shapes
from ..errors import ConversionError
from ._common import add_input_shape, fmt_shape, model_format, print_rows, save_model, write_report

HELP = "convert a Caffe model (prototxt + caffemodel) to Keras"
DESCRIPTION = """Convert a Caffe model to a channels_last Keras model.

Every BatchNorm followed by a Scale becomes one keras.layers.BatchNormalization holding
mean/variance divided by Caffe's moving-average factor, gamma/beta from the Scale, and Caffe's eps.

examples:
  bnconvert caffe2keras deploy.prototxt weights.caffemodel -o model.keras
  bnconvert caffe2keras train_val.prototxt w.caffemodel -o m.keras --input-shape data=1,3,227,227
  bnconvert caffe2keras models/ -o converted/ --jobs 2      (every NAME.prototxt + NAME.caffemodel)
"""


def add_arguments(p):
    p.add_argument("prototxt", help="the net definition (.prototxt), or a directory of NAME.prototxt + "
                                    "NAME.caffemodel pairs")
    p.add_argument("caffemodel", nargs="?", help="the trained weights (.caffemodel)")
    p.add_argument("-o", "--output", required=True, help="output model path (.keras, .h5, or a SavedModel "
                                                         "directory), or an output directory in batch mode")
    add_input_shape(p)
    p.add_argument("--outputs", help="comma-separated blob names to use as model outputs")
    p.add_argument("--phase", default="TEST", choices=["TEST", "TRAIN"], type=str.upper,
                   help="which include/exclude rules apply (default TEST)")
    p.add_argument("--stage", action="append", default=[], help="a NetState stage (repeatable)")
    p.add_argument("--format", choices=["keras", "h5", "savedmodel"],
                   help="output format (default: from the file extension; no extension means savedmodel)")
    p.add_argument("--batch-stats", choices=["convert", "error"], default="convert",
                   help="a BatchNorm with use_global_stats: false in this phase: convert it with its stored "
                        "statistics and warn (default), or fail")
    p.add_argument("--fold-bn", action="store_true",
                   help="fold inference BatchNorm(+Scale) into the preceding convolution/InnerProduct "
                        "(for deployment; the default keeps BatchNormalization layers for fine-tuning)")
    p.add_argument("--report", metavar="FILE.json", help="write the conversion summary as JSON")
    p.add_argument("--jobs", type=int, default=1, help="parallel conversions in batch (directory) mode")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show the progress bar")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")


def convert_one(prototxt, caffemodel, output, *, input_shapes=None, outputs=None, phase="TEST", stages=(),
                fmt=None, batch_stats="convert", fold_bn=False, progress=None):
    """Convert and save one model. Returns the report dict."""
    from ..caffe.graph import load_net
    from ..c2k import convert_net

    fmt = model_format(output, fmt)
    check_output_path(output, is_dir=(fmt == "savedmodel"))
    t0 = time.perf_counter()
    net = load_net(prototxt, caffemodel, phase=phase, input_shapes=input_shapes, outputs=outputs, stages=stages)
    folded = []
    if fold_bn:
        from ..fold import fold_batchnorm

        folded = fold_batchnorm(net)
    model, report, _ = convert_net(net, on_batch_stats=batch_stats, progress=progress)
    save_model(model, output, fmt)
    report["output"] = str(output)
    report["format"] = fmt
    report["folded_batchnorm"] = [list(f) for f in folded]
    report["keras_layers"] = len(model.layers)
    report["seconds"] = round(time.perf_counter() - t0, 3)
    return report


def print_summary(r, out=sys.stdout):
    pairs = len(r["batchnorm_scale_pairs"])
    bn_total = pairs + len(r["batchnorm_without_scale"])
    print(f"bnconvert caffe2keras: {r['prototxt']} + {r['caffemodel']} -> {r['output']} ({r['format']})", file=out)
    rows = [("layers", f"{r['caffe_layers']} Caffe layers -> {r['keras_layers']} Keras layers "
                       f"({r['seconds']:.1f} s)")]
    if bn_total:
        factors = list(r["batchnorm_factors"].values())
        frange = f"{min(factors):.6g} .. {max(factors):.6g}" if factors else "n/a"
        rows.append(("BatchNorm", f"{bn_total} layers: {pairs} BatchNorm+Scale pairs merged, "
                                  f"{len(r['batchnorm_without_scale'])} without Scale (gamma=1, beta=0)"))
        rows.append(("  eps", ", ".join(f"{e:g}" for e in r["batchnorm_eps"])))
        rows.append(("  momentum", ", ".join(f"{m:g}" for m in r["moving_average_fractions"])
                     + " (moving_average_fraction)"))
        rows.append(("  factors s", f"{frange} (mean and variance divided by s)"))
        if r.get("folded_batchnorm"):
            rows.append(("  folded", f"{len(r['folded_batchnorm'])} folded into the preceding layer"))
    rows.append(("inputs", ", ".join(f"{k} {fmt_shape(v)}" for k, v in r["inputs"].items())
                 + " (NCHW in Caffe; the Keras model takes NHWC)"))
    rows.append(("outputs", ", ".join(f"{k} {fmt_shape(v)}" for k, v in r["outputs"].items())))
    if r["dropped"]:
        rows.append(("dropped", ", ".join(f"{n} ({t})" for n, t, _ in r["dropped"])))
    print_rows(rows, out)
    for w in r["warnings"]:
        print(f"  warning: {w}", file=out)


def _batch_pairs(directory):
    pairs = []
    for proto in sorted(Path(directory).glob("*.prototxt")):
        model = proto.with_suffix(".caffemodel")
        if model.exists():
            pairs.append((proto, model))
    if not pairs:
        raise ConversionError("no NAME.prototxt + NAME.caffemodel pairs found", file=directory)
    return pairs


def _batch_worker(job):
    proto, model, out, kw = job
    try:
        return convert_one(proto, model, out, progress=False, **kw), None
    except ConversionError as e:
        return None, str(e)


def run_batch(args, kw):
    import multiprocessing as mp

    outdir = Path(args.output)
    if not outdir.is_dir():
        raise ConversionError("in batch mode -o must be an existing directory", file=outdir)
    ext = {"keras": ".keras", "h5": ".h5", "savedmodel": ""}[args.format or "keras"]
    jobs = [(p, m, outdir / (p.stem + ext), {**kw, "fmt": args.format or "keras"}) for p, m in _batch_pairs(args.prototxt)]
    t0 = time.perf_counter()
    if args.jobs > 1:
        # Largest models first, so no worker is left with a big one at the end.
        order = sorted(range(len(jobs)), key=lambda i: -jobs[i][1].stat().st_size)
        with mp.get_context("spawn").Pool(min(args.jobs, len(jobs))) as pool:
            done = pool.map(_batch_worker, [jobs[i] for i in order], chunksize=1)
        results = [None] * len(jobs)
        for i, r in zip(order, done):
            results[i] = r
    else:
        results = [_batch_worker(j) for j in jobs]
    failed = 0
    for (p, _, out, _), (rep, err) in zip(jobs, results):
        if err:
            failed += 1
            print(f"bnconvert caffe2keras: error: {err}", file=sys.stderr)
        elif not args.quiet:
            print(f"  {p.name} -> {out} ({rep['seconds']:.1f} s)")
    if not args.quiet:
        print(f"bnconvert caffe2keras: {len(jobs) - failed}/{len(jobs)} converted in "
              f"{time.perf_counter() - t0:.1f} s with {args.jobs} job(s)")
    write_report(args.report, {"models": [r for r, _ in results if r], "failed": failed})
    return 2 if failed else 0


def run(args):
    input_shapes = parse_input_shapes(args.input_shape)
    outputs = [o.strip() for o in args.outputs.split(",") if o.strip()] if args.outputs else None
    kw = dict(input_shapes=input_shapes, outputs=outputs, phase=args.phase, stages=args.stage,
              batch_stats=args.batch_stats, fold_bn=args.fold_bn)
    if Path(args.prototxt).is_dir():
        return run_batch(args, kw)
    if not args.caffemodel:
        raise ConversionError("the caffemodel argument is missing", file=args.prototxt,
                              hint="bnconvert caffe2keras NET.prototxt WEIGHTS.caffemodel -o OUT.keras")
    report = convert_one(args.prototxt, args.caffemodel, args.output, fmt=args.format,
                         progress=False if args.quiet else args.progress, **kw)
    write_report(args.report, report)
    if not args.quiet:
        print_summary(report)
    return 0
