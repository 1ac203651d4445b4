"""Reading Caffe's text format (.prototxt) into a ``NetParameter``.

When protobuf's strict parser refuses the text, a schema-aware pass (:func:`scan_fields`) walks
it once and finds, with their line, column and enclosing layer:

- every field the schema does not define (a fork's field, or a spelling error), and
- every non-repeated field given twice in one message (Caffe's parser refuses that: protobuf's
  C++ TextFormat reports "Non-repeated field ... is specified multiple times").

Unknown fields inside a layer that inference drops (a data layer, a loss, an accuracy or a
sink, see :mod:`bnconvert.caffe.layertypes`) cannot change the converted model; when the
caller asks for it (``ignored=[...]``) they are blanked out of the text and reported.
Every other unknown field is an error, and the error lists all of them at once.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ParseError
from .layertypes import is_dropped_for_parsing

# Strings, comments, newlines, punctuation, and words (identifiers, numbers, -inf, 1.5f, ...).
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*|\n|[{}<>\[\]:,;]|[^\s{}<>\[\]:,;"\'#]+')
_IDENT = re.compile(r"[A-Za-z_]\w*\Z")


def pb2():
    from .. import caffe_pb2

    return caffe_pb2


@dataclass(frozen=True)
class FieldNote:
    """One finding of :func:`scan_fields`.

    Attributes:
        kind: "unknown" (the schema has no such field) or "duplicate" (a non-repeated field
            given a second time; ``first_line`` is where it was given first).
        line, column: 1-based position of the field's name.
        field: the field as a path inside its layer (or the net), e.g. ``bn_param`` or
            ``convolution_param.kernal_size``.
        message: the full name of the message type that lacks (or repeats) it.
        layer, layer_type: the enclosing ``layer``/``layers`` block's name and type, if any.
        dropped: the enclosing layer is one that inference drops.
    """

    kind: str
    line: int
    column: int
    field: str
    message: str
    layer: str | None = None
    layer_type: str | None = None
    dropped: bool = False
    first_line: int | None = None
    first_column: int | None = None

    def where(self, path=None):
        head = f"{path}:{self.line}" if path else f"line {self.line}"
        if self.layer is not None or self.layer_type is not None:
            head += f": layer '{self.layer}' (type {self.layer_type})"
        return head

    def describe(self, path=None, ignored=None):
        """One line: file:line, layer, type, field and what is wrong with it. ``ignored``: say that
        the field is ignored (default: when it is in a layer that inference drops)."""
        return f"{self.where(path)}: {_what(self, self.dropped if ignored is None else ignored)}"


class _Walk:
    """State of one :func:`scan_fields` pass (an explicit stack, so deep nesting cannot recurse)."""

    def __init__(self, text):
        self.tokens = []  # (token, line, column, start, end)
        line, line_start = 1, 0
        for m in _TOKEN.finditer(text):
            tok = m.group(0)
            if tok == "\n":
                line += 1
                line_start = m.end()
                continue
            if tok[0] == "#":
                continue
            self.tokens.append((tok, line, m.start() - line_start + 1, m.start(), m.end()))
        self.i = 0

    def peek(self, k=0):
        j = self.i + k
        return self.tokens[j][0] if j < len(self.tokens) else None

    def take(self):
        t = self.tokens[self.i]
        self.i += 1
        return t


class _Frame:
    __slots__ = ("desc", "closer", "seen", "path", "layer", "is_list")

    def __init__(self, desc, closer, path, layer, is_list=False):
        self.desc, self.closer, self.path, self.layer, self.is_list = desc, closer, path, layer, is_list
        self.seen = {}


class _Layer:
    __slots__ = ("name", "type", "notes")

    def __init__(self):
        self.name, self.type, self.notes = None, None, []


class _Stop(Exception):
    """The text is not what the walk understands: leave the diagnosis to protobuf's parser."""


