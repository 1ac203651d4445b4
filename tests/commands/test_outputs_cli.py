"""Outputs never destroy or alter inputs, and are written as one unit: every data-loss case of
issues 12 and 14, run through the real CLI, with checksums of every file before and after."""
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading

import pytest

from helpers import ROOT

SAMPLE = ROOT / "sample_models" / "mini_resnet"


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "bnconvert", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def snapshot(d):
    """{relative path: sha256, 'dir', 'link -> target' or the file type} of everything under ``d``."""
    out = {}
    for root, dirs, files in os.walk(d):
        for n in dirs + files:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, d)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = "link -> " + os.readlink(p)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = "dir"
            elif stat.S_ISREG(st.st_mode):
                out[rel] = hashlib.sha256(open(p, "rb").read()).hexdigest()
            else:
                out[rel] = f"special {stat.S_IFMT(st.st_mode):o} {st.st_ino}"
    return out


def refused(r, name, *words):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr
    assert name in lines[0] and all(w in lines[0] for w in words), lines[0]


@pytest.fixture
def work(tmp_path):
    shutil.copy(SAMPLE / "deploy.prototxt", tmp_path / "deploy.prototxt")
    shutil.copy(SAMPLE / "weights.caffemodel", tmp_path / "weights.caffemodel")
    return tmp_path


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("k")
    r = cli("caffe2keras", SAMPLE / "deploy.prototxt", SAMPLE / "weights.caffemodel", "-o", d / "m.keras", "-q",
            cwd=d)
    assert r.returncode == 0, r.stderr
    return d / "m.keras"


C2K = ("caffe2keras", "deploy.prototxt", "weights.caffemodel")


@pytest.mark.parametrize("extra,name,words", [
    (["-o", "weights.caffemodel"], "weights.caffemodel", ["never writes over its inputs"]),
    (["-o", "weights.caffemodel", "--format", "savedmodel"], "weights.caffemodel", ["input"]),
    (["-o", "deploy.prototxt"], "deploy.prototxt", ["input"]),
    (["-o", "./"], "./", ["holds the input"]),
    (["-o", "sym.keras"], "sym.keras", ["input weights.caffemodel"]),
    (["-o", "hard.keras"], "hard.keras", ["input weights.caffemodel"]),
    (["-o", "m.keras", "--report", "deploy.prototxt"], "deploy.prototxt", ["report", "input"]),
    (["-o", "m.keras", "--report", "m.keras"], "m.keras", ["same file"]),
    (["-o", "m.onnx"], "m.onnx", [".onnx", ".keras", ".h5", "SavedModel"]),
    (["-o", "model"], "model", ["without an extension", "--format savedmodel"]),
    (["-o", "m.keras", "--format", "h5"], "m.keras", ["--format h5", ".keras"]),
    (["-o", "m.h5", "--format", "keras"], "m.h5", ["--format keras", ".h5"]),
    (["-o", "afile/"], "afile/", ["a file is never replaced by a"]),
    (["-o", "adir.keras"], "adir.keras", ["a directory is never replaced by a file"]),
    (["-o", "m.keras", "--report", "nodir/r.json"], "nodir/r.json", ["does not exist"]),
])
def test_caffe2keras_refuses_before_any_work_and_touches_nothing(work, extra, name, words):
    (work / "sym.keras").symlink_to("weights.caffemodel")
    os.link(work / "weights.caffemodel", work / "hard.keras")
    (work / "afile").write_bytes(b"precious")
    (work / "adir.keras").mkdir()
    (work / "adir.keras" / "keep").write_bytes(b"precious")
    before = snapshot(work)
    r = cli(*C2K, *extra, cwd=work)
    refused(r, name, *words)
    assert snapshot(work) == before


def test_caffe2keras_savedmodel_only_when_asked_and_replaced_cleanly(work):
    before = snapshot(work)
    for args in (["-o", "sm/"], ["-o", "sm", "--format", "savedmodel"]):  # the second replaces the first
        r = cli(*C2K, *args, "-q", cwd=work)
        assert r.returncode == 0, r.stderr
        assert sorted(os.listdir(work)) == ["deploy.prototxt", "sm", "weights.caffemodel"]  # no .old, no temp
        assert (work / "sm" / "saved_model.pb").is_file()
    after = snapshot(work)
    assert {k: v for k, v in after.items() if not k.startswith("sm")} == before


def test_report_into_character_device_and_fifo(work):
    dev = work / "null"
    try:
        os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod of a character device needs root")
    fifo = work / "r.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    ino = os.lstat(dev).st_ino
    r = cli(*C2K, "-o", "a.keras", "--report", "r.fifo", "-q", cwd=work)
    reader.join(60)
    assert r.returncode == 0, r.stderr
    assert json.loads(got[0])["outputs"] == {"prob": [1, 10]}
    r = cli(*C2K, "-o", "b.keras", "--report", "null", "-q", cwd=work)
    assert r.returncode == 0, r.stderr
    st = os.lstat(dev)
    assert stat.S_ISCHR(st.st_mode) and st.st_ino == ino and st.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sorted(os.listdir(work)) == ["a.keras", "b.keras", "deploy.prototxt", "null", "r.fifo",
                                        "weights.caffemodel"]


