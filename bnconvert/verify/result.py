"""What verify found: one :class:`BlobCheck` per reference blob, gathered in a :class:`VerifyResult`."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

NOT_COMPARABLE = "not comparable"


@dataclass
class BlobCheck:
    """One compared blob (one row of the table).

    ``version`` is the blob version id (``conv1#2`` is ``conv1`` after two in-place layers);
    ``layer`` the Caffe layer whose output it is (for a BatchNorm merged with its Scale, the
    BatchNorm: the Keras layer of both); ``suspects`` every layer whose work this row is the first
    to check (an in-place chain when the reference shows only the blob's final value).
    ``status`` is "ok", "FAIL", "skipped" (no counterpart in the Keras model) or "not comparable"
    (the reference is known to differ from Caffe there; ``note`` says why).
    """

    blob: str
    version: str
    layer: str
    type: str
    shape: tuple
    max_abs: float | None = None
    max_rel: float | None = None
    tol: float | None = None
    ref_max: float | None = None
    e2e_abs: float | None = None
    e2e_rel: float | None = None
    check: str = ""  # "layer" or "end-to-end": which error decided the status
    is_output: bool = False
    status: str = "skipped"
    note: str = ""
    suspects: list = field(default_factory=list)

    @property
    def compared(self):
        return self.status in ("ok", "FAIL")


@dataclass
class VerifyResult:
    """What :func:`verify` found. ``passed`` is True when every compared blob is within tolerance."""

    passed: bool
    rows: list
    first_divergent: BlobCheck | None
    reference: str
    reference_version: str
    backend: str
    device: str
    device_kind: str
    tf32: str
    input: str
    rtol: float
    atol: float
    prototxt: str
    caffemodel: str
    keras_model: str
    warnings: list = field(default_factory=list)
    reference_reason: str = ""  # why this reference, when a keras2caffe export's target chose it

    @property
    def compared(self):
        return [r for r in self.rows if r.compared]

    @property
    def not_comparable(self):
        return [r for r in self.rows if r.status == NOT_COMPARABLE]

    @property
    def max_abs_error(self):
        return max((r.max_abs for r in self.compared), default=0.0)

    @property
    def max_rel_error(self):
        return max((r.max_rel for r in self.compared), default=0.0)

    @property
    def max_e2e_rel_error(self):
        return max((r.e2e_rel for r in self.compared if r.e2e_rel is not None), default=0.0)

    @property
    def output_rel_error(self):
        """The largest end-to-end relative error over the net's outputs."""
        return max((r.e2e_rel for r in self.compared if r.is_output and r.e2e_rel is not None), default=0.0)

    @property
    def culprit(self):
        """A sentence naming the first layer that diverges, or None."""
        r = self.first_divergent
        if r is None:
            return None
        text = f"layer '{r.layer}' ({r.type}), blob '{r.blob}'"
        if len(r.suspects) > 1:
            text += " (the reference shows only this blob's final value; the in-place chain " + \
                    " -> ".join(r.suspects) + " wrote it)"
        return text

    def to_dict(self):
        d = asdict(self)
        d["rows"] = [asdict(r) for r in self.rows]
        d["first_divergent"] = asdict(self.first_divergent) if self.first_divergent else None
        d.update(compared=len(self.compared), not_comparable=len(self.not_comparable),
                 max_abs_error=self.max_abs_error, max_rel_error=self.max_rel_error,
                 max_e2e_rel_error=self.max_e2e_rel_error, output_rel_error=self.output_rel_error,
                 culprit=self.culprit)
        return d

    def table(self, all_rows=False):
        """The per-layer table as text (rows without a counterpart only with ``all_rows``)."""
        head = ["layer", "type", "blob", "shape", "max abs err", "max rel err", "end-to-end rel err", "status"]
        body = [[r.layer, r.type, r.blob if r.version == r.blob else f"{r.blob} ({r.version})",
                 "x".join(str(d) for d in r.shape), fmt(r.max_abs), fmt(r.max_rel), fmt(r.e2e_rel),
                 r.status + (f" ({r.note})" if r.note and (r.status != "ok") else "")]
                for r in self.rows if all_rows or r.status != "skipped"]
        widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(head)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths)).rstrip()]
        lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths)).rstrip() for b in body]
        return "\n".join(lines)

    def summary(self):
        n_nc = len(self.not_comparable)
        n_skip = len(self.rows) - len(self.compared) - n_nc
        nc = f", {n_nc} not comparable with this reference" if n_nc else ""
        why = f"; {self.reference_reason}" if self.reference_reason else ""
        lines = [f"reference: {self.reference} ({self.reference_version}){why}",
                 f"keras: backend {self.backend} on {self.device} [{self.device_kind}], TF32 {self.tf32}",
                 f"input: {self.input}",
                 f"tolerance per blob: max|d| <= {self.atol:g} + {self.rtol:g} * max(1, max|ref|)",
                 f"compared {len(self.compared)} blobs ({n_skip} without a counterpart skipped{nc}); layer check: "
                 f"max abs error {self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}; end-to-end: "
                 f"max rel error {self.max_e2e_rel_error:.3g} (net outputs {self.output_rel_error:.3g})"]
        lines.append(self.verdict())
        return "\n".join(lines)

    def verdict(self):
        """The one-line verdict (the last line of :meth:`summary`)."""
        if self.passed:
            return "PASSED: every compared blob is within tolerance"
        n_fail = sum(1 for r in self.rows if r.status == "FAIL")
        return f"FAILED: {n_fail} blob(s) out of tolerance; first divergent: {self.culprit}"


def fmt(x):
    return "-" if x is None else f"{x:.3g}"
