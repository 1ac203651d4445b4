import pytest

from bnconvert.registry import CAFFE_TO_KERAS, KERAS_TO_CAFFE, Registry


def test_registering_a_type_twice_is_an_error():
    reg = Registry("test", "bnconvert.c2k")
    reg.register("Foo")(lambda ctx: None)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("Foo")(lambda ctx: None)


def test_registries_load_without_tensorflow_and_hold_core_types():
    types = CAFFE_TO_KERAS.types()
    for t in ("Convolution", "BatchNorm", "Scale", "Pooling", "InnerProduct", "Eltwise", "Concat", "Softmax"):
        assert t in types
    assert "BatchNormalization" in KERAS_TO_CAFFE.types()
    for t in types:
        assert CAFFE_TO_KERAS.doc(t), f"converter for {t} has no docstring for the layer table"
