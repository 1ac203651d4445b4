"""Caffe's include/exclude rules (phase, stage, level), loss dropping and in-place renaming."""
import pytest

from bnconvert.caffe import load_net
from bnconvert.caffe.bnpair import pair_batchnorm_scale, use_global_stats

NET = """name: "rules"
layer { name: "data" type: "Input" top: "data" top: "label"
  input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } shape { dim: 2 } } }
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" include { phase: TRAIN }
  batch_norm_param { use_global_stats: false } }
layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" include { phase: TEST } }
layer { name: "deploy_only" type: "ReLU" bottom: "bn" top: "r" include { phase: TEST stage: "deploy" } }
layer { name: "not_deploy" type: "Sigmoid" bottom: "bn" top: "s" exclude { stage: "deploy" } }
layer { name: "high_level" type: "TanH" bottom: "bn" top: "t" include { min_level: 2 } }
layer { name: "low_level" type: "AbsVal" bottom: "bn" top: "a" include { max_level: 0 } }
layer { name: "acc" type: "Accuracy" bottom: "s" bottom: "label" top: "accuracy" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "s" bottom: "label" top: "loss" }
"""


def _names(net):
    return [L.name for L in net.layers]


@pytest.fixture
def proto(tmp_path):
    p = tmp_path / "rules.prototxt"
    p.write_text(NET)
    return p


def test_test_phase_default(proto):
    net = load_net(proto)
    assert net.phase == "TEST"
    assert _names(net) == ["data", "bn", "not_deploy", "low_level"]
    assert use_global_stats(net.layer("bn"), net.phase)  # unset: TEST means true
    dropped = {d[0] for d in net.dropped}
    assert {"acc", "loss", "data:label"} <= dropped  # the label input only fed dropped layers
    assert [net.caffe_name[b] for b in net.inputs] == ["data"]
    assert [net.caffe_name[b] for b in net.outputs] == ["a", "s"]  # Caffe's std::set order


def test_train_phase_stage_and_level(proto):
    net = load_net(proto, phase="TRAIN", level=3)
    assert _names(net) == ["data", "bn", "not_deploy", "high_level"]
    assert not use_global_stats(net.layer("bn"), net.phase)
    net = load_net(proto, stages=["deploy"])
    assert _names(net) == ["data", "bn", "deploy_only", "low_level"]


def test_in_place_chain_gets_one_id_per_version_and_pairs_through_the_graph(tmp_path):
    p = tmp_path / "inplace.prototxt"
    p.write_text("""name: "ip"
input: "data" input_shape { dim: 1 dim: 2 dim: 3 dim: 3 }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "sc_other" type: "Scale" bottom: "data" top: "other" }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "side" type: "Sigmoid" bottom: "other" top: "side" }
layer { name: "sc" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "sum" type: "Eltwise" bottom: "conv" bottom: "side" top: "sum" }
""")
    net = load_net(p)
    assert [(L.name, L.bottoms, L.tops) for L in net.layers if L.name in ("bn", "sc", "relu", "sum")] == [
        ("bn", ["conv"], ["conv#1"]), ("sc", ["conv#1"], ["conv#2"]), ("relu", ["conv#2"], ["conv#3"]),
        ("sum", ["conv#3", "side"], ["sum"])]
    assert net.final_blob("conv") == "conv#3"
    # "sc" follows "bn" through the graph although another Scale sits between them in the file.
    assert {bn: s.name for bn, s in pair_batchnorm_scale(net).items()} == {"bn": "sc"}
