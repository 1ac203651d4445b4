"""bnconvert.caffe.graph: broken topologies are GraphErrors naming the layer, never tracebacks."""
from __future__ import annotations

import time

import pytest

from bnconvert.caffe import load_net
from bnconvert.errors import ConversionError, GraphError, ShapeError

from ._nets import net_with, write

RELU = 'layer {{ name: "{n}" type: "ReLU" bottom: "{b}" top: "{t}" }}\n'


def relu(n, b, t):
    return RELU.format(n=n, b=b, t=t)


def _err(tmp_path, layers, cls=GraphError, **kw):
    p = net_with(tmp_path, layers, **kw)
    with pytest.raises(cls) as ei:
        load_net(p)
    assert ei.value.file == p and p in str(ei.value)
    return ei.value


def test_duplicate_layer_names_without_weights_are_accepted_as_caffe_does(tmp_path):
    net = load_net(net_with(tmp_path, relu("r", "data", "a") + relu("r", "a", "b")))
    assert [L.name for L in net.layers[1:]] == ["r", "r"]
    assert any("2 layers are named 'r'" in w for w in net.warnings)


def test_duplicate_layer_names_with_weights_are_ambiguous(tmp_path):
    conv = 'layer {{ name: "c" type: "Convolution" bottom: "{b}" top: "{t}" convolution_param {{ num_output: 2 kernel_size: 1 }} }}\n'
    e = _err(tmp_path, conv.format(b="data", t="a") + relu("c", "a", "r") + conv.format(b="r", t="b"))
    assert (e.layer, e.layer_type) == ("c", "Convolution") and "2 layers with weights are named 'c'" in str(e)
    assert "ambiguous" in str(e) and "Fix: give the layers with weights unique names" in str(e)


def test_duplicate_top_names(tmp_path):
    e = _err(tmp_path, relu("r1", "data", "a") + relu("r2", "data", "a"))
    assert e.layer == "r2" and "also produced by layer 'r1'" in str(e)


def test_same_top_twice_in_one_layer(tmp_path):
    layers = 'layer { name: "s" type: "Split" bottom: "data" top: "a" top: "a" }\n'
    assert "same top twice" in str(_err(tmp_path, layers))


def test_input_top_produced_twice(tmp_path):
    layers = 'layer { name: "d2" type: "Input" top: "data" input_param { shape { dim: 1 } } }\n'
    assert _err(tmp_path, layers).layer == "d2"


def test_bottom_nothing_produces(tmp_path):
    e = _err(tmp_path, relu("r", "nowhere", "a"))
    assert (e.layer, e.layer_type) == ("r", "ReLU")
    assert "bottom blob 'nowhere' is not produced by any layer in phase TEST" in str(e) and e.hint


def test_cycle_through_a_later_layer(tmp_path):
    e = _err(tmp_path, relu("r1", "b", "a") + relu("r2", "a", "b"))
    assert e.layer == "r1" and "produced only by layer 'r2', which comes later" in str(e)


def test_self_cycle(tmp_path):
    e = _err(tmp_path, 'layer { name: "c" type: "Concat" bottom: "data" bottom: "x" top: "x" }\n')
    assert e.layer == "c" and "this layer itself (a cycle)" in str(e)


def test_bottom_produced_only_by_a_loss_layer(tmp_path):
    layers = ('layer { name: "loss" type: "EuclideanLoss" bottom: "data" bottom: "data" top: "l" }\n'
              + relu("r", "l", "a"))
    assert "not part of inference" in str(_err(tmp_path, layers))


def test_input_layer_with_a_bottom(tmp_path):
    layers = 'layer { name: "in2" type: "Input" bottom: "data" top: "x" input_param { shape { dim: 1 } } }\n'
    e = _err(tmp_path, layers)
    assert (e.layer, e.layer_type) == ("in2", "Input") and "cannot have bottoms" in str(e)


