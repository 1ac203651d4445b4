"""Output paths: checked before any work is done, never one of the inputs, written as one unit.

Every command names its outputs (the model, ``--report``, both keras2caffe files, upgrade's two
files) and its inputs up front. :func:`check_outputs` refuses, before anything is read or
converted:

- an output that is an input, by resolved path or by device + inode (symlinks and hard links
  included), or a SavedModel directory that holds an input;
- two outputs that are the same file, or one output inside another output's directory;
- a file where a directory would go and the reverse (a file is never replaced by a directory,
  nor a directory by a file); a directory that is not empty and is not a SavedModel;
- an output whose directory is missing or not writable; a block device, socket or other
  non-regular file.

An :class:`OutputUnit` then writes every output into a temporary beside it (names unique per
process) and renames them into place only once all are written, so after any failure nothing is
left: no partial file, no temporary, no backup. A character device or FIFO (``--report
/dev/null``) is written into as a stream, never renamed over. A symlink output is written through:
its target is replaced, the link is kept.
"""
from __future__ import annotations

import contextvars
import ctypes
import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from .errors import OutputError

MODEL_EXTENSIONS = {".keras": "keras", ".h5": "h5", ".hdf5": "h5", ".tflite": "tflite"}
FORMATS = ("keras", "h5", "savedmodel", "tflite")
_VALID = ".keras, .h5, .hdf5 or .tflite files, or a SavedModel directory (a path ending in '/', or --format savedmodel)"
# Extensions that say "this is a prototxt" or "this is a caffemodel": a swapped -o pair is refused.
_TEXT_EXT = (".prototxt", ".pbtxt")
_BINARY_EXT = (".caffemodel", ".binaryproto")

_ACTIVE = contextvars.ContextVar("bnconvert_output_unit", default=None)


def model_format(path, fmt=None):
    """The Keras model format for output ``path``: ``fmt`` when given (it must agree with the name),
    else from the extension (.keras, .h5/.hdf5), or ``savedmodel`` for a path ending in ``/``.
    Any other name is refused: a SavedModel directory is written only when asked for."""
    text = os.fspath(path)
    slash = text.endswith("/") or text.endswith(os.sep)
    ext = Path(text.rstrip("/" + os.sep)).suffix.lower()
    by_ext = MODEL_EXTENSIONS.get(ext)
    if fmt is not None and fmt not in FORMATS:
        raise OutputError(f"unknown format {fmt!r}: use keras, h5, savedmodel or tflite", file=path)
    if fmt == "savedmodel" or (fmt is None and slash):
        if by_ext:
            raise OutputError(f"a SavedModel is a directory, but the name ends in {ext}", file=path,
                              hint=f"drop the {ext} extension, or write --format {by_ext}")
        return "savedmodel"
    if slash:
        raise OutputError(f"--format {fmt} writes a file, but the path ends in '/'", file=path,
                          hint="give a file name, or use --format savedmodel")
    if by_ext is None:
        what = f"the extension {ext}" if ext else "a name without an extension"
        raise OutputError(f"bnconvert does not write {what}: it writes {_VALID}", file=path)
    if fmt is not None and fmt != by_ext:
        want = {"keras": ".keras", "h5": ".h5", "tflite": ".tflite"}[fmt]
        raise OutputError(f"--format {fmt} does not agree with the extension {ext}", file=path,
                          hint=f"name the file *{want}, or use --format {by_ext}")
    return by_ext


class Target:
    """One checked output: ``path`` as given, ``real`` where the bytes go (a symlink's target),
    ``kind`` ``file`` or ``dir``, and whether it is a ``stream`` (character device or FIFO)."""

    def __init__(self, path, kind, real, stream, what):
        self.path, self.kind, self.real, self.stream, self.what = path, kind, real, stream, what
        self.key = _identity(real)


def _identity(p):
    """(resolved path, (st_dev, st_ino) or None) of ``p``."""
    try:
        st = os.stat(p)
        ino = (st.st_dev, st.st_ino)
    except OSError:
        ino = None
    return os.path.realpath(p), ino


def _same(a, b):
    return a[0] == b[0] or (a[1] is not None and a[1] == b[1])


