"""The input verify feeds both runtimes: seeded random data, arrays, or .npy/.npz/image files."""
from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..caffe.io import readable_file
from ..errors import ParseError, VerificationError
from .image import IMAGE_EXTS, load_image


def resolve_input(net, input, reference, reference_blobs, batch, seed, pre):
    """The NCHW input arrays by Caffe input name, a description, and the stored-reference path."""
    ref_path = None
    if isinstance(reference, str) and reference.startswith("npz:"):
        ref_path = Path(reference[4:])
        _readable(ref_path, "the stored reference")
        if input is None and (ref_path.parent / "input.npz").is_file():
            input = ref_path.parent / "input.npz"
    if input is None:
        if ref_path is not None or reference_blobs is not None:
            raise VerificationError("stored reference blobs need the input they were computed from",
                                    hint="pass --input FILE.npz (or input= to verify())")
        from ..testing import random_inputs

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
        _readable(path, "input file")
        ext = path.suffix.lower()
        if ext == ".npy":
            feeds = _single(names, load_npy(path))
        elif ext == ".npz":
            feeds = {k: v for k, v in load_npz(path).items() if k in names}
        elif ext in IMAGE_EXTS:
            feeds = _single(names, load_image(net, path, **(pre or {})))
        else:
            raise VerificationError(f"unknown input file type '{ext}'", file=path,
                                    hint="pass a .npy (NCHW), a .npz (arrays by input name) or an image")
        desc = str(path)
    return _check_feeds(net, names, feeds), desc


def _readable(path, what):
    """Refuse a missing file, a directory, a FIFO or a device (one line naming the problem)."""
    try:
        readable_file(path, what)
    except ParseError as e:
        raise VerificationError(e.message, file=path, hint=e.hint) from None


_PICKLE = "it holds pickled Python objects, which verify never loads (unpickling can run code)"


def load_npy(path):
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise VerificationError(f"cannot read the array: {_PICKLE}", file=path,
                                    hint="save plain numeric arrays (np.save without dtype=object)") from None
        raise VerificationError(f"cannot read the array: {e}", file=path) from None
    except (OSError, EOFError) as e:
        raise VerificationError(f"cannot read the array: {e}", file=path) from None


def load_npz(path):
    """Every array of a .npz by name (object arrays refused, never unpickled)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: np.asarray(z[k]) for k in z.files}
    except ValueError as e:
        if "allow_pickle" in str(e):
            raise VerificationError(f"cannot read the arrays: {_PICKLE}", file=path,
                                    hint="save plain numeric arrays (np.savez without dtype=object)") from None
        raise VerificationError(f"cannot read the arrays: {e}", file=path) from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
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
