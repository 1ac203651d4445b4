"""The verification pass (bnconvert/verify/entry.py): real-Caffe cases, zoo nets, planted BatchNorm errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import ROOT, need_shared

from bnconvert.errors import VerificationError

CASES = {
    "bn_factor": "deploy.prototxt",
    "bn_factor_zero": "deploy.prototxt",
    "pool_ceil": "deploy.prototxt",
    "fc_flatten": "deploy.prototxt",
    "resnet50_slim": "deploy.prototxt",
    "cifar10_bn_trained": "train_test_input.prototxt",
}


def _case(name):
    d = need_shared(f"caffe-ref/{name}")
    return d / CASES[name], d / "weights.caffemodel", f"npz:{d / 'ref.npz'}"


def _convert(proto, weights, **kw):
    from bnconvert.c2k import convert_caffe

    return convert_caffe(str(proto), str(weights), **kw)[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_passes_on_real_caffe_blobs(name):
    from bnconvert.verify import verify

    proto, weights, ref = _case(name)
    r = verify(proto, weights, reference=ref)
    assert r.passed, r.summary() + "\n" + r.table()
    assert r.first_divergent is None
    assert r.reference_version.startswith("BVLC/caffe")
    assert len(r.compared) >= 2
    # every stored blob gets a row, not just the outputs
    stored = set(np.load(ref[4:]).files) - {"data", "label", "loss", "accuracy"}  # loss layers: not inference
    assert {row.blob for row in r.rows} == stored
    assert r.max_rel_error < 1e-5  # the layer check sees rounding noise only
    assert r.output_rel_error <= 1e-4
    assert r.device and r.device_kind  # says where it ran
    assert r.tf32 in ("n/a (CPU)", "off (disabled for the check)", "off (jax_default_matmul_precision=highest)")


def test_every_stored_blob_with_a_counterpart_is_compared():
    from bnconvert.verify import verify

    proto, weights, ref = _case("bn_factor")
    r = verify(proto, weights, reference=ref)
    stored = set(np.load(ref[4:]).files)
    assert {row.blob for row in r.rows} == stored
    skipped = [row for row in r.rows if row.status == "skipped"]
    assert [row.blob for row in skipped] == ["bn2"]  # BatchNorm output merged with its Scale in Keras
    conv1 = next(row for row in r.rows if row.blob == "conv1")
    assert conv1.version == "conv1#3" and conv1.layer == "relu1"  # the final in-place version
    assert conv1.suspects == ["conv1", "bn1", "relu1"]


@pytest.mark.parametrize("prototxt,shape", [
    ("bvlc_lenet/lenet.prototxt", (2, 1, 28, 28)),
    ("squeezenet_v1.1/deploy.prototxt", (1, 3, 67, 67)),
    ("mobilenet_v1/mobilenet_deploy.prototxt", (1, 3, 64, 64)),
])
def test_passes_on_converted_zoo_nets(tmp_path, prototxt, shape):
    from bnconvert.testing import random_caffemodel
    from bnconvert.verify import verify

    proto = need_shared("zoo") / prototxt
    shapes = {"data": shape}
    weights = tmp_path / "w.caffemodel"
    random_caffemodel(proto, weights, seed=3, input_shapes=shapes)
    r = verify(proto, weights, reference="opencv", input_shapes=shapes)
    assert r.passed, r.summary() + "\n" + r.table()
    assert r.reference == "opencv dnn" and r.reference_version.startswith("OpenCV ")
    assert len(r.compared) > 5


def _planted_eps(model, bn):
    model.get_layer(bn).epsilon = 0.5
    return model


def _planted_factor(model, bn, factor):
    layer = model.get_layer(bn)
    w = layer.get_weights()
    w[-2], w[-1] = w[-2] * factor, w[-1] * factor  # moving mean/variance as stored, not divided by s
    layer.set_weights(w)
    return model


def test_catches_wrong_epsilon_stored_caffe_reference():
    from bnconvert.verify import verify

    proto, weights, ref = _case("bn_factor")
    model = _planted_eps(_convert(proto, weights), "bn2")
    r = verify(proto, weights, model, reference=ref)
    assert not r.passed
    assert r.first_divergent.layer == "bn2" and r.first_divergent.type == "BatchNorm+Scale"
    assert "bn2" in r.culprit


def test_catches_undivided_factor_via_cli(tmp_path, capsys):
    """A saved model whose BatchNorm statistics were not divided by the factor: exit 1, pinned to it."""
    from bnconvert.cli import main

    proto, weights, ref = _case("bn_factor")
    meta = json.loads((proto.parent / "meta.json").read_text())
    model = _planted_factor(_convert(proto, weights), "bn3", meta["bn_factors"]["bn3"])
    path = tmp_path / "bad.keras"
    model.save(path)
    report = tmp_path / "r.json"
    html = tmp_path / "r.html"
    rc = main(["verify", str(proto), str(weights), str(path), "--reference", ref, "--report", str(report),
               "--html", str(html)])
    out = capsys.readouterr().out
    assert rc == 1, out
    d = json.loads(report.read_text())
    assert d["passed"] is False and d["first_divergent"]["layer"] == "bn3"
    assert d["first_divergent"]["type"] == "BatchNorm"
    assert "FAILED" in out and "bn3" in out
    page = html.read_text()
    assert "<svg" in page and "bn3" in page and "FAILED" in page


@pytest.mark.parametrize("plant", ["eps", "factor"])
def test_catches_planted_errors_in_place_opencv(plant):
    """In-place BatchNorm in a ResNet: OpenCV exposes each layer's output, so the row is the BN itself."""
    from bnconvert.verify import verify

    proto, weights, _ = _case("resnet50_slim")
    shapes = {"data": (1, 3, 224, 224)}
    model = _convert(proto, weights, input_shapes=shapes)
    bn = "bn3b_branch2b"
    if plant == "eps":
        _planted_eps(model, bn)
    else:
        meta = json.loads((proto.parent / "meta.json").read_text())
        _planted_factor(model, bn, meta["bn_factors"][bn])
    r = verify(proto, weights, model, reference="opencv", input_shapes=shapes)
    assert not r.passed
    assert r.first_divergent.layer == bn, r.table()
    assert r.first_divergent.suspects == [bn]
    # the layer check feeds later layers the reference's values: only the planted layer fails
    assert {row.layer for row in r.rows if row.status == "FAIL" and row.check == "layer"
            and row.max_abs > row.tol} == {bn}


