"""verify's HTML page (bnconvert/verify/html_report.py)."""
from __future__ import annotations

import re

from bnconvert.verify import BlobCheck, VerifyResult, render_html


def _result(rows, passed=True):
    return VerifyResult(passed=passed, rows=rows, first_divergent=next((r for r in rows if r.status == "FAIL"), None),
                        reference="opencv dnn", reference_version="OpenCV 4", backend="tensorflow", device="cpu",
                        device_kind="CPU", tf32="n/a (CPU)", input="x" * 400, rtol=1e-4, atol=0.0,
                        prototxt="a.prototxt", caffemodel="a.caffemodel", keras_model="m")


def _row(layer, rel, e2e, status="ok", check="layer"):
    return BlobCheck(layer, layer, layer, "Convolution", (1, 2), max_abs=rel, max_rel=rel, tol=1e-4, e2e_rel=e2e,
                     e2e_abs=e2e, check=check, status=status)


def test_layer_names_zero_errors_and_end_to_end_column():
    rows = [_row("conv<1>", 0.0, 0.0), _row("bn2", 3e-7, 2e-6), _row("fc9", 0.5, 0.5, "FAIL"),
            BlobCheck("skip", "skip", "skip", "Scale", (1, 2), note="merged")]
    page = render_html(_result(rows, passed=False))
    svg = page[page.index("<svg"):page.index("</svg>")]
    # one x-axis label per compared blob, escaped
    labels = re.findall(r'<text [^>]*rotate\(-60[^>]*>([^<]*)</text>', svg)
    assert labels == ["conv&lt;1&gt;", "bn2", "fc9"]
    # the zero-error blob is drawn on the floor, marked as exactly 0
    assert "(exactly 0)" in svg and svg.count("<rect") == 3
    # an end-to-end dot per blob, and the table's end-to-end column beside the layer check
    assert svg.count("<circle") == 3
    assert "end-to-end: max rel err" in page and "layer check: max rel err" in page and "decided by" in page
    assert "<td>0.5</td><td>0.5</td><td>layer</td><td>FAIL</td>" in page


def test_summary_wraps():
    page = render_html(_result([_row("a", 1e-7, 1e-7)]))
    assert "<pre" not in page and "overflow-wrap:anywhere" in page and "x" * 400 in page