def _inside(child, parent_dir):
    return child != parent_dir and child.startswith(parent_dir.rstrip(os.sep) + os.sep)


def _label(what):
    return f"the {what} output" if what else "the output"


def _check_one(path, kind, what):
    """Check one output path on its own; returns its :class:`Target`."""
    p = Path(path)
    try:
        st = os.stat(p)  # through symlinks (a too-long name fails already here)
    except (FileNotFoundError, NotADirectoryError):
        st = None
    except OSError as e:
        raise OutputError(f"cannot use this output path: {e.strerror}", file=path) from None
    if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        if kind == "dir":
            raise OutputError("a SavedModel directory cannot be written into a device or FIFO", file=path)
        if not os.access(p, os.W_OK):
            raise OutputError("cannot write: the device or FIFO is not writable", file=path)
        # Opened through the link: a shell's --report >(jq .) is /dev/fd/N, a link to a pipe.
        return Target(path, kind, p, True, what)
    real = Path(os.path.realpath(p)) if p.is_symlink() else p
    if st is not None and stat.S_ISDIR(st.st_mode):
        if kind == "file":
            raise OutputError("the output path is a directory; a directory is never replaced by a file",
                              file=path, hint="give a file name")
        if any(real.iterdir()) and not (real / "saved_model.pb").exists():
            raise OutputError("the directory is not empty and is not a SavedModel; it is never replaced",
                              file=path, hint="give a new directory name")
    elif st is not None and stat.S_ISREG(st.st_mode):
        if kind == "dir":
            raise OutputError("the output path is a file; a file is never replaced by a (SavedModel) directory",
                              file=path, hint="give a new directory name")
    elif st is not None:
        raise OutputError("the output path exists and is not a regular file; it is never replaced", file=path)
    parent = real.parent if str(real.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"output directory {parent} does not exist", file=path,
                          hint=f"create it first (mkdir -p {parent})")
    if not parent.is_dir():
        raise OutputError(f"{parent} is not a directory", file=path)
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write here: output directory {parent} is not writable", file=path,
                          hint="choose a writable output directory")
    return Target(path, kind, real, False, what)


def check_outputs(outputs, inputs=()):
    """Check outputs ``[(path, kind, what), ...]`` (``kind`` ``file`` or ``dir``; ``path`` None is
    skipped) against each other and against ``inputs``. Returns the :class:`Target` list."""
    ins = [(i, _identity(i)) for i in inputs if i is not None]
    targets = []
    for path, kind, what in outputs:
        if path is None:
            continue
        _refuse_input(path, kind, what, ins)
        t = _check_one(path, kind, what)
        for o in targets:
            if _same(t.key, o.key):
                raise OutputError(f"{_label(what)} and {_label(o.what)} ({o.path}) are the same file",
                                  file=path, hint="give each output its own name")
            if (o.kind == "dir" and _inside(t.key[0], o.key[0])) or (t.kind == "dir" and _inside(o.key[0], t.key[0])):
                raise OutputError(f"{_label(what)} and {_label(o.what)} ({o.path}) are inside one another",
                                  file=path, hint="give each output its own place")
        targets.append(t)
    return targets


def _refuse_input(path, kind, what, ins):
    p = Path(path)
    key = _identity(p)
    for i, ikey in ins:
        if _same(key, ikey) or (kind == "dir" and _inside(ikey[0], key[0])):
            how = "is" if _same(key, ikey) else "holds"
            raise OutputError(f"{_label(what)} {how} the input {i}; bnconvert never writes over its inputs",
                              file=path, hint="choose another output name")


def refuse_inputs(outputs, inputs):
    """Refuse any output path ``[(path, kind, what), ...]`` that is (or, for a directory, holds)
    one of ``inputs``: by resolved path or device + inode, so symlinks and hard links count."""
    ins = [(i, _identity(i)) for i in inputs if i is not None]
    for path, kind, what in outputs:
        if path is not None:
            _refuse_input(path, kind, what, ins)


def check_output_path(path, is_dir=False):
    """Refuse an output that cannot be written (before any work is done); returns its directory.

    ``is_dir``: the output is a directory (a SavedModel), so an existing SavedModel is fine.
    """
    t = _check_one(path, "dir" if is_dir else "file", None)
    return t.real.parent if str(t.real.parent) else Path(".")