def test_saved_model_name_mapping_and_flattened_layouts(tmp_path):
    """A loaded model (not converted here) is matched by layer names; flattened NHWC tensors are reordered."""
    from bnconvert.verify import verify

    proto, weights, ref = _case("fc_flatten")
    path = tmp_path / "m.keras"
    _convert(proto, weights).save(path)
    r = verify(proto, weights, str(path), reference=ref)
    assert r.passed, r.table()
    assert {row.blob for row in r.compared} == set(np.load(ref[4:]).files)
    assert r.keras_model == str(path)


def test_default_input_is_seeded_and_batch_overrides(tmp_path):
    from bnconvert.verify import verify

    proto, weights, _ = _case("bn_factor")
    r = verify(proto, weights, reference="opencv", batch=3, report=tmp_path / "r.json")
    assert r.passed
    assert r.compared[0].shape[0] == 3
    assert "seed 0" in r.input
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["rows"] and d["reference"] == "opencv dnn" and "max_abs_error" in d


def test_image_input_uses_transform_options(tmp_path):
    import cv2

    from bnconvert.verify import load_image, verify
    from bnconvert.caffe.graph import load_net

    proto, weights, _ = _case("bn_factor")
    img = (np.arange(40 * 30 * 3) % 251).astype(np.uint8).reshape(40, 30, 3)
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), img)
    net = load_net(proto)
    a = load_image(net, path, mean=[10, 20, 30], scale=0.5, channel_order="rgb")
    assert a.shape == (1, 3, 17, 19)
    ref = cv2.resize(img, (19, 17), interpolation=cv2.INTER_LINEAR).astype(np.float32)[:, :, ::-1]
    np.testing.assert_allclose(a[0].transpose(1, 2, 0), (ref - [10, 20, 30]) * 0.5, rtol=1e-6)
    r = verify(proto, weights, input=path, reference="opencv", mean=[10, 20, 30], scale=0.5)
    assert r.passed and r.input == str(path)


def test_bad_inputs_exit_2(tmp_path, capsys):
    from bnconvert.cli import main

    proto, weights, ref = _case("bn_factor")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((1, 5, 17, 19), np.float32))
    assert main(["verify", str(proto), str(weights), "--input", str(bad)]) == 2
    assert "the channels may not" in capsys.readouterr().err
    assert main(["verify", str(proto), str(weights), "--input", str(tmp_path / "none.npy")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["verify", str(proto), str(weights), "--reference", "npz:" + str(tmp_path / "no.npz")]) == 2
    assert main(["verify", str(proto), str(weights), "--reference", "tensorrt"]) == 2
    txt = tmp_path / "x.txt"
    txt.write_text("hello")
    assert main(["verify", str(proto), str(weights), "--input", str(txt)]) == 2
    assert main(["verify", str(proto), str(weights), str(txt)]) == 2  # not a Keras model
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("bnconvert verify: error:") == 4


def test_cli_passes_exit_0(capsys):
    from bnconvert.cli import main

    proto, weights, ref = _case("pool_ceil")
    assert main(["verify", str(proto), str(weights), "--reference", ref]) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "max rel err" in out and "pglob_max" in out


def test_device_gpu_without_gpu_is_a_clear_error():
    from bnconvert.verify import select_device

    try:
        dev = select_device("auto")
    except VerificationError as e:
        pytest.skip(f"no device: {e}")
    if dev.is_gpu:
        pytest.skip("this machine has a GPU")
    with pytest.raises(VerificationError, match="sees no GPU"):
        select_device("gpu")
    assert select_device("cpu").kind == "CPU"
    with pytest.raises(VerificationError, match="Received: 'tpu'"):
        select_device("tpu")


def test_tolerance_is_rtol_times_scale():
    from bnconvert.verify import BlobCheck
    from bnconvert.verify.compare import _fill

    ref = np.full((1, 2), 10.0)
    row = BlobCheck("b", "b", "l", "T", (1, 2))
    _fill(row, ref + 9e-4, ref + 9e-4, ref, 1e-4, 0.0)
    assert row.status == "ok" and row.tol == pytest.approx(1e-3)
    _fill(row, ref + 1.1e-3, ref, ref, 1e-4, 0.0)
    assert row.status == "FAIL" and row.max_rel == pytest.approx(1.1e-4)
    _fill(row, np.array([[np.nan, 10.0]]), ref, ref, 1e-4, 0.0)
    assert row.status == "FAIL" and "non-finite" in row.note


def test_jax_backend_does_not_import_tensorflow(tmp_path):
    pytest.importorskip("jax")
    import subprocess
    import sys

    proto, weights, ref = _case("bn_factor")
    code = ("import sys; from bnconvert.verify import verify; "
            f"r = verify({str(proto)!r}, {str(weights)!r}, reference={ref!r}); "
            "assert r.passed and r.backend == 'jax', r.summary(); "
            "assert 'tensorflow' not in sys.modules; print('ok', r.device)")
    env = dict(__import__("os").environ, KERAS_BACKEND="jax")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                         cwd=str(ROOT))
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]

