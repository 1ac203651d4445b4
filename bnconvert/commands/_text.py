"""Text shared by the inspect and upgrade commands: aligned tables and what an upgrade changed."""
from __future__ import annotations

from ._common import plural


def table(headers, rows, indent="  "):
    """Left-aligned columns; numbers right-aligned. ``rows`` are lists of strings."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    numeric = [all(_isnum(r[i]) for r in rows) and rows for i in range(len(headers))]

    def line(cells):
        out = [c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)]
        return (indent + "  ".join(out)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _isnum(text):
    return text.replace(",", "").replace(".", "").replace("-", "").replace("e", "").isdigit() or text == "?"


def describe_upgrades(u):
    """Short phrases for what an upgrade changed, from an upgrade report (net or caffemodel part)."""
    done = []
    if u.get("v1_layers"):
        done.append("V1 layers -> V2 layer")
    if u.get("input_layer") or u.get("input_fields"):
        done.append("input fields -> Input layer")
    if u.get("batchnorm_params_dropped"):
        done.append(f"BatchNorm param blocks dropped from {plural(len(u['batchnorm_params_dropped']), 'layer')}")
    if u.get("reshaped"):
        done.append(f"{plural(len(u['reshaped']), 'legacy blob')} given a shape")
    return done
