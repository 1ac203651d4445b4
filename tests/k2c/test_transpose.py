"""keras2caffe's axis moves (bnconvert/k2c/transpose.py): BVLC Caffe has no Permute, so the default
target gets Reshape/Slice/Concat, run in real BVLC Caffe; --target opencv keeps Permute; an order
that is no transpose of two axis groups is refused, naming the Keras layer."""
import keras
import numpy as np

from bnconvert import layout as lay
from bnconvert.caffe.io import write_caffemodel, write_prototxt
from bnconvert.cli import main
from bnconvert.k2c import convert
from bnconvert.k2c.transpose import rotation_split

from helpers import assert_close


def test_rotation_split():
    assert rotation_split((0, 2, 3, 1)) == 1 and rotation_split((0, 3, 1, 2)) == 2
    assert rotation_split((0, 2, 1)) == 1
    assert rotation_split((0, 1, 3, 2)) is None and rotation_split((0, 1, 2, 3)) is None


def _model():
    """Every place the engine moves axes: a flattened NHWC tensor as an output (un-flattened to
    Caffe's order), SSD-style heads flattened and concatenated, a Keras Permute, a Reshape."""
    x = keras.Input((5, 6, 3), name="data")
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv")(x)
    z = keras.layers.Conv2D(7, 1, name="conv2")(x)
    flat = keras.layers.Flatten(name="flat")(y)
    heads = keras.layers.Concatenate(axis=1, name="heads")(
        [keras.layers.Flatten(name="f1")(y), keras.layers.Flatten(name="f2")(z)])
    perm = keras.layers.Permute((3, 1, 2), name="perm")(z)
    resh = keras.layers.Reshape((30, 4), name="resh")(y)
    dense = keras.layers.Dense(3, name="fc")(keras.layers.Flatten(name="f3")(y))
    return keras.Model(x, [flat, heads, perm, resh, dense], name="moves")


def _keras_caffe_outputs(model, x):
    outs = model(lay.to_keras_array(x, lay.NHWC), training=False)
    return [lay.to_caffe_array(np.asarray(o), lay.default_layout(np.asarray(o).ndim)) for o in outs]


def test_default_target_runs_in_real_caffe_without_permute(pycaffe, tmp_path):
    model = _model()
    deploy, weights, report = convert(model, input_shape=(2, 3, 5, 6))
    types = {L.type for L in deploy.layer}
    assert "Permute" not in types and {"Slice", "Concat"} <= types
    assert types <= set(pycaffe.layer_types), types - set(pycaffe.layer_types)
    write_prototxt(deploy, tmp_path / "net.prototxt")
    write_caffemodel(weights, tmp_path / "net.caffemodel")
    x = np.random.default_rng(0).standard_normal((2, 3, 5, 6)).astype(np.float32)
    blobs = pycaffe.forward(tmp_path / "net.prototxt", tmp_path / "net.caffemodel", {"data": x}, tmp_path)
    names = list(report["outputs"])
    assert names == ["flat", "heads", "perm", "resh", "fc"]
    for name, want in zip(names, _keras_caffe_outputs(model, x)):
        assert np.abs(want).max() > 0
        assert_close(blobs[name], want, name)


def test_opencv_target_keeps_permute(tmp_path):
    deploy, _, _ = convert(_model(), target="opencv")
    types = [L.type for L in deploy.layer]
    assert "Permute" in types and "Slice" not in types


def test_an_order_bvlc_cannot_do_is_refused_naming_the_layer(tmp_path, capsys):
    x = keras.Input((4, 5, 3), name="data")
    y = keras.layers.Conv2D(2, 1, name="conv")(x)
    y = keras.layers.Permute((2, 1, 3), name="swap_hw")(y)
    path = tmp_path / "m.keras"
    keras.Model(x, keras.layers.Conv2D(2, 1, name="after")(y)).save(path)
    proto, weights = tmp_path / "n.prototxt", tmp_path / "n.caffemodel"
    assert main(["keras2caffe", str(path), "-o", str(proto), str(weights)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "swap_hw" in err and "BVLC Caffe has no Permute layer" in err and "--target opencv" in err
    assert not proto.exists() and not weights.exists()
    assert main(["keras2caffe", str(path), "-o", str(proto), str(weights), "--target", "opencv", "-q"]) == 0