@pytest.mark.parametrize("layers, want", [
    ('layer { name: "e" type: "Eltwise" bottom: "data" top: "e" }\n', "Eltwise takes at least 2 bottom(s)"),
    ('layer { name: "e" type: "Crop" bottom: "data" top: "e" }\n', "Crop takes 2 bottom(s)"),
    ('layer { name: "e" type: "Axpy" bottom: "data" bottom: "data" top: "e" }\n', "Axpy takes 3 bottom(s)"),
    ('layer { name: "e" type: "ReLU" bottom: "data" top: "e" top: "f" }\n', "and 2 top(s)"),
    ('layer { name: "e" type: "Convolution" bottom: "data" top: "e" top: "f" '
     'convolution_param { num_output: 2 kernel_size: 1 } }\n', "1 bottom(s) and 2 top(s)"),
])
def test_wrong_number_of_bottoms_or_tops(tmp_path, layers, want):
    e = _err(tmp_path, layers)
    assert e.layer == "e" and want in str(e)


def test_dummy_data_with_fewer_shapes_than_tops(tmp_path):
    text = ('layer { name: "d" type: "DummyData" top: "a" top: "b" top: "c" '
            'dummy_data_param { shape { dim: 1 dim: 2 } shape { dim: 1 dim: 3 } } }\n')
    with pytest.raises(ShapeError) as ei:
        load_net(write(tmp_path, text))
    assert ei.value.layer == "d" and "'c' is not declared" in str(ei.value)
    legacy = 'layer { name: "d" type: "DummyData" top: "a" top: "b" dummy_data_param { num: 1 num: 2 channels: 3 } }\n'
    with pytest.raises(ShapeError):
        load_net(write(tmp_path, legacy))


def test_absurd_legacy_input_dims_refused_fast(tmp_path):
    text = 'input: "data"\ninput_dim: 1\ninput_dim: 3\ninput_dim: 1000000\ninput_dim: 1000000\n'
    t0 = time.perf_counter()
    with pytest.raises(ShapeError) as ei:
        load_net(write(tmp_path, text))
    assert time.perf_counter() - t0 < 1.0
    assert ei.value.layer == "input" and ei.value.layer_type == "Input" and "over the limit" in str(ei.value)


@pytest.mark.parametrize("dims", ["1 3 0 8", "1 3 -2 8"])
def test_zero_or_negative_input_dims(tmp_path, dims):
    text = 'input: "data"\n' + "".join(f"input_dim: {d}\n" for d in dims.split())
    with pytest.raises(ShapeError, match="invalid shape"):
        load_net(write(tmp_path, text))


@pytest.mark.parametrize("shape", [(1, "x", 4, 4), (0, 3, 4, 4), (10 ** 7, 10 ** 7)])
def test_bad_input_shapes_argument(tmp_path, shape):
    p = net_with(tmp_path, relu("r", "data", "a"))
    with pytest.raises(ShapeError):
        load_net(p, input_shapes={"data": shape})


def test_unknown_phase_and_output(tmp_path):
    p = net_with(tmp_path, relu("r", "data", "a"))
    with pytest.raises(ConversionError, match="phase must be TEST or TRAIN"):
        load_net(p, phase="VAL")
    with pytest.raises(GraphError, match="requested output blob 'zz'"):
        load_net(p, outputs=["zz"])


def test_legacy_input_name_never_clashes_with_a_layer_named_input(tmp_path):
    text = ('input: "data"\ninput_shape { dim: 1 dim: 2 dim: 4 dim: 4 }\n'
            'layer { name: "input" type: "ReLU" bottom: "data" top: "r" }\n')
    net = load_net(write(tmp_path, text))
    assert [(L.name, L.type) for L in net.layers] == [("input_1", "Input"), ("input", "ReLU")]


def test_layer_without_bottoms_gets_unknown_shapes(tmp_path):
    net = load_net(net_with(tmp_path, 'layer { name: "p" type: "Parameter" top: "w" }\n'))
    p = net.layer("p")
    assert p.top_shapes == [None] and net.shapes["w"] is None


