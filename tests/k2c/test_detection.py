"""keras2caffe for SSD's layers: CaffePriorBox and CaffeDetectionOutput back to PriorBox and
DetectionOutput with the same parameters; the exported nets run in OpenCV dnn and convert back to the
same Keras outputs; MobileNet-SSD and the res10 face SSD round-trip caffe -> keras -> caffe."""
import keras
import numpy as np
import pytest

from bnconvert.keras_layers import CaffeDetectionOutput, CaffePriorBox, caffe_detections, detection_model

from helpers import assert_close

from c2k import _ssd_ref as ref
from c2k.test_detection import HEADS, _opencv_order, ssd_case

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _export(model, tmp_path, input_shape=None):
    from bnconvert.caffe.io import write_caffemodel, write_prototxt
    from bnconvert.k2c import convert

    deploy, weights, report = convert(model, input_shape=input_shape)
    write_prototxt(deploy, tmp_path / "net.prototxt")
    write_caffemodel(weights, tmp_path / "net.caffemodel")
    return deploy, report


def _back(tmp_path):
    """The exported net converted back to Keras."""
    from bnconvert.c2k import convert_caffe

    return convert_caffe(str(tmp_path / "net.prototxt"), str(tmp_path / "net.caffemodel"))


def _layer(deploy, type_):
    (found,) = [L for L in deploy.layer if L.type == type_]
    return found


PRIOR_SETTINGS = [
    dict(min_size=[30.0], max_size=[60.0], aspect_ratio=[2.0], variance=[0.1, 0.1, 0.2, 0.2], step_h=8.0, step_w=8.0),
    dict(min_size=[10.0, 25.0], max_size=[20.0, 40.0], aspect_ratio=[2.0, 3.0], flip=False, clip=True,
         variance=[0.2], step_h=9.0, step_w=11.5, offset=0.25),
    dict(min_size=[32.0], img_h=100, img_w=100),
    dict(min_size=[20.0], aspect_ratio=[1.5], img_h=70, img_w=90, offset=0.0),
]


@pytest.mark.parametrize("i", range(len(PRIOR_SETTINGS)))
def test_prior_box_exports_its_parameters(tmp_path, i):
    s = PRIOR_SETTINGS[i]
    feat = keras.Input((5, 7, 4), name="feat")
    img = keras.Input((60, 84, 3), name="img")
    ins = [feat] if s.get("img_h") else [feat, img]
    out = CaffePriorBox(**s, name="pb")(ins)
    model = keras.Model(ins, keras.layers.Identity(name="out")(out))
    deploy, _ = _export(model, tmp_path)
    p = _layer(deploy, "PriorBox")
    assert len(p.bottom) == len(ins)
    pp = p.prior_box_param
    assert list(pp.min_size) == s["min_size"] and list(pp.max_size) == s.get("max_size", [])
    if s.get("img_h"):
        assert (pp.img_size == s["img_h"]) if s["img_h"] == s["img_w"] else (pp.img_h, pp.img_w) == (70, 90)
    back, report = _back(tmp_path)
    x = [np.zeros((1, 5, 7, 4), np.float32), np.zeros((1, 60, 84, 3), np.float32)][:len(ins)]
    assert_close(np.asarray(back(x if len(x) > 1 else x[0])), np.asarray(model(x if len(x) > 1 else x[0])), "pb")


DET_SETTINGS = [
    dict(nms_threshold=0.45, top_k=50, code_type="CENTER_SIZE", keep_top_k=30, confidence_threshold=0.2),
    dict(share_location=False, background_label_id=-1, nms_threshold=0.4, eta=0.8, code_type="CORNER_SIZE",
         variance_encoded_in_target=True, confidence_threshold=0.3),
]


