"""bnconvert lint: every finding is triggered by a small net in tests/nets/lint/, and the zoo lints."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bnconvert.caffe.io import array_to_blob, pb2, write_caffemodel
from bnconvert.cli import main
from bnconvert.lint import CHECKS, SEVERITIES, lint_net

from test_inspect import ZOO_PARAMS, zoo, zoo_args  # noqa: F401 (zoo is a fixture)

NETS = Path(__file__).resolve().parent / "nets" / "lint"
DOC = Path(__file__).resolve().parents[1] / "README.md"


def codes(findings):
    return {(f.code, f.layer, f.severity) for f in findings}


def lint(name, **kw):
    return lint_net(NETS / name, **kw)


def test_bn_without_scale():
    got = codes(lint("bn_no_scale.prototxt"))
    assert got == {("BN-NO-SCALE", "bn1", "warning")}


def test_use_global_stats_per_phase():
    got = codes(lint("bn_phases.prototxt"))
    assert got == {("BN-GLOBAL-STATS-TRAIN", "bn1", "warning"), ("BN-BATCH-STATS-TEST", "bn2", "error")}


def test_batchnorm_param_blocks():
    got = codes(lint("bn_params.prototxt"))
    assert got == {("BN-PARAM-BLOCKS", "bn1", "warning"), ("BN-PARAM-LR", "bn2", "error")}


def test_twins_differ_beyond_expected_fields():
    findings = lint("twins.prototxt")
    got = codes(findings)
    assert got == {("TWIN-DIFFERS", "data", "warning"), ("TWIN-DIFFERS", "conv1", "warning"),
                   ("INPUT-SHAPE-UNKNOWN", None, "info")}
    msgs = {f.layer: f.message for f in findings}
    assert "transform_param.mean_value" in msgs["data"]
    assert "source" not in msgs["data"] and "batch_size" not in msgs["data"] and "mirror" not in msgs["data"]
    assert "convolution_param.num_output" in msgs["conv1"]


def test_twins_with_input_shape_have_no_shape_note():
    got = codes(lint("twins.prototxt", input_shapes={"data": (1, 3, 8, 8)}))
    assert ("INPUT-SHAPE-UNKNOWN", None, "info") not in got


def test_eps_is_info():
    got = codes(lint("bn_eps.prototxt"))
    assert got == {("BN-EPS", "bn1", "info")}


def test_scale_filler_in_deploy_net():
    got = codes(lint("scale_filler.prototxt"))
    assert got == {("SCALE-FILLER", "scale1", "info")}


def _stats_model(path):
    """Weights for bn_stats.prototxt: one broken statistic per BatchNorm, two layers without blobs."""
    c = 3
    ok = [np.zeros(c), np.ones(c) * 4, np.array([4.0])]
    blobs = {
        "bn_ok": ok, "bn_zero": [np.zeros(c), np.zeros(c), np.array([0.0])],
        "bn_nan": [np.array([0, np.nan, 0]), np.ones(c), np.array([1.0])],
        "bn_negvar": [np.zeros(c), np.array([1.0, -0.5, 1.0]), np.array([1.0])],
    }
    model = pb2().NetParameter(name="bn_stats")
    for name in ("bn_ok", "bn_zero", "bn_nan", "bn_negvar"):
        lp = model.layer.add(name=name, type="BatchNorm")
        for b in blobs[name]:
            array_to_blob(np.asarray(b, np.float32), lp.blobs.add())
        s = model.layer.add(name=name.replace("bn_", "scale_"), type="Scale")
        array_to_blob(np.ones(c, np.float32), s.blobs.add())
        array_to_blob(np.zeros(c, np.float32), s.blobs.add())
    write_caffemodel(model, path)
    return path


def test_statistics_need_weights(tmp_path):
    findings = lint("bn_stats.prototxt", caffemodel=_stats_model(tmp_path / "w.caffemodel"))
    got = codes(findings)
    assert got == {("BN-FACTOR-ZERO", "bn_zero", "warning"), ("BN-STATS-NONFINITE", "bn_nan", "error"),
                   ("BN-VAR-NEGATIVE", "bn_negvar", "error"), ("BN-NO-WEIGHTS", "bn_missing", "error"),
                   ("SCALE-FILLER-REINIT", "scale_missing", "error")}
    reinit = next(f for f in findings if f.code == "SCALE-FILLER-REINIT")
    assert "gamma = constant 0.5" in reinit.message and "beta = constant 0.1" in reinit.message


def test_statistics_without_weights_only_fillers():
    got = codes(lint("bn_stats.prototxt"))
    assert got == {("SCALE-FILLER", "scale_missing", "info")}


def test_pooling_round_mode_conflicts():
    got = codes(lint("pool_conflict.prototxt"))
    assert ("POOL-ROUND-CONFLICT", "pool1", "error") in got
    assert ("POOL-ROUND-BOTH", "pool2", "warning") in got
    assert ("GRAPH-BUILD", None, "error") in got  # bnconvert cannot build a net whose rounding disagrees


def test_ceil_mode_severity_depends_on_output_size():
    findings = lint("pool_ceil_mode.prototxt")
    got = codes(findings)
    assert got == {("POOL-CEIL-MODE", "pool1", "warning"), ("POOL-CEIL-MODE", "pool2", "info"),
                   ("POOL-CEIL-MODE", "pool3", "info")}
    pool1 = next(f for f in findings if f.layer == "pool1")
    assert "55x55" in pool1.message and "56x56" in pool1.message


def test_broken_graph_still_lints():
    got = codes(lint("graph_broken.prototxt"))
    assert got == {("GRAPH-BUILD", None, "error"), ("BN-NO-SCALE", "bn1", "warning")}


def test_findings_are_sorted_and_complete():
    findings = lint("bn_phases.prototxt") + lint("bn_params.prototxt")
    for f in findings:
        assert f.severity in SEVERITIES and f.message and f.why == CHECKS[f.code][1]
    ranks = [SEVERITIES.index(f.severity) for f in lint("pool_conflict.prototxt")]
    assert ranks == sorted(ranks)


def test_every_check_is_triggered_and_documented(tmp_path):
    seen = set()
    for net in sorted(NETS.glob("*.prototxt")):
        seen |= {f.code for f in lint_net(net)}
    seen |= {f.code for f in lint("bn_stats.prototxt", caffemodel=_stats_model(tmp_path / "w.caffemodel"))}
    seen |= {f.code for f in lint_net(Path(__file__).resolve().parent / "nets" / "forks" / "hed_deploy.prototxt")}
    assert seen == set(CHECKS), f"never triggered: {sorted(set(CHECKS) - seen)}"
    doc = DOC.read_text()
    for code in CHECKS:
        assert f"`{code}`" in doc, f"{code} is not documented in {DOC.name}"


# --- CLI --------------------------------------------------------------------------------------


def test_cli_exit_codes(capsys):
    assert main(["lint", str(NETS / "bn_eps.prototxt")]) == 0
    assert main(["lint", str(NETS / "bn_phases.prototxt")]) == 1
    out = capsys.readouterr().out
    assert "BN-BATCH-STATS-TEST" in out and "why:" in out
    assert main(["lint", str(NETS / "missing.prototxt")]) == 2
    assert "not found" in capsys.readouterr().err


def test_cli_json_matches_api(capsys):
    assert main(["lint", str(NETS / "twins.prototxt"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["findings"] == [f.to_dict() for f in lint("twins.prototxt")]


def test_cli_text_collapses_repeated_findings(capsys, zoo):
    main(["lint", str(zoo / "mobilenet_v1" / "mobilenet_deploy.prototxt")])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "BN-PARAM-BLOCKS" in line and "warning" in line]
    assert len(rows) == 1 and "more)" in rows[0]


# --- the zoo ----------------------------------------------------------------------------------


@pytest.mark.parametrize("rel", ZOO_PARAMS)
def test_lint_zoo(rel, zoo):
    kw = zoo_args(rel)
    findings = lint_net(zoo / rel, phase="TEST", **kw)
    for f in findings:
        assert f.code in CHECKS
    assert not [f for f in findings if f.code in ("GRAPH-BUILD", "INPUT-SHAPE-UNKNOWN")], findings
    # The zoo's own nets are sane: no error-level finding.
    assert not [f for f in findings if f.severity == "error"], findings
    if "train" in rel:
        lint_net(zoo / rel, phase="TRAIN", **kw)


def test_lint_zoo_known_findings(zoo):
    got = codes(lint_net(zoo / "bvlc_cifar10_full_sigmoid_bn" / "cifar10_full_sigmoid_train_test_bn.prototxt",
                         input_shapes={"data": (2, 3, 32, 32)}))
    assert {c for c, _, _ in got} == {"BN-NO-SCALE", "BN-PARAM-BLOCKS"}
    got = codes(lint_net(zoo / "resnext50_32x4d" / "deploy_resnext50-32x4d.prototxt"))
    assert got == {("POOL-CEIL-MODE", "pool1", "warning")}
    got = codes(lint_net(zoo / "inception_v3" / "deploy_inception-v3.prototxt"))
    assert {c for c, _, _ in got} == {"BN-EPS"}


# --- prototxt fields and duplicate names ------------------------------------------------------


def test_field_problems_are_all_listed_with_their_lines():
    findings = lint("fields.prototxt")
    got = [(f.code, f.layer, f.severity) for f in findings]
    assert got == [("FIELD-UNKNOWN", "conv1", "error"), ("FIELD-REPEATED", "relu1", "error"),
                   ("FIELD-IGNORED", "loss", "info")]
    unknown, repeated, ignored = (f.message for f in findings)
    assert unknown.startswith("line 10: layer 'conv1' (type Convolution): unknown field 'convolution_param.kernal_size'")
    assert repeated.startswith("line 17: layer 'relu1' (type ReLU): non-repeated field 'relu_param.negative_slope' "
                               "is given twice (first at line 17, column 16)")
    assert ignored.startswith("line 25: layer 'loss' (type SoftmaxWithLoss): ignored unknown field "
                              "'loss_param.fork_weighting'")


def test_duplicate_names_of_one_phase_are_not_twins():
    got = codes(lint("duplicate_names.prototxt"))
    assert got == {("NAME-DUPLICATE", "act", "info")}
    hed = lint_net(Path(__file__).resolve().parent / "nets" / "forks" / "hed_deploy.prototxt")
    assert {(f.code, f.layer) for f in hed} == {("NAME-DUPLICATE", "crop"), ("CROP-COORDMAP", "crop")}
    assert "5 layers of phase TEST are named 'crop'" in " ".join(f.message for f in hed)


def test_param_less_crops_with_fork_offsets_are_flagged():
    hed = lint_net(Path(__file__).resolve().parent / "nets" / "forks" / "hed_deploy.prototxt")
    crops = [f for f in hed if f.code == "CROP-COORDMAP"]
    assert [f.severity for f in crops] == ["warning"] * 5
    assert [f.message.split("HED's fork at ")[1].split(" ")[0:2] for f in crops] == [
        [f"({o},", f"{o})"] for o in (34, 35, 36, 38, 42)]
    assert "score-dsn1-up to the size of data" in crops[0].message and "--crop-offsets coordmap" in crops[0].why


def test_cli_exit_code_on_field_errors(capsys):
    assert main(["lint", str(NETS / "fields.prototxt")]) == 1
    out = capsys.readouterr().out
    assert "FIELD-UNKNOWN" in out and "FIELD-IGNORED" in out
