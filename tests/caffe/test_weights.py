"""bnconvert.caffe.weights: a caffemodel that does not fit the net is reported, never silently used."""
from __future__ import annotations

import pytest

from bnconvert.caffe import load_net
from bnconvert.errors import ShapeError, WeightMismatchError

from ._nets import TINY, add_layer, edit_caffemodel, tiny_with_weights, write


def _edit(tmp_path, fn):
    proto, model = tiny_with_weights(tmp_path)
    return proto, edit_caffemodel(model, tmp_path / "edited.caffemodel", fn)


def _remove(net, name):
    keep = [lp for lp in net.layer if lp.name != name]
    del net.layer[:]
    net.layer.extend(keep)


def test_caffemodel_from_another_net_names_do_not_match(tmp_path):
    proto, model = tiny_with_weights(tmp_path)
    other = write(tmp_path, TINY.replace('"conv1"', '"convA"').replace('"bn1"', '"bnA"').replace('"sc1"', '"scA"')
                  .replace('"fc"', '"fcA"'), "other.prototxt")
    with pytest.raises(WeightMismatchError) as ei:
        load_net(other, model)
    msg = str(ei.value)
    assert ei.value.file == model and "no layer name matches" in msg
    assert "convA (type Convolution)" in msg and "named conv1, bn1, sc1, fc" in msg
    assert "belongs to another net" in msg


def test_caffemodel_from_another_net_shapes_do_not_match(tmp_path):
    proto, model = tiny_with_weights(tmp_path)
    other = write(tmp_path, TINY.replace("num_output: 4", "num_output: 6"), "other.prototxt")
    with pytest.raises(WeightMismatchError) as ei:
        load_net(other, model)
    e = ei.value
    assert (e.layer, e.layer_type, e.file) == ("conv1", "Convolution", model)
    assert "(4, 3, 3, 3) in the caffemodel but the prototxt needs (6, 3, 3, 3)" in str(e)


def test_layers_missing_from_the_weights(tmp_path):
    proto, model = _edit(tmp_path, lambda n: (_remove(n, "fc"), _remove(n, "sc1")))
    with pytest.raises(WeightMismatchError) as ei:
        load_net(proto, model)
    assert "2 layer(s): sc1 (type Scale), fc (type InnerProduct)" in str(ei.value)
    net = load_net(proto, model, allow_missing_weights=True)
    assert any("'fc' (InnerProduct) has no weights" in w for w in net.warnings)


def test_many_missing_layers_are_listed_briefly(tmp_path):
    layers = "".join(f'layer {{ name: "r{i}" type: "Scale" bottom: "data" top: "s{i}" }}\n' for i in range(12))
    proto = write(tmp_path, TINY + layers, "big.prototxt")
    _, model = tiny_with_weights(tmp_path)
    with pytest.raises(WeightMismatchError, match=r"12 layer\(s\): r0 \(type Scale\).* and 4 more"):
        load_net(proto, model)


def test_extra_layers_in_the_weights_are_reported(tmp_path):
    proto, model = _edit(tmp_path, lambda n: add_layer(n, "ghost", "Convolution", (2, 3, 1, 1)))
    net = load_net(proto, model)
    assert net.unused_weights == [("ghost", "Convolution", "no layer of this name in the prototxt")]
    assert any("'ghost' (Convolution, 1 blobs) is not converted" in w for w in net.warnings)


def test_weights_of_a_layer_outside_the_phase_are_reported(tmp_path):
    text = TINY + 'layer { name: "aux" type: "InnerProduct" bottom: "fc" top: "aux" include { phase: TRAIN } ' \
                  'inner_product_param { num_output: 2 } }\n'
    proto = write(tmp_path, text, "phase.prototxt")
    _, model = _edit(tmp_path, lambda n: add_layer(n, "aux", "InnerProduct", (2, 5), (2,)))
    net = load_net(proto, model)
    assert net.unused_weights == [("aux", "InnerProduct", "layer is not part of the TEST inference graph")]


def test_layer_with_an_extra_blob_is_refused(tmp_path):
    def extra(n):
        from bnconvert.caffe.io import array_to_blob
        import numpy as np

        lp = next(lp for lp in n.layer if lp.name == "conv1")
        array_to_blob(np.zeros(4, np.float32), lp.blobs.add())

    proto, model = _edit(tmp_path, extra)
    with pytest.raises(WeightMismatchError) as ei:
        load_net(proto, model)
    e = ei.value
    assert e.layer == "conv1" and "3 blob(s) for this layer" in str(e) and "defines 2" in str(e)


def test_blob_data_shorter_than_declared(tmp_path):
    def cut(n):
        lp = next(lp for lp in n.layer if lp.name == "fc")
        del lp.blobs[0].data[-3:]

    proto, model = _edit(tmp_path, cut)
    with pytest.raises(ShapeError) as ei:
        load_net(proto, model)
    assert ei.value.layer == "fc" and "holds 317 values" in str(ei.value) and ei.value.file == model