def test_semantic_warnings_are_on_the_net(tmp_path):
    layers = 'layer { name: "g" type: "Pooling" bottom: "data" top: "g" pooling_param { global_pooling: true pad: 1 } }\n'
    net = load_net(net_with(tmp_path, layers))
    assert any("layer 'g' (Pooling): pad is ignored with global_pooling" in w for w in net.warnings)
    assert net.shapes["g"] == (1, 3, 1, 1)


# --- nets Caffe itself refuses (issue 12 §6), and scale (issue 14) ------------------------------


def test_empty_net_is_one_line_error(tmp_path):
    with pytest.raises(GraphError, match="the net has no layers"):
        load_net(write(tmp_path, 'name: "empty"\n'))


def test_net_whose_layers_are_all_train_only(tmp_path):
    text = ('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 4 dim: 4 } }\n'
            '        include { phase: TRAIN } }\n'
            'layer { name: "r" type: "ReLU" bottom: "data" top: "data" include { phase: TRAIN } }\n')
    p = write(tmp_path, text)
    with pytest.raises(GraphError, match="no layer of the net is included in phase TEST") as e:
        load_net(p)
    assert p in str(e.value) and "\n" not in str(e.value)
    assert [L.name for L in load_net(p, phase="TRAIN").layers] == ["data", "r"]


def test_include_and_exclude_on_one_layer_refused_like_caffe(tmp_path):
    p = net_with(tmp_path, 'layer { name: "r" type: "ReLU" bottom: "data" top: "r"\n'
                           '        include { phase: TEST } exclude { stage: "x" } }\n')
    for phase in ("TEST", "TRAIN"):
        with pytest.raises(GraphError, match="Specify either include rules or exclude rules; not both") as e:
            load_net(p, phase=phase)
        assert e.value.layer == "r"


def test_float_input_shape_refused_not_truncated(tmp_path):
    p = net_with(tmp_path, relu("r", "data", "r"))
    with pytest.raises(ShapeError, match=r"whole numbers. Received: \(1, 3, 17.9, 8\)"):
        load_net(p, input_shapes={"data": (1, 3, 17.9, 8)})
    assert load_net(p, input_shapes={"data": (1, 3, 17, 8)}).shapes["data"] == (1, 3, 17, 8)


def test_in_place_versions_are_unique_even_against_hash_names(tmp_path):
    # a Caffe blob literally named 'x#1' must not collide with the id of x's second version
    layers = (relu("c", "data", "x") + relu("r1", "x", "x") + relu("odd", "data", "x#1")
              + relu("r2", "x", "x") + 'layer { name: "e" type: "Eltwise" bottom: "x" bottom: "x#1" top: "e" }\n')
    net = load_net(net_with(tmp_path, layers))
    ids = [t for L in net.layers for t in L.tops]
    assert len(ids) == len(set(ids))
    assert [net.caffe_name[t] for t in ids] == ["data", "x", "x", "x#1", "x", "e"]
    e = net.layer("e")
    assert [net.caffe_name[b] for b in e.bottoms] == ["x", "x#1"] and e.bottoms[0] == net.layer("r2").tops[0]


def test_100k_in_place_layers_build(tmp_path):
    """10^5 in-place layers (quadratic before: 10k took 5 s); timing is in bench/run.py graph."""
    from bnconvert.caffe.graph import build_graph
    from bnconvert.caffe.io import pb2

    n = 100_000
    net = pb2().NetParameter(name="deep")
    inp = net.layer.add(name="data", type="Input")
    inp.top.append("data")
    inp.input_param.shape.add().dim.extend([1, 2, 3, 3])
    for i in range(n):
        lp = net.layer.add(name=f"r{i}", type="ReLU")
        lp.bottom.append("data")
        lp.top.append("data")
    g = build_graph(net, path="deep.prototxt")
    assert len(g.layers) == n + 1 and g.outputs == [f"data#{n}"]
    assert g.layers[5].bottoms == ["data#4"] and g.layers[5].tops == ["data#5"]
