"""verify with a TFLite model (bnconvert/verify/tflite_model.py): the net's outputs judged end to end,
every blob the interpreter keeps a tensor for shown with its end-to-end error."""
import json

from bnconvert.cli import main
from bnconvert.testing import random_caffemodel

from helpers import ROOT, need_shared


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


def test_verify_mobilenet_ssd_tflite_with_detection_output(tmp_path):
    proto = ROOT / "tests" / "nets" / "forks" / "MobileNetSSD_deploy.prototxt"
    weights = tmp_path / "ssd.caffemodel"
    random_caffemodel(proto, weights, seed=0)
    rc, rep = _convert_and_verify(tmp_path, proto, weights, "--reference", "opencv")
    rows = {r["blob"]: r for r in _rows(rep)}
    assert rc == 0, [r for r in rows.values() if r["status"] == "FAIL"]
    assert rows["detection_out"]["status"] == "ok"