def scan_fields(text, root=None):
    """Find unknown and repeated non-repeated fields in prototxt ``text``.

    Returns ``(notes, spans)``: the :class:`FieldNote` list in text order, and for each unknown
    field its ``(start, end)`` character span (name through value), keyed by ``(line, column)``.
    Returns ``(None, None)`` when the text has a syntax error the walk does not follow;
    protobuf's parser then reports it.
    """
    w = _Walk(text)
    root = root or pb2().NetParameter.DESCRIPTOR
    scan = _Scan([_Frame(root, None, "", None)])
    try:
        while w.peek() is not None:
            f = scan.stack[-1]
            tok = w.peek()
            if tok == f.closer:
                w.take()
                scan.stack.pop()
            elif tok in (",", ";"):
                w.take()
            elif f.is_list and tok in ("{", "<"):
                w.take()
                scan.stack.append(_Frame(f.desc, "}" if tok == "{" else ">", f.path, f.layer))
            elif f.is_list:
                raise _Stop
            else:
                _field(w, f, scan)
        if len(scan.stack) != 1:
            raise _Stop
    except (_Stop, IndexError):
        return None, None
    notes = [FieldNote(**n) for n in scan.top.notes]
    for L in scan.layers:
        dropped = L.type is not None and is_dropped_for_parsing(L.type)
        notes += [FieldNote(**n, layer=L.name, layer_type=L.type, dropped=dropped) for n in L.notes]
    return sorted(notes, key=lambda n: (n.line, n.column)), scan.spans


class _Scan:
    def __init__(self, stack):
        self.stack, self.layers, self.spans, self.top = stack, [], {}, _Layer()


def _field(w, f, scan):
    """Consume one ``name: value`` / ``name { ... }`` of the message in frame ``f``."""
    name, line, col, start, _ = w.take()
    if not _IDENT.match(name):
        raise _Stop  # an extension ([...]), a stray value, ...
    fd = f.desc.fields_by_name.get(name)
    layer = f.layer
    notes = (layer or scan.top).notes
    path = f"{f.path}.{name}" if f.path else name
    if fd is None:
        end = _skip_value(w)
        notes.append(dict(kind="unknown", line=line, column=col, field=path, message=f.desc.full_name))
        scan.spans[(line, col)] = (start, end)
        return
    if not fd.is_repeated:
        if name in f.seen:
            notes.append(dict(kind="duplicate", line=line, column=col, field=path, message=f.desc.full_name,
                              first_line=f.seen[name][0], first_column=f.seen[name][1]))
        else:
            f.seen[name] = (line, col)
    colon = w.peek() == ":"
    if colon:
        w.take()
    nxt = w.peek()
    if fd.message_type is None:
        if not colon:
            raise _Stop
        value = _skip_scalar(w)
        if layer is not None and f.path == "" and name in ("name", "type") and value is not None:
            setattr(layer, name, getattr(layer, name) or value)
        return
    if f is scan.stack[0] and name in ("layer", "layers"):
        layer = _Layer()
        scan.layers.append(layer)
        path = ""
    if nxt in ("{", "<"):
        w.take()
        scan.stack.append(_Frame(fd.message_type, "}" if nxt == "{" else ">", path, layer))
    elif nxt == "[" and fd.is_repeated:
        w.take()
        scan.stack.append(_Frame(fd.message_type, "]", path, layer, is_list=True))
    else:
        raise _Stop


def _skip_scalar(w):
    """Consume a scalar value (adjacent strings concatenate; a list ``[a, b]``); returns the
    value of a single string or word, for layer names and types."""
    tok = w.peek()
    if tok is None or tok in ("{", "}", "<", ">", ":", ",", ";", "]"):
        raise _Stop
    if tok == "[":
        _skip_list(w)
        return None
    if tok[0] in "\"'":
        parts = []
        while w.peek() is not None and w.peek()[0] in "\"'":
            parts.append(w.take()[0][1:-1])
        return "".join(parts) if len(parts) == 1 and "\\" not in parts[0] else None
    w.take()
    if tok == "-":  # '- 1' is how a tokenizer may see a spaced sign
        w.take()
    return tok


def _skip_list(w):
    w.take()  # [
    depth = 1
    while depth:
        tok = w.take()[0]
        if tok in ("[", "{", "<"):
            depth += 1
        elif tok in ("]", "}", ">"):
            depth -= 1


