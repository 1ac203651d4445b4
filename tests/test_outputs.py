"""bnconvert.outputs: output paths checked before any work, never an input, written as one unit."""
import os
import stat
import threading

import pytest

from bnconvert.errors import OutputError
from bnconvert.outputs import (OutputUnit, atomic_write, check_caffe_outputs, check_outputs, model_format,
                               refuse_inputs, write_files)


def _tree(d):
    """{relative path: bytes or 'dir' or 'link -> target'} of everything under ``d``."""
    out = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, d)
            if os.path.islink(p):
                out[rel] = "link -> " + os.readlink(p)
            elif os.path.isdir(p):
                out[rel] = "dir"
            elif stat.S_ISREG(os.lstat(p).st_mode):
                with open(p, "rb") as f:
                    out[rel] = f.read()
            else:
                out[rel] = "special"
    return out


# --- model_format ----------------------------------------------------------------------


@pytest.mark.parametrize("path,fmt,want", [("m.keras", None, "keras"), ("m.h5", None, "h5"), ("M.HDF5", None, "h5"),
                                           ("sm/", None, "savedmodel"), ("sm", "savedmodel", "savedmodel"),
                                           ("m.keras", "keras", "keras"), ("m.hdf5", "h5", "h5")])
def test_model_format_accepts(path, fmt, want):
    assert model_format(path, fmt) == want


@pytest.mark.parametrize("path,fmt,msg", [
    ("m.onnx", None, "does not write the extension .onnx"),
    ("model", None, "without an extension"),
    ("m.keras", "h5", "--format h5 does not agree with the extension .keras"),
    ("m.h5", "keras", "--format keras does not agree with the extension .h5"),
    ("m.keras", "savedmodel", "SavedModel is a directory"),
    ("m.keras/", None, "SavedModel is a directory"),
    ("sm/", "keras", "writes a file"),
    ("m.pb", "keras", "does not write the extension .pb"),
])
def test_model_format_refuses(path, fmt, msg):
    with pytest.raises(OutputError, match=msg) as e:
        model_format(path, fmt)
    assert ".keras" in str(e.value) or "--format" in str(e.value)
    assert "\n" not in str(e.value)


# --- inputs are never outputs ----------------------------------------------------------


def test_an_input_by_name_symlink_hard_link_or_inside_a_directory_is_refused(tmp_path):
    inp = tmp_path / "w.caffemodel"
    inp.write_bytes(b"weights")
    (tmp_path / "sym.keras").symlink_to(inp)
    os.link(inp, tmp_path / "hard.keras")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "up.keras").symlink_to("../w.caffemodel")
    cases = [(inp, "file"), (tmp_path / "sym.keras", "file"), (tmp_path / "hard.keras", "file"),
             (tmp_path / "sub" / "up.keras", "file"), (tmp_path / "." / "w.caffemodel", "file"),
             (tmp_path, "dir")]
    before = _tree(tmp_path)
    for path, kind in cases:
        with pytest.raises(OutputError, match="never writes over its inputs") as e:
            check_outputs([(path, kind, "model")], inputs=[inp])
        assert e.value.file == str(path)
        with pytest.raises(OutputError):
            refuse_inputs([(path, kind, "model")], [inp])
    assert _tree(tmp_path) == before


def test_two_outputs_that_are_one_file_are_refused(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "b.json").symlink_to("a.json")
    for pair in [("x.out", "x.out"), ("x.out", "./x.out"), ("a.json", "b.json")]:
        with pytest.raises(OutputError, match="are the same file"):
            check_outputs([(tmp_path / pair[0], "file", "prototxt"), (tmp_path / pair[1], "file", "caffemodel")])
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    with pytest.raises(OutputError, match="inside one another"):
        check_outputs([(tmp_path / "sm", "dir", "model"), (tmp_path / "sm" / "r.json", "file", "report")])


