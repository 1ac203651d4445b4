"""bnconvert.caffe.prototxt: unknown fields of dropped layers are ignored and reported, unknown fields of
kept layers are errors listed all at once, and a non-repeated field given twice is refused, with lines."""
from __future__ import annotations

import pytest

from bnconvert.caffe import load_net
from bnconvert.caffe.io import read_prototxt
from bnconvert.caffe.prototxt import parse_prototxt_text, scan_fields
from bnconvert.errors import ParseError

from ._nets import write

INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'
CONV = ('layer {\n  name: "conv1"\n  type: "Convolution"\n  bottom: "data"\n  top: "conv1"\n'
        '  convolution_param { num_output: 4 kernel_size: 3 }\n}\n')


def net(*layers):
    return 'name: "t"\n' + INPUT + CONV + "".join(layers)


def test_unknown_fields_of_kept_layers_are_listed_all_at_once(tmp_path):
    text = net('layer {\n  name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1"\n'
               '  relu_param { negative_slop: 0.1 }\n  bogus_param { a: 1 b { c: 2 } }\n}\n')
    text = text.replace("kernel_size: 3 }", "kernel_size: 3 kernal_size: 3 }")
    p = write(tmp_path, text)
    with pytest.raises(ParseError) as ei:
        load_net(p)
    msg = str(ei.value)
    assert msg.startswith(f"{p}: 3 unknown fields: ")
    assert ("line 8: layer 'conv1' (type Convolution): unknown field 'convolution_param.kernal_size': "
            'Message type "caffe.ConvolutionParameter" has no field named "kernal_size"') in msg
    assert "line 12: layer 'relu1' (type ReLU): unknown field 'relu_param.negative_slop'" in msg
    assert "line 13: layer 'relu1' (type ReLU): unknown field 'bogus_param'" in msg
    assert ei.value.line == 8 and "Fix: " in msg and "\n" not in msg


def test_a_single_spelling_error_names_its_line_and_layer(tmp_path):
    p = write(tmp_path, net().replace("kernel_size: 3", "kernel_sze: 3"))
    with pytest.raises(ParseError) as ei:
        load_net(p)
    e = ei.value
    assert (e.layer, e.layer_type, e.line, e.column) == ("conv1", "Convolution", 8, 37)
    assert 'has no field named "kernel_sze"' in str(e)


@pytest.mark.parametrize("ltype", ["SoftmaxWithLoss", "Accuracy", "SegAccuracy", "Silence", "MatWrite",
                                   "EuclideanLoss", "HDF5Output"])
def test_unknown_fields_of_dropped_layers_are_ignored_and_reported(tmp_path, ltype):
    p = write(tmp_path, net(f'layer {{\n  name: "x" type: "{ltype}" bottom: "conv1"\n  fork_param {{ a: 1 }}\n'
                            f'  loss_param {{ fork_weight: 2 }}\n}}\n'))
    n = load_net(p)
    assert [L.name for L in n.layers] == ["data", "conv1"] and ("x", ltype) in [d[:2] for d in n.dropped]
    assert [w for w in n.warnings if "ignored unknown field" in w] == [
        f"{p}:12: layer 'x' (type {ltype}): ignored unknown field 'fork_param': Message type \"caffe.LayerParameter\" "
        f"has no field named \"fork_param\"",
        f"{p}:13: layer 'x' (type {ltype}): ignored unknown field 'loss_param.fork_weight': Message type "
        f"\"caffe.LossParameter\" has no field named \"fork_weight\""]
    # Without the opt-in (upgrade, which writes the net back), nothing is dropped silently: an error.
    with pytest.raises(ParseError, match="2 unknown fields") as ei:
        read_prototxt(p)
    assert "inference drops this layer" in str(ei.value)


def test_unknown_fields_of_a_fork_data_layer_are_ignored(tmp_path):
    text = ('name: "t"\nlayer {\n  name: "data"\n  type: "MyImageListData"\n  top: "data"\n  top: "label"\n'
            '  my_image_list_param { source: "list.txt" batch_size: 2 }\n  transform_param { fork_resize: 3 }\n}\n'
            + CONV)
    p = write(tmp_path, text)
    n = load_net(p, input_shapes={"data": (2, 3, 8, 8)})
    assert n.inputs == ["data"] and n.shapes["conv1"] == (2, 4, 6, 6)
    assert ("data:label", "MyImageListData") in [d[:2] for d in n.dropped]
    assert sum("ignored unknown field" in w for w in n.warnings) == 2
    with pytest.raises(Exception, match="--input-shape data=N,C,H,W"):
        load_net(p)


def test_v1_layers_use_the_enum_type(tmp_path):
    text = ('name: "t"\ninput: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 8\ninput_dim: 8\n'
            'layers { name: "c" type: CONVOLUTION bottom: "data" top: "c" convolution_param { num_output: 2 '
            'kernel_size: 1 } }\n'
            'layers { name: "loss" type: SOFTMAX_LOSS bottom: "c" bottom: "label" top: "loss" fork_field: 1 }\n')
    p = write(tmp_path, text)
    n = load_net(p)
    assert any("layer 'loss' (type SOFTMAX_LOSS): ignored unknown field 'fork_field'" in w for w in n.warnings)
    with pytest.raises(ParseError) as ei:
        load_net(write(tmp_path, text.replace("kernel_size: 1", "kernel_size: 1 bias_trm: false"), "b.prototxt"))
    assert (ei.value.layer, ei.value.layer_type, ei.value.line) == ("c", "CONVOLUTION", 7)


