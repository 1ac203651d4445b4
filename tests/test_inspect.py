"""bnconvert inspect: the layer table, inputs and BatchNorm details, over the whole zoo, without TensorFlow."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bnconvert.caffe.graph import INPUT_TYPES, load_net
from bnconvert.caffe.io import blob_to_array, read_caffemodel
from bnconvert.cli import main
from bnconvert.inspect import inspect_net, phase_layers, raw_paired_scale, read_net
from bnconvert.registry import CAFFE_TO_KERAS

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
ZOO = SHARED / "zoo"

# Nets whose Data layers declare no image size (shapes from zoo/SOURCES.md), and the stage they need.
DATA_SHAPES = {
    "bvlc_alexnet/train_val.prototxt": (1, 3, 227, 227),
    "bvlc_reference_caffenet/train_val.prototxt": (1, 3, 227, 227),
    "bvlc_googlenet/train_val.prototxt": (1, 3, 224, 224),
    "squeezenet_v1.0/train_val.prototxt": (1, 3, 227, 227),
    "squeezenet_v1.1/train_val.prototxt": (1, 3, 227, 227),
    "bvlc_cifar10_full_sigmoid_bn/cifar10_full_sigmoid_train_test.prototxt": (2, 3, 32, 32),
    "bvlc_cifar10_full_sigmoid_bn/cifar10_full_sigmoid_train_test_bn.prototxt": (2, 3, 32, 32),
    "bvlc_cifar10_quick/cifar10_quick_train_test.prototxt": (2, 3, 32, 32),
    "bvlc_lenet/lenet_train_test.prototxt": (1, 1, 28, 28),
    "bvlc_mnist_autoencoder/mnist_autoencoder.prototxt": (1, 1, 28, 28),
}
STAGES = {"bvlc_mnist_autoencoder/mnist_autoencoder.prototxt": ("test-on-test",)}


def zoo_nets():
    """Every net prototxt of the zoo (the solver files are SolverParameters, not nets)."""
    if not ZOO.exists():
        return []
    return sorted(str(p.relative_to(ZOO)) for p in ZOO.glob("*/*.prototxt") if "solver" not in p.name)


ZOO_PARAMS = zoo_nets() or [pytest.param("-", marks=pytest.mark.skip(reason=f"{ZOO} is not present"))]


def zoo_args(rel):
    shape = DATA_SHAPES.get(rel)
    return {"input_shapes": {"data": shape} if shape else None, "stages": STAGES.get(rel, ())}


@pytest.fixture
def zoo():
    if not ZOO.exists():
        pytest.skip(f"{ZOO} is not present (the shared test data sits beside the repository)")
    return ZOO


def _bn_count(rows):
    return sum(r["type"] == "BatchNorm" for r in rows)


@pytest.mark.parametrize("rel", ZOO_PARAMS)
def test_inspect_zoo(rel, zoo):
    kw = zoo_args(rel)
    rep = inspect_net(zoo / rel, **kw)
    json.dumps(rep)  # machine-readable as is
    assert rep["graph_built"], rep["notes"]
    net = load_net(zoo / rel, **kw)
    assert [r["name"] for r in rep["layers"]] == [L.name for L in net.layers]
    assert rep["inputs"] and all(i["shape"] for i in rep["inputs"])
    assert rep["layers"][0]["output_shapes"][0] is not None
    known = set(CAFFE_TO_KERAS.types()) | set(INPUT_TYPES)
    assert {u["layer"] for u in rep["unsupported"]} == {r["name"] for r in rep["layers"] if r["type"] not in known}
    assert len(rep["batchnorm"]) == _bn_count(rep["layers"])
    # The raw-list pairing (used when shapes are unknown) agrees with the graph's pairing.
    _, net_param, _ = read_net(zoo / rel)
    layers = phase_layers(net_param, "TEST", kw["stages"])
    raw = {lp.name: raw_paired_scale(layers, i) for i, lp in enumerate(layers) if lp.type == "BatchNorm"}
    for b in rep["batchnorm"]:
        assert (raw[b["layer"]].name if raw[b["layer"]] is not None else None) == b["scale"]


@pytest.mark.parametrize("rel", sorted(DATA_SHAPES))
def test_inspect_without_input_shape_still_lists_layers(rel, zoo):
    rep = inspect_net(zoo / rel, stages=STAGES.get(rel, ()))
    assert not rep["graph_built"]
    assert any("--input-shape data=N,C,H,W" in n for n in rep["notes"])
    assert rep["inputs"][0]["shape"] is None and rep["inputs"][0]["shape_source"] == "unknown"
    with_shape = inspect_net(zoo / rel, **zoo_args(rel))
    assert [r["name"] for r in rep["layers"]] == [r["name"] for r in with_shape["layers"]]
    assert [b["scale"] for b in rep["batchnorm"]] == [b["scale"] for b in with_shape["batchnorm"]]


def test_graph_that_cannot_be_built_is_reported(zoo):
    rep = inspect_net(zoo / "bvlc_mnist_autoencoder" / "mnist_autoencoder.prototxt")  # needs a stage
    assert not rep["graph_built"] and "cannot be built" in rep["notes"][0]
    assert rep["layers"]


@pytest.mark.parametrize("rel, declared", [
    ("bvlc_cifar10_quick/cifar10_quick.prototxt", "Input layer"),
    ("resnet50/ResNet-50-deploy.prototxt", "input + input_dim"),
    ("squeezenet_v1.0/deploy.prototxt", "input + input_shape"),
    ("vgg19_v1/VGG_ILSVRC_19_layers_deploy.prototxt", "input + input_dim"),
    ("bvlc_cifar10_quick/cifar10_quick_train_test.prototxt", "Data layer"),
])
def test_input_declarations(rel, declared, zoo):
    rep = inspect_net(zoo / rel, **zoo_args(rel))
    (inp,) = rep["inputs"]
    assert inp["declared_by"] == declared and inp["blob"] == "data"
    if declared == "Data layer":
        assert inp["shape_source"] == "--input-shape"
        assert inp["data"]["batch_size"] == 100 and inp["data"]["source"].endswith("test_lmdb")
        assert "mean_file" in inp["transform"]
        assert [d["layer"] for d in rep["dropped"]] == ["accuracy", "loss", "cifar:label"] or rep["dropped"]
    else:
        assert inp["shape_source"] == "declared"


def test_v1_format_is_reported(zoo):
    rep = inspect_net(zoo / "vgg19_v1" / "VGG_ILSVRC_19_layers_deploy.prototxt")
    assert rep["format"] == "V1" and rep["upgrades"]["v1_layers"]
    fc6 = next(r for r in rep["layers"] if r["name"] == "fc6")
    assert fc6["weight_shapes"] == [[4096, 25088], [4096]] and fc6["params"] == 4096 * 25088 + 4096


def test_use_global_stats_resolves_per_phase(zoo):
    rel = "bvlc_cifar10_full_sigmoid_bn/cifar10_full_sigmoid_train_test_bn.prototxt"
    for phase, value in (("TEST", True), ("TRAIN", False)):
        rep = inspect_net(zoo / rel, phase=phase, input_shapes={"data": (2, 3, 32, 32)})
        assert [b["use_global_stats"] for b in rep["batchnorm"]] == [value] * 3
        assert rep["batchnorm"][0]["use_global_stats_source"] == f"{phase} default"
        assert rep["batchnorm"][0]["scale"] is None
    assert rep["upgrades"]["batchnorm_params_dropped"] == ["bn1", "bn2", "bn3"]


def test_batchnorm_details_with_weights():
    case = SHARED / "caffe-ref" / "bn_factor"
    if not case.exists():
        pytest.skip(f"{case} is not present")
    rep = inspect_net(case / "deploy.prototxt", case / "weights.caffemodel")
    meta = json.loads((case / "meta.json").read_text())
    bns = {b["layer"]: b for b in rep["batchnorm"]}
    model = {lp.name: lp for lp in read_caffemodel(case / "weights.caffemodel").layer}
    for name, factor in meta["bn_factors"].items():
        b = bns[name]
        assert b["factor"] == pytest.approx(factor, rel=1e-6)
        mean = blob_to_array(model[name].blobs[0]) / np.float32(b["factor"])
        var = blob_to_array(model[name].blobs[1]) / np.float32(b["factor"])
        assert b["mean_range"] == pytest.approx([mean.min(), mean.max()], rel=1e-5)
        assert b["var_range"] == pytest.approx([var.min(), var.max()], rel=1e-5)
    assert (bns["bn1"]["scale"], bns["bn1"]["scale_bias"]) == ("scale1", True)
    assert (bns["bn2"]["scale"], bns["bn2"]["scale_bias"], bns["bn2"]["eps"]) == ("scale2", False, pytest.approx(1e-3))
    assert bns["bn3"]["scale"] is None and bns["bn3"]["moving_average_fraction"] == pytest.approx(0.9)
    conv1 = next(r for r in rep["layers"] if r["name"] == "conv1")
    assert conv1["params"] == sum(int(np.prod(s)) for s in conv1["weight_shapes"])


def test_unsupported_layers_are_listed(zoo):
    rep = inspect_net(zoo / "faster_rcnn_vgg16_voc" / "test.prototxt")
    known = set(CAFFE_TO_KERAS.types())
    assert "Python" in rep["unsupported_types"]
    assert set(rep["unsupported_types"]) == {r["type"] for r in rep["layers"]} - known - set(INPUT_TYPES)


# --- CLI --------------------------------------------------------------------------------------


def test_cli_json_is_the_api_report(capsys, zoo):
    path = str(zoo / "resnet50" / "ResNet-50-deploy.prototxt")
    assert main(["inspect", path, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(inspect_net(path)))


def test_cli_text_is_an_aligned_table(capsys, zoo):
    assert main(["inspect", str(zoo / "resnet50" / "ResNet-50-deploy.prototxt")]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.lstrip().startswith("#  name"))
    col = lines[head].index("type")
    conv1 = next(line for line in lines[head:] if " conv1 " in line)
    assert conv1.index("Convolution") == col
    assert set(lines[head + 1].replace(" ", "")) == {"-"}
    for title in ("Inputs", "BatchNorm (53)", "input + input_dim"):
        assert any(title in line for line in lines), title


def test_cli_input_shape_and_phase(capsys, zoo):
    rel = "bvlc_lenet/lenet_train_test.prototxt"
    assert main(["inspect", str(zoo / rel), "--input-shape", "data=4,1,28,28", "--phase", "train", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["phase"] == "TRAIN" and rep["inputs"][0]["shape"] == [4, 1, 28, 28]
    assert main(["inspect", str(zoo / rel), "--input-shape", "nosuchblob=1,1,28,28"]) == 2
    assert "not net inputs" in capsys.readouterr().err
    assert main(["inspect", str(zoo / "nope.prototxt")]) == 2


def test_inspect_does_not_import_tensorflow(zoo):
    path = str(zoo / "resnet50" / "ResNet-50-deploy.prototxt")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "bnconvert", "inspect", path], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t
    assert res.returncode == 0, res.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in res.stderr.splitlines() if "|" in line}
    assert not imported & {"tensorflow", "keras", "tf_keras"}, "inspect imported TensorFlow/Keras"
    assert "BatchNorm (53)" in res.stdout
    assert elapsed < 10, f"inspect took {elapsed:.1f}s"


# --- fork nets: everything ignored or unsupported, all at once -------------------------------

FORKS = ROOT / "tests" / "nets" / "forks"
# fork net -> (the --input-shape it needs, the fields inference drops, the unsupported types)
FORK_NETS = {
    "pspnet50_ADE20K_473.prototxt": (None, [], []),
    "segnet_inference.prototxt": ((1, 3, 360, 480), [], []),
    "segnet_basic_inference.prototxt": ((1, 3, 360, 480), [], []),
    "enet_deploy.prototxt": (None, [], ["Python"]),
    "enet_deploy_final.prototxt": (None, [], []),
    "deeplab_v2_vgg16_test_voc12.prototxt": (None, [("fc8_mat", "MatWrite", "mat_write_param")], []),
    "deeplab_v2_resnet101_test_voc12.prototxt": (None, [("accuracy", "SegAccuracy", "seg_accuracy_param")], []),
    "yolov3_416x416.prototxt": (None, [], []),
    "yolov3-tiny.prototxt": (None, [], []),
    "hed_deploy.prototxt": (None, [], []),
    "MobileNetSSD_deploy.prototxt": (None, [], []),
}


def _fork_files():
    return sorted(p.name for p in FORKS.glob("*.prototxt") if "${" not in p.read_text())


def test_the_fork_nets_of_the_issue_are_all_there():
    assert set(FORK_NETS) <= set(_fork_files())


@pytest.mark.parametrize("name", _fork_files())
def test_inspect_fork_net_lists_everything_ignored_or_unsupported(name):
    """Every fork net of tests/nets/forks; those in FORK_NETS with exactly what they must list."""
    shape, ignored, unsupported = FORK_NETS.get(name, (None, None, None))
    path = FORKS / name
    rep = inspect_net(path, input_shapes={None: shape} if shape else None)
    assert rep["field_errors"] == []
    if ignored is not None:
        assert [(r["layer"], r["type"], r["field"]) for r in rep["ignored_fields"]] == ignored
        assert rep["unsupported_types"] == unsupported
    lines = path.read_text().splitlines()
    for r in rep["ignored_fields"]:  # the line and column point at the field itself
        assert lines[r["line"] - 1][r["column"] - 1:].startswith(r["field"])
    # every layer of the phase is either in the table or listed as dropped
    listed = [r["name"] for r in rep["layers"]] + [d["layer"] for d in rep["dropped"]]
    assert {lp.name for lp in phase_layers(read_net(path, {})[1], "TEST")} <= set(listed)


def test_inspect_lists_every_field_problem_of_every_layer(tmp_path, capsys):
    text = (FORKS / "deeplab_v2_vgg16_test_voc12.prototxt").read_text()
    text = text.replace("kernel_size: 3\n", "kernel_sze: 3\n", 2).replace("num_output: 64\n", "num_output: 64\n"
                                                                          "    num_output: 64\n", 1)
    p = tmp_path / "typos.prototxt"
    p.write_text(text)
    rep = inspect_net(p)
    got = [(r["problem"], r["layer"], r["field"]) for r in rep["field_errors"]]
    assert got == [("duplicate", "conv1_1", "convolution_param.num_output"),
                   ("unknown", "conv1_1", "convolution_param.kernel_sze"),
                   ("unknown", "conv1_2", "convolution_param.kernel_sze")]
    assert [r["field"] for r in rep["ignored_fields"]] == ["mat_write_param"]
    assert any("caffe2keras refuses the net" in n for n in rep["notes"])
    assert main(["inspect", str(p)]) == 1
    out = capsys.readouterr().out
    assert "Field errors (caffe2keras refuses these): 3" in out and "Ignored fields" in out
    assert main(["inspect", str(FORKS / "deeplab_v2_vgg16_test_voc12.prototxt")]) == 0