def test_file_and_directory_never_replace_each_other(tmp_path):
    (tmp_path / "f").write_bytes(b"x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_bytes(b"y")
    (tmp_path / "sm").mkdir()
    (tmp_path / "sm" / "saved_model.pb").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    with pytest.raises(OutputError, match="is a file; a file is never replaced by a"):
        check_outputs([(tmp_path / "f", "dir", "model")])
    with pytest.raises(OutputError, match="is a directory; a directory is never replaced by a file"):
        check_outputs([(tmp_path / "d", "file", "model")])
    with pytest.raises(OutputError, match="not empty and is not a SavedModel"):
        check_outputs([(tmp_path / "d", "dir", "model")])
    assert len(check_outputs([(tmp_path / "sm", "dir", None), (tmp_path / "empty", "dir", None)])) == 2


def test_swapped_caffe_outputs_are_refused():
    with pytest.raises(OutputError, match="prototxt"):
        check_caffe_outputs("w.caffemodel", "n.prototxt")
    with pytest.raises(OutputError, match="caffemodel"):
        check_caffe_outputs("n.prototxt", "n.pbtxt")
    check_caffe_outputs("n.prototxt", "n.caffemodel")
    check_caffe_outputs("out.txt", None)


# --- writing as one unit ---------------------------------------------------------------


def test_unit_writes_everything_or_nothing(tmp_path):
    a, b = tmp_path / "a.prototxt", tmp_path / "b.caffemodel"
    a.write_bytes(b"old a")
    with pytest.raises(RuntimeError):
        with OutputUnit([(a, "file", "prototxt"), (b, "file", "caffemodel")]) as unit:
            unit.write_bytes(a, b"new a")
            unit.write_bytes(b, iter([b"new ", b"b"]))
            raise RuntimeError("the conversion failed after staging")
    assert _tree(tmp_path) == {"a.prototxt": b"old a"}
    with OutputUnit([(a, "file", "prototxt"), (b, "file", "caffemodel")]) as unit:
        unit.write_bytes(a, b"new a")
        unit.write_bytes(b, iter([b"new ", b"b"]))
        unit.commit()
    assert _tree(tmp_path) == {"a.prototxt": b"new a", "b.caffemodel": b"new b"}


def test_write_files_second_output_unwritable_leaves_nothing(tmp_path):
    (tmp_path / "ro").mkdir()
    with pytest.raises(OutputError, match="does not exist"):
        write_files([(tmp_path / "n.prototxt", b"net"), (tmp_path / "nodir" / "n.caffemodel", b"w")])
    with pytest.raises(TypeError):  # the second output's data cannot be produced
        write_files([(tmp_path / "n.prototxt", b"net"), (tmp_path / "n.caffemodel", ["not bytes"])])
    assert _tree(tmp_path) == {"ro": "dir"}


def test_symlink_output_is_written_through(tmp_path):
    (tmp_path / "real.json").write_text("old")
    (tmp_path / "latest.json").symlink_to("real.json")
    atomic_write(tmp_path / "latest.json", b"new")
    assert _tree(tmp_path) == {"real.json": b"new", "latest.json": "link -> real.json"}


def test_temporary_names_are_unique_and_removed(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    for _ in range(3):
        atomic_write(tmp_path / "n.prototxt", b"x")
    assert len(set(seen)) == 3 and all(".pending" not in s for s in seen)
    assert _tree(tmp_path) == {"n.prototxt": b"x"}


def test_savedmodel_directory_replaced_atomically_nothing_left(tmp_path):
    sm = tmp_path / "sm"

    def make(content):
        def writer(tmp):
            os.mkdir(tmp)
            with open(os.path.join(tmp, "saved_model.pb"), "w") as f:
                f.write(content)
        return writer

    for content in ("one", "two"):
        with OutputUnit([(sm, "dir", "model")]) as unit:
            unit.write_with(sm, make(content), kind="dir")
            unit.commit()
        assert _tree(tmp_path) == {"sm": "dir", "sm/saved_model.pb": content.encode()}
    with pytest.raises(RuntimeError):
        with OutputUnit([(sm, "dir", "model")]) as unit:
            unit.write_with(sm, make("three"), kind="dir")
            raise RuntimeError("boom")
    assert _tree(tmp_path) == {"sm": "dir", "sm/saved_model.pb": b"two"}


def test_fifo_output_is_written_into_not_replaced(tmp_path):
    fifo = tmp_path / "report.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    atomic_write(fifo, b"streamed report")
    reader.join(30)
    assert got == [b"streamed report"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and sorted(os.listdir(tmp_path)) == ["report.fifo"]
    with pytest.raises(OutputError, match="device or FIFO"):
        check_outputs([(fifo, "dir", "model")])


def test_character_device_output_is_written_into_not_replaced(tmp_path):
    dev = tmp_path / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod of a character device needs root")
    before = os.lstat(dev)
    atomic_write(dev, b"discarded")
    after = os.lstat(dev)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino
    assert sorted(os.listdir(tmp_path)) == ["null"]


def test_socket_or_other_special_file_is_never_replaced(tmp_path):
    import socket

    path = tmp_path / "s.sock"
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(path))
        with pytest.raises(OutputError, match="not a regular file"):
            atomic_write(path, b"x")
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
    finally:
        s.close()


def test_concurrent_writers_of_one_directory_and_one_file(tmp_path):
    """Eight writers race to replace one SavedModel directory and one file: every one succeeds,
    the result is one writer's whole output, and no temporary is left."""
    sm, f = tmp_path / "sm", tmp_path / "r.json"
    errors = []

    def writer(i):
        def make(tmp):
            os.mkdir(tmp)
            for name in ("saved_model.pb", "variables"):
                with open(os.path.join(tmp, name), "w") as fh:
                    fh.write(str(i))
        try:
            with OutputUnit([(sm, "dir", "model"), (f, "file", "report")]) as unit:
                unit.write_with(sm, make, kind="dir")
                unit.write_bytes(f, str(i).encode())
                unit.commit()
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    tree = _tree(tmp_path)
    assert sorted(tree) == ["r.json", "sm", "sm/saved_model.pb", "sm/variables"]
    assert tree["sm/saved_model.pb"] == tree["sm/variables"]


def test_orphaned_temporaries_of_dead_writers_are_removed(tmp_path):
    import subprocess
    import sys

    from bnconvert.outputs import remove_orphaned_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    out = tmp_path / "m.keras"
    (tmp_path / f".m.keras.{dead}.abcd1234.keras").write_bytes(b"partial")
    (tmp_path / f".m.keras.{dead}.efgh5678.tmp").mkdir()
    (tmp_path / f".m.keras.{os.getpid()}.live0000.keras").write_bytes(b"mine, in progress")
    (tmp_path / ".m.keras.notapid.keras").write_bytes(b"someone else's")
    remove_orphaned_temporaries(out)
    assert sorted(os.listdir(tmp_path)) == [f".m.keras.{os.getpid()}.live0000.keras", ".m.keras.notapid.keras"]


def test_pipe_given_as_dev_fd_is_written_into(tmp_path):
    """A shell's `--report >(jq .)` passes /dev/fd/N, a symlink to a pipe that has no path."""
    if not os.path.isdir("/dev/fd"):
        pytest.skip("no /dev/fd on this system")
    r, w = os.pipe()
    try:
        atomic_write(f"/dev/fd/{w}", b"through the pipe")
        os.close(w)
        w = None
        assert os.read(r, 100) == b"through the pipe"
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    fifo = tmp_path / "f.fifo"
    os.mkfifo(fifo)
    (tmp_path / "link.json").symlink_to("f.fifo")
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    atomic_write(tmp_path / "link.json", b"via the link")
    reader.join(30)
    assert got == [b"via the link"] and _tree(tmp_path) == {"f.fifo": "special", "link.json": "link -> f.fifo"}
