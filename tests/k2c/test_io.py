"""Loading Keras files, refusing what cannot be converted, writing the Caffe files, and the CLI."""
import json
import re

import keras
import pytest

from bnconvert.errors import ConversionError, ParseError, UnsupportedLayerError

L = keras.layers


def _small(name="small"):
    x = keras.Input((6, 6, 3), name="image")
    y = L.Conv2D(4, 3, padding="same", name="conv")(x)
    y = L.BatchNormalization(name="bn")(y)
    y = L.ReLU(name="relu")(y)
    return keras.Model(x, L.GlobalAveragePooling2D(name="pool")(y), name=name)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_convert_saved_file(tmp_path, suffix):
    from bnconvert.caffe.graph import load_net
    from bnconvert.k2c import keras_to_caffe

    m = _small()
    path = tmp_path / f"m{suffix}"
    m.save(path)
    report = keras_to_caffe(str(path), tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    net = load_net(tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    assert report["inputs"] == {"image": [1, 3, 6, 6]} and report["outputs"] == {"pool": [1, 4]}
    assert [net.caffe_name[b] for b in net.outputs] == ["pool"]
    text = (tmp_path / "n.prototxt").read_text()
    assert not re.search(r"^\s*(blobs|param) \{", text, re.M)


def test_input_shape_sets_batch_and_size(tmp_path):
    from bnconvert.k2c import convert

    x = keras.Input((None, None, 3), name="image")
    m = keras.Model(x, L.Conv2D(2, 3, strides=2, padding="same", name="conv")(x))
    _, _, report = convert(m, input_shape=(2, 3, 10, 12))
    assert report["inputs"] == {"image": [2, 3, 10, 12]} and report["outputs"] == {"conv": [2, 2, 5, 6]}
    with pytest.raises(ConversionError, match="input-shape"):
        convert(m)
    with pytest.raises(ConversionError, match="does not fit"):
        convert(_small(), input_shape=(1, 4, 6, 6))


def test_lambda_file_is_refused_in_safe_mode(tmp_path):
    from bnconvert.k2c import keras_to_caffe

    x = keras.Input((4,), name="x")
    m = keras.Model(x, L.Lambda(lambda t: t * 2, name="double")(x))
    m.save(tmp_path / "lam.keras")
    with pytest.raises(ParseError, match="Lambda"):
        keras_to_caffe(str(tmp_path / "lam.keras"), tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    assert not (tmp_path / "n.prototxt").exists()


def test_unsupported_layers_listed_at_once():
    from bnconvert.k2c import convert

    x = keras.Input((5, 4), name="seq")
    y = L.LSTM(3, return_sequences=True, name="lstm")(x)
    y = L.MultiHeadAttention(2, 2, name="attn")(y, y)
    y = L.Lambda(lambda t: t + 1, name="lam")(y)
    with pytest.raises(UnsupportedLayerError) as e:
        convert(keras.Model(x, y))
    assert e.value.layers == [("lstm", "LSTM"), ("attn", "MultiHeadAttention"), ("lam", "Lambda")]
    assert e.value.direction == "keras2caffe"


def test_savedmodel_dir_and_missing_file(tmp_path):
    from bnconvert.k2c import convert

    d = tmp_path / "sm"
    d.mkdir()
    (d / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ParseError, match="SavedModel"):
        convert(str(d))
    with pytest.raises(ParseError, match="not found"):
        convert(str(tmp_path / "nope.keras"))


def test_failed_second_write_removes_first(tmp_path):
    from bnconvert.errors import OutputError
    from bnconvert.k2c import keras_to_caffe

    with pytest.raises(OutputError):
        keras_to_caffe(_small(), tmp_path / "n.prototxt", tmp_path / "missing_dir" / "n.caffemodel")
    assert list(tmp_path.iterdir()) == []


def test_cli(tmp_path, capsys):
    from bnconvert.cli import main

    _small().save(tmp_path / "m.keras")
    rc = main(["keras2caffe", str(tmp_path / "m.keras"), "-o", str(tmp_path / "n.prototxt"),
               str(tmp_path / "n.caffemodel"), "--input-shape", "1,3,6,6", "--report", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "1 BatchNorm+Scale pair," in out
    assert json.loads((tmp_path / "r.json").read_text())["outputs"] == {"pool": [1, 4]}
    rc = main(["keras2caffe", str(tmp_path / "nope.h5"), "-o", str(tmp_path / "a"), str(tmp_path / "b")])
    assert rc == 2 and "not found" in capsys.readouterr().err


def test_streamed_caffemodel_is_byte_identical_to_protobuf_serialization(tmp_path):
    import keras

    import bnconvert
    from bnconvert.caffe.io import read_caffemodel
    from bnconvert.k2c import convert

    inp = keras.Input((12, 12, 3))
    x = keras.layers.Conv2D(4, 3, use_bias=False)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(5)(x))
    bnconvert.keras_to_caffe(model, tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    _, weights, _ = convert(model)
    assert read_caffemodel(tmp_path / "n.caffemodel").SerializeToString() == weights.SerializeToString()


def _avg_pool_model():
    x = keras.Input((None, None, 3), name="image")
    return keras.Model(x, L.AveragePooling2D(3, 2, padding="same", name="p")(x))


@pytest.mark.parametrize("shape, needle", [
    ((1, 3, 10 ** 9, 10 ** 9), "has 3,000,000,000,000,000,000 elements, over the limit"),
    ((1, 3, 17.9, 8), r"must be whole numbers. Received: (1, 3, 17.9, 8) (17.9 is float)"),
    ((1, 3, 0, 8), "must have positive dimensions"),
    ((1, 3, -4, 8), "must have positive dimensions"),
], ids=["absurd", "float", "zero", "negative"])
def test_bad_input_shapes_refused_before_any_allocation(shape, needle):
    from bnconvert.errors import ShapeError
    from bnconvert.k2c import convert

    with pytest.raises(ShapeError) as e:  # AVE pooling: a 10^18-element divisor map is never made
        convert(_avg_pool_model(), shape)
    assert needle in str(e.value)


def test_absurd_layer_output_refused_before_its_converter_runs():
    from bnconvert.errors import ShapeError
    from bnconvert.k2c import convert

    x = keras.Input((4, 4, 3), name="image")
    big = L.UpSampling2D(size=(40000, 40000), name="up")(x)  # 1x160000x160000x3: 7.7e10 elements
    with pytest.raises(ShapeError, match="layer 'up' .* over the limit"):
        convert(keras.Model(x, L.AveragePooling2D(2, name="p")(big)))


def test_keras2caffe_cli_absurd_input_shape(tmp_path, capsys):
    from bnconvert.cli import main

    _avg_pool_model().save(tmp_path / "m.keras")
    rc = main(["keras2caffe", str(tmp_path / "m.keras"), "-o", str(tmp_path / "n.prototxt"),
               str(tmp_path / "n.caffemodel"), "--input-shape", "1,3,1000000000,1000000000"])
    err = capsys.readouterr().err
    assert rc == 2 and "over the limit" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("n.*"))
