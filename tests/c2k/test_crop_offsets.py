"""HED's deploy net under both readings of its param-less Crops: BVLC's (offset 0, the default) and HED's
fork's (crop_offsets="coordmap": 34, 35, 36, 38, 42 from the coordinate maps, as its crop_layer.cpp)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bnconvert.c2k import convert_caffe
from bnconvert.cli import main
from bnconvert.testing import random_caffemodel, random_inputs, run_keras

from helpers import assert_close

HED = Path(__file__).resolve().parents[1] / "nets" / "forks" / "hed_deploy.prototxt"
SHAPE = (1, 3, 48, 48)  # HED's pad-35 first convolution gives every side output room at any size
FORK_OFFSETS = (34, 35, 36, 38, 42)  # dsn1..dsn5, as HED's fork computes them
SIDES = [(f"score-dsn{i}-up", f"upscore-dsn{i}") for i in range(1, 6)]


@pytest.fixture(scope="module")
def hed(tmp_path_factory):
    cm = tmp_path_factory.mktemp("hed") / "hed.caffemodel"
    net = random_caffemodel(str(HED), cm, input_shapes={"data": SHAPE}, seed=1)
    return cm, random_inputs(net, seed=2)


def _run(hed, **kw):
    cm, x = hed
    names = [n for pair in SIDES for n in pair]
    model, report = convert_caffe(str(HED), str(cm), input_shapes={"data": SHAPE}, outputs=names, **kw)
    return dict(zip(names, run_keras(model, x, list(report["inputs"])))), report


def test_coordmap_crops_at_the_forks_offsets(hed):
    got, report = _run(hed, crop_offsets="coordmap")
    h, w = SHAPE[2:]
    for (full, cropped), o in zip(SIDES, FORK_OFFSETS):
        assert_close(got[cropped], got[full][:, :, o:o + h, o:o + w], cropped)
        assert not np.allclose(got[cropped], got[full][:, :, :h, :w]), f"{cropped}: offset {o} must matter"
    assert not [w for w in report["warnings"] if "--crop-offsets" in w]


def test_default_is_bvlcs_offset_zero_with_a_warning(hed):
    got, report = _run(hed)
    h, w = SHAPE[2:]
    for full, cropped in SIDES:
        assert_close(got[cropped], got[full][:, :, :h, :w], cropped)
    warned = [w for w in report["warnings"] if "--crop-offsets coordmap" in w]
    (w,) = warned
    assert w.startswith("5 Crop layer(s) without crop_param") and "'crop' at (34, 34), 'crop' at (35, 35)" in w


def test_cli_inspect_shows_the_offsets_and_help_names_the_option(capsys):
    argv = ["inspect", str(HED), "--input-shape", "data=1,3,48,48", "--json"]
    assert main(argv + ["--crop-offsets", "coordmap"]) == 0
    crops = json.loads(capsys.readouterr().out)["crops"]
    assert [c["offsets"] for c in crops] == [[o, o] for o in FORK_OFFSETS]
    assert {c["source"] for c in crops} == {"coordinate maps (HED's fork)"}
    assert main(argv) == 0
    crops = json.loads(capsys.readouterr().out)["crops"]
    assert [c["offsets"] for c in crops] == [[0, 0]] * 5
    assert [c["coordmap_offsets"] for c in crops] == [[o, o] for o in FORK_OFFSETS]
    with pytest.raises(SystemExit):
        main(["caffe2keras", "--help"])
    assert "--crop-offsets {param,coordmap}" in capsys.readouterr().out


def test_coordmap_model_equals_opencv_on_the_net_with_explicit_offsets(hed, tmp_path):
    """OpenCV runs BVLC's Crop; given the fork's offsets as crop_param, it runs HED as the fork does."""
    cv2 = pytest.importorskip("cv2")
    from bnconvert.caffe.io import read_prototxt, write_prototxt

    cm, x = hed
    text = read_prototxt(HED)
    crops = [lp for lp in text.layer if lp.type == "Crop"]
    for lp, o in zip(crops, FORK_OFFSETS):
        lp.crop_param.axis = 2
        lp.crop_param.offset.extend([o, o])
    del text.input_dim[:]
    text.input_dim.extend(SHAPE)
    write_prototxt(text, tmp_path / "explicit.prototxt")
    cvnet = cv2.dnn.readNetFromCaffe(str(tmp_path / "explicit.prototxt"), str(cm))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setInput(x["data"], "data")
    names = ["sigmoid-dsn1", "sigmoid-dsn5", "sigmoid-fuse"]
    ref = dict(zip(names, cvnet.forward(names)))
    model, report = convert_caffe(str(HED), str(cm), input_shapes={"data": SHAPE}, outputs=names,
                                  crop_offsets="coordmap")
    got = dict(zip(names, run_keras(model, x, list(report["inputs"]))))
    for n in names:
        assert np.ptp(ref[n]) > 1e-3, f"{n}: reference must not be constant"
        assert_close(got[n], np.asarray(ref[n]), n)
