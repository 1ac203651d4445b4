"""Helpers shared by the CLI commands: summaries, JSON reports, atomic model saving."""
from __future__ import annotations

import json
import os
import re
import sys

from ..outputs import OutputUnit, atomic_write


def add_input_shape(parser, help="shape of an input blob (repeatable); needed for Data layers, or to convert at "
                                  "another input size"):
    """The ``--input-shape [NAME=]N,C,H,W`` option, read with :func:`bnconvert.cli.parse_input_shapes`."""
    parser.add_argument("--input-shape", action="append", metavar="[NAME=]N,C,H,W", default=[], help=help)


def add_crop_offsets(parser):
    """``--crop-offsets param|coordmap``: how a Crop without crop_param is read (BVLC or HED's fork)."""
    parser.add_argument("--crop-offsets", choices=["param", "coordmap"], default="param",
                        help="offsets of a Crop layer without crop_param: 'param' (BVLC Caffe: offset 0, "
                             "the default) or 'coordmap' (HED's Caffe fork, s9xie/hed: aligned through the "
                             "layers' coordinate maps, e.g. 34 px for HED's first side output)")


def add_verbosity(parser):
    """``-v/--verbose`` (repeatable) and ``-q/--quiet`` (only warnings and errors, on stderr)."""
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="say more (each warning on its own line, per-layer details)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print nothing on stdout; warnings and errors still go to stderr")


def add_progress(parser):
    """``--progress/--no-progress``: the progress bar with an ETA on stderr (default: on a terminal)."""
    parser.add_argument("--progress", dest="progress", action="store_true", default=None,
                        help="always show the progress bar (with an ETA) on stderr")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="never show the progress bar")


def progress_setting(args):
    """The ``progress`` argument for the library: False with -q unless --progress was given."""
    return False if args.quiet and args.progress is None else args.progress


def plural(n, noun, nouns=None):
    """'1 BatchNorm+Scale pair', '2 BatchNorm+Scale pairs', '0 layers'."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


_LAYER_REF = re.compile(r"layer '((?:[^'\\]|\\.)*)'")


def aggregate_warnings(warnings, shown=3):
    """Fold warnings that differ only in the layer they name into one line:
    "layer 'c1' (Convolution): engine is ignored" x13 -> "13 layers (Convolution): engine is ignored
    (c1, c2, c3 and 10 more)". Order of first appearance is kept."""
    groups = {}
    for w in warnings:
        m = _LAYER_REF.search(w)
        key = (w[:m.start()] + "\0" + w[m.end():]) if m else w
        groups.setdefault(key, []).append((w, m.group(1) if m else None))
    out = []
    for key, items in groups.items():
        if len(items) == 1:
            out.append(items[0][0])
            continue
        if items[0][1] is None:
            out.append(f"{items[0][0]} ({len(items)} times)")
            continue
        names = [n for _, n in items]
        more = f" and {len(names) - shown} more" if len(names) > shown else ""
        out.append(key.replace("\0", f"{len(names)} layers") + f" ({', '.join(names[:shown])}{more})")
    return out


def print_warnings(warnings, command, prefix="", verbose=0, out=None):
    """Warnings on stderr (also with -q), identical ones aggregated unless ``verbose``."""
    out = out or sys.stderr
    for w in (list(warnings) if verbose else aggregate_warnings(warnings)):
        print(f"bnconvert {command}: warning: {prefix}{w}", file=out)


def report_bytes(report):
    """A report dict as indented JSON bytes (numpy values as plain numbers)."""
    return (json.dumps(report, indent=2, default=_json_default) + "\n").encode()


def write_report(path, report):
    if path:
        atomic_write(path, report_bytes(report))


def _json_default(o):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


def model_kind(fmt):
    """``dir`` for a SavedModel, else ``file`` (the kind :class:`bnconvert.outputs.OutputUnit` checks)."""
    return "dir" if fmt == "savedmodel" else "file"


def stage_model(unit, model, path, fmt):
    """Stage ``model`` for ``path`` in ``unit`` (written when the unit commits)."""
    if fmt == "savedmodel":
        unit.write_with(path, lambda tmp: export_saved_model(model, tmp), kind="dir")
    elif fmt == "tflite":
        from ..tflite import to_tflite

        unit.write_bytes(path, to_tflite(model, path))
    else:
        unit.write_with(path, model.save, suffix=".keras" if fmt == "keras" else ".h5")


def save_model(model, path, fmt, inputs=()):
    """Save ``model`` to ``path`` atomically in format ``fmt`` (keras, h5 or savedmodel)."""
    with OutputUnit([(path, model_kind(fmt), "model")], inputs) as unit:
        stage_model(unit, model, path, fmt)
        unit.commit()


def export_saved_model(model, path):
    """Export a TensorFlow SavedModel whose ``serve`` endpoint (and ``serving_default`` signature)
    takes the model's inputs and returns a dict keyed by the output names (the Keras output layer
    names, i.e. ``keras_name(blob)``), not ``output_0``..."""
    import tensorflow as tf
    from keras.export import ExportArchive

    names = list(model.output_names)
    specs = [tf.TensorSpec((None,) + tuple(t.shape[1:]), dtype=t.dtype, name=t.name) for t in model.inputs]
    single = len(specs) == 1

    def serve(*xs):
        ys = model(xs[0] if single else list(xs), training=False)
        ys = ys if isinstance(ys, (list, tuple)) else [ys]
        return dict(zip(names, ys))

    archive = ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", serve, input_signature=specs)
    archive.write_out(os.fspath(path), verbose=False)


def fmt_shape(shape):
    return "x".join(str(d) for d in shape)


def print_rows(rows, out=sys.stdout):
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=out)
