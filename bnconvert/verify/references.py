"""The reference values verify compares against: pycaffe, OpenCV dnn, or blobs stored from Caffe.

A reference run gives every blob version it can show, by blob version id, in NCHW. "auto" runs
pycaffe when a ``caffe`` module is importable and falls back to OpenCV dnn when pycaffe cannot
run the net (with a warning saying why); a reference the user names is never replaced.

A prototxt written by keras2caffe records its target runtime in its first line
(:func:`bnconvert.k2c.targets.recorded_target`). "auto" then runs that runtime: OpenCV dnn for
``--target opencv``, pycaffe (when importable, else OpenCV with a warning) for ``--target caffe``;
the run's ``reason`` says so in verify's output.
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
        reason: why this runtime was chosen, when not by the plain "auto" rule.
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
    reason: str = ""


def reference_values(net, prototxt, caffemodel, feeds, reference, reference_blobs=None, ref_path=None):
    """Run (or read) the reference named by ``reference``: a :class:`ReferenceRun`."""
    if reference_blobs is not None:
        return ReferenceRun(final_only(net, reference_blobs), "stored blobs", "given to verify()")
    if ref_path is not None:
        return ReferenceRun(final_only(net, load_npz(ref_path)), f"stored blobs {ref_path}", stored_version(ref_path))
    if reference not in REFERENCES:
        raise VerificationError(f"reference must be auto, caffe, opencv or npz:PATH. Received: {reference!r}")
    from ..k2c.targets import recorded_target
    from .opencv import run_opencv
    from .pycaffe import pycaffe_importable, run_pycaffe

    target = recorded_target(prototxt)
    if target is not None:
        return _for_target(target, reference, net, prototxt, caffemodel, feeds)
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


def _for_target(target, reference, net, prototxt, caffemodel, feeds):
    """The reference for a keras2caffe export written for ``target``: that runtime under "auto";
    a reference the user names is run as named, with a warning when it is not the target's."""
    from .opencv import run_opencv
    from .pycaffe import pycaffe_importable, run_pycaffe

    said = f"the prototxt records keras2caffe --target {target}"
    if reference != "auto":
        run = reference_values(net, None, caffemodel, feeds, reference)
        if reference != target:
            run.warnings.append(f"{said}, but --reference {reference} was asked for: the comparison is with a "
                                f"runtime the export was not written for")
        return run
    if target == "opencv":
        run = run_opencv(net, caffemodel, feeds)
        run.reason = f"chosen because {said}"
        return run
    if pycaffe_importable():
        run = run_pycaffe(net, caffemodel, feeds)
        run.reason = f"chosen because {said} (BVLC Caffe)"
        return run
    run = run_opencv(net, caffemodel, feeds)
    run.warnings.insert(0, f"{said} (BVLC Caffe), but pycaffe ('import caffe') is not importable: compared "
                           f"with OpenCV dnn instead")
    run.reason = "pycaffe not importable for this --target caffe export"
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
