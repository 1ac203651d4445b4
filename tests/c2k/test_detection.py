"""SSD's PriorBox and DetectionOutput: per layer against numpy written from weiliu89/caffe (branch ssd)
and against OpenCV dnn where OpenCV agrees with that source; the SSD nets of ../shared/zoo against
OpenCV dnn, heads blob by blob and detections row by row.

Where OpenCV dnn deviates from SSD's Caffe (so those cases are compared with numpy only):
- DetectionOutput's row order: Caffe writes an image's rows by label, then by NMS order; OpenCV sorts
  them all by score (its ``group_by_classes`` is not in its caffe.proto). With one foreground class the
  orders coincide; otherwise the OpenCV comparison puts our rows in OpenCV's documented order (a sort
  by descending score, on data whose scores are all distinct, so that order is defined).
- OpenCV ignores ``eta`` (adaptive NMS), maps ``CORNER_SIZE`` to ``CORNER``, requires ``keep_top_k``,
  refuses ``variance_encoded_in_target`` with a Caffe prior blob (it wants one channel), reads
  ``top_k: 0`` as "all", requires ``share_location`` and ``background_label_id`` written out, and pads
  its output with zeros to keep_top_k rows.
- Caffe's own CPU path aborts on ``share_location`` with ``background_label_id: -1`` (DecodeBBoxesAll
  skips location label -1, then finds no boxes), and so does OpenCV; Caffe's GPU path decodes them.
  bnconvert and the numpy reference follow the GPU path.
- PriorBox: OpenCV uses the first ``min_size``/``max_size`` only, keeps them fractional (Caffe
  truncates them to int), ignores ``img_size``/``img_h``/``img_w``, clips by default (Caffe does not)
  and requires ``variance`` (Caffe defaults it to 0.1).
"""
from pathlib import Path

import numpy as np
import pytest

from bnconvert.caffe.ssd import detection_output_settings
from bnconvert.keras_layers import CaffeDetectionOutput, caffe_detections, detection_model
from bnconvert.keras_layers.detection import PAD_ROW

from helpers import assert_close

from . import _ssd_ref as ref
from ._util import Case, convert, input_layer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _prior_proto(param, feat=(1, 4, 5, 7), img=(1, 3, 60, 84), two_bottoms=True):
    body = input_layer("feat", feat) + (input_layer("data", img) if two_bottoms else "")
    bottoms = 'bottom: "feat" ' + ('bottom: "data" ' if two_bottoms else "")
    layer = f'layer {{ name: "pb" type: "PriorBox" {bottoms}top: "pb" prior_box_param {{ {param} }} }}\n'
    return f'name: "t"\n{body}{layer}'


PRIOR_CASES = {
    "ssd_style": ("min_size: 30 max_size: 60 aspect_ratio: 2 flip: true clip: false "
                  "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 step: 8 offset: 0.5", {}),
    "mobilenet_style": ("min_size: 60.0 max_size: 105.0 aspect_ratio: 2.0 aspect_ratio: 3.0 flip: true clip: false "
                        "variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 offset: 0.5", {}),
    "multi_min_no_flip_clip": ("min_size: 10 min_size: 25.7 max_size: 20 max_size: 40 aspect_ratio: 2 "
                               "aspect_ratio: 0.5 aspect_ratio: 2.0000001 flip: false clip: true variance: 0.2", {}),
    "default_variance_step_hw": ("min_size: 16 aspect_ratio: 3 step_h: 9 step_w: 11.5 offset: 0.25", {}),
    "img_size_one_bottom": ("min_size: 32 max_size: 50 img_size: 100 clip: true", {"two_bottoms": False}),
    "img_h_w": ("min_size: 20 aspect_ratio: 1.5 img_h: 70 img_w: 90 offset: 0", {}),
}


def _prior_settings(param):
    """The reference's arguments from a prior_box_param text."""
    from google.protobuf import text_format

    from bnconvert.caffe.io import pb2

    p = text_format.Parse(param, pb2().PriorBoxParameter())
    step_h, step_w = (p.step, p.step) if p.HasField("step") else (p.step_h, p.step_w)
    img = (p.img_size, p.img_size) if p.HasField("img_size") else (p.img_h, p.img_w) if p.HasField("img_h") else None
    return dict(min_size=list(p.min_size), max_size=list(p.max_size), aspect_ratio=list(p.aspect_ratio),
                flip=p.flip, clip=p.clip, variance=list(p.variance), step_h=step_h, step_w=step_w,
                offset=p.offset), img


