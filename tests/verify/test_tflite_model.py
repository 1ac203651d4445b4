"""verify with a TFLite model (bnconvert/verify/tflite_model.py): the net's outputs judged end to end,
every blob the interpreter keeps a tensor for shown with its end-to-end error."""
import json

import numpy as np

from bnconvert.cli import main

from helpers import ROOT, assert_close, need_shared


def _convert_and_verify(tmp_path, proto, weights, *extra):
    out = tmp_path / "m.tflite"
    assert main(["caffe2keras", str(proto), str(weights), "-o", str(out), "-q"]) == 0
    report = tmp_path / "v.json"
    rc = main(["verify", str(proto), str(weights), str(out), "--report", str(report), "-q", *extra])
    return rc, json.loads(report.read_text())


def _rows(rep):
    return rep.get("rows") or rep.get("blobs") or []


def test_verify_resnet50_slim_tflite_against_real_caffe(tmp_path):
    case = need_shared("caffe-ref/resnet50_slim")
    rc, rep = _convert_and_verify(tmp_path, case / "deploy.prototxt", case / "weights.caffemodel",
                                  "--reference", f"npz:{case / 'ref.npz'}")
    assert rc == 0, rep
    text = json.dumps(rep)
    assert "TFLite" in text
    rows = {r["blob"]: r for r in _rows(rep)}
    assert rows["prob"]["status"] == "ok" and rows["prob"]["max_rel"] <= 1e-4
    shown = [r for r in rows.values() if r["blob"] != "prob" and r.get("e2e_rel") is not None]
    assert len(shown) > 50, "per-blob values should come from the interpreter's tensors"


def test_mobilenet_ssd_tflite_holds_the_heads_and_detection_output(tmp_path):
    """The flatbuffer computes what the converted Keras model computes: the SSD heads and the
    DetectionOutput (TFLite built-ins only). The SSD tests' weights and input give real detections."""
    from c2k import _ssd_ref as ssd_ref
    from c2k.test_detection import HEADS, SSD_NETS, ssd_caffemodel

    from bnconvert.c2k import convert_caffe
    from bnconvert.caffe.graph import load_net
    from bnconvert.tflite import run_tflite, to_tflite

    proto = ROOT / "tests" / "nets" / "forks" / "MobileNetSSD_deploy.prototxt"
    weights = tmp_path / "ssd.caffemodel"
    ssd_caffemodel(load_net(str(proto)), weights)
    model, _ = convert_caffe(str(proto), str(weights), outputs=HEADS + ["detection_out"])
    mean, scale = SSD_NETS["mobilenet_ssd/MobileNetSSD_deploy.prototxt"]
    x = ((ssd_ref.synthetic_image(300, 300) - np.float32(mean)) * np.float32(scale)).astype(np.float32)
    x = x.transpose(0, 2, 3, 1)
    got = run_tflite(to_tflite(model), {"data": x})
    want = model(x)
    assert sorted(got) == sorted(model.output_names)
    for name, w in zip(model.output_names, want):
        assert_close(got[name], np.asarray(w), name)
    dets = got["detection_out"].reshape(-1, 7)
    assert (dets[:, 2] > 0).sum() > 0, "no detection: the comparison would be vacuous"
