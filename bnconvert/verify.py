"""The verification pass: run a Caffe net and its Keras model side by side, blob by blob.

``verify(prototxt, caffemodel, keras_model=None, ...)`` feeds the same input to a reference Caffe
runtime (pycaffe when importable, else OpenCV dnn, or blobs stored from a real Caffe run) and to
the Keras model on the GPU when the Keras backend sees one, and compares every Caffe blob that
has a counterpart in the Keras model. It works in either direction: the Keras model may have been
converted from the Caffe files or the Caffe files exported from it, as long as the Keras layers
are named :func:`~bnconvert.naming.keras_name` of the Caffe layers (a BatchNorm merged with its
Scale is the Keras layer named after the BatchNorm; a net output may be named after its blob).

Each blob is checked twice. The *layer* check feeds the Keras layers that make the blob with the
reference's own values of the blobs before them, so it measures what those layers alone get wrong
(rounding noise stays ~1e-7 however deep the net); the status and the first divergent layer come
from it. The *end-to-end* check runs the whole Keras model from the input, so its error includes
the float32 noise of every layer before (in a deep net, real Caffe and OpenCV differ from each
other by ~1e-4 relative there); it is reported for every blob and must be within tolerance for
the net's outputs.

Tolerance per blob: ``max|keras - ref| <= atol + rtol * max(1, max|ref|)``; the relative error
shown is ``max|keras - ref| / max(1, max|ref|)``.
"""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import layout as lay
from .caffe.bnpair import pair_batchnorm_scale
from .caffe.graph import INPUT_TYPES, load_net
from .errors import VerificationError
from .naming import keras_name

DEFAULT_RTOL = 1e-4
DEFAULT_ATOL = 0.0
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


# --- the result ----------------------------------------------------------------------------------


@dataclass
class BlobCheck:
    """One compared blob (one row of the table).

    ``version`` is the blob version id (``conv1#2`` is ``conv1`` after two in-place layers);
    ``layer`` the Caffe layer whose output it is (for a BatchNorm merged with its Scale, the
    BatchNorm: the Keras layer of both); ``suspects`` every layer whose work this row is the first
    to check (an in-place chain when the reference shows only the blob's final value).
    """

    blob: str
    version: str
    layer: str
    type: str
    shape: tuple
    max_abs: float | None = None
    max_rel: float | None = None
    tol: float | None = None
    ref_max: float | None = None
    e2e_abs: float | None = None
    e2e_rel: float | None = None
    check: str = ""  # "layer" or "end-to-end": which error decided the status
    is_output: bool = False
    status: str = "skipped"  # "ok", "FAIL" or "skipped"
    note: str = ""
    suspects: list = field(default_factory=list)


@dataclass
class VerifyResult:
    """What :func:`verify` found. ``passed`` is True when every compared blob is within tolerance."""

    passed: bool
    rows: list
    first_divergent: BlobCheck | None
    reference: str
    reference_version: str
    backend: str
    device: str
    device_kind: str
    tf32: str
    input: str
    rtol: float
    atol: float
    prototxt: str
    caffemodel: str
    keras_model: str
    warnings: list = field(default_factory=list)

    @property
    def compared(self):
        return [r for r in self.rows if r.status != "skipped"]

    @property
    def max_abs_error(self):
        return max((r.max_abs for r in self.compared), default=0.0)

    @property
    def max_rel_error(self):
        return max((r.max_rel for r in self.compared), default=0.0)

    @property
    def max_e2e_rel_error(self):
        return max((r.e2e_rel for r in self.compared if r.e2e_rel is not None), default=0.0)

    @property
    def output_rel_error(self):
        """The largest end-to-end relative error over the net's outputs."""
        return max((r.e2e_rel for r in self.compared if r.is_output and r.e2e_rel is not None), default=0.0)

    @property
    def culprit(self):
        """A sentence naming the first layer that diverges, or None."""
        r = self.first_divergent
        if r is None:
            return None
        text = f"layer '{r.layer}' ({r.type}), blob '{r.blob}'"
        if len(r.suspects) > 1:
            text += " (the reference shows only this blob's final value; the in-place chain " + \
                    " -> ".join(r.suspects) + " wrote it)"
        return text

    def to_dict(self):
        d = asdict(self)
        d["rows"] = [asdict(r) for r in self.rows]
        d["first_divergent"] = asdict(self.first_divergent) if self.first_divergent else None
        d.update(compared=len(self.compared), max_abs_error=self.max_abs_error, max_rel_error=self.max_rel_error,
                 max_e2e_rel_error=self.max_e2e_rel_error, output_rel_error=self.output_rel_error,
                 culprit=self.culprit)
        return d

    def table(self, all_rows=False):
        """The per-layer table as text (skipped rows only with ``all_rows``)."""
        head = ["layer", "type", "blob", "shape", "max abs err", "max rel err", "end-to-end rel err", "status"]
        body = [[r.layer, r.type, r.blob if r.version == r.blob else f"{r.blob} ({r.version})",
                 "x".join(str(d) for d in r.shape), _fmt(r.max_abs), _fmt(r.max_rel), _fmt(r.e2e_rel),
                 r.status + (f" ({r.note})" if r.note and (r.status != "ok") else "")]
                for r in self.rows if all_rows or r.status != "skipped"]
        widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(head)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths)).rstrip()]
        lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
        return "\n".join(lines)

    def summary(self):
        n_skip = len(self.rows) - len(self.compared)
        lines = [f"reference: {self.reference} ({self.reference_version})",
                 f"keras: backend {self.backend} on {self.device} [{self.device_kind}], TF32 {self.tf32}",
                 f"input: {self.input}",
                 f"tolerance per blob: max|d| <= {self.atol:g} + {self.rtol:g} * max(1, max|ref|)",
                 f"compared {len(self.compared)} blobs ({n_skip} without a counterpart skipped); layer check: "
                 f"max abs error {self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}; end-to-end: "
                 f"max rel error {self.max_e2e_rel_error:.3g} (net outputs {self.output_rel_error:.3g})"]
        if self.passed:
            lines.append("PASSED: every compared blob is within tolerance")
        else:
            n_fail = sum(1 for r in self.rows if r.status == "FAIL")
            lines.append(f"FAILED: {n_fail} blob(s) out of tolerance; first divergent: {self.culprit}")
        return "\n".join(lines)


