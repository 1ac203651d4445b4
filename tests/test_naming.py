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


_RS_NET = '''name: "n"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 dim: 3 dim: 3 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "rs" type: "Reshape" bottom: "conv" top: "rs" reshape_param { shape { dim: 0 dim: 2 dim: 2 dim: -1 } } }
layer { name: "sl" type: "Slice" bottom: "conv" top: "s1" top: "s2" slice_param { axis: 1 slice_point: 1 } }
layer { name: "conv_to_caffe" type: "ReLU" bottom: "s1" top: "s1r" }
layer { name: "cat" type: "Concat" bottom: "s1r" bottom: "s2" top: "cat" }
'''


def _rs_model(tmp_path, outputs=None):
    import bnconvert
    from bnconvert.testing import random_caffemodel

    proto = tmp_path / "n.prototxt"
    proto.write_text(_RS_NET)
    random_caffemodel(proto, tmp_path / "n.caffemodel")
    return bnconvert.caffe_to_keras(proto, tmp_path / "n.caffemodel", outputs=outputs)


def test_every_output_is_named_after_its_blob(tmp_path):
    """A Reshape output that needs a relayout, next to other exposed outputs, is still 'rs' (not 'rs_1')."""
    for outputs in (None, ["conv", "rs", "s2", "s1r"]):
        model = _rs_model(tmp_path, outputs)
        want = ["cat", "rs"] if outputs is None else ["conv", "rs", "s2", "s1r"]
        assert model.output_names == want
        names = [layer.name for layer in model.layers]
        assert len(names) == len(set(names))


def test_plan_decides_every_name_once(tmp_path):
    """Outputs and inputs are reserved first; a producer of an output carries its name, others their own."""
    from bnconvert.caffe.graph import load_net
    from bnconvert.naming import plan_names

    proto = tmp_path / "n.prototxt"
    proto.write_text(_RS_NET)
    net = load_net(proto, outputs=["conv", "rs", "s2", "s1r"])
    plan = plan_names(net)
    assert plan.inputs == {"data": "data"}
    assert set(plan.outputs.values()) == {"conv", "rs", "s2", "s1r"}
    assert plan.layer("rs") == "rs" and plan.fallback["rs"] == "rs_1"  # used when the output is a relayout
    assert plan.layer("sl") == "sl"  # two tops: each output gets a layer of its own
    assert plan.layer("conv_to_caffe") == "s1r"
    assert plan.reserved >= {"data", "conv", "rs", "rs_1", "s2", "s1r", "sl"}


def test_internal_layers_never_take_a_planned_name(tmp_path):
    """The relayout before the Reshape would be 'conv_to_caffe'; the Caffe layer of that name keeps it."""
    model = _rs_model(tmp_path)
    assert type(model.get_layer("conv_to_caffe")).__name__ == "ReLU"
    assert type(model.get_layer("conv_to_caffe_1")).__name__ == "Permute"


def test_in_place_output_chain_names(tmp_path):
    """conv -> BatchNorm in place with 'conv' an output: the BatchNorm carries 'conv', the Conv2D 'conv_1'."""
    from bnconvert.c2k import convert_caffe
    from helpers import need_shared

    d = need_shared("caffe-ref/bn_factor_zero")
    model = convert_caffe(str(d / "deploy.prototxt"), str(d / "weights.caffemodel"))[0]
    assert type(model.get_layer("conv")).__name__ == "BatchNormalization"
    assert type(model.get_layer("conv_1")).__name__ == "Conv2D"
    assert model.output_names == ["conv"]