@pytest.mark.parametrize("i", range(len(DET_SETTINGS)))
def test_detection_output_exports_its_parameters(tmp_path, i):
    s = DET_SETTINGS[i]
    prior = ref.prior_box((4, 4), (64, 64), [16], [32], [2.0], variance=[0.1, 0.1, 0.2, 0.2])
    p = prior.shape[2] // 4
    nloc = 1 if s.get("share_location", True) else 3
    model = detection_model(p, 3, **s)
    deploy, _ = _export(model, tmp_path)
    d = _layer(deploy, "DetectionOutput").detection_output_param
    assert d.num_classes == 3 and d.share_location == s.get("share_location", True)
    assert d.nms_param.HasField("top_k") == ("top_k" in s)
    assert d.HasField("confidence_threshold")
    back, _ = _back(tmp_path)
    loc, conf = ref.heads(prior, 1, 3, nloc, seed=4, loc_std=0.1)
    x = [loc, conf, prior]
    want = np.asarray(model(x))
    assert_close(np.asarray(back(x)), want, "det")
    assert_close(caffe_detections(want), ref.detection_output(loc, conf, prior, 3, **s), "det vs the SSD source")


def test_exported_detection_output_runs_in_opencv(tmp_path):
    import cv2

    s = dict(share_location=True, background_label_id=0, nms_threshold=0.45, top_k=50, code_type="CENTER_SIZE",
             keep_top_k=30, confidence_threshold=0.2)
    prior = ref.prior_box((6, 6), (96, 96), [20], [45], [2.0, 3.0], variance=[0.1, 0.1, 0.2, 0.2])
    model = detection_model(prior.shape[2] // 4, 4, **s)
    _export(model, tmp_path)
    loc, conf = ref.heads(prior, 1, 4, seed=3)
    cv = cv2.dnn.readNetFromCaffe(str(tmp_path / "net.prototxt"), str(tmp_path / "net.caffemodel"))
    for name, a in zip(("loc", "conf", "priors"), (loc, conf, prior)):
        cv.setInput(a, name)
    got = np.asarray(cv.forward("detection_out"))[0, 0]
    mine = np.asarray(model([loc, conf, prior]))[0]
    n = int((mine[:, 0] >= 0).sum())
    assert n >= 8
    assert_close(got[:n], _opencv_order(mine[:n]), "det")


def test_detection_output_refuses_bad_settings():
    with pytest.raises(ValueError, match="eta must be in"):
        CaffeDetectionOutput(3, eta=0.0)
    with pytest.raises(ValueError, match="variance"):
        CaffePriorBox([10.0], variance=[0.1, 0.2])


@pytest.mark.parametrize("rel", ["mobilenet_ssd/MobileNetSSD_deploy.prototxt", "opencv_face_res10_ssd/deploy.prototxt"],
                         ids=["mobilenet_ssd", "opencv_face_res10_ssd"])
def test_ssd_net_round_trips(tmp_path, rel):
    import cv2

    case, x = ssd_case(tmp_path, rel)
    got = case.run(x)
    deploy, report = _export(case.model, tmp_path)
    original = {L.name: L for L in case.net.param.layer if L.type in ("PriorBox", "DetectionOutput")}
    for L in deploy.layer:
        if L.type == "PriorBox":
            assert L.prior_box_param == original[L.name].prior_box_param
        elif L.type == "DetectionOutput":
            d, o = L.detection_output_param, original[L.name].detection_output_param
            for f in ("num_classes", "share_location", "background_label_id", "code_type", "keep_top_k",
                      "confidence_threshold"):
                assert getattr(d, f) == getattr(o, f), f
            assert (d.nms_param.nms_threshold, d.nms_param.top_k) == (o.nms_param.nms_threshold, o.nms_param.top_k)
    cv = cv2.dnn.readNetFromCaffe(str(tmp_path / "net.prototxt"), str(tmp_path / "net.caffemodel"))
    cv.setInput(x["data"], "data")
    writer = {t: L.name for L in deploy.layer for t in L.top}
    res = dict(zip(report["outputs"], cv.forward([writer[n] for n in report["outputs"]])))
    for n in HEADS:
        assert_close(np.asarray(res[n]).reshape(got[n].shape), got[n], n)
    mine = got["detection_out"][0]
    n = int((mine[:, 0] >= 0).sum())
    assert n >= 10
    theirs = np.asarray(res["detection_out"])[0, 0]
    single_class = _layer(deploy, "DetectionOutput").detection_output_param.num_classes == 2
    assert_close(theirs[:n], mine[:n] if single_class else _opencv_order(mine[:n]), "detection_out")