def _fmt(x):
    return "-" if x is None else f"{x:.3g}"


# --- the pass ------------------------------------------------------------------------------------


def verify(prototxt, caffemodel, keras_model=None, *, input=None, reference="auto", reference_blobs=None,
           device="auto", batch=None, rtol=DEFAULT_RTOL, atol=DEFAULT_ATOL, report=None, html=None,
           input_shapes=None, phase="TEST", seed=0, tf32=False, mean=None, scale=None, channel_order=None,
           resize=None):
    """Compare a Caffe net and its Keras model blob by blob.

    Args:
        prototxt, caffemodel: the Caffe net and its weights.
        keras_model: a ``keras.Model``, a saved ``.keras``/``.h5`` path, or None to convert the
            Caffe files first.
        input: None (seeded random data in the net's input shape), a ``.npy`` (NCHW) / ``.npz``
            (arrays by input name) / image path, a numpy array, or a dict of arrays by input name.
        reference: "auto" (pycaffe if importable, else OpenCV), "caffe", "opencv", or
            "npz:PATH" (blobs stored from a real Caffe run, by blob name; an ``input.npz`` beside
            it is the default input).
        reference_blobs: a dict blob name -> NCHW array to compare against instead of running a
            reference (the final value of each blob, as Caffe shows it after the forward pass).
        device: "auto" (the GPU when the Keras backend sees one), "gpu" or "cpu".
        batch: the batch size of the random input (default: the net's).
        rtol, atol: per-blob tolerance ``max|d| <= atol + rtol * max(1, max|ref|)``.
        report, html: paths to write the JSON report and an HTML page with the error plot.
        input_shapes: dict input name -> N,C,H,W (as for conversion).
        tf32: leave TensorFloat-32 (JAX: default matmul precision) on for the GPU run; by default
            it is turned off for the check.
        mean, scale, channel_order ("bgr"/"rgb"), resize ((H, W)): image preprocessing; defaults
            come from the input layer's transform_param (Caffe order: BGR).

    Returns:
        a :class:`VerifyResult`.
    """
    rtol, atol = _check_tolerance(rtol, atol)
    proto_net = load_net(prototxt, phase=phase, input_shapes=input_shapes)
    feeds, input_desc, ref_path = _resolve_input(proto_net, input, reference, reference_blobs, batch, seed,
                                                 dict(mean=mean, scale=scale, channel_order=channel_order,
                                                      resize=resize))
    shapes = dict(input_shapes or {})
    shapes.pop(None, None)
    shapes.update({n: a.shape for n, a in feeds.items()})
    net = load_net(prototxt, caffemodel, phase=phase, input_shapes=shapes)
    ref_vals, ref_name, ref_version, warnings = _reference(net, prototxt, caffemodel, feeds, reference,
                                                           reference_blobs, ref_path)
    backend = _backend()
    dev = select_device(device, backend)
    with dev.scope(tf32):
        probes, model_desc, more = _keras_probes(net, keras_model, ref_vals)
        keras_vals, ran_on = _run_probes(probes, net, feeds, dev, backend)
        local_vals = _run_local(probes, net, feeds, ref_vals, dev, backend)
    warnings += more
    rows = compare(net, ref_vals, local_vals, keras_vals, rtol, atol)
    first = next((r for r in rows if r.status == "FAIL"), None)
    if not any(r.status != "skipped" for r in rows):
        raise VerificationError("no blob of the net has a counterpart in the Keras model to compare",
                                file=prototxt, hint="name the Keras layers keras_name(<Caffe layer name>)")
    result = VerifyResult(passed=first is None, rows=rows, first_divergent=first, reference=ref_name,
                          reference_version=ref_version, backend=backend, device=ran_on,
                          device_kind=dev.kind, tf32=dev.tf32_state(tf32), input=input_desc, rtol=rtol, atol=atol,
                          prototxt=str(prototxt), caffemodel=str(caffemodel), keras_model=model_desc,
                          warnings=warnings)
    if report:
        _write(report, json.dumps(result.to_dict(), indent=2, default=_json_default) + "\n")
    if html:
        _write(html, render_html(result))
    return result


