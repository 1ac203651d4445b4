"""``bnconvert lint``: BatchNorm, Scale, phase and pooling findings about a Caffe net."""
from __future__ import annotations

import json

from .inspect import add_common, table

HELP = "check a Caffe net for BatchNorm/Scale/phase/pooling pitfalls (exit 1 on errors)"
DESCRIPTION = """\
Check a Caffe net (and optionally its caffemodel) for the BatchNorm questions users keep asking:
a BatchNorm without a Scale, use_global_stats in the wrong phase, legacy BatchNorm param blocks,
TRAIN/TEST twins that differ, broken statistics, a non-default eps, Scale fillers that would
silently replace trained weights, and ceil_mode/round_mode ambiguity. Both phases are checked.

Each finding has a severity (error, warning, info), a code, the layer and why it matters.
Exit code: 1 if there is an error finding, 0 otherwise, 2 if the input cannot be read.
Every code is explained in README.md (section "bnconvert lint").

examples:
  bnconvert lint train_val.prototxt
  bnconvert lint deploy.prototxt weights.caffemodel --json
"""


def add_arguments(parser):
    add_common(parser)


def run(args):
    from ..cli import parse_input_shapes
    from ..lint import has_errors, lint_net

    findings = lint_net(args.prototxt, args.caffemodel, phase=args.phase,
                        input_shapes=parse_input_shapes(args.input_shape), stages=tuple(args.stage))
    if args.quiet:
        pass  # the exit status says whether there are errors
    elif args.json:
        print(json.dumps({"prototxt": args.prototxt, "weights": args.caffemodel, "phase": args.phase,
                          "findings": [f.to_dict() for f in findings]}, indent=2))
    else:
        print(render(args.prototxt, args.phase, findings, verbose=args.verbose))
    return 1 if has_errors(findings) else 0


def render(path, phase, findings, verbose=0):
    counts = {s: sum(f.severity == s for f in findings) for s in ("error", "warning", "info")}
    head = f"{path} (phase {phase}): " + ", ".join(f"{n} {s}{'' if n == 1 else 's'}" for s, n in counts.items())
    if not findings:
        return head + "\nno findings"
    rows, whys = [], {}
    for f in _collapse(findings, shown=None if verbose else 3):
        rows.append([f["severity"], f["code"], f["layers"], f["message"]])
        whys.setdefault(f["code"], f["why"])
    out = [head, table(["severity", "code", "layer", "message"], rows), "", "why:"]
    out += [f"  {code}: {why}" for code, why in whys.items()]
    return "\n".join(out)


def _collapse(findings, shown=3):
    """Merge findings with the same code and message into one row listing their layers."""
    merged = {}
    for f in findings:
        key = (f.code, f.message)
        if key not in merged:
            merged[key] = {"severity": f.severity, "code": f.code, "message": f.message, "why": f.why, "names": []}
        merged[key]["names"].append(f.layer or "-")
    for m in merged.values():
        names = m.pop("names")
        shown_names = names if shown is None else names[:shown]
        m["layers"] = ", ".join(shown_names) + (f" (+{len(names) - len(shown_names)} more)"
                                                if len(names) > len(shown_names) else "")
    return list(merged.values())