@pytest.mark.parametrize("name", sorted(PRIOR_CASES))
def test_prior_box_matches_the_ssd_source(tmp_path, name):
    param, kw = PRIOR_CASES[name]
    case = convert(tmp_path, _prior_proto(param, **kw))
    settings, img = _prior_settings(param)
    want = ref.prior_box((5, 7), img or (60, 84), **settings)
    x = {"feat": np.zeros((2, 4, 5, 7), np.float32), "data": np.zeros((2, 3, 60, 84), np.float32)}
    got = case.run({k: v for k, v in x.items() if k in case.report["inputs"]})["pb"]
    assert case.net.shapes["pb"] == want.shape
    assert got.shape == (2,) + want.shape[1:]  # one row per image, each Caffe's single row
    for b in range(2):
        assert_close(got[b:b + 1], want, f"pb[{b}]")


@pytest.mark.parametrize("name", ["ssd_style", "mobilenet_style", "default_variance_step_hw"])
def test_prior_box_matches_opencv_where_it_agrees(tmp_path, name):
    param, kw = PRIOR_CASES[name]
    param += "" if "clip" in param else " clip: false"  # OpenCV's default clip is true, Caffe's false
    param += "" if "variance" in param else " variance: 0.1"  # OpenCV requires a variance
    case = convert(tmp_path, _prior_proto(param, **kw))
    x = {"feat": np.zeros((1, 4, 5, 7), np.float32), "data": np.zeros((1, 3, 60, 84), np.float32)}
    got = case.run(x)["pb"]
    assert_close(got, case.opencv(x, ["pb"])["pb"], "pb")


def test_prior_box_refuses_what_caffe_checks(tmp_path):
    from bnconvert.errors import ConversionError

    for bad in ("max_size: 10", "min_size: 10 max_size: 5", "min_size: 10 variance: 0.1 variance: 0.2",
                "min_size: 10 step: 4 step_h: 4", "min_size: 10 img_size: 30 img_h: 30 img_w: 30"):
        with pytest.raises(ConversionError, match="'pb'"):
            convert(tmp_path, _prior_proto(bad))


# --- DetectionOutput --------------------------------------------------------------------------


def _priors(feat_hw=(6, 6), img=(96, 96), **kw):
    settings = dict(min_size=[20.0], max_size=[45.0], aspect_ratio=[2.0, 3.0], flip=True,
                    variance=[0.1, 0.1, 0.2, 0.2])
    settings.update(kw)
    return ref.prior_box(feat_hw, img, **settings)


def _det_proto(num, p, num_classes, nloc, param):
    body = (input_layer("loc", (num, p * nloc * 4)) + input_layer("conf", (num, p * num_classes))
            + input_layer("prior", (1, 2, p * 4)))
    return (f'name: "t"\n{body}layer {{ name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
            f'bottom: "prior" top: "det" detection_output_param {{ {param} }} }}\n')


def _settings(param):
    from google.protobuf import text_format

    from bnconvert.caffe.io import pb2

    return detection_output_settings(text_format.Parse(param, pb2().DetectionOutputParameter()), ValueError)


DET_CASES = {
    "center_size": ("num_classes: 4 nms_param { nms_threshold: 0.45 top_k: 50 } code_type: CENTER_SIZE "
                    "keep_top_k: 30 confidence_threshold: 0.2", {}),
    "corner": ("num_classes: 3 nms_param { nms_threshold: 0.5 top_k: 40 } code_type: CORNER keep_top_k: 25 "
               "confidence_threshold: 0.3", {"loc_std": 0.05}),
    "corner_size": ("num_classes: 3 nms_param { nms_threshold: 0.4 top_k: 60 } code_type: CORNER_SIZE "
                    "keep_top_k: 40 confidence_threshold: 0.25", {"loc_std": 0.3}),
    "variance_in_target": ("num_classes: 3 nms_param { nms_threshold: 0.45 top_k: 60 } code_type: CENTER_SIZE "
                           "variance_encoded_in_target: true keep_top_k: 50 confidence_threshold: 0.3",
                           {"loc_std": 0.08}),
    "per_class_locations": ("num_classes: 4 share_location: false nms_param { nms_threshold: 0.45 top_k: 30 } "
                            "code_type: CENTER_SIZE keep_top_k: 40 confidence_threshold: 0.2", {}),
    "no_background": ("num_classes: 3 background_label_id: -1 nms_param { nms_threshold: 0.45 top_k: 30 } "
                      "code_type: CENTER_SIZE keep_top_k: 45 confidence_threshold: 0.25", {}),
    "background_in_the_middle": ("num_classes: 4 background_label_id: 2 nms_param { nms_threshold: 0.3 } "
                                 "code_type: CENTER_SIZE confidence_threshold: 0.3", {}),
    "adaptive_eta": ("num_classes: 3 nms_param { nms_threshold: 0.9 top_k: 80 eta: 0.8 } code_type: CENTER_SIZE "
                     "keep_top_k: 60 confidence_threshold: 0.2", {"loc_std": 0.1}),
    "defaults_keep_everything": ("num_classes: 3 code_type: CENTER_SIZE", {"num_feat": (3, 3)}),
    "tied_scores": ("num_classes: 3 nms_param { nms_threshold: 0.45 top_k: 70 } code_type: CENTER_SIZE "
                    "keep_top_k: 200 confidence_threshold: 0.15", {"quantize": 0.05}),
    "top_k_zero": ("num_classes: 3 nms_param { top_k: 0 } code_type: CENTER_SIZE keep_top_k: 5", {}),
    "keep_top_k_zero": ("num_classes: 3 nms_param { top_k: 10 } code_type: CENTER_SIZE keep_top_k: 0", {}),
    "nothing_passes": ("num_classes: 3 nms_param { top_k: 10 } code_type: CENTER_SIZE keep_top_k: 5 "
                       "confidence_threshold: 0.9999", {}),
}


