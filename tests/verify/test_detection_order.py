"""verify of SSD detectors against OpenCV dnn: DetectionOutput rows in OpenCV's documented order
(bnconvert/verify/opencv.py ``opencv_detection_order``), equal scores not comparable, the heads
checked blob by blob; the CLI on MobileNet-SSD as .keras and as .tflite."""
import json

import numpy as np
import pytest

from bnconvert.cli import main
from bnconvert.verify.compare import _unordered
from bnconvert.verify.opencv import opencv_detection_order

from helpers import ROOT

pytest.importorskip("cv2")

SSD = ROOT / "tests" / "nets" / "forks" / "MobileNetSSD_deploy.prototxt"
HEADS = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]


def _rows(*rows):
    return np.array(rows, np.float32).reshape(1, 1, -1, 7)


def test_opencv_order_sorts_each_images_rows_by_score():
    caffe = _rows([0, 1, .5, 0, 0, 1, 1], [0, 1, .2, 0, 0, 1, 1], [0, 3, .9, 0, 0, 1, 1],
                  [1, 2, .3, 0, 0, 1, 1], [1, 4, .8, 0, 0, 1, 1])
    got = opencv_detection_order(caffe).reshape(-1, 7)
    assert got[:, 0].tolist() == [0, 0, 0, 1, 1], "images stay in order"
    assert got[:, 1].tolist() == [3, 1, 1, 4, 2]
    assert np.allclose(got[:, 2], [.9, .5, .2, .8, .3])
    none = _rows([0, -1, -1, -1, -1, -1, -1], [1, -1, -1, -1, -1, -1, -1])
    assert (opencv_detection_order(none) == none).all(), "Caffe's 'nothing found' rows are kept"


def test_equal_scores_are_not_comparable():
    class L:
        type = "DetectionOutput"

    tied = _rows([0, 1, .5, 0, 0, 1, 1], [0, 2, .5, 0, 0, 1, 1], [1, 2, .5, 0, 0, 1, 1])
    assert "equal scores" in _unordered(L, tied)
    assert _unordered(L, _rows([0, 1, .5, 0, 0, 1, 1], [1, 2, .5, 0, 0, 1, 1])) == "", "per image"


@pytest.fixture(scope="module")
def ssd_weights(tmp_path_factory):
    from c2k.test_detection import ssd_caffemodel

    from bnconvert.caffe.graph import load_net

    path = tmp_path_factory.mktemp("ssd") / "ssd.caffemodel"
    ssd_caffemodel(load_net(str(SSD)), path)
    return path


def _verify(tmp_path, weights, model, proto=SSD, *extra):
    report = tmp_path / f"{model.stem}.json"
    rc = main(["verify", str(proto), str(weights), str(model), "--reference", "opencv", "--report", str(report),
               "-q", *extra])
    rep = json.loads(report.read_text())
    return rc, rep, {r["blob"]: r for r in rep["rows"]}


def test_mobilenet_ssd_keras_passes_against_opencv(tmp_path, ssd_weights):
    out = tmp_path / "m.keras"
    assert main(["caffe2keras", str(SSD), str(ssd_weights), "-o", str(out), "-q"]) == 0
    rc, rep, rows = _verify(tmp_path, ssd_weights, out)
    assert rc == 0 and rep["passed"], [r for r in rows.values() if r["status"] == "FAIL"]
    det = rows["detection_out"]
    assert det["status"] == "ok" and det["check"] == "layer" and "OpenCV's order" in det["note"]
    assert det["shape"][2] >= 10, "too few detections for the order to matter"
    for name in HEADS + ["conv11_mbox_loc_flat", "conv13_mbox_conf_flat"]:
        assert rows[name]["status"] == "ok", rows[name]
    assert rep["not_comparable"] == 0
    # two images: OpenCV orders each image's rows; the priors (one batch row in Caffe) compare as one row
    rc, rep, rows = _verify(tmp_path, ssd_weights, out, SSD, "--batch", "2")
    assert rc == 0 and rep["passed"], [r for r in rows.values() if r["status"] == "FAIL"]
    assert rows["detection_out"]["shape"][2] > det["shape"][2]
    for name in ["mbox_priorbox", "conv11_mbox_priorbox"]:
        assert rows[name]["status"] == "ok" and rows[name]["e2e_rel"] <= 1e-4, rows[name]


def test_opencv_rows_are_not_in_caffes_order_for_this_net(ssd_weights):
    """The case above is a real test of the order rule: OpenCV's rows are not grouped by label."""
    import cv2

    x = np.random.default_rng(0).normal(size=(1, 3, 300, 300)).astype(np.float32)
    cv = cv2.dnn.readNetFromCaffe(str(SSD), str(ssd_weights))
    cv.setInput(x, "data")
    rows = cv.forward("detection_out").reshape(-1, 7)
    labels = rows[rows[:, 2] > 0, 1]
    assert len(np.unique(labels)) > 1 and np.any(np.diff(labels) < 0)


def test_mobilenet_ssd_tflite_with_heads_passes(tmp_path, ssd_weights):
    out = tmp_path / "h.tflite"
    outputs = ",".join(HEADS + ["detection_out"])
    assert main(["caffe2keras", str(SSD), str(ssd_weights), "--outputs", outputs, "-o", str(out), "-q"]) == 0
    rc, rep, rows = _verify(tmp_path, ssd_weights, out)
    assert rc == 0 and rep["passed"], [r for r in rows.values() if r["status"] == "FAIL"]
    for name in HEADS + ["detection_out"]:
        assert rows[name]["status"] == "ok" and rows[name]["e2e_rel"] <= 1e-4, rows[name]
    assert "OpenCV's order" in rows["detection_out"]["note"]
    judged = [r["blob"] for r in rows.values() if r["status"] == "ok"]
    assert sorted(judged) == sorted(HEADS + ["detection_out"]), "the signature outputs are judged"


def _det_net(tmp_path, nms, name):
    from c2k import _ssd_ref as ref
    from c2k.test_detection import _det_proto, _explicit, _priors

    param = _explicit(f"num_classes: 4 nms_param {{ nms_threshold: {nms} top_k: 50 }} code_type: CENTER_SIZE "
                      "keep_top_k: 30 confidence_threshold: 0.2")
    prior = _priors()
    loc, conf = ref.heads(prior, 2, 4, 1, seed=3)
    proto = tmp_path / f"{name}.prototxt"
    proto.write_text(_det_proto(2, prior.shape[2] // 4, 4, 1, param))
    feeds = tmp_path / "in.npz"
    np.savez(feeds, loc=loc, conf=conf, prior=prior)
    return proto, feeds


def test_a_wrong_detection_output_fails(tmp_path):
    """Two images, four classes: the right conversion passes; one with another NMS threshold fails."""
    proto, feeds = _det_net(tmp_path, 0.45, "det")
    wrong, _ = _det_net(tmp_path, 0.3, "wrong")
    from bnconvert.caffe.io import pb2

    weights = tmp_path / "none.caffemodel"
    model = pb2().NetParameter(name="t")
    model.layer.add(name="det", type="DetectionOutput")  # a layer with no weights
    weights.write_bytes(model.SerializeToString())
    for src, want in ((proto, 0), (wrong, 1)):
        out = tmp_path / f"{src.stem}.keras"
        assert main(["caffe2keras", str(src), str(weights), "-o", str(out), "-q"]) == 0
        rc, rep, rows = _verify(tmp_path, weights, out, proto, "--input", str(feeds))
        assert rc == want, rows["det"]
        assert rows["det"]["status"] == ("ok" if want == 0 else "FAIL")
        assert rows["det"]["shape"][2] >= 8