def _skip_value(w):
    """Consume an unknown field's value, whatever it is; returns the end offset of the span."""
    if w.peek() == ":":
        w.take()
    tok = w.peek()
    if tok in ("{", "<", "["):
        w.take()
        depth = 1
        while depth:
            t = w.take()
            if t[0] in ("{", "<", "["):
                depth += 1
            elif t[0] in ("}", ">", "]"):
                depth -= 1
        return t[4]
    _skip_scalar(w)
    return w.tokens[w.i - 1][4]


# --- parsing ------------------------------------------------------------------------------


def parse_prototxt_text(text, path="<string>", *, ignored=None, problems=None):
    """Parse prototxt text into a ``NetParameter``.

    Args:
        text: the prototxt.
        path: the file name, for messages.
        ignored: a list; if given, unknown fields inside layers that inference drops are removed
            before parsing and appended to it (as :class:`FieldNote`). Without it, every unknown
            field is an error.
        problems: a list; if given, the unknown fields that would be errors and the repeated
            non-repeated fields are appended to it and removed too, instead of raising (for
            ``inspect`` and ``lint``, which show everything at once).

    A syntax error, an unknown enum value, a non-repeated field given twice, or an unknown field
    not tolerated is a :class:`ParseError` giving the line (and column) and, inside a ``layer``
    block, that layer's name and type; unknown fields are listed all at once.
    """
    try:
        # The common case, at no extra cost: protobuf's strict parser accepts the text, so no field
        # is unknown and none is repeated.
        return _protobuf_parse(text, path)
    except ParseError as e:
        first_error = e
    notes, spans = scan_fields(text)
    if not notes:
        raise first_error  # a syntax error, an unknown enum value, ...: protobuf's message says where
    bad = []
    if notes:
        tolerated = [n for n in notes if n.kind == "unknown" and n.dropped and ignored is not None]
        bad = [n for n in notes if n not in tolerated]
        if problems is not None:
            problems.extend(bad)
        if ignored is not None:
            ignored.extend(tolerated)
        text = _blank(text, [spans[(n.line, n.column)] for n in notes if n.kind == "unknown"])
    strict = bool(bad) and problems is None
    try:
        # Duplicates are the walk's to report (all at once, naming both lines): merge here.
        net = _protobuf_parse(text, path, merge=bool(notes))
    except ParseError as e:
        if strict and e.line is not None and bad[0].line < e.line:
            raise _field_error(bad, path) from None  # the first problem in the text comes first
        raise
    if strict:
        raise _field_error(bad, path)
    return net


def _field_error(bad, path):
    """One ParseError for every field problem: one of them names its layer; several are listed."""
    first = bad[0]
    if len(bad) == 1:
        return ParseError(f"line {first.line}, column {first.column}: {_what(first)}{_in_dropped(first)}", file=path,
                          layer=first.layer, layer_type=first.layer_type, line=first.line, column=first.column,
                          hint=_hint(first))
    n_unknown = sum(1 for n in bad if n.kind == "unknown")
    what = f"{n_unknown} unknown fields" if n_unknown == len(bad) else f"{len(bad)} field problems"
    listing = "; ".join(n.describe(ignored=False) + _in_dropped(n) for n in bad)
    return ParseError(f"{what}: {listing}", file=path, line=first.line, column=first.column, hint=_hint(first))


def _what(n, ignored=False):
    if n.kind == "duplicate":
        return (f"non-repeated field '{n.field}' is given twice (first at line {n.first_line}, column "
                f"{n.first_column}); Caffe's parser refuses this")
    head = "ignored unknown field" if ignored else "unknown field"
    return (f"{head} '{n.field}': Message type \"{n.message}\" has no field named "
            f"\"{n.field.rsplit('.', 1)[-1]}\"")


def _in_dropped(n):
    return " (in a layer that inference drops)" if n.dropped and n.kind == "unknown" else ""


def _hint(n):
    if n.dropped and n.kind == "unknown":
        return ("inference drops this layer, so caffe2keras and inspect ignore the field (and report it); "
                "this command keeps every field and cannot: remove the field, or the layer")
    if n.kind == "duplicate":
        return "keep one of the two values (Caffe refuses the file; bnconvert will not guess which one you meant)"
    return ("the field is not in bnconvert's caffe.proto (BVLC Caffe plus the fork fields listed in README): "
            "fix its spelling; if your Caffe fork defines it, it must be supported before this layer converts")