def _check_tolerance(rtol, atol):
    try:
        rtol, atol = float(rtol), float(atol)
    except (TypeError, ValueError):
        raise VerificationError(f"rtol and atol must be numbers. Received: rtol={rtol!r}, atol={atol!r}") from None
    if not (rtol >= 0 and atol >= 0):
        raise VerificationError(f"rtol and atol must be >= 0. Received: rtol={rtol}, atol={atol}")
    return rtol, atol


def _write(path, text):
    from .caffe.io import atomic_write

    try:
        atomic_write(path, text.encode("utf-8"))
    except OSError as e:
        raise VerificationError(f"cannot write {path}: {e.strerror or e}", file=path) from None


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)


# --- inputs ----------------------------------------------------------------------------------------


def _resolve_input(net, input, reference, reference_blobs, batch, seed, pre):
    """The NCHW input arrays by Caffe input name, a description, and the stored-reference path."""
    ref_path = None
    if isinstance(reference, str) and reference.startswith("npz:"):
        ref_path = Path(reference[4:])
        if not ref_path.is_file():
            raise VerificationError(f"the stored reference {ref_path} does not exist", file=ref_path)
        if input is None and (ref_path.parent / "input.npz").is_file():
            input = ref_path.parent / "input.npz"
    if input is None:
        if ref_path is not None or reference_blobs is not None:
            raise VerificationError("stored reference blobs need the input they were computed from",
                                    hint="pass --input FILE.npz (or input= to verify())")
        from .testing import random_inputs

        if batch is not None and int(batch) <= 0:
            raise VerificationError(f"--batch must be a positive integer. Received: {batch}")
        feeds = random_inputs(net, seed=seed, batch=batch)
        return feeds, f"seeded random N(0,1) data (seed {seed})", ref_path
    feeds, desc = load_inputs(net, input, pre)
    return feeds, desc, ref_path


def load_inputs(net, source, pre=None):
    """Input arrays by Caffe input name from an array, a dict, or a .npy/.npz/image file."""
    names = [net.caffe_name[b] for b in net.inputs]
    if isinstance(source, dict):
        feeds, desc = {k: np.asarray(v) for k, v in source.items()}, "arrays given by name"
    elif isinstance(source, np.ndarray):
        feeds, desc = _single(names, source), f"an array of shape {source.shape}"
    else:
        path = Path(source)
        if not path.is_file():
            raise VerificationError(f"input file {path} does not exist", file=path)
        ext = path.suffix.lower()
        if ext == ".npy":
            feeds = _single(names, _np_load(path))
        elif ext == ".npz":
            with _np_open(path) as z:
                feeds = {k: np.asarray(z[k]) for k in z.files if k in names}
        elif ext in IMAGE_EXTS:
            feeds = _single(names, load_image(net, path, **(pre or {})))
        else:
            raise VerificationError(f"unknown input file type '{ext}'", file=path,
                                    hint="pass a .npy (NCHW), a .npz (arrays by input name) or an image")
        desc = str(path)
    return _check_feeds(net, names, feeds), desc


