"""verify of a keras2caffe export: the prototxt's first line records ``--target`` (a comment every
Caffe parser skips), and ``--reference auto`` runs that target's runtime, saying so."""
import numpy as np
import pytest

from bnconvert.cli import main
from bnconvert.k2c.targets import recorded_target

from verify.test_references import _use_pycaffe

pytest.importorskip("cv2")


def _model(path, relu6=True):
    import keras

    x = keras.Input((12, 12, 3), name="data")
    y = keras.layers.Conv2D(6, 3, padding="same", name="conv")(x)
    y = keras.layers.BatchNormalization(name="bn")(y)
    y = keras.layers.ReLU(6.0 if relu6 else None, name="act")(y)
    y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
    y = keras.layers.Dense(4, name="fc")(y)
    m = keras.Model(x, y, name="small")
    rng = np.random.default_rng(0)
    ws = [rng.normal(0, 1, w.shape).astype("float32") for w in m.get_weights()]
    ws[5] = np.abs(ws[5]) + 0.5  # the moving variance
    m.set_weights(ws)
    m.save(path)
    return path


def _export(tmp_path, target, relu6=True):
    model = _model(tmp_path / f"m{int(relu6)}.keras", relu6)
    proto, weights = tmp_path / f"{target}.prototxt", tmp_path / f"{target}.caffemodel"
    assert main(["keras2caffe", str(model), "-o", str(proto), str(weights), "--target", target, "-q"]) == 0
    return model, proto, weights


def _verify(capsys, model, proto, weights, *extra):
    rc = main(["verify", str(proto), str(weights), str(model), *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("target", ["caffe", "opencv"])
def test_the_export_records_its_target_in_a_comment(tmp_path, target):
    from bnconvert.caffe.io import read_prototxt

    _, proto, _ = _export(tmp_path, target)
    first = proto.read_text().splitlines()[0]
    assert first == f"# bnconvert keras2caffe --target {target}"
    assert recorded_target(proto) == target
    assert [L.name for L in read_prototxt(str(proto)).layer][:2] == ["data", "conv"], "the comment is skipped"


def test_only_a_leading_comment_counts(tmp_path):
    p = tmp_path / "n.prototxt"
    p.write_text('name: "n"\n# bnconvert keras2caffe --target opencv\n')
    assert recorded_target(p) is None
    p.write_text("# another comment\n# bnconvert keras2caffe --target tpu\nname: 'n'\n")
    assert recorded_target(p) is None
    p.write_text("\ufeff# from a tool\n# bnconvert keras2caffe --target opencv\nname: 'n'\n")
    assert recorded_target(p) == "opencv"
    assert recorded_target(tmp_path / "missing.prototxt") is None


def test_opencv_export_uses_opencv_although_pycaffe_is_there(tmp_path, request, capsys):
    """With pycaffe importable, plain auto would try it first (and fail on OpenCV's ReLU6 type)."""
    _use_pycaffe(request)
    model, proto, weights = _export(tmp_path, "opencv")
    assert "type: \"ReLU6\"" in proto.read_text()
    rc, out, err = _verify(capsys, model, proto, weights)
    assert rc == 0, out + err
    assert "reference: opencv dnn" in out and "chosen because the prototxt records keras2caffe --target opencv" in out
    assert "pycaffe" not in err, "no attempt at pycaffe, no fallback warning"


def test_caffe_export_uses_pycaffe(tmp_path, request, capsys):
    _use_pycaffe(request)
    model, proto, weights = _export(tmp_path, "caffe")
    assert "type: \"Clip\"" in proto.read_text()
    rc, out, err = _verify(capsys, model, proto, weights)
    assert rc == 0, out + err
    assert "reference: caffe (pycaffe)" in out
    assert "chosen because the prototxt records keras2caffe --target caffe (BVLC Caffe)" in out


def test_caffe_export_without_pycaffe_says_it_used_opencv(tmp_path, monkeypatch, capsys):
    from bnconvert.verify import pycaffe

    monkeypatch.setattr(pycaffe, "pycaffe_importable", lambda: False)
    model, proto, weights = _export(tmp_path, "caffe", relu6=False)
    rc, out, err = _verify(capsys, model, proto, weights)
    assert rc == 0, out + err
    assert "reference: opencv dnn" in out and "pycaffe not importable for this --target caffe export" in out
    assert "records keras2caffe --target caffe (BVLC Caffe), but pycaffe" in err


def test_a_named_reference_is_kept_with_a_warning(tmp_path, monkeypatch, capsys):
    from bnconvert.verify import pycaffe

    monkeypatch.setattr(pycaffe, "pycaffe_importable", lambda: False)
    model, proto, weights = _export(tmp_path, "caffe", relu6=False)
    rc, out, err = _verify(capsys, model, proto, weights, "--reference", "opencv")
    assert rc == 0, out + err
    assert "reference: opencv dnn" in out and "chosen because" not in out
    assert "--reference opencv was asked for" in err