def _explicit(param):
    """OpenCV requires share_location and background_label_id to be written out."""
    for field, default in (("share_location", "true"), ("background_label_id", "0")):
        param += "" if field in param else f" {field}: {default}"
    return param


def _det_case(tmp_path, name, num=2, opencv=False):
    param, kw = DET_CASES[name]
    param = _explicit(param) if opencv else param
    kw = dict(kw)
    prior = _priors(kw.pop("num_feat", (6, 6)))
    s = _settings(param)
    nloc = 1 if s["share_location"] else s["num_classes"]
    loc, conf = ref.heads(prior, num, s["num_classes"], nloc, seed=3, **kw)
    case = convert(tmp_path, _det_proto(num, prior.shape[2] // 4, s["num_classes"], nloc, param))
    return case, {"loc": loc, "conf": conf, "prior": prior}, s


def _check_padding(raw):
    for b in range(raw.shape[0]):
        valid = raw[b, :, 0] >= 0
        n = int(valid.sum())
        assert valid[:n].all(), "valid rows must come first"
        assert (raw[b, :n, 0] == b).all()
        assert (raw[b, n:] == np.float32(PAD_ROW)).all()


@pytest.mark.parametrize("name", sorted(DET_CASES))
def test_detection_output_matches_the_ssd_source(tmp_path, name):
    case, x, s = _det_case(tmp_path, name)
    raw = case.run(x)["det"]
    assert raw.shape == case.net.shapes["det"]
    _check_padding(raw)
    want = ref.detection_output(x["loc"], x["conf"], x["prior"], **s)
    got = caffe_detections(raw)
    assert got.shape == want.shape, f"{got.shape[2]} detections, the SSD source gives {want.shape[2]}"
    assert (got[..., :2] == want[..., :2]).all(), "image ids and labels, row by row"
    assert_close(got, want, "det")
    if name not in ("top_k_zero", "keep_top_k_zero", "nothing_passes"):
        assert want.shape[2] >= 8, "too few detections for the comparison to mean much"


@pytest.mark.parametrize("name", ["center_size", "adaptive_eta", "tied_scores", "per_class_locations"])
def test_sequential_nms_gives_the_same_detections(tmp_path, monkeypatch, name):
    """Large candidate sets use the one-candidate-at-a-time NMS instead of the overlap matrix."""
    import bnconvert.keras_layers.detection as det

    case, x, s = _det_case(tmp_path, name)
    matrix = case.run(x)["det"]
    monkeypatch.setattr(det, "MATRIX_NMS_LIMIT", 0)
    sequential = case.run(x)["det"]
    np.testing.assert_array_equal(sequential, matrix)
    assert_close(caffe_detections(sequential), ref.detection_output(x["loc"], x["conf"], x["prior"], **s), "det")


def test_detection_output_keep_top_k_truncates_across_classes(tmp_path):
    case, x, s = _det_case(tmp_path, "center_size")
    untruncated = dict(s, keep_top_k=-1)
    n_all = ref.detection_output(x["loc"], x["conf"], x["prior"], **untruncated).shape[2]
    assert n_all > 2 * s["keep_top_k"], "the case must exercise keep_top_k"


def _opencv_order(rows):
    """OpenCV's order of one image's rows: by descending score (the test data's scores are distinct)."""
    assert len(np.unique(rows[:, 2])) == len(rows), "equal scores: OpenCV's std::sort order is not defined"
    return rows[np.argsort(-rows[:, 2], kind="stable")]


@pytest.mark.parametrize("name", ["center_size", "corner", "per_class_locations"])
def test_detection_output_matches_opencv_where_it_agrees(tmp_path, name):
    case, x, s = _det_case(tmp_path, name, num=1, opencv=True)
    raw = case.run(x)["det"][0]
    cv = case.opencv(x, ["det"])["det"][0, 0]
    n = int((raw[:, 0] >= 0).sum())
    assert n >= 8
    assert_close(cv[:n], _opencv_order(raw[:n]), "det")
    assert not cv[n:].any(), "OpenCV pads with zero rows"


def test_one_foreground_class_has_caffes_order_in_opencv_too(tmp_path):
    param = ("num_classes: 2 nms_param { nms_threshold: 0.45 top_k: 60 } code_type: CENTER_SIZE keep_top_k: 30 "
             "confidence_threshold: 0.2")
    prior = _priors()
    loc, conf = ref.heads(prior, 1, 2, seed=5, logit_std=1.5)
    case = convert(tmp_path, _det_proto(1, prior.shape[2] // 4, 2, 1, _explicit(param)))
    x = {"loc": loc, "conf": conf, "prior": prior}
    raw = case.run(x)["det"][0]
    n = int((raw[:, 0] >= 0).sum())
    assert n >= 8
    assert_close(case.opencv(x, ["det"])["det"][0, 0, :n], raw[:n], "det")


def test_detection_model_on_heads_alone():
    prior = _priors()
    p = prior.shape[2] // 4
    loc, conf = ref.heads(prior, 2, 3, seed=7)
    kw = dict(nms_threshold=0.45, top_k=40, code_type="CENTER_SIZE", keep_top_k=30, confidence_threshold=0.25)
    model = detection_model(p, 3, **kw)
    out = np.asarray(model([loc, conf, np.broadcast_to(prior, (2,) + prior.shape[1:])]))
    assert out.shape == (2, 30, 7)
    want = ref.detection_output(loc, conf, prior, 3, **kw)
    assert_close(caffe_detections(out), want, "det")


def test_detection_layer_config_round_trips():
    layer = CaffeDetectionOutput(5, share_location=False, background_label_id=-1, nms_threshold=0.4, top_k=7,
                                 eta=0.9, code_type="CORNER_SIZE", variance_encoded_in_target=True, keep_top_k=3,
                                 confidence_threshold=0.1, name="d")
    again = CaffeDetectionOutput.from_config(layer.get_config())
    assert again.get_config() == layer.get_config()
    with pytest.raises(ValueError, match="Received: BOX"):
        CaffeDetectionOutput(3, code_type="BOX")


def test_caffe_detections_writes_caffes_fake_rows_when_nothing_is_found():
    empty = np.broadcast_to(np.float32(PAD_ROW), (2, 4, 7))
    got = caffe_detections(empty)
    assert got.tolist() == [[[[0, -1, -1, -1, -1, -1, -1], [1, -1, -1, -1, -1, -1, -1]]]]


def test_detection_output_errors_name_the_layer(tmp_path):
    from bnconvert.errors import ConversionError

    bad = _det_proto(1, 10, 3, 1, "num_classes: 4 code_type: CENTER_SIZE")  # conf holds 10 x 3, not 10 x 4
    with pytest.raises(ConversionError, match="'det'.*confidence predictions"):
        convert(tmp_path, bad)
    with pytest.raises(ConversionError, match="num_classes"):
        convert(tmp_path, _det_proto(1, 10, 3, 1, "code_type: CENTER_SIZE"))


# --- the SSD nets of ../shared/zoo --------------------------------------------------------------

# (prototxt under zoo/, mean and scale of the input; the VGG nets are trained on mean-subtracted pixels,
# scaled here to keep random-weight activations in a range where fp32 sums stay within tolerance)
SSD_NETS = {
    "mobilenet_ssd/MobileNetSSD_deploy.prototxt": (127.5, 0.007843),
    "ssd300_vgg16_voc0712/deploy.prototxt": (110.0, 1 / 128),
    "opencv_face_res10_ssd/deploy.prototxt": (110.0, 1 / 128),
}
HEADS = ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"]


def ssd_caffemodel(net, path, seed=1, conf_bias=1.0):
    """Random weights with realistic BatchNorm statistics; the confidence heads' biases spread out so
    that random features still give detections above the nets' confidence thresholds."""
    from bnconvert.caffe.graph import INPUT_TYPES
    from bnconvert.caffe.io import array_to_blob, pb2, write_caffemodel
    from bnconvert.testing import random_blobs

    rng = np.random.default_rng(seed)
    model = pb2().NetParameter(name=net.name)
    for L in net.layers:
        if L.type in INPUT_TYPES or not getattr(L, "param_shapes", None):
            continue
        blobs = random_blobs(L, L.param_shapes, rng)
        if L.name.endswith("_mbox_conf"):
            blobs[1] = rng.normal(0, conf_bias, blobs[1].shape).astype(np.float32)
        lp = model.layer.add(name=L.name, type=L.type)
        for b in blobs:
            array_to_blob(b, lp.blobs.add())
    write_caffemodel(model, str(path))


def ssd_case(tmp_path, rel):
    from helpers import ROOT, need_shared

    from bnconvert.c2k import convert_caffe
    from bnconvert.caffe.graph import load_net

    local = ROOT / "tests" / "nets" / "forks" / Path(rel).name  # MobileNet-SSD is kept here too
    proto = local if local.exists() else need_shared("zoo") / rel
    cm = tmp_path / "w.caffemodel"
    ssd_caffemodel(load_net(str(proto)), cm)
    names = HEADS + ["detection_out"]
    model, report = convert_caffe(str(proto), str(cm), outputs=names)
    net = load_net(str(proto), str(cm), outputs=names)
    mean, scale = SSD_NETS[rel]
    x = {"data": ((ref.synthetic_image(300, 300) - np.float32(mean)) * np.float32(scale)).astype(np.float32)}
    return Case(proto, cm, net, model, report), x


@pytest.mark.parametrize("rel", sorted(SSD_NETS), ids=[r.split("/")[0] for r in sorted(SSD_NETS)])
def test_ssd_net_matches_opencv(tmp_path, rel):
    case, x = ssd_case(tmp_path, rel)
    got = case.run(x)
    cv = case.opencv(x, HEADS + ["detection_out"])
    for n in HEADS:
        assert_close(got[n], cv[n], n)
    s = detection_output_settings(case.net.layer("detection_out").param.detection_output_param, ValueError)
    raw = got["detection_out"][0]
    n = int((raw[:, 0] >= 0).sum())
    assert n >= 10, f"only {n} detections: the comparison would say little"
    # Caffe's order, from the SSD source run on OpenCV's heads
    want = ref.detection_output(cv["mbox_loc"], cv["mbox_conf_flatten"], cv["mbox_priorbox"], **s)
    assert (caffe_detections(got["detection_out"])[..., :2] == want[..., :2]).all()
    assert_close(caffe_detections(got["detection_out"]), want, "detection_out vs the SSD source")
    # OpenCV's own DetectionOutput: same rows, in its score order
    cv_rows = cv["detection_out"][0, 0]
    mine = raw[:n] if s["num_classes"] - 1 == 1 else _opencv_order(raw[:n])
    assert (cv_rows[:n, :2] == mine[:, :2]).all(), "image ids and labels, row by row"
    assert_close(cv_rows[:n], mine, "detection_out vs OpenCV")
    assert not cv_rows[n:].any()


def test_detection_output_runs_under_jax(tmp_path):
    """The layer is keras.ops only: the same detections under the JAX backend, eagerly and jitted."""
    import importlib.util
    import subprocess
    import sys
    import textwrap

    from helpers import ROOT

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed in this environment (the layer's JAX run needs it)")
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        import keras
        assert keras.backend.backend() == "jax"
        from c2k import _ssd_ref as ref
        from bnconvert.keras_layers import caffe_detections, detection_model
        prior = ref.prior_box((6, 6), (96, 96), [20], [45], [2.0, 3.0], variance=[0.1, 0.1, 0.2, 0.2])
        loc, conf = ref.heads(prior, 2, 4, seed=3)
        kw = dict(nms_threshold=0.9, eta=0.8, top_k=80, code_type="CENTER_SIZE", keep_top_k=60,
                  confidence_threshold=0.2)
        m = detection_model(prior.shape[2] // 4, 4, **kw)
        want = ref.detection_output(loc, conf, prior, 4, **kw)
        for out in (m([loc, conf, prior]), m.predict([loc, conf, np.concatenate([prior, prior])], verbose=0)):
            got = caffe_detections(np.asarray(out))
            assert got.shape == want.shape and np.abs(got - want).max() <= 1e-4, (got.shape, want.shape)
        print("JAX_OK")
    """)
    import os

    env = dict(os.environ, KERAS_BACKEND="jax")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)
    assert "JAX_OK" in proc.stdout, proc.stderr[-3000:]