def _np_load(path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise VerificationError(f"cannot read the array: {e}", file=path) from None


def _np_open(path):
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise VerificationError(f"cannot read the arrays: {e}", file=path) from None


def _single(names, arr):
    if len(names) != 1:
        raise VerificationError(f"the net has {len(names)} inputs {names}; one array feeds only one",
                                hint="pass a .npz (or a dict) with an array per input name")
    arr = np.asarray(arr)
    if arr.ndim == 3:
        arr = arr[None]
    return {names[0]: arr}


def _check_feeds(net, names, feeds):
    missing = [n for n in names if n not in feeds]
    if missing:
        raise VerificationError(f"no input array for net input(s) {missing}; got {sorted(feeds)}")
    out = {}
    for bid in net.inputs:
        name = net.caffe_name[bid]
        a, want = feeds[name], net.shapes[bid]
        if a.dtype.kind not in "fiub":
            raise VerificationError(f"input '{name}' has dtype {a.dtype}; expected numbers")
        if a.ndim != len(want) or (a.ndim >= 2 and a.shape[1] != want[1]):
            raise VerificationError(f"input '{name}' has shape {a.shape}; the net expects {tuple(want)} "
                                    f"(N,C,H,W: the batch and spatial size may differ, the channels may not)")
        if 0 in a.shape:
            raise VerificationError(f"input '{name}' is empty (shape {a.shape})")
        out[name] = np.ascontiguousarray(a, dtype=np.float32)
    return out


def load_image(net, path, mean=None, scale=None, channel_order=None, resize=None):
    """Read an image the way Caffe's data layer would feed it: 1,C,H,W float32.

    Pixels are resized to ``resize`` (default: the net's input H,W), put in ``channel_order``
    ("bgr", Caffe's and OpenCV's order, unless "rgb"), then ``(pixel - mean) * scale`` with
    mean/scale from the input's transform_param unless given.
    """
    import cv2

    bid = net.inputs[0]
    _, c, h, w = (list(net.shapes[bid]) + [1, 1, 1, 1])[:4]
    tr = net.transforms.get(bid) or {}
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if c == 1 else cv2.IMREAD_COLOR)
    if img is None:
        raise VerificationError("cannot read the image (not an image, or a format OpenCV cannot decode)", file=path)
    if tr.get("mean_file") and mean is None:
        raise VerificationError(f"the input layer's transform_param uses mean_file {tr['mean_file']}, which verify "
                                f"does not read", file=path, hint="pass the per-channel mean with --mean B,G,R")
    rh, rw = resize or (h, w)
    img = cv2.resize(img, (int(rw), int(rh)), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    img = img.reshape(img.shape[0], img.shape[1], -1)
    if (channel_order or "bgr").lower() == "rgb":
        img = img[:, :, ::-1]
    m = mean if mean is not None else (tr.get("mean_value") or [0.0])
    m = np.asarray(m, np.float32).reshape(-1)
    if m.size not in (1, img.shape[2]):
        raise VerificationError(f"--mean has {m.size} values for an image of {img.shape[2]} channels", file=path)
    s = float(scale if scale is not None else (tr.get("scale") or 1.0))
    return ((img - m) * s).transpose(2, 0, 1)[None].copy()


# --- the reference runtime ----------------------------------------------------------------------


def _reference(net, prototxt, caffemodel, feeds, reference, reference_blobs, ref_path):
    """Reference values by blob version id, the runtime's name and version, and warnings."""
    if reference_blobs is not None:
        return _final_only(net, reference_blobs), "stored blobs", "given to verify()", []
    if ref_path is not None:
        with _np_open(ref_path) as z:
            blobs = {k: np.asarray(z[k]) for k in z.files}
        return _final_only(net, blobs), f"stored blobs {ref_path}", _stored_version(ref_path), []
    if reference not in ("auto", "caffe", "opencv"):
        raise VerificationError(f"reference must be auto, caffe, opencv or npz:PATH. Received: {reference!r}")
    if reference in ("auto", "caffe"):
        try:
            import caffe  # noqa: F401
        except ImportError:
            if reference == "caffe":
                raise VerificationError("--reference caffe: pycaffe ('import caffe') is not importable",
                                        hint="install Caffe's Python bindings, or use --reference opencv") from None
        else:
            return run_pycaffe(net, prototxt, caffemodel, feeds)
    return run_opencv_blobs(net, prototxt, caffemodel, feeds)


def _final_only(net, blobs):
    """Stored blobs by Caffe name -> by the id of the blob's last version."""
    final = net.final_versions()
    inputs = {net.caffe_name[b] for b in net.inputs}
    return {final[k]: np.asarray(v) for k, v in blobs.items() if k in final and k not in inputs}


def _stored_version(ref_path):
    meta = ref_path.parent / "meta.json"
    if meta.is_file():
        try:
            return str(json.loads(meta.read_text()).get("caffe") or "unknown version")
        except (OSError, ValueError):
            pass
    return "unknown version"


def run_pycaffe(net, prototxt, caffemodel, feeds):
    """Every blob version from pycaffe, by stepping the forward pass one layer at a time."""
    import caffe

    caffe.set_mode_cpu()
    cnet = caffe.Net(str(prototxt), str(caffemodel), getattr(caffe, net.phase))
    for name, arr in feeds.items():
        cnet.blobs[name].reshape(*arr.shape)
        cnet.blobs[name].data[...] = arr
    cnet.reshape()
    ours = {L.name: L for L in net.layers}
    out = {}
    for i, lname in enumerate(cnet._layer_names):
        cnet._forward(i, i)
        L = ours.get(lname)
        if L is None or L.type in INPUT_TYPES:
            continue
        for bid, top in zip(L.tops, cnet.top_names[lname]):
            out[bid] = np.array(cnet.blobs[top].data, copy=True)
    version = getattr(caffe, "__version__", "unknown version")
    return out, "caffe (pycaffe)", str(version), []


def run_opencv_blobs(net, prototxt, caffemodel, feeds):
    """Every blob version OpenCV dnn really exposes, by asking for each layer's output by name.

    Fusion is turned off, so each layer's output is its own (with fusion on, OpenCV folds
    BatchNorm/Scale/ReLU into the convolution before them and their outputs are not separate).
    The net's outputs from this run are checked against a plain fused forward pass; blobs
    OpenCV cannot give are left out (and shown as skipped).
    """
    try:
        import cv2
    except ImportError:
        raise VerificationError("no reference runtime: neither pycaffe ('import caffe') nor OpenCV ('import cv2') "
                                "is importable", hint="pip install opencv-python-headless") from None
    if not hasattr(cv2.dnn, "readNetFromCaffe"):
        raise VerificationError(f"OpenCV {cv2.__version__} has no Caffe importer (OpenCV 5 removed it)",
                                hint="pip install 'opencv-python-headless<5', install pycaffe, or pass "
                                     "--reference npz:REF.npz")
    try:
        cvnet = _cv_net(cv2, prototxt, caffemodel, feeds, fusion=False)
        have = set(cvnet.getLayerNames())
        wanted = [(bid, _cv_pin(L, i)) for L in net.layers if L.type not in INPUT_TYPES and L.name in have
                  for i, bid in enumerate(L.tops)]
        outs = cvnet.forward([pin for _, pin in wanted])
    except cv2.error as e:
        raise VerificationError(f"OpenCV dnn could not run the net: {str(e).strip().splitlines()[-1]}",
                                file=prototxt) from None
    vals = {bid: np.asarray(o) for (bid, _), o in zip(wanted, outs)}
    warnings = _cv_cross_check(cv2, net, prototxt, caffemodel, feeds, vals)
    return vals, "opencv dnn", f"OpenCV {cv2.__version__}", warnings


def _cv_net(cv2, prototxt, caffemodel, feeds, fusion):
    cvnet = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    cvnet.enableFusion(fusion)
    for name, arr in feeds.items():
        cvnet.setInput(arr, name)
    return cvnet


def _cv_pin(layer, i):
    return layer.name if i == 0 else f"{layer.name}.{i}"


def _cv_cross_check(cv2, net, prototxt, caffemodel, feeds, vals):
    """The outputs of the per-layer run must equal those of OpenCV's normal (fused) run."""
    outs = [(b, _cv_pin(net.producer[b], net.producer[b].tops.index(b))) for b in net.outputs if b in vals]
    if not outs:
        return []
    res = _cv_net(cv2, prototxt, caffemodel, feeds, fusion=True).forward([p for _, p in outs])
    bad = []
    for (bid, _), got in zip(outs, res):
        ref = vals[bid]
        scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
        if got.shape != ref.shape or float(np.max(np.abs(got - ref))) > 1e-4 * scale:
            bad.append(net.caffe_name[bid])
    return [f"OpenCV's fused and unfused runs disagree on output(s) {bad}"] if bad else []


# --- the Keras side ----------------------------------------------------------------------------------


def _backend():
    """The Keras backend in use, read without importing TensorFlow under JAX."""
    import keras

    return keras.config.backend()


class DeviceChoice:
    """Where the Keras model runs, and the precision switches that go with it."""

    def __init__(self, backend, handle, name, kind, is_gpu):
        self.backend, self.handle, self.name, self.kind, self.is_gpu = backend, handle, name, kind, is_gpu

    def tf32_state(self, tf32):
        if not self.is_gpu:
            return "n/a (CPU)"
        if self.backend == "jax":
            return "on (JAX default matmul precision)" if tf32 else "off (jax_default_matmul_precision=highest)"
        return "on (TensorFlow default)" if tf32 else "off (disabled for the check)"

    @contextlib.contextmanager
    def scope(self, tf32=False):
        """Run the enclosed conversion and forward pass on this device, TF32 off on GPUs unless asked."""
        if self.backend == "jax":
            import jax

            prev = jax.config.jax_default_matmul_precision
            if self.is_gpu and not tf32:
                jax.config.update("jax_default_matmul_precision", "highest")
            try:
                with jax.default_device(self.handle):
                    yield
            finally:
                jax.config.update("jax_default_matmul_precision", prev)
            return
        import tensorflow as tf

        prev = tf.config.experimental.tensor_float_32_execution_enabled()
        if self.is_gpu:
            tf.config.experimental.enable_tensor_float_32_execution(bool(tf32))
        try:
            with tf.device(self.name):
                yield
        finally:
            tf.config.experimental.enable_tensor_float_32_execution(prev)


def select_device(device="auto", backend=None):
    """The device for ``device`` ("auto", "gpu", "cpu") under the Keras ``backend``."""
    if device not in ("auto", "gpu", "cpu"):
        raise VerificationError(f"device must be auto, gpu or cpu. Received: {device!r}")
    backend = backend or _backend()
    if backend == "jax":
        import jax

        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            gpus = []
        _need_gpu(device, gpus, "JAX")
        d = gpus[0] if gpus and device != "cpu" else jax.devices("cpu")[0]
        return DeviceChoice(backend, d, f"{d.platform}:{d.id}", getattr(d, "device_kind", d.platform),
                            d.platform != "cpu")
    if backend != "tensorflow":
        raise VerificationError(f"verify runs the Keras model with the TensorFlow or JAX backend; this Keras uses "
                                f"'{backend}'", hint="set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax")
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    _need_gpu(device, gpus, "TensorFlow")
    d = gpus[0] if gpus and device != "cpu" else tf.config.list_logical_devices("CPU")[0]
    return DeviceChoice(backend, d, d.name, _tf_kind(tf, d), d.device_type == "GPU")


def _need_gpu(device, gpus, who):
    if device == "gpu" and not gpus:
        raise VerificationError(f"--device gpu: {who} sees no GPU on this machine",
                                hint="use --device auto or --device cpu, or check the CUDA installation")


def _tf_kind(tf, logical):
    if logical.device_type != "GPU":
        return "CPU"
    try:
        phys = tf.config.list_physical_devices("GPU")[int(logical.name.rsplit(":", 1)[1])]
        return tf.config.experimental.get_device_details(phys).get("device_name", "GPU")
    except (IndexError, ValueError, RuntimeError):
        return "GPU"


@dataclass
class Probe:
    """A Keras tensor standing for one Caffe blob version, and how it is laid out."""

    tensor: object
    layout: lay.Layout


def _keras_probes(net, keras_model, ref_vals):
    """Keras tensors (by blob version id) for the blobs the reference shows, and the model's description."""
    if keras_model is None:
        from .c2k import convert_net

        model, _, eng = convert_net(net)
        probes = {b: Probe(eng.tensors[b], eng.layouts[b]) for b in ref_vals if b in eng.tensors}
        inputs = {net.caffe_name[b]: Probe(eng.tensors[b], eng.layouts[b]) for b in net.inputs}
        return (model, probes, inputs), "converted from the Caffe files", []
    model, desc = _load_model(keras_model)
    probes, warnings = {}, []
    pairs = pair_batchnorm_scale(net)
    paired_bn = {s.name: bn for bn, s in pairs.items()}
    for L in net.layers:
        if L.type in INPUT_TYPES or L.name in pairs:
            continue
        for i, bid in enumerate(L.tops):
            if bid not in ref_vals:
                continue
            t = _find_tensor(model, net, L, i, bid, paired_bn.get(L.name))
            if t is not None:
                probes[bid] = Probe(t, infer_layout(t, net.shapes[bid]))
    inputs = _model_inputs(model, net)
    return (model, probes, inputs), desc, warnings


def _load_model(keras_model):
    import keras

    if isinstance(keras_model, (str, os.PathLike)):
        path = Path(keras_model)
        if not path.is_file():
            raise VerificationError(f"the Keras model {path} does not exist", file=path)
        try:
            return keras.saving.load_model(str(path), compile=False), str(path)
        except Exception as e:  # Keras raises many types for unreadable files
            raise VerificationError(f"cannot load the Keras model: {type(e).__name__}: {e}", file=path) from None
    if not isinstance(keras_model, keras.Model):
        raise VerificationError(f"keras_model must be a keras.Model or a path. Received: {type(keras_model).__name__}")
    return keras_model, f"keras.Model '{keras_model.name}'"


def _find_tensor(model, net, L, i, bid, bn_name):
    """The Keras tensor of top ``i`` of Caffe layer ``L`` by the naming convention, or None."""
    names = []
    if bid in net.outputs:
        names.append(keras_name(net.caffe_name[bid]))
    if bn_name:
        names.append(keras_name(bn_name))
    names.append(keras_name(L.name))
    for n in names:
        try:
            layer = model.get_layer(n)
        except ValueError:
            continue
        out = layer.output
        if isinstance(out, (list, tuple)):
            if len(out) != len(L.tops):
                continue
            out = out[i]
        elif len(L.tops) != 1:
            continue
        return out
    return None


def _model_inputs(model, net):
    """Caffe input name -> Probe of the Keras input fed with it."""
    ins = list(model.inputs)
    names = [net.caffe_name[b] for b in net.inputs]
    by_name = {t._keras_history.operation.name: t for t in ins}
    out = {}
    for bid, n in zip(net.inputs, names):
        t = by_name.get(keras_name(n))
        if t is None and len(ins) == 1 == len(names):
            t = ins[0]
        if t is None:
            raise VerificationError(f"the Keras model has no input named '{keras_name(n)}' for Caffe input '{n}'; "
                                    f"its inputs are {sorted(by_name)}")
        out[n] = Probe(t, infer_layout(t, net.shapes[bid]))
    return out


def infer_layout(tensor, caffe_shape):
    """How a Keras tensor of a model we did not build stores a Caffe blob, judged by its shape.

    A 4-d tensor is NHWC when its shape is the blob's with the channels last; a flattened
    tensor made by Flatten/Reshape from an NHWC tensor (through same-shape layers) keeps H,W,C
    order; anything else is in Caffe's order.
    """
    ks = tuple(tensor.shape[1:])
    cs = tuple(caffe_shape[1:])
    if len(ks) == 3 and len(cs) == 3:
        if ks == (cs[1], cs[2], cs[0]):
            return lay.NHWC
        return lay.CAFFE
    src = _flattened_from(tensor)
    if src is not None and int(np.prod(ks)) == int(np.prod(cs)):
        h, w, c = src
        if h * w > 1 and c > 1:
            return lay.flat_hwc(c, h, w)
    return lay.CAFFE


def _flattened_from(tensor):
    """(H, W, C) when ``tensor`` is an NHWC tensor flattened (maybe followed by same-shape layers)."""
    t = tensor
    for _ in range(64):
        op = t._keras_history.operation
        node = op._inbound_nodes[t._keras_history.node_index] if op._inbound_nodes else None
        parents = list(node.input_tensors) if node is not None else []
        if len(parents) != 1:
            return None
        p = parents[0]
        if tuple(p.shape) == tuple(t.shape):
            t = p
            continue
        if type(op).__name__ in ("Flatten", "Reshape") and len(p.shape) == 4:
            pop = p._keras_history.operation
            if type(pop).__name__ == "Permute":  # moved to Caffe's C,H,W order before flattening
                return None
            return tuple(int(d) for d in p.shape[1:])
        return None
    return None


def _run_probes(probes, net, feeds, dev, backend):
    """Run the model once, returning every probed blob version in Caffe's layout, and the device."""
    import keras

    model, blobs, inputs = probes
    order = list(blobs)
    uniq, index = [], {}
    for b in order:
        key = id(blobs[b].tensor)
        if key not in index:
            index[key] = len(uniq)
            uniq.append(blobs[b].tensor)
    probe_model = keras.Model(list(model.inputs), uniq)
    by_tensor = {id(p.tensor): (n, p) for n, p in inputs.items()}
    x = []
    for t in model.inputs:
        name, p = by_tensor[id(t)]
        x.append(_to_device(lay.to_keras_array(feeds[name], p.layout), dev, backend))
    outs = probe_model(x if len(x) > 1 else x[0], training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    ran_on = _where(outs[0], dev, backend)
    vals = {}
    for b in order:
        a = np.asarray(keras.ops.convert_to_numpy(outs[index[id(blobs[b].tensor)]]))
        vals[b] = _to_caffe(a, blobs[b].layout, net.shapes[b])
    return vals, ran_on


def _frontier(net, bid, probes, ref_vals, memo):
    """The nearest blobs before ``bid`` that the layer check can feed with reference values."""
    if bid in memo:
        return memo[bid]
    L = net.producer[bid]
    out = []
    for b in L.bottoms:
        if b in net.inputs or (b in ref_vals and b in probes):
            found = [b]
        else:
            found = _frontier(net, b, probes, ref_vals, memo)
        out += [f for f in found if f not in out]
    memo[bid] = out
    return out


def _run_local(probes, net, feeds, ref_vals, dev, backend):
    """The layer check: each probed blob from the reference values of the blobs before it."""
    import keras

    _, blobs, inputs = probes
    memo, vals = {}, {}
    by_input = {b: inputs[net.caffe_name[b]] for b in net.inputs}
    for bid, probe in blobs.items():
        sources, tensors, feed = _frontier(net, bid, blobs, ref_vals, memo), [], []
        for f in sources:
            p = by_input[f] if f in by_input else blobs[f]
            if any(p.tensor is t for t in tensors):
                continue
            value = feeds[net.caffe_name[f]] if f in by_input else ref_vals[f]
            tensors.append(p.tensor)
            feed.append(_to_device(lay.to_keras_array(np.ascontiguousarray(value, np.float32), p.layout), dev,
                                   backend))
        try:
            sub = keras.Model(tensors, probe.tensor)
        except ValueError:  # the Keras graph needs more than these blobs: only the end-to-end check
            continue
        out = sub(feed if len(feed) > 1 else feed[0], training=False)
        vals[bid] = _to_caffe(np.asarray(keras.ops.convert_to_numpy(out)), probe.layout, net.shapes[bid])
    return vals


def _to_device(arr, dev, backend):
    if backend == "jax":
        import jax

        return jax.device_put(arr, dev.handle)
    import tensorflow as tf

    with tf.device(dev.name):
        return tf.identity(tf.constant(arr))


def _where(out, dev, backend):
    try:
        if backend == "jax":
            d = next(iter(out.devices()))
            return f"{d.platform}:{d.id} ({getattr(d, 'device_kind', d.platform)})"
        return f"{out.device} ({dev.kind})"
    except (AttributeError, StopIteration):
        return f"{dev.name} ({dev.kind})"


def _to_caffe(a, layout, caffe_shape):
    try:
        a = lay.to_caffe_array(a, layout)
    except ValueError:
        return a
    if a.shape != tuple(caffe_shape) and a.size == int(np.prod(caffe_shape)) and layout.kind != "nhwc":
        a = a.reshape(caffe_shape)  # e.g. Keras drops Caffe's trailing 1x1 axes
    return a


# --- comparison -----------------------------------------------------------------------------------------


def compare(net, ref_vals, local_vals, e2e_vals, rtol, atol):
    """One :class:`BlobCheck` per reference blob version, in the net's layer order.

    ``local_vals`` are the Keras values of the layer check (None where it could not be made),
    ``e2e_vals`` those of the whole-model run, both by blob version id in Caffe's layout.
    """
    pairs = pair_batchnorm_scale(net)
    paired_bn = {s.name: bn for bn, s in pairs.items()}
    rows = []
    for L in net.layers:
        if L.type in INPUT_TYPES:
            continue
        for bid in L.tops:
            if bid not in ref_vals:
                continue
            owner, typ = L.name, L.type
            if L.name in paired_bn:
                owner, typ = paired_bn[L.name], "BatchNorm+Scale"
            row = BlobCheck(net.caffe_name[bid], bid, owner, typ, tuple(int(d) for d in ref_vals[bid].shape),
                            is_output=bid in net.outputs)
            if L.name in pairs:
                row.note = f"merged into the Keras layer of '{L.name}' with Scale '{pairs[L.name].name}'"
            elif bid not in e2e_vals:
                row.note = "no counterpart in the Keras model"
            else:
                _fill(row, local_vals.get(bid), e2e_vals[bid], ref_vals[bid], rtol, atol)
                row.suspects = _suspects(net, bid, ref_vals, e2e_vals, paired_bn)
            rows.append(row)
    return rows


def _error(got, ref):
    """(max|got - ref| or inf, max(1, max|ref|), problem or "")."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    fin_r = np.isfinite(ref)
    scale = max(1.0, float(np.max(np.abs(ref[fin_r])))) if fin_r.any() else 1.0
    if got.shape != ref.shape:
        return float("inf"), scale, f"shape {tuple(got.shape)} != reference {tuple(ref.shape)}"
    same_nonfinite = (got == ref) | (np.isnan(got) & np.isnan(ref))
    if np.any((np.isfinite(got) != fin_r) | (~fin_r & ~same_nonfinite)):
        return float("inf"), scale, "non-finite values differ"
    both = fin_r
    return (float(np.max(np.abs(got[both] - ref[both]))) if both.any() else 0.0), scale, ""


def _fill(row, local, e2e, ref, rtol, atol):
    e_err, scale, e_note = _error(e2e, ref)
    row.e2e_abs, row.e2e_rel, row.ref_max = e_err, e_err / scale, scale
    row.tol = atol + rtol * scale
    if local is not None:
        err, _, note = _error(local, ref)
        row.check = "layer"
    else:
        err, note = e_err, e_note
        row.check = "end-to-end"
    row.max_abs, row.max_rel = err, err / scale
    row.status = "ok" if err <= row.tol else "FAIL"
    if note:
        row.note = note
    if row.status == "ok" and row.is_output and e_err > row.tol:
        row.status = "FAIL"
        row.note = f"net output off end-to-end ({e_note or f'max abs error {e_err:.3g}'})"


def _suspects(net, bid, ref_vals, keras_vals, paired_bn):
    """The layers whose effect this row checks first: back through unchecked in-place versions."""
    chain = []
    b = bid
    while True:
        L = net.producer[b]
        name = paired_bn.get(L.name, L.name)
        if name not in chain:
            chain.insert(0, name)
        if L.name in paired_bn:  # the BatchNorm's own top is never compared separately
            bn = net.layer(paired_bn[L.name])
            b = bn.tops[0] if bn.tops else None
            L = bn
        prev = [x for x in L.bottoms if net.caffe_name.get(x) == net.caffe_name[b]]
        if not prev or prev[0] in net.inputs or (prev[0] in ref_vals and prev[0] in keras_vals):
            return chain
        b = prev[0]


# --- HTML ------------------------------------------------------------------------------------------------


def render_html(result):
    """A small self-contained page: the summary, an inline SVG plot of each blob's error, the table."""
    from html import escape

    rows = result.compared
    w, h, pad = max(320, 8 * len(rows) + 60), 240, 40
    lo, hi = -12.0, 2.0

    def y(v):
        v = lo if v is None or v <= 0 else min(hi, max(lo, np.log10(v)))
        return pad + (hi - v) / (hi - lo) * (h - 2 * pad)

    bars = []
    for i, r in enumerate(rows):
        x = pad + i * 8
        color = "#2a7" if r.status == "ok" else "#d33"
        bars.append(f'<rect x="{x}" y="{y(r.max_rel):.1f}" width="6" height="{h - pad - y(r.max_rel):.1f}" '
                    f'fill="{color}"><title>{escape(r.layer)} ({escape(r.blob)}): {_fmt(r.max_rel)}</title></rect>')
    tol_y = y(result.rtol + (result.atol if result.atol else 0))
    ticks = "".join(f'<text x="4" y="{y(10.0 ** e) + 4:.1f}" font-size="10">1e{e}</text>' for e in range(-12, 3, 2))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">{ticks}'
           f'<line x1="{pad}" x2="{w}" y1="{tol_y:.1f}" y2="{tol_y:.1f}" stroke="#888" stroke-dasharray="4"/>'
           + "".join(bars) + "</svg>")
    head = "".join(f"<th>{c}</th>" for c in ["layer", "type", "blob", "shape", "max abs err", "max rel err", "status"])
    body = "".join(
        f"<tr class='{r.status}'><td>{escape(r.layer)}</td><td>{escape(r.type)}</td><td>{escape(r.version)}</td>"
        f"<td>{'x'.join(map(str, r.shape))}</td><td>{_fmt(r.max_abs)}</td><td>{_fmt(r.max_rel)}</td>"
        f"<td>{escape(r.status)} {escape(r.note)}</td></tr>" for r in result.rows)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>bnconvert verify</title><style>"
            "body{font-family:sans-serif}td,th{padding:2px 8px;text-align:left}.FAIL{background:#fdd}"
            ".skipped{color:#888}</style></head><body><h1>bnconvert verify: "
            f"{'PASSED' if result.passed else 'FAILED'}</h1><pre>{escape(result.summary())}</pre>"
            f"<h2>max relative error per blob (log scale; dashed: tolerance)</h2>{svg}"
            f"<h2>blobs</h2><table><tr>{head}</tr>{body}</table></body></html>\n")


__all__ = ["BlobCheck", "VerifyResult", "verify", "select_device", "load_inputs", "load_image", "compare",
           "render_html", "run_opencv_blobs", "run_pycaffe"]
