"""Helpers shared by the CLI commands: summaries, JSON reports, atomic model saving."""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..caffe.io import atomic_write, check_output_path
from ..errors import OutputError


def add_input_shape(parser, help="shape of an input blob (repeatable); needed for Data layers, or to convert at "
                                  "another input size"):
    """The ``--input-shape [NAME=]N,C,H,W`` option, read with :func:`bnconvert.cli.parse_input_shapes`."""
    parser.add_argument("--input-shape", action="append", metavar="[NAME=]N,C,H,W", default=[], help=help)


def write_report(path, report):
    if path:
        atomic_write(path, (json.dumps(report, indent=2, default=_json_default) + "\n").encode())


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


def model_format(path, fmt):
    if fmt:
        return fmt
    s = str(path).lower()
    if s.endswith(".h5") or s.endswith(".hdf5"):
        return "h5"
    if s.endswith(".keras"):
        return "keras"
    return "savedmodel"


def save_model(model, path, fmt):
    """Save atomically: write beside the target, then rename over it."""
    p = Path(path)
    parent = check_output_path(p, is_dir=(fmt == "savedmodel"))
    if fmt in ("keras", "h5"):
        suffix = ".keras" if fmt == "keras" else ".h5"
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=suffix, dir=parent)
        os.close(fd)
        os.unlink(tmp)
        try:
            model.save(tmp)
            os.replace(tmp, p)
        except BaseException as e:
            if os.path.exists(tmp):
                os.unlink(tmp)
            if isinstance(e, OSError):
                raise OutputError(f"cannot write the model: {e.strerror or e}", file=path) from None
            raise
        return
    if fmt != "savedmodel":
        raise OutputError(f"unknown format {fmt!r}: use keras, h5 or savedmodel", file=path)
    tmp = tempfile.mkdtemp(prefix=f".{p.name}.", dir=parent)
    try:
        shutil.rmtree(tmp)
        model.export(tmp, format="tf_saved_model", verbose=False)
        if p.exists():
            old = tempfile.mkdtemp(prefix=f".{p.name}.old.", dir=parent)
            os.rmdir(old)
            os.rename(p, old)
            os.rename(tmp, p)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fmt_shape(shape):
    return "x".join(str(d) for d in shape)


def print_rows(rows, out=sys.stdout):
    width = max((len(k) for k, _ in rows), default=0)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}", file=out)
