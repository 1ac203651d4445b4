"""The `bnconvert caffe2keras` command, run as a user would."""
import json
import shutil
import subprocess
import sys

import numpy as np

from helpers import ROOT, assert_close

SAMPLE = ROOT / "sample_models" / "mini_resnet"


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bnconvert", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=600)


def test_convert_summary_report_and_saved_model(tmp_path):
    out, rep = tmp_path / "m.keras", tmp_path / "r.json"
    r = cli("caffe2keras", SAMPLE / "deploy.prototxt", SAMPLE / "weights.caffemodel", "-o", out,
                  "--report", rep)
    assert r.returncode == 0, r.stderr
    assert "6 BatchNorm+Scale pairs merged" in r.stdout
    assert "factors s" in r.stdout and "eps" in r.stdout
    data = json.loads(rep.read_text())
    assert data["layers_converted"] > 0 and len(data["batchnorm_scale_pairs"]) == 6
    assert data["outputs"] == {"prob": [1, 10]}
    import keras
    import bnconvert as bc
    m = keras.saving.load_model(out)
    model2 = bc.caffe_to_keras(SAMPLE / "deploy.prototxt", SAMPLE / "weights.caffemodel")
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    assert_close(np.asarray(m(x)), np.asarray(model2(x)))


def test_h5_format_and_outputs_option(tmp_path):
    out = tmp_path / "m.h5"
    r = cli("caffe2keras", SAMPLE / "deploy.prototxt", SAMPLE / "weights.caffemodel", "-o", out,
                  "--outputs", "res2a,pool5", "-q")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    import keras
    import bnconvert  # noqa: F401
    m = keras.saving.load_model(out)
    assert m.output_names == ["res2a", "pool5"]


def test_data_layer_needs_input_shape(tmp_path):
    zoo = ROOT.parent / "shared" / "zoo" / "bvlc_cifar10_full_sigmoid_bn"
    proto = tmp_path / "net.prototxt"
    shutil.copy(ROOT / "sample_models" / "cifar_bn" / "cifar_bn.prototxt", proto)
    text = proto.read_text().replace('type: "Input" top: "data" top: "label"\n  input_param { shape { dim: 1 dim: 3 '
                                     'dim: 32 dim: 32 } shape { dim: 1 } } }',
                                     'type: "Data" top: "data" top: "label" data_param { batch_size: 4 } }')
    proto.write_text(text)
    w = ROOT / "sample_models" / "cifar_bn" / "cifar_bn.caffemodel"
    r = cli("caffe2keras", proto, w, "-o", tmp_path / "m.keras")
    assert r.returncode == 2
    assert "--input-shape data=N,C,H,W" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "m.keras").exists()
    r = cli("caffe2keras", proto, w, "-o", tmp_path / "m.keras", "--input-shape", "data=4,3,32,32")
    assert r.returncode == 0, r.stderr
    assert "label" in r.stdout  # the dropped label input is reported
    del zoo


def test_unsupported_layers_listed_at_once_and_nothing_written(tmp_path):
    proto = tmp_path / "u.prototxt"
    proto.write_text('name: "u" input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
                     'layer { name: "p1" type: "Python" bottom: "data" top: "a" }\n'
                     'layer { name: "conv" type: "Convolution" bottom: "a" top: "b" '
                     'convolution_param { num_output: 2 kernel_size: 1 } }\n'
                     'layer { name: "roi" type: "ROIPooling" bottom: "b" top: "c" }\n')
    model = tmp_path / "u.caffemodel"
    model.write_bytes(b"")
    r = cli("caffe2keras", proto, SAMPLE / "weights.caffemodel", "-o", tmp_path / "u.keras")
    assert r.returncode == 2
    assert "p1 (type Python)" in r.stderr and "roi (type ROIPooling)" in r.stderr, r.stderr
    assert not (tmp_path / "u.keras").exists()


def test_missing_output_directory_fails_before_converting(tmp_path):
    r = cli("caffe2keras", SAMPLE / "deploy.prototxt", SAMPLE / "weights.caffemodel", "-o",
                  tmp_path / "nope" / "m.keras")
    assert r.returncode == 2
    assert "does not exist" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # one line: no TensorFlow start-up chatter


def test_batch_directory_with_jobs(tmp_path):
    src = tmp_path / "models"
    src.mkdir()
    for i in range(2):
        shutil.copy(SAMPLE / "deploy.prototxt", src / f"net{i}.prototxt")
        shutil.copy(SAMPLE / "weights.caffemodel", src / f"net{i}.caffemodel")
    out = tmp_path / "out"
    out.mkdir()
    r = cli("caffe2keras", src, "-o", out, "--jobs", "2")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["net0.keras", "net1.keras"]
    assert "2/2 converted" in r.stdout


def test_savedmodel_format(tmp_path):
    out = tmp_path / "sm"
    r = cli("caffe2keras", SAMPLE / "deploy.prototxt", SAMPLE / "weights.caffemodel", "-o", f"{out}/", "-q")
    assert r.returncode == 0, r.stderr
    assert (out / "saved_model.pb").exists()
    import tensorflow as tf
    import bnconvert as bc

    loaded = tf.saved_model.load(str(out))
    x = np.random.default_rng(1).normal(size=(2, 64, 64, 3)).astype("float32")
    ref = bc.caffe_to_keras(SAMPLE / "deploy.prototxt", SAMPLE / "weights.caffemodel")
    assert_close(np.asarray(loaded.serve(x)["prob"]), np.asarray(ref(x)))


def test_savedmodel_signature_names_outputs_after_the_blobs(tmp_path):
    """The serving signature's outputs are keras_name(blob), not output_0..."""
    from bnconvert.naming import keras_name

    out = tmp_path / "sm"
    r = cli("caffe2keras", SAMPLE / "deploy.prototxt", SAMPLE / "weights.caffemodel", "-o", out,
            "--format", "savedmodel", "--outputs", "res2a,pool5,prob", "-q")
    assert r.returncode == 0, r.stderr
    import tensorflow as tf

    sig = tf.saved_model.load(str(out)).signatures["serving_default"]
    assert set(sig.structured_outputs) == {keras_name(b) for b in ("res2a", "pool5", "prob")}
    assert [s.name for s in sig.structured_input_signature[1].values()] == ["data"]
    got = sig(data=tf.zeros((1, 64, 64, 3)))
    assert tuple(got["prob"].shape) == (1, 10) and tuple(got["pool5"].shape)[0] == 1
