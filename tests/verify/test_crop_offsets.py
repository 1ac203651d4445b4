"""verify --crop-offsets: a HED model converted with HED's fork's crop offsets (coordinate maps) is checked
against a reference that runs the fork's crops (the offsets handed to it as crop_param)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bnconvert.cli import main
from bnconvert.testing import random_caffemodel

HED = Path(__file__).resolve().parents[1] / "nets" / "forks" / "hed_deploy.prototxt"
SHAPE = "data=1,3,48,48"
FORK_OFFSETS = (34, 35, 36, 38, 42)  # dsn1..dsn5, as HED's fork computes them (tests/c2k/test_crop_offsets.py)


def _crops_named_apart(path):
    """HED with its five Crop layers (all named 'crop') named 'crop-dsn1'..'crop-dsn5'."""
    text = HED.read_text()
    for i in range(1, 6):
        text = text.replace("name: 'crop' ", f"name: 'crop-dsn{i}' ", 1)
    assert "name: 'crop' " not in text
    path.write_text(text)
    return path


@pytest.fixture(scope="module", params=["as shipped", "crops named apart"])
def hed(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("hed")
    proto = HED if request.param == "as shipped" else _crops_named_apart(d / "hed_named.prototxt")
    cm = d / "hed.caffemodel"
    random_caffemodel(str(proto), cm, input_shapes={"data": (1, 3, 48, 48)}, seed=1)
    model = d / "hed.keras"
    rc = main(["caffe2keras", str(proto), str(cm), "-o", str(model), "--input-shape", SHAPE,
               "--crop-offsets", "coordmap", "-q"])
    assert rc == 0
    return proto, cm, model


def _verify(hed, tmp_path, *extra, reference="opencv"):
    proto, cm, model = hed
    report = tmp_path / "r.json"
    rc = main(["verify", str(proto), str(cm), str(model), "--reference", reference, "--input-shape", SHAPE,
               "--report", str(report), "-q", *extra])
    return rc, json.loads(report.read_text())


def test_reference_net_carries_the_forks_offsets():
    from bnconvert.caffe.graph import load_net
    from bnconvert.verify.refnet import caffe_net, inference_net

    shapes = {"data": (1, 3, 48, 48)}
    net = load_net(str(HED), input_shapes=shapes, crop_offsets="coordmap")
    crops = [lp for lp in inference_net(net, shapes).layer if lp.type == "Crop"]
    assert [(lp.crop_param.axis, list(lp.crop_param.offset)) for lp in crops] == [(2, [o, o]) for o in FORK_OFFSETS]
    assert "offset: 34" in caffe_net(net, shapes)
    plain = load_net(str(HED), input_shapes=shapes)
    assert not any(lp.HasField("crop_param") for lp in inference_net(plain, shapes).layer if lp.type == "Crop")


@pytest.mark.parametrize("reference", ["opencv", "caffe"])
def test_coordmap_model_passes_with_the_option(hed, tmp_path, reference, request):
    named_apart = hed[0] != HED
    if reference == "caffe":
        caffe = request.getfixturevalue("pycaffe")  # real BVLC pycaffe in verify's worker (skips with the reason)
        request.getfixturevalue("monkeypatch").setenv("PYTHONPATH", caffe.env()["PYTHONPATH"])
    else:
        pytest.importorskip("cv2")
    rc, d = _verify(hed, tmp_path, "--crop-offsets", "coordmap", reference=reference)
    assert rc == 0 and d["passed"] is True, d["first_divergent"]
    ok = {r["blob"] for r in d["rows"] if r["status"] == "ok"}
    crops = {f"upscore-dsn{i}" for i in range(1, 6)}
    if named_apart:
        assert crops | {"sigmoid-fuse"} <= ok
    else:  # as shipped the five crops share one name: not comparable (never paired wrongly), the rest judged
        shared = {r["blob"]: r for r in d["rows"] if r["blob"] in crops}
        # (pycaffe's worker hands out values by layer name, so it has a row for one of them only)
        assert shared and all(r["status"] == "not comparable" and "shared by 5 layers" in r["note"]
                              for r in shared.values()), shared
        assert {f"sigmoid-dsn{i}" for i in range(1, 6)} | {"sigmoid-fuse"} <= ok


def test_coordmap_model_fails_at_the_first_crop_without_the_option(hed, tmp_path):
    pytest.importorskip("cv2")
    rc, d = _verify(hed, tmp_path)
    assert rc == 1 and d["passed"] is False
    first = d["first_divergent"]
    if hed[0] == HED:  # the crops themselves are not comparable (shared name): the side output after the first
        assert (first["type"], first["blob"]) == ("Sigmoid", "sigmoid-dsn1"), first
    else:
        assert (first["layer"], first["type"], first["blob"]) == ("crop-dsn1", "Crop", "upscore-dsn1")
