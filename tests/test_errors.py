"""The exception hierarchy (bnconvert.errors) and the API's refusals of unsafe or broken input."""
from __future__ import annotations

import pytest

import bnconvert
from bnconvert import errors as E


def test_hierarchy():
    for cls in (E.ParseError, E.GraphError, E.ShapeError, E.WeightMismatchError, E.UnsupportedLayerError,
                E.OutputError, E.VerificationError, E.UnsafeModelError):
        assert issubclass(cls, E.ConversionError)
    assert issubclass(E.UnsafeModelError, E.ParseError)
    for name in ("ConversionError", "GraphError", "OutputError", "ParseError", "ShapeError",
                 "UnsupportedLayerError", "VerificationError", "WeightMismatchError"):
        assert getattr(bnconvert, name) is getattr(E, name)


def test_message_names_file_layer_type_problem_and_fix():
    e = E.ShapeError("output would be 0x0.", file="net.prototxt", layer="pool5", layer_type="Pooling",
                     hint="use a larger input")
    assert str(e) == "net.prototxt: layer 'pool5' (type Pooling): output would be 0x0. Fix: use a larger input"
    assert (e.file, e.layer, e.layer_type, e.hint) == ("net.prototxt", "pool5", "Pooling", "use a larger input")
    assert str(E.ConversionError("plain")) == "plain"


def test_message_is_always_one_line():
    e = E.ParseError("first line\nsecond line", file="m.h5", line=3, column=9)
    assert "\n" not in str(e) and (e.line, e.column) == (3, 9)


def test_unsupported_layers_are_listed_at_once():
    e = E.UnsupportedLayerError([("a", "Python"), ("b", "ROIPooling")], file="n.prototxt")
    assert str(e).startswith("n.prototxt: unsupported layers a (type Python), b (type ROIPooling)")
    assert e.layers == [("a", "Python"), ("b", "ROIPooling")] and e.direction == "caffe2keras"


# --- the API refuses broken input with a ConversionError and writes nothing ------------------


def test_load_net_and_convert_caffe_raise_conversion_errors(tmp_path):
    from bnconvert.c2k import convert_caffe

    proto = tmp_path / "n.prototxt"
    proto.write_text('layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 1 dim: 3 } } }\n'
                     'layer { name: "r" type: "ReLU" bottom: "missing" top: "r" }\n')
    model = tmp_path / "n.caffemodel"
    model.write_bytes(b"\x0a\x03abc\xa2\x06")  # truncated
    with pytest.raises(E.GraphError, match="'missing' is not produced"):
        bnconvert.load_net(str(proto))
    with pytest.raises(E.GraphError) as ei:
        convert_caffe(str(proto), str(model))
    assert (ei.value.layer, ei.value.layer_type) == ("r", "ReLU")
    proto.write_text(proto.read_text().replace('"missing"', '"d"'))
    with pytest.raises(E.ParseError, match="truncated or corrupted"):
        convert_caffe(str(proto), str(model))


def test_every_caffemodel_blob_is_converted_or_named_in_a_warning(tmp_path):
    """An extra caffemodel layer is reported (unused_weights + a warning), never silently dropped."""
    from bnconvert.c2k import convert_caffe

    from caffe._nets import add_layer, edit_caffemodel, tiny_with_weights

    proto, model = tiny_with_weights(tmp_path)
    extra = edit_caffemodel(model, tmp_path / "extra.caffemodel",
                            lambda n: add_layer(n, "ghost", "InnerProduct", (3, 7), (3,)))
    keras_model, report = convert_caffe(proto, extra)
    assert report["unused_weights"] == [["ghost", "InnerProduct", "no layer of this name in the prototxt"]]
    assert any("'ghost'" in w and "2 blobs" in w for w in report["warnings"])
    with_blobs = {lp.name for lp in bnconvert.caffe.read_caffemodel(extra).layer if len(lp.blobs)}
    net = bnconvert.load_net(proto, extra)
    attached = {L.name for L in net.layers if L.blobs}
    unused = {u[0] for u in report["unused_weights"]}
    assert with_blobs == attached | unused and attached.isdisjoint(unused)
    # the attached blobs all reached the Keras model: conv + fc kernels/biases, and one folded BN
    kinds = sorted(type(layer).__name__ for layer in keras_model.layers if layer.weights)
    assert kinds == ["BatchNormalization", "Conv2D", "Dense"], kinds
    assert not [w for w in report["warnings"] if "was not used by the conversion" in w]


def _lambda_model(tmp_path, marker):
    import keras

    def touch(x, marker=str(marker)):
        open(marker, "w").close()
        return x * 2.0

    inp = keras.Input((4, 4, 3))
    out = keras.layers.Lambda(touch)(keras.layers.Conv2D(2, 1)(inp))
    return keras.Model(inp, out)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_lambda_is_refused_and_never_executed(tmp_path, suffix):
    k2c = pytest.importorskip("bnconvert.k2c", reason="keras2caffe (bnconvert/k2c) is not written yet")
    marker = tmp_path / "executed"
    path = tmp_path / f"lambda{suffix}"
    _lambda_model(tmp_path, marker).save(path)
    marker.unlink()
    out_p, out_m = tmp_path / "o.prototxt", tmp_path / "o.caffemodel"
    with pytest.raises(E.ConversionError) as ei:
        k2c.keras_to_caffe(str(path), str(out_p), str(out_m))
    assert ei.value.file == str(path)
    assert not marker.exists(), "the Lambda's code ran"
    assert not out_p.exists() and not out_m.exists()


def test_keras_unknown_custom_object_is_refused(tmp_path):
    k2c = pytest.importorskip("bnconvert.k2c", reason="keras2caffe (bnconvert/k2c) is not written yet")
    import keras

    @keras.saving.register_keras_serializable(package="robustness_test")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inp = keras.Input((4, 4, 3))
    path = tmp_path / "custom.keras"
    keras.Model(inp, Doubler()(inp)).save(path)
    del keras.saving.get_custom_objects()["robustness_test>Doubler"]
    out_p, out_m = tmp_path / "o.prototxt", tmp_path / "o.caffemodel"
    with pytest.raises(E.ConversionError) as ei:
        k2c.keras_to_caffe(str(path), str(out_p), str(out_m))
    assert ei.value.file == str(path) and "Doubler" in str(ei.value) or "custom" in str(ei.value)
    assert not out_p.exists() and not out_m.exists()


def test_keras_to_caffe_into_missing_directory_writes_nothing(tmp_path):
    k2c = pytest.importorskip("bnconvert.k2c", reason="keras2caffe (bnconvert/k2c) is not written yet")
    import keras

    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    out_p, out_m = tmp_path / "o.prototxt", tmp_path / "missing" / "o.caffemodel"
    with pytest.raises(E.OutputError, match="does not exist"):
        k2c.keras_to_caffe(model, str(out_p), str(out_m))
    assert not out_p.exists() and not out_m.parent.exists()
