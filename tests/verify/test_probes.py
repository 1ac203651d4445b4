"""Which Keras tensor stands for each Caffe blob (bnconvert/verify/probes.py), and wrong models."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import need_shared


def _case(name, proto="deploy.prototxt"):
    d = need_shared(f"caffe-ref/{name}")
    return d / proto, d / "weights.caffemodel", d / "input.npz"


@pytest.mark.parametrize("reference", ["opencv", "caffe"])
def test_in_place_versions_of_a_saved_model_map_to_the_right_layers(tmp_path, reference, request):
    """bn_factor_zero: output blob 'conv' is written by Convolution 'conv', then BatchNorm 'bn1' in place.

    The Keras BatchNormalization carries the output's name 'conv' and the Conv2D is 'conv_1'; the
    reference's pre-BatchNorm 'conv' must be compared with the Conv2D, never with the BatchNorm.
    """
    from bnconvert.c2k import convert_caffe
    from bnconvert.verify import verify

    if reference == "caffe":
        from verify.test_references import _use_pycaffe

        _use_pycaffe(request)
    proto, weights, x = _case("bn_factor_zero")
    path = tmp_path / "m.keras"
    model = convert_caffe(str(proto), str(weights))[0]
    assert {layer.name for layer in model.layers} >= {"conv", "conv_1", "bn0"}
    model.save(path)
    r = verify(proto, weights, str(path), input=x, reference=reference)
    assert r.passed, r.table()
    rows = {row.version: row for row in r.compared}
    assert set(rows) >= {"conv", "conv#1"} and rows["conv"].layer == "conv" and rows["conv#1"].layer == "bn1"
    assert max(row.max_rel for row in rows.values()) < 1e-5


def test_every_caffe_ref_case_through_a_saved_model(tmp_path):
    from bnconvert.c2k import convert_caffe
    from bnconvert.verify import verify
    from verify.test_entry import CASES

    for name, proto in sorted(CASES.items()):
        p, w, x = _case(name, proto)
        path = tmp_path / f"{name}.keras"
        convert_caffe(str(p), str(w))[0].save(path)
        r = verify(p, w, str(path), input=x, reference="opencv")
        assert r.passed, f"{name}\n{r.table()}"
        assert len(r.compared) >= 3


def test_wrong_keras_model_is_one_line(tmp_path, capsys):
    from bnconvert.c2k import convert_caffe
    from bnconvert.cli import main

    p, w, x = _case("fc_flatten")
    other = tmp_path / "other.keras"
    bp, bw, _ = _case("bn_factor")
    convert_caffe(str(bp), str(bw))[0].save(other)
    rc = main(["verify", str(p), str(w), str(other), "--input", str(x), "--reference", "opencv"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert "does not fit the net" in err and "'data'" in err and "internal" not in err


def test_saved_model_directory_is_a_clear_message(tmp_path, capsys):
    from bnconvert.cli import main

    p, w, x = _case("bn_factor")
    sm = tmp_path / "model"
    sm.mkdir()
    (sm / "saved_model.pb").write_bytes(b"")
    rc = main(["verify", str(p), str(w), str(sm)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "SavedModel directory" in err and ".keras or .h5" in err and "does not exist" not in err


def test_infer_layout_of_flattened_nhwc(tmp_path):
    import keras

    from bnconvert import layout as lay
    from bnconvert.verify.probes import infer_layout

    x = keras.Input((3, 4, 5))
    f = keras.layers.Flatten()(x)
    assert infer_layout(x, (1, 5, 3, 4)) == lay.NHWC
    assert infer_layout(f, (1, 60)).kind == "flat_hwc"
    assert np.prod(f.shape[1:]) == 60
