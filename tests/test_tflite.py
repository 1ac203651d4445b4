"""TFLite output (bnconvert/tflite.py): `caffe2keras -o m.tflite` computes Caffe's numbers in the
TFLite interpreter (ai_edge_litert when installed, else tf.lite)."""
import numpy as np
import pytest

from bnconvert.cli import main

from helpers import ROOT, assert_close, need_shared


def test_resnet50_slim_tflite_matches_caffe(tmp_path):
    from bnconvert.tflite import run_tflite

    case = need_shared("caffe-ref/resnet50_slim")
    out = tmp_path / "m.tflite"
    assert main(["caffe2keras", str(case / "deploy.prototxt"), str(case / "weights.caffemodel"), "-o", str(out),
                 "-q"]) == 0
    assert out.read_bytes()[4:8] == b"TFL3"  # the flatbuffer's file identifier
    x = np.load(case / "input.npz")["data"]
    got = run_tflite(out, {"data": x.transpose(0, 2, 3, 1)})
    assert sorted(got) == ["prob"]
    assert_close(got["prob"], np.load(case / "ref.npz")["prob"], "prob")


def test_format_must_agree_with_the_extension(tmp_path, capsys):
    src = ROOT / "sample_models" / "mini_resnet"
    rc = main(["caffe2keras", str(src / "deploy.prototxt"), str(src / "weights.caffemodel"), "-o",
               str(tmp_path / "m.keras"), "--format", "tflite"])
    assert rc == 2 and "--format tflite does not agree with the extension .keras" in capsys.readouterr().err
    assert not (tmp_path / "m.keras").exists()


def test_not_a_tflite_file_is_a_clear_error(tmp_path):
    from bnconvert.errors import VerificationError
    from bnconvert.tflite import run_tflite

    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(VerificationError, match="not a TFLite model"):
        run_tflite(bad, {})
