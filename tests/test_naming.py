from bnconvert.naming import keras_name


def test_keras_name_mapping():
    assert keras_name("conv1/dw") == "conv1_dw"
    assert keras_name("inception_3a/5x5_reduce") == "inception_3a_5x5_reduce"
    assert keras_name("res2a_branch1") == "res2a_branch1"
    assert keras_name("a b:c") == "a_b_c"
    assert keras_name("") == "_"
    assert keras_name("-x") == "_-x"


def test_converted_model_output_named_after_blob(tmp_path):
    import bnconvert
    from bnconvert.testing import random_caffemodel

    proto = tmp_path / "n.prototxt"
    proto.write_text('name: "n" input: "in/put" input_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
                     'layer { name: "conv/1" type: "Convolution" bottom: "in/put" top: "out/blob" '
                     'convolution_param { num_output: 3 kernel_size: 1 } }\n'
                     'layer { name: "relu/1" type: "ReLU" bottom: "out/blob" top: "out/blob" }\n')
    random_caffemodel(proto, tmp_path / "n.caffemodel")
    model = bnconvert.caffe_to_keras(proto, tmp_path / "n.caffemodel")
    assert model.output_names == ["out_blob"]
    assert model.input_names if hasattr(model, "input_names") else True
    assert [t.name for t in model.inputs] == ["in_put"]
