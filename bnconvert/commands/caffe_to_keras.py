"""bnconvert caffe2keras: convert a Caffe prototxt + caffemodel to a Keras model."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from ..cli import parse_input_shapes
from ..errors import ConversionError
from ..outputs import OutputUnit, check_outputs, model_format, refuse_inputs, remove_orphaned_temporaries
from ..floats import float32_text, shortest_float32
from ._common import (add_crop_offsets, add_input_shape, add_progress, add_verbosity, fmt_shape, model_kind, plural, print_rows,
                      print_warnings, progress_setting, report_bytes, stage_model)

HELP = "convert a Caffe model (prototxt + caffemodel) to Keras"
DESCRIPTION = """Convert a Caffe model to a channels_last Keras model.

Every BatchNorm followed by a Scale becomes one keras.layers.BatchNormalization holding
mean/variance divided by Caffe's moving-average factor, gamma/beta from the Scale, and Caffe's eps.

examples:
  bnconvert caffe2keras deploy.prototxt weights.caffemodel -o model.keras
  bnconvert caffe2keras train_val.prototxt w.caffemodel -o m.keras --input-shape data=1,3,227,227
  bnconvert caffe2keras deploy.prototxt weights.caffemodel -o saved_model/      (a SavedModel directory)
  bnconvert caffe2keras models/ -o converted/ --jobs 2      (every NAME.prototxt + NAME.caffemodel)
  bnconvert caffe2keras hed_deploy.prototxt hed.caffemodel -o hed.keras --crop-offsets coordmap
                                                            (HED's Caffe fork: param-less Crop offsets)

The output format comes from the name: NAME.keras, NAME.h5 (or .hdf5), or a SavedModel directory
for a path ending in '/' (or --format savedmodel). No output is ever one of the inputs, every output
path is checked before any work, and the model and --report are written as one unit.
In batch mode every net is converted even when some fail; each net's status is listed at the end
and the exit status is 2 if any failed.
"""


def add_arguments(p):
    p.add_argument("prototxt", help="the net definition (.prototxt), or a directory of NAME.prototxt + "
                                    "NAME.caffemodel pairs")
    p.add_argument("caffemodel", nargs="?", help="the trained weights (.caffemodel)")
    p.add_argument("-o", "--output", required=True, help="output model path (.keras, .h5/.hdf5, or a SavedModel "
                                                         "directory ending in '/'), or an output directory in "
                                                         "batch mode")
    add_input_shape(p)
    p.add_argument("--outputs", help="comma-separated blob names to use as model outputs")
    p.add_argument("--phase", default="TEST", choices=["TEST", "TRAIN"], type=str.upper,
                   help="which include/exclude rules apply (default TEST)")
    p.add_argument("--stage", action="append", default=[], help="a NetState stage (repeatable)")
    p.add_argument("--format", choices=["keras", "h5", "savedmodel", "tflite"],
                   help="output format (default: from the name: .keras, .h5/.hdf5, .tflite, or savedmodel for a path "
                        "ending in '/'); it must agree with the extension. Batch mode default: keras")
    p.add_argument("--batch-stats", choices=["convert", "error"], default="convert",
                   help="a BatchNorm with use_global_stats: false in this phase: convert it with its stored "
                        "statistics and warn (default), or fail")
    p.add_argument("--fold-bn", action="store_true",
                   help="fold inference BatchNorm(+Scale) into the preceding convolution/InnerProduct "
                        "(for deployment; the default keeps BatchNormalization layers for fine-tuning)")
    p.add_argument("--report", metavar="FILE.json", help="write the conversion summary as JSON")
    p.add_argument("--jobs", type=int, default=1, help="parallel conversions in batch (directory) mode")
    add_crop_offsets(p)
    add_verbosity(p)
    add_progress(p)


def convert_one(prototxt, caffemodel, output, *, input_shapes=None, outputs=None, phase="TEST", stages=(),
                fmt=None, batch_stats="convert", fold_bn=False, progress=None, report_path=None,
                crop_offsets="param"):
    """Convert and save one model (and its ``report_path`` JSON, as one unit). Returns the report dict.

    Every output path is checked against the inputs and each other before anything is read."""
    from ..caffe.graph import load_net
    from ..c2k import convert_net

    refuse_inputs([(output, "dir", "model"), (report_path, "file", "report")], [prototxt, caffemodel])
    fmt = model_format(output, fmt)
    if fmt == "savedmodel":
        from ..backend import require_tensorflow

        require_tensorflow("a SavedModel", file=output)
    if fmt == "tflite":
        from ..tflite import check_can_write

        check_can_write(output)
    with OutputUnit([(output, model_kind(fmt), "model"), (report_path, "file", "report")],
                    inputs=[prototxt, caffemodel]) as unit:
        t0 = time.perf_counter()
        net = load_net(prototxt, caffemodel, phase=phase, input_shapes=input_shapes, outputs=outputs,
                       stages=stages, crop_offsets=crop_offsets)
        folded = []
        if fold_bn:
            from ..fold import fold_batchnorm

            folded = fold_batchnorm(net)
        model, report, _ = convert_net(net, on_batch_stats=batch_stats, progress=progress)
        stage_model(unit, model, output, fmt)
        report["output"] = str(output)
        report["format"] = fmt
        report["folded_batchnorm"] = [list(f) for f in folded]
        report["keras_layers"] = len(model.layers)
        report["batchnorm_eps"] = [shortest_float32(e) for e in report["batchnorm_eps"]]
        report["moving_average_fractions"] = [shortest_float32(m) for m in report["moving_average_fractions"]]
        report["seconds"] = round(time.perf_counter() - t0, 3)
        if report_path:
            unit.write_bytes(report_path, report_bytes(report))
        unit.commit()
    return report


def print_summary(r, out=sys.stdout, verbose=0):
    pairs = len(r["batchnorm_scale_pairs"])
    alone = len(r["batchnorm_without_scale"])
    print(f"bnconvert caffe2keras: {r['prototxt']} + {r['caffemodel']} -> {r['output']} ({r['format']})", file=out)
    rows = [("layers", f"{plural(r['caffe_layers'], 'Caffe layer')} -> {plural(r['keras_layers'], 'Keras layer')} "
                       f"({r['seconds']:.1f} s)")]
    if pairs + alone:
        factors = list(r["batchnorm_factors"].values())
        frange = f"{min(factors):.6g} .. {max(factors):.6g}" if factors else "n/a"
        rows.append(("BatchNorm", f"{plural(pairs + alone, 'layer')}: {plural(pairs, 'BatchNorm+Scale pair')} merged, "
                                  f"{alone} without Scale (gamma=1, beta=0)"))
        rows.append(("  eps", ", ".join(float32_text(e) for e in r["batchnorm_eps"])))
        rows.append(("  momentum", ", ".join(float32_text(m) for m in r["moving_average_fractions"])
                     + " (moving_average_fraction)"))
        rows.append(("  factors s", f"{frange} (mean and variance divided by s)"))
        if r.get("folded_batchnorm"):
            rows.append(("  folded", f"{len(r['folded_batchnorm'])} folded into the preceding layer"))
        if verbose:
            rows += [("  pair", f"{bn} + {sc}") for bn, sc in r["batchnorm_scale_pairs"]]
    rows.append(("inputs", ", ".join(f"{k} {fmt_shape(v)}" for k, v in r["inputs"].items())
                 + " (NCHW in Caffe; the Keras model takes NHWC)"))
    rows.append(("outputs", ", ".join(f"{k} {fmt_shape(v)}" for k, v in r["outputs"].items())))
    if r["dropped"]:
        rows.append(("dropped", ", ".join(f"{n} ({t})" for n, t, _ in r["dropped"])))
    print_rows(rows, out)


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
    """Convert one net of a batch: (report, None) or (None, one-line error). Never raises
    (but for Ctrl-C), so one net that fails in an unexpected way does not stop the others."""
    proto, model, out, kw = job
    try:
        return convert_one(proto, model, out, progress=False, **kw), None
    except ConversionError as e:
        return None, str(e)
    except Exception as e:  # noqa: BLE001 - reported per net, as the CLI reports an internal error
        return None, f"{proto}: internal error: {type(e).__name__}: {' '.join(str(e).split())}"


def _run_pool(jobs, n):
    """Run ``_batch_worker`` over ``jobs`` in ``n`` processes, largest models first. A worker that
    dies (killed, out of memory) costs only its own net: the nets a broken pool did not finish are
    run again, one process each."""
    results = [None] * len(jobs)
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i][1].stat().st_size)
    for i in _pool_map(order, min(n, len(jobs)), jobs, results):
        remove_orphaned_temporaries(jobs[i][2])  # a worker killed mid-write cannot clean up
        if _pool_map([i], 1, jobs, results):
            remove_orphaned_temporaries(jobs[i][2])
            results[i] = (None, f"{jobs[i][0]}: the conversion process died (killed, or out of memory)")
    return results


def _pool_map(indices, width, jobs, results):
    """Fill ``results[i]`` for each index; returns the indices whose process pool broke."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    broken = []
    with ProcessPoolExecutor(width, mp_context=mp.get_context("spawn")) as pool:
        futures = [(i, pool.submit(_batch_worker, jobs[i])) for i in indices]
        for i, f in futures:
            try:
                results[i] = f.result()
            except BrokenProcessPool:
                broken.append(i)
    return broken


def run_batch(args, kw):
    outdir = Path(args.output)
    if not outdir.is_dir():
        raise ConversionError("in batch mode -o must be an existing directory", file=outdir)
    fmt = args.format or "keras"
    ext = {"keras": ".keras", "h5": ".h5", "savedmodel": "", "tflite": ".tflite"}[fmt]
    pairs = _batch_pairs(args.prototxt)
    jobs = [(p, m, outdir / (p.stem + ext), {**kw, "fmt": fmt}) for p, m in pairs]
    # Every output of the batch, and the batch report, checked up front against every input.
    check_outputs([(out, model_kind(fmt), "model") for _, _, out, _ in jobs] + [(args.report, "file", "report")],
                  inputs=[x for p, m in pairs for x in (p, m)])
    t0 = time.perf_counter()
    results = _run_pool(jobs, args.jobs) if args.jobs > 1 else [_batch_worker(j) for j in jobs]
    failed = [(p, err) for (p, _, _, _), (_, err) in zip(jobs, results) if err]
    for (p, _, out, _), (rep, err) in zip(jobs, results):
        if err:
            print(f"bnconvert caffe2keras: error: {err}", file=sys.stderr)
    if not args.quiet:
        print("bnconvert caffe2keras: batch status")
        for (p, _, out, _), (rep, err) in zip(jobs, results):
            status = f"ok      {p.name} -> {out} ({rep['seconds']:.1f} s)" if rep else f"FAILED  {p.name}"
            print(f"  {status}")
        print(f"bnconvert caffe2keras: {len(jobs) - len(failed)}/{len(jobs)} converted in "
              f"{time.perf_counter() - t0:.1f} s with {plural(args.jobs, 'job')}"
              + (f"; {len(failed)} failed: " + ", ".join(p.name for p, _ in failed) if failed else ""))
    for rep, _ in results:
        if rep:
            print_warnings(rep["warnings"], "caffe2keras", prefix=f"{Path(rep['prototxt']).name}: ",
                           verbose=args.verbose)
    if args.report:
        statuses = [{"prototxt": str(p), "caffemodel": str(m), "output": str(out),
                     "status": "failed" if err else "converted", "error": err}
                    for (p, m, out, _), (_, err) in zip(jobs, results)]
        from ..outputs import atomic_write

        atomic_write(args.report, report_bytes({"models": [r for r, _ in results if r], "nets": statuses,
                                                "failed": len(failed)}))
    return 2 if failed else 0


def run(args):
    input_shapes = parse_input_shapes(args.input_shape)
    outputs = [o.strip() for o in args.outputs.split(",") if o.strip()] if args.outputs else None
    kw = dict(input_shapes=input_shapes, outputs=outputs, phase=args.phase, stages=args.stage,
              batch_stats=args.batch_stats, fold_bn=args.fold_bn, crop_offsets=args.crop_offsets)
    if Path(args.prototxt).is_dir():
        return run_batch(args, kw)
    if not args.caffemodel:
        raise ConversionError("the caffemodel argument is missing", file=args.prototxt,
                              hint="bnconvert caffe2keras NET.prototxt WEIGHTS.caffemodel -o OUT.keras")
    report = convert_one(args.prototxt, args.caffemodel, args.output, fmt=args.format,
                         progress=progress_setting(args), report_path=args.report, **kw)
    if not args.quiet:
        print_summary(report, verbose=args.verbose)
    print_warnings(report["warnings"], "caffe2keras", verbose=args.verbose)
    return 0