def test_failed_report_leaves_no_model(work, keras_model):
    """A report that cannot be written (a /dev/full device: ENOSPC on write, after the model is
    made) leaves no model and no Caffe files behind; a report path refused up front costs no work."""
    full = work / "full"
    try:
        os.mknod(full, stat.S_IFCHR | 0o666, os.makedev(1, 7))
    except PermissionError:
        pytest.skip("mknod of a character device needs root")
    shutil.copy(keras_model, work / "m.keras")
    (work / "rep").mkdir()
    (work / "rep" / "r.json").mkdir()
    before = snapshot(work)
    refused(cli(*C2K, "-o", "out.keras", "--report", "full", cwd=work), "full", "cannot write")
    refused(cli("keras2caffe", "m.keras", "-o", "n.prototxt", "n.caffemodel", "--report", "full", cwd=work),
            "full", "cannot write")
    refused(cli(*C2K, "-o", "out.keras", "--report", "rep/r.json", cwd=work), "rep/r.json", "directory")
    assert snapshot(work) == before


def test_keras2caffe_refusals(work, keras_model):
    shutil.copy(keras_model, work / "m.keras")
    before = snapshot(work)
    for args, name, words in [
        (["-o", "m.keras", "x.caffemodel"], "m.keras", ["input"]),
        (["-o", "n.prototxt", "m.keras"], "m.keras", ["input"]),
        (["-o", "same.out", "same.out"], "same.out", ["same file"]),
        (["-o", "n.prototxt", "n.caffemodel", "--report", "m.keras"], "m.keras", ["input"]),
        (["-o", "n.prototxt", "n.caffemodel", "--report", "n.prototxt"], "n.prototxt", ["same file"]),
        (["-o", "n.prototxt", "n.caffemodel", "--report", "nodir/r.json"], "nodir/r.json", ["does not exist"]),
        (["-o", "n.caffemodel", "n.prototxt"], "n.caffemodel", ["order"]),
    ]:
        refused(cli("keras2caffe", "m.keras", *args, cwd=work), name, *words)
        assert snapshot(work) == before


def test_keras2caffe_concurrent_writers(work, keras_model):
    shutil.copy(keras_model, work / "m.keras")
    procs = [subprocess.Popen([sys.executable, "-m", "bnconvert", "keras2caffe", "m.keras", "-o", "n.prototxt",
                               "n.caffemodel", "--report", "r.json", "-q"], cwd=work, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(p.wait(600), p.stderr.read()) for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    assert sorted(os.listdir(work)) == ["deploy.prototxt", "m.keras", "n.caffemodel", "n.prototxt", "r.json",
                                        "weights.caffemodel"]
    from bnconvert.caffe.graph import load_net

    net = load_net(work / "n.prototxt", work / "n.caffemodel")
    assert [net.caffe_name[b] for b in net.outputs] == ["prob"]


def test_upgrade_refusals_and_one_unit(work):
    before = snapshot(work)
    for args, name, words in [
        (["-o", "u.caffemodel", "deploy.prototxt", "weights.caffemodel"], "u.caffemodel", ["prototxt"]),
        (["deploy.prototxt", "weights.caffemodel", "-o", "u.out", "./u.out"], "u.out", ["same file"]),
        (["deploy.prototxt", "-o", "deploy.prototxt"], "deploy.prototxt", ["input"]),
        (["deploy.prototxt", "weights.caffemodel", "-o", "u.prototxt", "weights.caffemodel"], "weights.caffemodel",
         ["input"]),
        (["deploy.prototxt", "weights.caffemodel", "-o", "u.prototxt", "nodir/u.caffemodel"], "nodir/u.caffemodel",
         ["does not exist"]),
    ]:
        refused(cli("upgrade", *args, cwd=work), name, *words)
        assert snapshot(work) == before
    (work / "u.caffemodel").mkdir()  # the default weights name is taken by a directory: neither file written
    refused(cli("upgrade", "deploy.prototxt", "weights.caffemodel", "-o", "u.prototxt", cwd=work), "u.caffemodel",
            "directory")
    assert snapshot(work) == {**before, "u.caffemodel": "dir"}


def test_upgrade_output_first_parses(work):
    r = cli("upgrade", "-o", "u.prototxt", "deploy.prototxt", cwd=work)
    assert r.returncode == 0, r.stderr
    r2 = cli("upgrade", "-o", "v.prototxt", "deploy.prototxt", "weights.caffemodel", cwd=work)
    assert r2.returncode == 0, r2.stderr
    r3 = cli("upgrade", "-o", "w.prototxt", "w.caffemodel", "deploy.prototxt", "weights.caffemodel", cwd=work)
    assert r3.returncode == 0, r3.stderr
    assert (work / "u.prototxt").read_bytes() == (work / "v.prototxt").read_bytes() == (work / "w.prototxt").read_bytes()
    assert (work / "v.caffemodel").read_bytes() == (work / "w.caffemodel").read_bytes()
    assert sorted(os.listdir(work)) == ["deploy.prototxt", "u.prototxt", "v.caffemodel", "v.prototxt",
                                        "w.caffemodel", "w.prototxt", "weights.caffemodel"]


def test_keras_to_caffe_api_never_writes_over_its_input(work, keras_model):
    import bnconvert
    from bnconvert.errors import OutputError

    shutil.copy(keras_model, work / "m.keras")
    before = snapshot(work)
    for p, c in [(work / "m.keras", work / "x.caffemodel"), (work / "n.prototxt", work / "m.keras"),
                 (work / "same", work / "same")]:
        with pytest.raises(OutputError):
            bnconvert.keras_to_caffe(str(work / "m.keras"), p, c)
        assert snapshot(work) == before
