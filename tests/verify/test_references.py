"""The reference runs (bnconvert/verify/references.py, opencv.py, pycaffe.py, refnet.py).

Each case here is a correct conversion that a reference taken at face value would judge wrongly:
OpenCV's Axpy, a layer with several tops, a deploy net that still has loss/accuracy layers,
InnerProduct ``transpose``, pooling ``round_mode``; and the failures of a reference runtime.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from helpers import need_shared


HEAD = 'name: "t"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 4 dim: 5 dim: 5 } } }\n'

SE_BLOCK = HEAD.replace("dim: 2 dim: 4", "dim: 1 dim: 4") + """  # OpenCV's Axpy takes batch 1 only
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" pooling_param { pool: AVE global_pooling: true } }
layer { name: "fc1" type: "Convolution" bottom: "pool" top: "fc1" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "relu" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "fc2" type: "Convolution" bottom: "fc1" top: "fc2" convolution_param { num_output: 4 kernel_size: 1 } }
layer { name: "gate" type: "Sigmoid" bottom: "fc2" top: "fc2" }
layer { name: "axpy" type: "Axpy" bottom: "fc2" bottom: "conv" bottom: "data" top: "axpy" }
layer { name: "out" type: "Convolution" bottom: "axpy" top: "out" convolution_param { num_output: 3 kernel_size: 1 } }
"""

SLICE = HEAD + """
layer { name: "sl" type: "Slice" bottom: "data" top: "s1" top: "s2" top: "s3" slice_param { axis: 1 slice_point: 1 slice_point: 3 } }
layer { name: "r1" type: "ReLU" bottom: "s1" top: "s1" }
layer { name: "r2" type: "ReLU" bottom: "s2" top: "r2" }
layer { name: "c3" type: "Convolution" bottom: "s3" top: "c3" convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "cat" type: "Concat" bottom: "s1" bottom: "r2" bottom: "c3" top: "cat" }
"""

WITH_LOSS = """name: "t"
layer { name: "data" type: "Input" top: "data" top: "label"
        input_param { shape { dim: 2 dim: 4 dim: 5 dim: 5 } shape { dim: 2 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 3 kernel_size: 5 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 6 } }
layer { name: "drop" type: "Dropout" bottom: "fc" top: "fc" include { phase: TRAIN } }
layer { name: "accuracy" type: "Accuracy" bottom: "fc" bottom: "label" top: "accuracy" include { phase: TEST } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "fc" bottom: "label" top: "loss" }
"""


def _net(tmp_path, text, seed=1):
    from bnconvert.testing import random_caffemodel

    proto = tmp_path / "net.prototxt"
    proto.write_text(text)
    weights = tmp_path / "net.caffemodel"
    random_caffemodel(proto, weights, seed=seed)
    return proto, weights


def _row(r, blob):
    return next(row for row in r.rows if row.version == blob or row.blob == blob)


def test_axpy_opencv_is_handed_caffes_operand_order(tmp_path):
    """Caffe's Axpy is a*x + y; OpenCV computes a*y + x: verify makes OpenCV compute Caffe's value."""
    from bnconvert.verify import verify

    proto, weights = _net(tmp_path, SE_BLOCK)
    r = verify(proto, weights, reference="opencv")
    assert r.passed, r.table()
    axpy = _row(r, "axpy")
    assert axpy.status == "ok" and axpy.max_rel < 1e-5
    assert _row(r, "out").status == "ok"


def test_axpy_swap_is_exact_against_caffes_formula(tmp_path):
    """The OpenCV run of the rewritten net equals a*x + y computed here from its own operands."""
    from bnconvert.caffe.graph import load_net
    from bnconvert.testing import random_inputs
    from bnconvert.verify import run_opencv

    proto, weights = _net(tmp_path, SE_BLOCK)
    net = load_net(proto, weights)
    feeds = random_inputs(net, seed=2)
    vals = run_opencv(net, weights, feeds).values
    a, x, y = vals[net.final_blob("fc2")], vals[net.final_blob("conv")], feeds["data"]
    np.testing.assert_allclose(vals[net.final_blob("axpy")], a * x + y, rtol=1e-6, atol=1e-6)
    assert np.abs(vals[net.final_blob("axpy")] - (a * y + x)).max() > 1e-2  # the two really differ here


def test_se_resnet50_axpy_with_opencv(tmp_path):
    """The real SE-ResNet-50 (hujie-frank/SENet, 16 Axpy layers), random weights, small input."""
    from bnconvert.testing import random_caffemodel
    from bnconvert.verify import verify

    proto = need_shared("zoo") / "se_resnet50/SE-ResNet-50.prototxt"
    shapes = {"data": (1, 3, 224, 224)}  # its 7x7 pool5 needs the full size
    weights = tmp_path / "w.caffemodel"
    random_caffemodel(proto, weights, seed=5, input_shapes=shapes)
    r = verify(proto, weights, reference="opencv", input_shapes=shapes)
    axpys = [row for row in r.rows if row.type == "Axpy"]
    assert len(axpys) == 16 and all(row.status == "ok" and row.max_rel < 1e-5 for row in axpys), r.table()
    # every layer on its own is right; with random weights, 50 layers of float32 noise end to end can
    # pass 1e-4 at the softmax, so only the layer check is held to it here
    assert all(row.check == "layer" and row.max_rel < 1e-5 for row in r.compared), r.table()
    assert r.output_rel_error < 1e-3, r.summary()


def test_slice_with_several_tops_opencv(tmp_path):
    """Every top of a multi-top layer is compared, even when a later in-place layer reuses its memory."""
    from bnconvert.verify import verify

    proto, weights = _net(tmp_path, SLICE)
    r = verify(proto, weights, reference="opencv")
    assert r.passed, r.table()
    for blob in ("s1", "s2", "s3", "r2", "c3", "cat"):
        row = next(row for row in r.rows if row.blob == blob and row.layer in ("sl", "r1", "r2", "c3", "cat"))
        assert row.status == "ok", r.table()
    assert {row.version for row in r.compared} >= {"s1", "s2", "s3"}


def test_deploy_net_with_loss_and_accuracy_layers(tmp_path, capsys):
    """OpenCV gets the layers the conversion keeps: no 'Can't find output blob "label"'."""
    from bnconvert.cli import main

    proto, weights = _net(tmp_path, WITH_LOSS)
    assert main(["verify", str(proto), str(weights), "--reference", "opencv"]) == 0
    out = capsys.readouterr()
    assert "PASSED" in out.out and "label" not in out.err


def test_opencv_inner_product_transpose_and_round_mode():
    """fc_flatten (transpose: true) and pool_ceil (round_mode: FLOOR), against real Caffe's own blobs."""
    from bnconvert.caffe.graph import load_net
    from bnconvert.verify import run_opencv

    for case, blob in (("fc_flatten", "fc_t"), ("pool_ceil", "pmax_floor")):
        d = need_shared(f"caffe-ref/{case}")
        feeds = dict(np.load(d / "input.npz"))
        net = load_net(d / "deploy.prototxt", d / "weights.caffemodel",
                       input_shapes={k: v.shape for k, v in feeds.items()})
        got = run_opencv(net, d / "weights.caffemodel", feeds).values[net.final_blob(blob)]
        ref = np.load(d / "ref.npz")[blob]
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() <= 1e-5 * max(1, np.abs(ref).max()), case


def test_every_caffe_ref_case_passes_with_opencv():
    """All six real-Caffe cases against the converted model, OpenCV as the reference (pycaffe: the CLI test)."""
    from bnconvert.verify import verify
    from verify.test_entry import CASES

    for name, proto in sorted(CASES.items()):
        d = need_shared(f"caffe-ref/{name}")
        r = verify(d / proto, d / "weights.caffemodel", input=d / "input.npz", reference="opencv")
        assert r.passed, f"{name}:\n{r.summary()}\n{r.table()}"
        assert not r.warnings, r.warnings
        assert r.reference == "opencv dnn" and len(r.compared) >= 3


def _use_pycaffe(request):
    """Real pycaffe for verify's worker process (skips with the reason without it)."""
    caffe = request.getfixturevalue("pycaffe")
    mp = request.getfixturevalue("monkeypatch")
    mp.setenv("PYTHONPATH", caffe.env()["PYTHONPATH"])
    return caffe


def test_cli_reference_caffe_passes_on_all_caffe_ref_cases(request, capsys):
    """The issue's 'Done when': bnconvert verify --reference caffe on every ../shared/caffe-ref case."""
    from bnconvert.cli import main
    from verify.test_entry import CASES

    _use_pycaffe(request)
    for name, proto in sorted(CASES.items()):
        d = need_shared(f"caffe-ref/{name}")
        rc = main(["verify", str(d / proto), str(d / "weights.caffemodel"), "--input", str(d / "input.npz"),
                   "--reference", "caffe"])
        out = capsys.readouterr()
        assert rc == 0, f"{name}: {out.out[-2000:]}{out.err[-2000:]}"
        assert "reference: caffe (pycaffe) (Caffe 1.0.0)" in out.out and "PASSED" in out.out


def test_pycaffe_reference_sees_every_blob_version(request):
    """pycaffe shows each in-place version; bn_factor_zero's pre-BatchNorm conv is compared with the Conv2D."""
    from bnconvert.verify import verify

    _use_pycaffe(request)
    d = need_shared("caffe-ref/bn_factor_zero")
    r = verify(d / "deploy.prototxt", d / "weights.caffemodel", input=d / "input.npz", reference="caffe")
    assert r.passed, r.table()
    assert {row.version for row in r.compared} >= {"conv", "conv#1"}


def test_reference_caffe_never_falls_back(tmp_path, monkeypatch, capsys):
    """No pycaffe: --reference caffe is one line naming pycaffe (exit 2), never a silent OpenCV run."""
    from bnconvert.cli import main
    from bnconvert.verify import pycaffe

    monkeypatch.setattr(pycaffe, "pycaffe_importable", lambda: False)
    proto, weights = _net(tmp_path, SLICE)
    assert main(["verify", str(proto), str(weights), "--reference", "caffe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pycaffe" in err and "not importable" in err


def test_pycaffe_failure_is_one_line_and_auto_falls_back(tmp_path, request, capsys):
    """BVLC Caffe has no Axpy: --reference caffe names pycaffe and Caffe's reason; auto uses OpenCV, saying why."""
    from bnconvert.cli import main
    from bnconvert.verify import verify

    _use_pycaffe(request)
    proto, weights = _net(tmp_path, SE_BLOCK)
    assert main(["verify", str(proto), str(weights), "--reference", "caffe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pycaffe could not run the net" in err and "Unknown layer type: Axpy" in err
    r = verify(proto, weights, reference="auto")
    assert r.passed and r.reference == "opencv dnn"
    assert any("pycaffe could not run the net" in w and "OpenCV" in w for w in r.warnings)


def test_pycaffe_worker_without_caffe_is_a_message(tmp_path):
    """The worker reports a missing or broken 'caffe' module as JSON, not a traceback."""
    import json
    import subprocess
    import sys

    from bnconvert.verify.pycaffe import WORKER

    (tmp_path / "caffe.py").write_text("raise ImportError('broken build')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    res = subprocess.run([sys.executable, str(WORKER), "n", "w", "TEST", "i", "o"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert res.returncode == 3
    assert json.loads(res.stdout)["error"] == "import" and "broken build" in res.stdout


def test_opencv_lrn_within_channel_is_run_as_caffe_runs_it(tmp_path):
    """OpenCV's own WITHIN_CHANNEL LRN differs from Caffe's (by ~0.45 here); it is given Caffe's layers."""
    from bnconvert.verify import verify

    proto, weights = _net(tmp_path, HEAD + 'layer { name: "lrn" type: "LRN" bottom: "data" top: "lrn" '
                                           'lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 norm_region: WITHIN_CHANNEL } }\n'
                                           'layer { name: "relu" type: "ReLU" bottom: "lrn" top: "lrn" }\n')
    r = verify(proto, weights, reference="opencv")
    assert r.passed, r.table()
    assert [row.version for row in r.compared] == ["lrn", "lrn#1"]


def test_opencv_failure_names_the_runtime(tmp_path, capsys):
    """OpenCV's Axpy takes batch 1 only: one line naming OpenCV and its reason, exit 2."""
    from bnconvert.cli import main

    proto, weights = _net(tmp_path, SE_BLOCK.replace("dim: 1 dim: 4", "dim: 2 dim: 4"))
    assert main(["verify", str(proto), str(weights), "--reference", "opencv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "OpenCV dnn could not run the net" in err and "expected" in err


POOL_MASK = HEAD + """
layer { name: "pool" type: "Pooling" bottom: "data" top: "pool" top: "mask" pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "relu" type: "ReLU" bottom: "pool" top: "pool" }
"""


@pytest.mark.parametrize("read_mask", [False, True])
def test_max_pooling_with_its_mask_opencv(tmp_path, read_mask):
    """OpenCV leaves out a mask no layer reads, and gives it (as Caffe's h*W+w) when one does."""
    from bnconvert.verify import verify

    text = POOL_MASK + ('layer { name: "m2" type: "Power" bottom: "mask" top: "m2" }\n' if read_mask else "")
    proto, weights = _net(tmp_path, text)
    r = verify(proto, weights, reference="opencv")
    assert r.passed, r.table()
    want = {"pool", "pool#1"} | ({"mask", "m2"} if read_mask else set())
    assert {row.version for row in r.compared} == want


@pytest.mark.parametrize("prototxt,shape,n_not_comparable", [
    ("mobilenet_ssd/MobileNetSSD_deploy.prototxt", (1, 3, 96, 96), 0),  # no detection: Caffe's fake row
    ("opencv_face_res10_ssd/deploy.prototxt", (1, 3, 96, 96), 1),  # saturated scores: ties
])
def test_ssd_detection_output_opencv(tmp_path, prototxt, shape, n_not_comparable):
    """DetectionOutput is compared in Caffe's [1, 1, N, 7] form (OpenCV's zero padding rows dropped,
    bnconvert's fixed rows reduced to the valid ones); rows with equal scores have no defined order."""
    from bnconvert.testing import random_caffemodel
    from bnconvert.verify import verify

    proto = need_shared("zoo") / prototxt
    shapes = {"data": shape}
    weights = tmp_path / "w.caffemodel"
    random_caffemodel(proto, weights, seed=3, input_shapes=shapes)
    r = verify(proto, weights, reference="opencv", input_shapes=shapes)
    assert r.passed and not r.warnings, r.table()
    det = next(row for row in r.rows if row.type == "DetectionOutput")
    assert len(r.not_comparable) == n_not_comparable
    if n_not_comparable:
        assert det.status == "not comparable" and "equal scores" in det.note
    else:
        assert det.status == "ok" and det.shape == (1, 1, 1, 7)


def test_opencv_detection_rows_as_caffe_writes_them():
    from bnconvert.verify.opencv import caffe_detection_rows

    out = np.zeros((1, 1, 4, 7), np.float32)
    out[0, 0, 0] = [0, 3, 0.9, 0.1, 0.1, 0.5, 0.5]
    np.testing.assert_array_equal(caffe_detection_rows(out, {"data": np.zeros((1, 3, 8, 8))}), out[:, :, :1])
    empty = caffe_detection_rows(np.zeros((1, 1, 4, 7), np.float32), {"data": np.zeros((2, 3, 8, 8))})
    assert empty.tolist() == [[[[0, -1, -1, -1, -1, -1, -1], [1, -1, -1, -1, -1, -1, -1]]]]


def test_pycaffe_names_a_field_bvlc_caffe_cannot_read(tmp_path, request, capsys):
    from bnconvert.cli import main

    _use_pycaffe(request)
    proto, weights = _net(tmp_path, HEAD + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                                           'pooling_param { pool: MAX kernel_size: 2 stride: 2 ceil_mode: false } }\n')
    assert main(["verify", str(proto), str(weights), "--reference", "caffe"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'no field named "ceil_mode" (layer \'p\')' in err


def test_a_module_named_caffe_is_not_pycaffe(tmp_path, monkeypatch):
    """Only a 'caffe' package with Caffe's _caffe extension counts as pycaffe (the suite's own tests/caffe
    package, or any other module of that name, must not make verify think pycaffe is there)."""
    from bnconvert.verify.pycaffe import pycaffe_importable

    fake = tmp_path / "caffe"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    assert not pycaffe_importable()
    (fake / "_caffe.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    assert pycaffe_importable()