def test_unknown_field_outside_layers_is_an_error_without_a_layer(tmp_path):
    with pytest.raises(ParseError) as ei:
        load_net(write(tmp_path, net().replace('name: "t"', 'name: "t"\nforce_bakward: true')))
    assert ei.value.layer is None and ei.value.line == 2 and "unknown field 'force_bakward'" in str(ei.value)


def test_scalar_given_twice_is_refused_naming_both_lines(tmp_path):
    p = write(tmp_path, net().replace("num_output: 4", "num_output: 4\n  num_output: 8"))
    with pytest.raises(ParseError) as ei:
        load_net(p)
    e = ei.value
    assert (e.layer, e.line) == ("conv1", 9)
    assert ("non-repeated field 'convolution_param.num_output' is given twice (first at line 8, column 23); "
            "Caffe's parser refuses this") in str(e)


@pytest.mark.parametrize("change", [
    ('  type: "Convolution"\n', '  type: "Convolution"\n  type: "Deconvolution"\n'),  # a layer's type
    ('name: "t"', 'name: "t"\nname: "u"'),  # the net's name
    ("  convolution_param {", "  convolution_param { bias_term: false }\n  convolution_param {"),  # a message
])
def test_any_non_repeated_field_given_twice_is_refused(tmp_path, change):
    with pytest.raises(ParseError, match="is given twice"):
        load_net(write(tmp_path, net().replace(*change)))


def test_repeated_fields_may_repeat(tmp_path):
    text = net().replace("kernel_size: 3", "kernel_size: 3 pad: 1 pad: 1 stride: 1")
    n = load_net(write(tmp_path, text))
    assert n.shapes["conv1"] == (1, 4, 8, 8)


def test_the_first_problem_in_the_text_is_reported_first(tmp_path):
    syntax_late = net('layer { name: "r" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: x } }\n')
    syntax_late = syntax_late.replace("kernel_size: 3", "kernel_sze: 3")
    with pytest.raises(ParseError, match="unknown field 'convolution_param.kernel_sze'"):
        load_net(write(tmp_path, syntax_late))
    unbalanced_late = syntax_late.replace("negative_slope: x } }", "negative_slope: }")
    with pytest.raises(ParseError, match='line 8, .*no field named "kernel_sze"'):
        load_net(write(tmp_path, unbalanced_late, "c.prototxt"))
    syntax_early = net().replace('name: "t"', 'name: "t"\ninput: data') + 'layer { name: "x" bogus: 1 }\n'
    with pytest.raises(ParseError, match="syntax error at line 2") as ei:
        load_net(write(tmp_path, syntax_early, "b.prototxt"))
    assert ei.value.line == 2


def test_blanking_ignored_fields_keeps_line_numbers(tmp_path):
    text = net('layer {\n  name: "loss" type: "SoftmaxWithLoss" bottom: "conv1"\n  fork_param {\n    a: 1\n  }\n}\n',
               'layer { name: "r" type: "ReLU" bottom: "conv1" top: "conv1" relu_param { negative_slope: x } }\n')
    with pytest.raises(ParseError) as ei:
        load_net(write(tmp_path, text))
    assert ei.value.line == 16 and ei.value.layer == "r"


def test_problems_are_collected_instead_of_raised():
    text = net('layer { name: "loss" type: "SoftmaxWithLoss" bottom: "conv1" fork: 1 }\n').replace(
        "num_output: 4", "num_output: 4 num_output: 5 kernal: 2")
    ignored, problems = [], []
    n = parse_prototxt_text(text, ignored=ignored, problems=problems)
    assert [(x.kind, x.field, x.line) for x in problems] == [("duplicate", "convolution_param.num_output", 8),
                                                             ("unknown", "convolution_param.kernal", 8)]
    assert [(x.field, x.layer, x.dropped) for x in ignored] == [("fork", "loss", True)]
    assert n.layer[1].convolution_param.num_output == 5 and len(n.layer) == 3


def test_scan_understands_the_text_format():
    text = ('# comment { not a block\nname: \'a\' "b"\nlayer < name: "x" type: "SoftmaxWithLoss" weird: [1, 2] '
            'weirder: { p: "}" } ; bottom: "y", top: "z" >\ninput_shape [{ dim: 1 }, { dim: 2 }]\n')
    notes, spans = scan_fields(text)
    assert [(n.field, n.line, n.layer, n.dropped) for n in notes] == [("weird", 3, "x", True),
                                                                       ("weirder", 3, "x", True)]
    ignored = []
    n = parse_prototxt_text(text, ignored=ignored)
    assert n.name == "ab" and list(n.layer[0].top) == ["z"] and len(n.input_shape) == 2
    assert scan_fields("layer { name: 'x'") == (None, None)  # unbalanced: left to protobuf's message


def test_deep_nesting_does_not_recurse():
    text = "layer { " + "unknown { " * 20000 + "}" * 20000 + " }"
    notes, _ = scan_fields(text)
    assert len(notes) == 1 and notes[0].field == "unknown"
