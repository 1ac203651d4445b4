"""The reference values verify compares against: pycaffe, OpenCV dnn, or blobs stored from Caffe.

A reference run gives every blob version it can show, by blob version id, in NCHW. "auto" runs
pycaffe when a ``caffe`` module is importable and falls back to OpenCV dnn when pycaffe cannot
run the net (with a warning saying why); a reference the user names is never replaced.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ..errors import VerificationError
from .inputs import load_npz

REFERENCES = ("auto", "caffe", "opencv")


class ReferenceUnavailable(VerificationError):
    """A reference runtime is missing or could not run the net (``runtime`` names it)."""

    def __init__(self, runtime, problem, **kwargs):
        super().__init__(f"{runtime} could not run the net: {problem}", **kwargs)
        self.runtime = runtime


@dataclass
class ReferenceRun:
    """The values of one reference run, what made them, and the blobs they cannot stand for.

    Attributes:
        values: blob version id -> NCHW array.
        name, version: the runtime and its version.
        warnings: things the user should know about this run.
        not_comparable: blob version id -> why the reference's value there is not Caffe's.
        row_order: blob version id -> (function, note): the function puts a Caffe-form value in
            the order this runtime documents for that blob (OpenCV's DetectionOutput rows), so
            the Keras value is compared with the reference's in the reference's own order.
    """

    values: dict
    name: str
    version: str
    warnings: list = field(default_factory=list)
    not_comparable: dict = field(default_factory=dict)
    row_order: dict = field(default_factory=dict)


def reference_values(net, prototxt, caffemodel, feeds, reference, reference_blobs=None, ref_path=None):
    """Run (or read) the reference named by ``reference``: a :class:`ReferenceRun`."""
    if reference_blobs is not None:
        return ReferenceRun(final_only(net, reference_blobs), "stored blobs", "given to verify()")
    if ref_path is not None:
        return ReferenceRun(final_only(net, load_npz(ref_path)), f"stored blobs {ref_path}", stored_version(ref_path))
    if reference not in REFERENCES:
        raise VerificationError(f"reference must be auto, caffe, opencv or npz:PATH. Received: {reference!r}")
    from .opencv import run_opencv
    from .pycaffe import pycaffe_importable, run_pycaffe

    if reference == "caffe":
        if not pycaffe_importable():
            raise VerificationError("--reference caffe: pycaffe ('import caffe') is not importable",
                                    hint="install Caffe's Python bindings (or put them on PYTHONPATH), or use "
                                         "--reference opencv")
        return run_pycaffe(net, caffemodel, feeds)
    if reference == "opencv":
        return run_opencv(net, caffemodel, feeds)
    notes = []
    if pycaffe_importable():
        try:
            return run_pycaffe(net, caffemodel, feeds)
        except ReferenceUnavailable as e:
            notes.append(f"{e}; used OpenCV dnn instead")
    try:
        run = run_opencv(net, caffemodel, feeds)
    except ReferenceUnavailable as e:
        if notes:
            raise VerificationError(f"no reference runtime could run the net: {notes[0].split(';')[0]}; {e}",
                                    file=prototxt) from None
        raise
    run.warnings[:0] = notes
    return run


def final_only(net, blobs):
    """Stored blobs by Caffe name -> by the id of the blob's last version."""
    final = net.final_versions()
    inputs = {net.caffe_name[b] for b in net.inputs}
    return {final[k]: np.asarray(v) for k, v in blobs.items() if k in final and k not in inputs}


def stored_version(ref_path):
    meta = ref_path.parent / "meta.json"
    if meta.is_file():
        try:
            return str(json.loads(meta.read_text()).get("caffe") or "unknown version")
        except (OSError, ValueError):
            pass
    return "unknown version"
