"""bnconvert.k2c.modelfile: zip bombs refused from the zip directory; weights that do not fit a
layer reported in one line naming the layer, the weight and both shapes (issue 14)."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import h5py
import keras
import numpy as np
import pytest

from helpers import ROOT

from bnconvert.errors import ParseError
from bnconvert.k2c import load_keras_model
from bnconvert.k2c import modelfile


def _dense(tmp_path):
    x = keras.Input((4,), name="x")
    m = keras.Model(x, keras.layers.Dense(3, name="d")(x))
    p = tmp_path / "good.keras"
    m.save(p)
    return p


def _rewrite(src, dst, member, fn):
    """Copy the zip ``src`` to ``dst`` with ``member``'s bytes replaced by ``fn(bytes)``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            zout.writestr(info, fn(data) if info.filename == member else data)
    return dst


def _bomb(src, dst, size):
    """``src`` with its config.json padded by ``size`` bytes of spaces, deflated (small on disk)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename != "config.json":
                zout.writestr(info.filename, zin.read(info.filename))
                continue
            with zout.open("config.json", "w", force_zip64=True) as f:
                f.write(zin.read("config.json"))
                chunk = b" " * (8 << 20)
                for _ in range(size // len(chunk)):
                    f.write(chunk)
    return dst


def test_config_json_bomb_refused_before_loading(tmp_path):
    p = _bomb(_dense(tmp_path), tmp_path / "bomb.keras", 264 << 20)  # 264 MiB of JSON whitespace
    assert p.stat().st_size < 2 << 20  # small on disk
    with pytest.raises(ParseError, match=r"member 'config.json' declares 27\d,\d{3},\d{3} bytes uncompressed, "
                                         r"over bnconvert's limit of 268,435,456") as e:
        load_keras_model(p)
    assert str(p) in str(e.value)


def test_high_ratio_member_refused(tmp_path):
    p = _bomb(_dense(tmp_path), tmp_path / "ratio.keras", 16 << 20)  # 16 MiB under the size limit, ~1000x
    with pytest.raises(ParseError, match=r"member 'config.json' inflates .* \(over 200x: a zip bomb\?\)"):
        load_keras_model(p)


def test_ordinary_model_passes_the_checks_and_counts_its_layers(tmp_path):
    p = _dense(tmp_path)
    assert modelfile.check_keras_archive(p) >= 2
    assert [type(L).__name__ for L in load_keras_model(p).layers] == ["InputLayer", "Dense"]


def _edit_weights(tmp_path, name, fn):
    src = _dense(tmp_path)

    def edit(data):
        h5 = tmp_path / "w.h5"
        h5.write_bytes(data)
        with h5py.File(h5, "a") as f:
            fn(f["layers/dense/vars"])
        return h5.read_bytes()

    return _rewrite(src, tmp_path / name, "model.weights.h5", edit)


def _wrong_shape(g):
    del g["0"]
    g["0"] = np.zeros((5, 3), np.float32)


def _missing(g):
    del g["1"]


@pytest.mark.parametrize("fn, needle", [
    (_wrong_shape, "layer 'd' (type Dense): weight 'd/kernel' has shape (5, 3) in the file but the layer needs (4, 3)"),
    (_missing, "layer 'd' (type Dense): the layer needs 2 weight(s) ['kernel', 'bias'] but the file holds 1"),
], ids=["wrong_shape", "missing_variable"])
def test_weights_that_do_not_fit(tmp_path, fn, needle):
    p = _edit_weights(tmp_path, "bad.keras", fn)
    with pytest.raises(ParseError) as e:
        load_keras_model(p)
    assert needle in str(e.value) and "\n" not in str(e.value) and "built=True" not in str(e.value)
    if fn is _missing:
        return  # the command line once is enough (a subprocess imports TensorFlow: ~10 s)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "bnconvert", "keras2caffe", str(p), "-o", str(tmp_path / "o.prototxt"),
                        str(tmp_path / "o.caffemodel")], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and needle in r.stderr
    assert "UserWarning" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not list(tmp_path.glob("o.*"))


def test_other_keras_messages_are_left_alone():
    assert modelfile.weights_mismatch("Could not locate class 'Foo'", "m.keras") is None


def test_h5_layer_count_and_non_zip_keras(tmp_path):
    x = keras.Input((4,), name="x")
    m = keras.Model(x, keras.layers.Dense(3, name="d")(keras.layers.Dense(5, name="c")(x)))
    m.save(tmp_path / "m.h5")
    assert modelfile.h5_layer_count(tmp_path / "m.h5") >= 3
    assert modelfile.h5_layer_count(tmp_path / "nope.h5") == 0
    (tmp_path / "text.keras").write_text("not a zip")
    assert modelfile.check_keras_archive(tmp_path / "text.keras") == 0
    with pytest.raises(ParseError, match="cannot load the Keras model"):
        load_keras_model(tmp_path / "text.keras")
