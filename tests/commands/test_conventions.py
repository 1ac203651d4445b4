"""CLI conventions (issue 13): -v/-q everywhere, warnings on stderr and aggregated, --progress with
an ETA, an unknown --outputs blob lists the valid names, float32 eps, singular/plural."""
import json
import subprocess
import sys

import pytest

from helpers import ROOT

SAMPLE = ROOT / "sample_models" / "mini_resnet"

# Three convolutions that name an engine (ignored, with one warning each) and one BatchNorm+Scale pair.
NET = """name: "conv3"
input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1" convolution_param { num_output: 4 kernel_size: 3 pad: 1 engine: CAFFE } }
layer { name: "bn" type: "BatchNorm" bottom: "c1" top: "c1" batch_norm_param { eps: 1e-5 } }
layer { name: "sc" type: "Scale" bottom: "c1" top: "c1" scale_param { bias_term: true } }
layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2" convolution_param { num_output: 4 kernel_size: 3 pad: 1 engine: CAFFE } }
layer { name: "c3" type: "Convolution" bottom: "c2" top: "c3" convolution_param { num_output: 4 kernel_size: 3 pad: 1 engine: CAFFE } }
"""


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bnconvert", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    from bnconvert.testing import random_caffemodel

    d = tmp_path_factory.mktemp("net")
    (d / "n.prototxt").write_text(NET)
    random_caffemodel(d / "n.prototxt", d / "n.caffemodel", seed=0)
    return d


def test_every_command_has_verbose_and_quiet_and_long_ones_progress():
    from bnconvert.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) >= {"caffe2keras", "keras2caffe", "upgrade", "inspect", "lint", "verify"}
    for name, p in sub.choices.items():
        flags = {s for a in p._actions for s in a.option_strings}
        assert {"-v", "--verbose", "-q", "--quiet"} <= flags, name
        if name in ("caffe2keras", "keras2caffe", "verify"):
            assert {"--progress", "--no-progress"} <= flags, name


def test_warnings_on_stderr_aggregated_kept_by_quiet_and_listed_by_verbose(net, tmp_path):
    args = ("caffe2keras", net / "n.prototxt", net / "n.caffemodel", "-o", tmp_path / "m.keras")
    r = cli(*args, "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    assert "warning:" not in r.stdout
    lines = [x for x in r.stderr.splitlines() if "engine is ignored" in x]
    assert len(lines) == 1 and "3 layers (Convolution): engine is ignored" in lines[0] and "(c1, c2, c3)" in lines[0]
    assert "1 BatchNorm+Scale pair merged" in r.stdout and "1 layer:" in r.stdout  # singular
    assert "eps        1e-05" in r.stdout
    text = (tmp_path / "r.json").read_text()
    assert '"batchnorm_eps": [\n    1e-05\n  ]' in text and "9.99999" not in text
    assert len(json.loads(text)["warnings"]) == 3  # the report keeps every warning
    q = cli(*args, "-q")
    assert q.returncode == 0 and q.stdout == "" and q.stderr == r.stderr.replace(str(tmp_path / "r.json"), "")
    v = cli(*args, "-v")
    assert len([x for x in v.stderr.splitlines() if "engine is ignored" in x]) == 3
    assert "pair       bn + sc" in v.stdout


def test_progress_bar_with_eta_forced_on_and_off(net, tmp_path):
    args = ("caffe2keras", net / "n.prototxt", net / "n.caffemodel", "-o", tmp_path / "m.keras", "-q")
    on = cli(*args, "--progress")
    assert on.returncode == 0 and "caffe2keras [" in on.stderr and "ETA" in on.stderr
    off = cli(*args, "--no-progress")
    assert off.returncode == 0 and "ETA" not in off.stderr and "[" not in off.stderr


def test_eta_text():
    from bnconvert.progress import eta_text

    assert eta_text(10.0, 5, 10).strip() == "ETA 10s"
    assert eta_text(100.0, 1, 10) == "ETA 15m00s"
    assert eta_text(0.0, 0, 3).strip() == "ETA --"


def test_unknown_outputs_blob_lists_the_valid_names(tmp_path):
    r = cli("caffe2keras", SAMPLE / "deploy.prototxt", SAMPLE / "weights.caffemodel", "-o", tmp_path / "m.keras",
            "--outputs", "nope")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "'nope' does not exist" in r.stderr and "the blobs are:" in r.stderr
    assert all(b in r.stderr for b in ("data", "res2a", "pool5", "prob"))
    assert not (tmp_path / "m.keras").exists()


def test_plural_and_float32_text():
    from bnconvert.commands._common import aggregate_warnings, plural
    from bnconvert.floats import float32_text, shortest_float32

    assert plural(1, "BatchNorm+Scale pair") == "1 BatchNorm+Scale pair"
    assert plural(0, "layer") == "0 layers" and plural(2, "layer") == "2 layers"
    assert float32_text(9.999999747378752e-06) == "1e-05" and float32_text(0.0010000000474974513) == "0.001"
    assert shortest_float32(0.9990000128746033) == 0.999
    w = ["layer 'a' (Convolution): engine is ignored", "something else", "layer 'b' (Convolution): engine is ignored",
         "something else"]
    assert aggregate_warnings(w) == ["2 layers (Convolution): engine is ignored (a, b)", "something else (2 times)"]
    many = [f"layer 'c{i}' (Pooling): pad is ignored" for i in range(13)]
    assert aggregate_warnings(many) == ["13 layers (Pooling): pad is ignored (c0, c1, c2 and 10 more)"]


def test_inspect_lint_upgrade_quiet(net, tmp_path):
    for args in (("inspect", net / "n.prototxt"), ("lint", net / "n.prototxt"),
                 ("upgrade", net / "n.prototxt", "-o", tmp_path / "u.prototxt")):
        r = cli(*args, "-q")
        assert r.returncode in (0, 1) and r.stdout == "", (args, r.stdout, r.stderr)
        assert cli(*args, "-v").stdout != ""


def test_inspect_json_eps_in_float32_shortest_form():
    r = cli("inspect", SAMPLE / "deploy.prototxt", "--json")
    assert r.returncode == 0, r.stderr
    bns = json.loads(r.stdout)["batchnorm"]
    assert bns and all(b["eps"] == 1e-05 and b["moving_average_fraction"] == 0.999 for b in bns)
    assert "9.99999" not in r.stdout and "0.99900001" not in r.stdout