def _blank(text, spans):
    """``text`` with each span replaced by spaces (newlines kept, so line numbers do not move)."""
    out, pos = [], 0
    for start, end in sorted(spans):
        out.append(text[pos:start])
        out.append(re.sub(r"[^\n]", " ", text[start:end]))
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _protobuf_parse(text, path, merge=False):
    """protobuf's parser; ``merge``: a repeated non-repeated field keeps its last value (for
    callers that have reported it already) instead of being an error."""
    from google.protobuf import text_format

    net = pb2().NetParameter()
    try:
        (text_format.Merge if merge else text_format.Parse)(text, net, allow_unknown_extension=False)
    except text_format.ParseError as e:
        line, col = _error_position(e)
        msg = _clean_protobuf_message(str(e))
        name, ltype = enclosing_layer(text, line) if line else (None, None)
        where = f"line {line or '?'}, column {col or '?'}"
        raise ParseError(f"syntax error at {where}: {msg}", file=path, layer=name, layer_type=ltype,
                         line=line, column=col, hint=_parse_hint(msg)) from None
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        # Defensive: protobuf's text parser reports errors as ParseError, but a value it
        # cannot convert must still not escape as a traceback.
        raise ParseError(f"cannot parse the prototxt: {type(e).__name__}: {e}", file=path) from None
    return net


def _error_position(e):
    try:
        line, col = e.GetLine(), e.GetColumn()
    except AttributeError:
        line, col = getattr(e, "_line", None), getattr(e, "_column", None)
    return (int(line) if line else None), (int(col) if col else None)


def _clean_protobuf_message(msg):
    """'4:25 : \'<source line>\': Enum type ... .' -> 'Enum type ...'."""
    msg = re.sub(r"^\d+:\d+ : ", "", msg.strip())
    msg = re.sub(r"^'.*?': (?=[A-Z])", "", msg, count=1)
    return " ".join(msg.split()).rstrip(".")


def _parse_hint(msg):
    if "has no field named" in msg:
        return ("the field is not in bnconvert's caffe.proto (BVLC Caffe plus common fork fields); "
                "fix its spelling, or remove it if your Caffe fork added it and it does not change inference")
    if "has no value named" in msg:
        return "use one of the enum's values from caffe.proto (they are upper case, e.g. MAX, AVE)"
    if "should not have multiple" in msg:
        return "keep one of the two values (Caffe's parser refuses a non-repeated field given twice)"
    return "check the syntax near that position against caffe.proto"


def enclosing_layer(text, line):
    """(name, type) of the top-level ``layer``/``layers`` block that contains ``line`` (1-based).

    A light tokenizer (strings, comments, braces) so parse errors can name the layer; returns
    (None, None) when the line is outside any layer block. Never raises.
    """
    try:
        depth, cur_line, block, prev = 0, 1, None, None
        for m in _TOKEN.finditer(text):
            tok = m.group(0)
            if tok == "\n":
                cur_line += 1
                if cur_line > line and block is None:
                    return None, None
                continue
            if tok.startswith("#"):
                continue
            if tok in ("{", "<"):
                if depth == 0 and prev in ("layer", "layers"):
                    block = {"start": cur_line, "name": None, "type": None}
                depth += 1
            elif tok in ("}", ">"):
                depth = max(0, depth - 1)
                if depth == 0 and block is not None:
                    if block["start"] <= line <= cur_line:
                        return block["name"], block["type"]
                    if cur_line > line:
                        return None, None
                    block = None
            elif depth == 1 and block is not None and prev in ("name", "type") and tok[:1] in "\"'":
                block[prev] = block[prev] or tok[1:-1]
            elif depth == 1 and block is not None and prev == "type" and tok[:1].isalpha():
                block["type"] = block["type"] or tok  # V1 enum type, e.g. CONVOLUTION
            if tok != ":":
                prev = tok
        if block is not None and block["start"] <= line:
            return block["name"], block["type"]
    except Exception:  # a best-effort helper for messages must never hide the real error
        pass
    return None, None
