"""verify's HTML page: the summary, a plot of each blob's error by layer, and the table."""
from __future__ import annotations

import math
from html import escape

from .result import fmt

LO, HI = -12, 2  # log10 range of the plot; an error of exactly 0 sits on the floor, marked
BAR, GAP = 12, 6
PLOT_H, LABEL_H, LEFT = 220, 130, 44

_STYLE = ("body{font-family:sans-serif;margin:1em}td,th{padding:2px 8px;text-align:left;vertical-align:top}"
          ".FAIL{background:#fdd}.skipped{color:#888}.nc{color:#a60}"
          ".summary p{margin:.2em 0;white-space:normal;overflow-wrap:anywhere;font-family:monospace}"
          "svg text{font-family:sans-serif}")


def render_html(result):
    """A small self-contained page (no scripts, no external files)."""
    verdict = "PASSED" if result.passed else "FAILED"
    summary = "".join(f"<p>{escape(line)}</p>" for line in result.summary().splitlines())
    warnings = "".join(f"<p>warning: {escape(w)}</p>" for w in result.warnings)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>bnconvert verify</title>"
            f"<style>{_STYLE}</style></head><body><h1>bnconvert verify: {verdict}</h1>"
            f"<div class='summary'>{summary}{warnings}</div>"
            "<h2>relative error per blob (log scale)</h2>"
            "<p>bar: layer check (the layer fed the reference's inputs); dot: end-to-end (the whole model from "
            "the input); dashed: tolerance; a hollow bar on the floor: exactly 0.</p>"
            f"{plot(result)}<h2>blobs</h2>{table(result)}</body></html>\n")


def _y(v):
    """The plot's y coordinate of an error (0 and anything below the range: the floor)."""
    e = LO if v is None or v <= 0 else min(HI, max(LO, math.log10(v)))
    return 10 + (HI - e) / (HI - LO) * PLOT_H


def plot(result):
    """An inline SVG: one bar per compared blob, the layer names along the x axis."""
    rows = result.compared
    floor = _y(0)
    width = LEFT + len(rows) * (BAR + GAP) + 20
    parts = [f'<text x="2" y="{_y(10.0 ** e) + 4:.1f}" font-size="10">1e{e}</text>' for e in range(LO, HI + 1, 2)]
    parts.append(f'<line x1="{LEFT}" x2="{width}" y1="{floor:.1f}" y2="{floor:.1f}" stroke="#444"/>')
    tol = _y(result.rtol + result.atol)
    parts.append(f'<line x1="{LEFT}" x2="{width}" y1="{tol:.1f}" y2="{tol:.1f}" stroke="#888" stroke-dasharray="4"/>')
    for i, r in enumerate(rows):
        x = LEFT + i * (BAR + GAP)
        color = "#2a7" if r.status == "ok" else "#d33"
        tip = escape(f"{r.layer} ({r.type}), blob {r.version}: layer check {fmt(r.max_rel)}, "
                     f"end-to-end {fmt(r.e2e_rel)}, {r.status}")
        if r.max_rel is not None and r.max_rel > 0:
            top = _y(r.max_rel)
            parts.append(f'<rect x="{x}" y="{top:.1f}" width="{BAR}" height="{max(floor - top, 1):.1f}" '
                         f'fill="{color}"><title>{tip}</title></rect>')
        else:
            parts.append(f'<rect x="{x + 1}" y="{floor - 6:.1f}" width="{BAR - 2}" height="5" fill="none" '
                         f'stroke="{color}" stroke-width="1.5"><title>{tip} (exactly 0)</title></rect>')
        if r.e2e_rel is not None:
            parts.append(f'<circle cx="{x + BAR / 2}" cy="{_y(r.e2e_rel):.1f}" r="2.5" fill="#135">'
                         f'<title>{tip}</title></circle>')
        lx, ly = x + BAR / 2 + 3, floor + 8
        parts.append(f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="10" text-anchor="end" '
                     f'transform="rotate(-60 {lx:.1f} {ly:.1f})">{escape(_short(r.layer))}</text>')
    height = 10 + PLOT_H + LABEL_H
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{"".join(parts)}</svg>'


def _short(name, n=24):
    return name if len(name) <= n else name[: n - 1] + "\u2026"


def table(result):
    head = ["layer", "type", "blob", "shape", "layer check: max abs err", "layer check: max rel err",
            "end-to-end: max rel err", "decided by", "status"]
    body = []
    for r in result.rows:
        cls = "nc" if r.status == "not comparable" else r.status
        cells = [r.layer, r.type, r.version, "x".join(map(str, r.shape)), fmt(r.max_abs), fmt(r.max_rel),
                 fmt(r.e2e_rel), r.check or "-", f"{r.status} {r.note}".strip()]
        body.append(f"<tr class='{escape(cls)}'>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
    return "<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" + "".join(body) + "</table>"
