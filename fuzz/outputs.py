"""The output-path target: the commands that write files, with random output arguments.

Every path lives in a fresh temporary directory made for the input; nothing outside it is ever
named, created or written. Each input copies a real model pair into that directory, then runs
``upgrade`` (mostly: no TensorFlow), ``caffe2keras`` or ``keras2caffe`` in-process with output
paths drawn from: a new file, an existing file, a missing directory, a path under a file, a
directory, the same path twice, an input file, a symlink, a character device made with
``mknod`` (when permitted), long and odd names, and an optional ``--report`` path.

It passes when the exit code is 0 or 2, stderr has no traceback or "internal error", every
input file is byte-identical afterwards, no temporary file is left behind, and after exit code 2
every output path is as it was before (an existing file unchanged, no new file, a device still a
device).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import stat
import tempfile
from pathlib import Path

_KERAS_MODEL = {}  # per worker process: a small .keras model for keras2caffe, made once


def _snapshot(root):
    """path -> ('file', sha256) / ('dir',) / ('chr',) / ('link', target) for everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[p] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[p] = ("dir",)
            elif stat.S_ISCHR(st.st_mode):
                out[p] = ("chr",)
            elif stat.S_ISREG(st.st_mode):
                out[p] = ("file", hashlib.sha256(Path(p).read_bytes()).hexdigest())
            else:
                out[p] = ("other",)
    return out