def test_absurd_blob_of_a_layer_without_a_shape_rule(tmp_path):
    layers = TINY + 'layer { name: "py" type: "Python" bottom: "fc" top: "py" }\n'
    proto = write(tmp_path, layers, "py.prototxt")

    def huge(n):
        lp = add_layer(n, "py", "Python")
        lp.blobs.add().shape.dim.extend([10 ** 6, 10 ** 6])

    _, model = _edit(tmp_path, huge)
    with pytest.raises(ShapeError, match="over the limit") as ei:
        load_net(proto, model)
    assert (ei.value.layer, ei.value.layer_type) == ("py", "Python")


def test_type_mismatch_is_a_warning(tmp_path):
    def retype(n):
        next(lp for lp in n.layer if lp.name == "sc1").type = "Bias"

    proto, model = _edit(tmp_path, retype)
    net = load_net(proto, model)
    assert any("'sc1' is Scale in the prototxt but Bias in the caffemodel" in w for w in net.warnings)


# --- values that make Caffe's own output NaN: converted, with a warning (issue 12 §6) -----------


def _set_blob(name, i, fn):
    import numpy as np

    from bnconvert.caffe.io import array_to_blob, blob_to_array

    def edit(net):
        lp = next(lp for lp in net.layer if lp.name == name)
        arr = fn(blob_to_array(lp.blobs[i]).copy())
        lp.blobs[i].Clear()
        array_to_blob(np.asarray(arr, np.float32), lp.blobs[i])
    return edit


@pytest.mark.parametrize("layer, blob, fn, needle", [
    ("bn1", 1, lambda v: v * -1.0, "the variance has 0 NaN and 4 negative value(s) of 4"),
    ("bn1", 1, lambda v: v * float("nan"), "NaN"),
    ("bn1", 2, lambda s: s * -1.0, "the moving-average factor (blob 2) is -"),
    ("bn1", 2, lambda s: s * float("nan"), "factor (blob 2) is nan"),
    ("conv1", 0, lambda w: w.ravel().__setitem__(3, float("nan")) or w, "weight blob 0 holds 1 NaN or infinite"),
], ids=["negative_var", "nan_var", "negative_factor", "nan_factor", "nan_weight"])
def test_suspicious_values_warn_naming_the_layer(tmp_path, layer, blob, fn, needle):
    proto, model = _edit(tmp_path, _set_blob(layer, blob, fn))
    net = load_net(proto, model)
    hits = [w for w in net.warnings if needle in w]
    assert len(hits) == 1 and f"layer '{layer}'" in hits[0], net.warnings


def test_negative_or_nan_eps_warns(tmp_path):
    proto, model = tiny_with_weights(tmp_path)
    for eps in ("-0.001", "nan"):
        p = write(tmp_path, TINY.replace('top: "conv1" }', f'top: "conv1" batch_norm_param {{ eps: {eps} }} }}', 1),
                  "eps.prototxt")
        warnings = [w for w in load_net(p, model).warnings if "eps is" in w]
        assert len(warnings) == 1 and "layer 'bn1'" in warnings[0], load_net(p, model).warnings


def test_good_weights_do_not_warn(tmp_path):
    proto, model = tiny_with_weights(tmp_path)
    assert not [w for w in load_net(proto, model).warnings if "NaN" in w or "negative" in w]


def test_suspicious_values_are_in_the_conversion_report(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from helpers import ROOT

    proto, model = _edit(tmp_path, _set_blob("bn1", 1, lambda v: v * -1.0))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "bnconvert", "caffe2keras", proto, model, "-o", str(tmp_path / "m.keras"),
                        "--report", str(tmp_path / "r.json")], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    warnings = json.loads((tmp_path / "r.json").read_text())["warnings"]
    assert any("layer 'bn1' (BatchNorm): the variance has 0 NaN and 4 negative" in w for w in warnings), warnings
    assert "layer 'bn1'" in r.stdout + r.stderr


def test_statistics_that_overflow_float32_warn_without_numpy_noise(tmp_path):
    import warnings

    import numpy as np

    proto, model = _edit(tmp_path, _set_blob("bn1", 2, lambda s: np.full_like(s, 1e-39)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's own overflow warnings must not escape
        net = load_net(proto, model)
        from bnconvert.caffe.bnpair import batchnorm_stats

        mean, var, _ = batchnorm_stats(net.layer("bn1"))
    assert np.isinf(var).any()
    hits = [w for w in net.warnings if "overflow float32 once divided by the factor 1e-39" in w]
    assert len(hits) == 1 and "layer 'bn1'" in hits[0], net.warnings