def check_caffe_outputs(prototxt, caffemodel):
    """Refuse a swapped keras2caffe/upgrade pair: text into a *.caffemodel or weights into a *.prototxt."""
    for path, wrong, what in ((prototxt, _BINARY_EXT, "prototxt (text)"),
                              (caffemodel, _TEXT_EXT, "caffemodel (binary weights)")):
        if path is not None and Path(path).suffix.lower() in wrong:
            raise OutputError(f"this name is where the {what} would be written, but its extension says "
                              "otherwise", file=path, hint="give the outputs in the order NET.prototxt "
                                                          "WEIGHTS.caffemodel")


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2


def _exchange(a, b):
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd = -100
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


_NAME_KEPT = 100  # of the output's name in its temporaries' names, so a 255-byte name still gets one


def _temp_prefix(real):
    """Temporaries are ``.NAME.PID.XXXXXXXX...``: unique per process, and traceable to their writer."""
    return f".{real.name[:_NAME_KEPT]}.{os.getpid()}."


def remove_orphaned_temporaries(path):
    """Remove the temporaries for output ``path`` left by writer processes that no longer exist
    (a batch worker killed mid-write). Temporaries of live processes are left alone."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    try:
        names = os.listdir(parent)
    except OSError:
        return
    head = f".{p.name[:_NAME_KEPT]}."
    for n in names:
        pid = n[len(head):].split(".", 1)[0]
        if not (n.startswith(head) and pid.isdigit()) or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # still running
        except ProcessLookupError:
            pass
        except OSError:
            continue
        victim = parent / n
        if victim.is_dir() and not victim.is_symlink():
            shutil.rmtree(victim, ignore_errors=True)
        else:
            try:
                victim.unlink()
            except OSError:
                pass


class OutputUnit:
    """Write several outputs as one unit: stage each in a temporary, then :meth:`commit` them all.

    Used as a context manager: whatever was staged and not committed is removed on exit, so a
    failure anywhere (an exception, Ctrl-C) leaves every output path as it was. While the unit is
    open, :func:`write_files` (used by the Caffe writers) stages into it instead of writing.

    Args:
        outputs: ``[(path, kind, what), ...]`` checked by :func:`check_outputs`.
        inputs: the command's input paths; no output may be one of them.
    """

    def __init__(self, outputs=(), inputs=()):
        self.inputs = [i for i in inputs if i is not None]
        self.targets = check_outputs(outputs, self.inputs)
        self._staged = []  # (target, temporary path, holder directory or None)
        self._token = None

    def __enter__(self):
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc):
        _ACTIVE.reset(self._token)
        self.discard()
        return False

    def target(self, path, kind="file"):
        """The checked target for ``path``; an output not named up front is checked now."""
        for t in self.targets:
            if t.path is path or os.fspath(t.path) == os.fspath(path):
                return t
        new = check_outputs([(t.path, t.kind, t.what) for t in self.targets] + [(path, kind, None)],
                            self.inputs)[-1]
        self.targets.append(new)
        return new

    def _temp_file(self, t, suffix):
        parent = None if t.stream else t.real.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(t.real), suffix=suffix, dir=parent)
        except OSError as e:
            raise OutputError(f"cannot write here: {e.strerror}", file=t.path,
                              hint="choose a writable output directory") from None
        return fd, tmp

    def write_bytes(self, path, data):
        """Stage ``data`` (bytes, or an iterable of byte chunks, streamed) for ``path``."""
        t = self.target(path)
        fd, tmp = self._temp_file(t, ".tmp")
        self._staged.append((t, tmp, None))
        try:
            with os.fdopen(fd, "wb") as f:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    f.write(data)
                else:
                    for chunk in data:
                        f.write(chunk)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())
        except OSError as e:
            raise OutputError(f"cannot write: {e.strerror or e}", file=path) from None

    def write_with(self, path, writer, kind="file", suffix=".tmp"):
        """Stage the output ``path`` made by ``writer(temporary_path)`` (a file, or a directory for
        ``kind="dir"``); ``suffix`` is the temporary file's ending (e.g. ``.keras``)."""
        t = self.target(path, kind)
        if t.kind == "dir":
            try:
                holder = tempfile.mkdtemp(prefix=_temp_prefix(t.real), suffix=".tmp", dir=t.real.parent)
            except OSError as e:
                raise OutputError(f"cannot write here: {e.strerror}", file=path) from None
            tmp = os.path.join(holder, t.real.name or "out")
            self._staged.append((t, tmp, holder))
        else:
            fd, tmp = self._temp_file(t, suffix)
            os.close(fd)
            self._staged.append((t, tmp, None))
        try:
            writer(tmp)
            if t.kind == "dir":
                os.chmod(tmp, 0o777 & ~_umask())
            else:
                os.chmod(tmp, 0o666 & ~_umask())
                with open(tmp, "rb+") as f:
                    os.fsync(f.fileno())
        except OSError as e:
            raise OutputError(f"cannot write: {e.strerror or e}", file=path) from None

    def commit(self):
        """Put every staged output in place: streams first (written into), then the renames."""
        staged = sorted(self._staged, key=lambda s: not s[0].stream)
        try:
            for t, tmp, holder in staged:
                if t.stream:
                    self._pour(t, tmp)
                elif t.kind == "dir":
                    self._place_dir(t, tmp)
                else:
                    self._place_file(t, tmp)
        except OSError as e:
            raise OutputError(f"cannot write: {e.strerror or e}", file=t.path) from None
        finally:
            self.discard()

    @staticmethod
    def _pour(t, tmp):
        fd = os.open(t.real, os.O_WRONLY)  # never O_CREAT: a device or FIFO is written into, not made
        try:
            with open(tmp, "rb") as src, os.fdopen(fd, "wb", closefd=False) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        finally:
            os.close(fd)

    @staticmethod
    def _place_file(t, tmp):
        try:
            st = os.lstat(t.real)
        except FileNotFoundError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise OutputError("the output path is no longer a regular file; it is not replaced", file=t.path)
        os.replace(tmp, t.real)
        _fsync_dir(t.real.parent if str(t.real.parent) else ".")

    @staticmethod
    def _place_dir(t, tmp):
        for _ in range(3):  # another writer may create or replace the directory meanwhile
            if os.path.isdir(t.real) and not os.path.islink(t.real):
                if _exchange(tmp, t.real):
                    return  # the old directory now sits at tmp, inside the holder that discard removes
                old = tmp + ".old"
                try:
                    os.rename(t.real, old)
                except FileNotFoundError:
                    continue
                try:
                    os.rename(tmp, t.real)
                except OSError:
                    os.rename(old, t.real)
                    raise
                return
            if os.path.lexists(t.real):
                raise OutputError("the output path is no longer a directory; it is not replaced", file=t.path)
            try:
                os.rename(tmp, t.real)
                return
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
        raise OutputError("another process keeps replacing this directory", file=t.path)

    def discard(self):
        """Remove every staged temporary that is still there."""
        for t, tmp, holder in self._staged:
            try:
                if holder is not None:
                    shutil.rmtree(holder, ignore_errors=True)
                elif os.path.lexists(tmp):
                    os.unlink(tmp)
            except OSError:
                pass
        self._staged = []


def write_files(items, inputs=()):
    """Write ``[(path, data), ...]`` (bytes or iterables of byte chunks) as one unit. Inside an
    open :class:`OutputUnit`, the files are staged into it and written when it commits."""
    unit = _ACTIVE.get()
    if unit is not None:
        for path, data in items:
            unit.write_bytes(path, data)
        return
    with OutputUnit([(p, "file", None) for p, _ in items], inputs) as u:
        for path, data in items:
            u.write_bytes(path, data)
        u.commit()


def atomic_write(path, data):
    """Write bytes (or an iterable of byte chunks) to ``path`` through a temporary in the same
    directory, then rename (a device or FIFO is written into). After any failure the temporary
    is removed and an existing ``path`` is left exactly as it was. The new file gets the usual
    permissions (0666 minus the umask)."""
    write_files([(path, data)])


__all__ = ["OutputUnit", "Target", "atomic_write", "check_caffe_outputs", "check_output_path", "check_outputs",
           "model_format", "refuse_inputs", "remove_orphaned_temporaries", "write_files", "MODEL_EXTENSIONS", "FORMATS"]