def _output_path(rng, tmp, inputs, taken, ext):
    """One output path argument, always inside ``tmp``."""
    kind = rng.choice(["new", "new", "new", "existing", "missing_dir", "under_file", "directory", "same",
                       "input", "symlink", "device", "long", "odd"])
    if kind == "existing":
        p = os.path.join(tmp, f"old{len(taken)}{ext}")
        Path(p).write_bytes(b"previous contents\n")
    elif kind == "missing_dir":
        p = os.path.join(tmp, "nodir", f"x{ext}")
    elif kind == "under_file":
        f = os.path.join(tmp, "afile.txt")
        Path(f).write_text("a file\n")
        p = os.path.join(f, f"x{ext}")
    elif kind == "directory":
        p = os.path.join(tmp, "adir" + ext)
        os.makedirs(p, exist_ok=True)
    elif kind == "same" and taken:
        p = rng.choice(taken)
    elif kind == "input":
        p = rng.choice(inputs)
    elif kind == "symlink":
        target = os.path.join(tmp, f"target{len(taken)}{ext}")
        Path(target).write_bytes(b"link target\n")
        p = os.path.join(tmp, f"link{len(taken)}{ext}")
        if not os.path.lexists(p):
            os.symlink(target, p)
    elif kind == "device":
        p = os.path.join(tmp, f"null{len(taken)}")
        try:
            if not os.path.exists(p):
                os.mknod(p, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null
        except (PermissionError, OSError):
            p = os.path.join(tmp, f"nodev{len(taken)}{ext}")
    elif kind == "long":
        p = os.path.join(tmp, "n" * rng.choice([200, 255, 300]) + ext)
    elif kind == "odd":
        p = os.path.join(tmp, rng.choice(["sp ace", "ünï", "-dash", "a.b.c", ".hidden", "x\u200b"]) + ext)
    else:
        p = os.path.join(tmp, f"out{len(taken)}{ext}")
    taken.append(p)
    return p


def _keras_model(tmp_root, prototxt, caffemodel):
    """A small .keras model (converted once per worker from a caffe-ref pair), kept outside the input dir."""
    if "path" not in _KERAS_MODEL:
        from bnconvert.c2k import convert_caffe

        d = tempfile.mkdtemp(prefix="keras-model-", dir=tmp_root)
        model, _ = convert_caffe(prototxt, caffemodel)
        p = os.path.join(d, "small.keras")
        model.save(p)
        _KERAS_MODEL["path"] = p
    return _KERAS_MODEL["path"]


def small_pair(pairs):
    """The caffe-ref pair with the smallest caffemodel (for the commands that run Keras)."""
    return min(pairs, key=lambda pm: os.path.getsize(pm[1]))


def prepare(pairs, tmp_root):
    """Import Keras and make the small .keras model before the first timed input."""
    proto, model = small_pair(pairs)
    _keras_model(tmp_root, proto, model)


def make_command(rng, tmp, pair, small_pair, tmp_root):
    """(argv, input paths, output paths) for one run; copies the inputs into ``tmp``."""
    cmd = rng.choices(["upgrade", "caffe2keras", "keras2caffe"], weights=[8, 1, 1])[0]
    src_proto, src_model = small_pair if cmd != "upgrade" else pair
    proto = shutil.copy(src_proto, os.path.join(tmp, "in.prototxt"))
    model = shutil.copy(src_model, os.path.join(tmp, "in.caffemodel"))
    inputs, taken = [proto, model], []
    if cmd == "upgrade":
        n_out = rng.choice([1, 2, 2, 2, 3])
        outs = [_output_path(rng, tmp, inputs, taken, ext) for ext in (".prototxt", ".caffemodel", ".x")[:n_out]]
        argv = ["upgrade", proto, model, "-o", *outs]
        if n_out == 1:  # the caffemodel goes next to the prototxt, as OUT.caffemodel
            outs.append(str(Path(outs[0]).with_suffix(".caffemodel")))
    elif cmd == "caffe2keras":
        outs = [_output_path(rng, tmp, inputs, taken, rng.choice([".keras", ".h5", ".keras"]))]
        argv = ["caffe2keras", proto, model, "-o", outs[0], "-q"]
    else:  # the Keras model is the only input; in.prototxt/in.caffemodel are just existing files here
        k = shutil.copy(_keras_model(tmp_root, src_proto, src_model), os.path.join(tmp, "in.keras"))
        inputs = [k]
        outs = [_output_path(rng, tmp, inputs, taken, ext) for ext in (".prototxt", ".caffemodel")]
        argv = ["keras2caffe", k, "-o", *outs, "-q"]
    if cmd != "upgrade" and rng.random() < 0.5:
        rep = _output_path(rng, tmp, inputs, taken, ".json")
        argv += ["--report", rep]
        outs.append(rep)
    return argv, inputs, outs


def check_outputs(rng, pair, small_pair, tmp_root):
    """Run one command with random output paths in a fresh directory under ``tmp_root``; None or the bug."""
    from bnconvert.cli import main

    tmp = tempfile.mkdtemp(prefix="out-", dir=tmp_root)
    try:
        argv, inputs, outs = make_command(rng, tmp, pair, small_pair, tmp_root)
        assert all(os.path.abspath(p).startswith(tmp + os.sep) for p in inputs + outs)  # never outside
        before = _snapshot(tmp)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                rc = main([str(a) for a in argv])
            except SystemExit as e:  # argparse
                rc = e.code
        return _judge(rc, err.getvalue(), argv, tmp, before, inputs, outs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _judge(rc, err, argv, tmp, before, inputs, outs):
    what = " ".join(os.path.relpath(str(a), tmp) if str(a).startswith(tmp) else str(a) for a in argv)
    if rc not in (0, 2):
        return f"exit code {rc} for `{what}`: {err.strip()[-300:]}"
    if "Traceback" in err or "internal error" in err:
        return f"`{what}`: {err.strip()[-300:]}"
    after = _snapshot(tmp)
    for p in inputs:
        if after.get(p) != before.get(p):
            return f"`{what}` (exit {rc}) changed the input {os.path.basename(p)}"
    for p, v in before.items():
        if v[0] == "chr" and after.get(p) != v:
            return f"`{what}` (exit {rc}) replaced the device {os.path.basename(p)}"
    new = [p for p in after if p not in before and p not in outs and not _under_output(p, outs)]
    if new:
        return f"`{what}` (exit {rc}) left {[os.path.relpath(p, tmp) for p in new][:3]}"
    if rc == 2:
        changed = [p for p in outs if after.get(p) != before.get(p)]
        if changed:
            return f"`{what}` failed (exit 2) but changed {[os.path.relpath(p, tmp) for p in changed][:3]}"
    return None


def _under_output(p, outs):
    """``p`` is inside an output that is a directory (a SavedModel)."""
    return any(p.startswith(str(o) + os.sep) for o in outs)
