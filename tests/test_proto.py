"""Checks on the project's Caffe schema (proto/caffe.proto) and its generated module.

1. bnconvert/caffe_pb2.py is up to date with proto/caffe.proto and not hand-edited
   (hash stamp written by tools/gen_proto.sh; byte-exact regeneration when a protoc
   is at hand).
2. Wire compatibility with BVLC Caffe: every message of ../shared/reference/caffe.proto
   exists in ours, with the same fields (number, label, type, packing, default) and
   the same enum values.
3. Every prototxt under ../shared/zoo and ../shared/caffe-ref parses, and the
   caffe-ref weight files decode without unknown fields.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, text_format, unknown_fields

from bnconvert import caffe_pb2

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PROTO = ROOT / "proto" / "caffe.proto"
PB2 = ROOT / "bnconvert" / "caffe_pb2.py"
STAMP = ROOT / "bnconvert" / "caffe_pb2.sha256"
REFERENCE = SHARED / "reference" / "caffe.proto"

FDP = descriptor_pb2.FieldDescriptorProto


# ---------------------------------------------------------------------------
# 1. staleness
# ---------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_stamp() -> dict[str, str]:
    out = {}
    for line in STAMP.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        digest, name = line.split(None, 1)
        out[name.lstrip("*").strip()] = digest
    return out


def test_generated_module_matches_stamp():
    stamp = _read_stamp()
    assert stamp.get("proto/caffe.proto") == _sha256(PROTO), (
        "proto/caffe.proto changed since bnconvert/caffe_pb2.py was generated; "
        "run tools/gen_proto.sh")
    assert stamp.get("bnconvert/caffe_pb2.py") == _sha256(PB2), (
        "bnconvert/caffe_pb2.py differs from what tools/gen_proto.sh produced; "
        "do not edit it by hand, run tools/gen_proto.sh")


def _python_with_grpc_tools() -> str | None:
    if importlib.util.find_spec("grpc_tools") is not None:
        return sys.executable
    venv_py = ROOT / ".cache" / "protoc-venv" / "bin" / "python"
    if venv_py.exists():
        probe = subprocess.run([str(venv_py), "-c", "import grpc_tools"],
                               capture_output=True)
        if probe.returncode == 0:
            return str(venv_py)
    return None


def test_regenerated_module_is_identical(tmp_path):
    py = _python_with_grpc_tools()
    if py is None:
        pytest.skip("grpc_tools not importable and no .cache/protoc-venv "
                    "(run tools/gen_proto.sh once to create it)")
    subprocess.run([py, "-m", "grpc_tools.protoc", "-I", str(PROTO.parent),
                    f"--python_out={tmp_path}", str(PROTO)], check=True)
    assert (tmp_path / "caffe_pb2.py").read_bytes() == PB2.read_bytes(), (
        "regenerating proto/caffe.proto gives a different caffe_pb2.py "
        "(different protoc version, or stale module); run tools/gen_proto.sh")


def test_descriptor_is_package_caffe_proto2():
    fdp = descriptor_pb2.FileDescriptorProto.FromString(caffe_pb2.DESCRIPTOR.serialized_pb)
    assert fdp.package == "caffe"
    assert fdp.syntax in ("", "proto2")


# ---------------------------------------------------------------------------
# 2. wire compatibility with the reference schema
# ---------------------------------------------------------------------------

_SCALARS = {
    "double": FDP.TYPE_DOUBLE, "float": FDP.TYPE_FLOAT, "int64": FDP.TYPE_INT64,
    "uint64": FDP.TYPE_UINT64, "int32": FDP.TYPE_INT32, "fixed64": FDP.TYPE_FIXED64,
    "fixed32": FDP.TYPE_FIXED32, "bool": FDP.TYPE_BOOL, "string": FDP.TYPE_STRING,
    "bytes": FDP.TYPE_BYTES, "uint32": FDP.TYPE_UINT32, "sfixed32": FDP.TYPE_SFIXED32,
    "sfixed64": FDP.TYPE_SFIXED64, "sint32": FDP.TYPE_SINT32, "sint64": FDP.TYPE_SINT64,
}
_LABELS = {"optional": FDP.LABEL_OPTIONAL, "required": FDP.LABEL_REQUIRED,
           "repeated": FDP.LABEL_REPEATED}

_TOKEN = re.compile(
    r"""(?P<open>\b(?P<kind>message|enum)\s+(?P<block>\w+)\s*\{)
      | (?P<close>\})
      | (?P<field>\b(?P<label>optional|required|repeated)\s+(?P<type>[\w.]+)\s+
                   (?P<fname>\w+)\s*=\s*(?P<fnum>\d+)\s*(?:\[(?P<opts>[^\]]*)\])?\s*;)
      | (?P<value>\b(?P<vname>[A-Za-z_]\w*)\s*=\s*(?P<vnum>-?\d+)\s*(?:\[[^\]]*\])?\s*;)
    """,
    re.VERBOSE,
)


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def parse_proto_text(text: str):
    """Tiny extractor for a proto2 schema without imports, oneofs or extensions.

    Returns (messages, enums): messages maps a full name ("caffe.A.B") to
    {field name: dict(label, type, number, options)}; enums maps a full name to
    {value name: number}.
    """
    text = _strip_comments(text)
    pkg = re.search(r"\bpackage\s+([\w.]+)\s*;", text)
    stack = [pkg.group(1)] if pkg else []
    kinds = []
    messages, enums = {}, {}
    for m in _TOKEN.finditer(text):
        if m.group("open"):
            stack.append(m.group("block"))
            kinds.append(m.group("kind"))
            full = ".".join(stack)
            (messages if m.group("kind") == "message" else enums)[full] = {}
        elif m.group("close"):
            stack.pop()
            kinds.pop()
        elif m.group("field") and kinds and kinds[-1] == "message":
            opts = {}
            for opt in (m.group("opts") or "").split(","):
                if "=" in opt:
                    k, v = opt.split("=", 1)
                    opts[k.strip()] = v.strip()
            messages[".".join(stack)][m.group("fname")] = dict(
                label=m.group("label"), type=m.group("type"),
                number=int(m.group("fnum")), options=opts)
        elif m.group("value") and kinds and kinds[-1] == "enum":
            enums[".".join(stack)][m.group("vname")] = int(m.group("vnum"))
    return messages, enums


def _our_descriptors():
    fdp = descriptor_pb2.FileDescriptorProto.FromString(caffe_pb2.DESCRIPTOR.serialized_pb)
    messages, enums = {}, {}

    def walk_enum(prefix, e):
        enums[f"{prefix}.{e.name}"] = {v.name: v.number for v in e.value}

    def walk_msg(prefix, d):
        full = f"{prefix}.{d.name}"
        messages[full] = {f.name: f for f in d.field}
        for e in d.enum_type:
            walk_enum(full, e)
        for n in d.nested_type:
            walk_msg(full, n)

    for e in fdp.enum_type:
        walk_enum(fdp.package, e)
    for d in fdp.message_type:
        walk_msg(fdp.package, d)
    return messages, enums


def _resolve(type_name: str, scope: str, known: set[str]) -> str | None:
    """Resolve a type reference the way protoc does: innermost scope outwards."""
    if type_name.startswith("."):
        return type_name[1:] if type_name[1:] in known else None
    parts = scope.split(".")
    while parts:
        cand = ".".join(parts + [type_name])
        if cand in known:
            return cand
        parts.pop()
    return type_name if type_name in known else None


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _same_default(ref: str, ours: str, ftype: int) -> bool:
    if ftype == FDP.TYPE_FLOAT:
        return _f32(float(ref)) == _f32(float(ours))
    if ftype == FDP.TYPE_DOUBLE:
        return float(ref) == float(ours)
    if ftype in (FDP.TYPE_STRING, FDP.TYPE_BYTES):
        return ref[1:-1] == ours
    if ftype == FDP.TYPE_BOOL:
        return ref.lower() == ours.lower()
    if ftype == FDP.TYPE_ENUM:
        return ref == ours
    return int(ref, 0) == int(ours, 0)


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE.exists():
        pytest.skip(f"reference schema not found at {REFERENCE}")
    return parse_proto_text(REFERENCE.read_text())


def test_reference_extractor_sees_the_schema(reference):
    # Guard against the regex extractor silently matching nothing.
    ref_msgs, ref_enums = reference
    assert "caffe.LayerParameter" in ref_msgs and "caffe.V1LayerParameter" in ref_msgs
    assert len(ref_msgs["caffe.LayerParameter"]) > 50
    assert ref_enums["caffe.Phase"] == {"TRAIN": 0, "TEST": 1}


def test_all_reference_messages_and_enums_present(reference):
    ref_msgs, ref_enums = reference
    ours_msgs, ours_enums = _our_descriptors()
    assert sorted(set(ref_msgs) - set(ours_msgs)) == []
    assert sorted(set(ref_enums) - set(ours_enums)) == []


def test_reference_fields_match(reference):
    ref_msgs, ref_enums = reference
    ours_msgs, _ = _our_descriptors()
    known_ref = set(ref_msgs) | set(ref_enums)
    problems = []
    for mname, rfields in ref_msgs.items():
        ofields = ours_msgs.get(mname)
        if ofields is None:
            continue
        for fname, rf in rfields.items():
            where = f"{mname}.{fname}"
            of = ofields.get(fname)
            if of is None:
                problems.append(f"{where}: missing")
                continue
            if of.number != rf["number"]:
                problems.append(f"{where}: number {of.number} != {rf['number']}")
            if of.label != _LABELS[rf["label"]]:
                problems.append(f"{where}: label differs")
            if rf["type"] in _SCALARS:
                if of.type != _SCALARS[rf["type"]]:
                    problems.append(f"{where}: type differs")
            else:
                target = _resolve(rf["type"], mname, known_ref)
                if target is None:
                    problems.append(f"{where}: cannot resolve {rf['type']} in reference")
                elif of.type_name.lstrip(".") != target:
                    problems.append(f"{where}: type {of.type_name} != .{target}")
                else:
                    want = FDP.TYPE_ENUM if target in ref_enums else FDP.TYPE_MESSAGE
                    if of.type != want:
                        problems.append(f"{where}: message/enum kind differs")
            ref_packed = rf["options"].get("packed", "false") == "true"
            if of.options.packed != ref_packed:
                problems.append(f"{where}: packed {of.options.packed} != {ref_packed}")
            ref_default = rf["options"].get("default")
            ours_has = of.HasField("default_value")
            if ref_default is None:
                if ours_has:
                    problems.append(f"{where}: default {of.default_value!r} not in reference")
            elif not ours_has:
                problems.append(f"{where}: reference default {ref_default} missing")
            elif not _same_default(ref_default, of.default_value, of.type):
                problems.append(f"{where}: default {of.default_value!r} != {ref_default}")
    assert problems == []


def test_reference_enum_values_match(reference):
    _, ref_enums = reference
    _, ours_enums = _our_descriptors()
    problems = []
    for ename, values in ref_enums.items():
        ours = ours_enums.get(ename)
        if ours is not None and ours != values:
            problems.append(f"{ename}: {ours} != {values}")
    assert problems == []


def test_fork_fields_do_not_reuse_reference_numbers(reference):
    # Fork-only fields must not sit on a number the reference uses in that message.
    ref_msgs, _ = reference
    ours_msgs, _ = _our_descriptors()
    for mname, ofields in ours_msgs.items():
        rfields = ref_msgs.get(mname, {})
        ref_numbers = {f["number"]: n for n, f in rfields.items()}
        for fname, of in ofields.items():
            if fname not in rfields:
                assert of.number not in ref_numbers, (mname, fname, of.number)


# ---------------------------------------------------------------------------
# 3. real files
# ---------------------------------------------------------------------------

def _prototxts():
    files = []
    for sub in ("zoo", "caffe-ref"):
        d = SHARED / sub
        if d.is_dir():
            files += sorted(d.rglob("*.prototxt"))
    return files


def _caffemodels():
    d = SHARED / "caffe-ref"
    return sorted(d.rglob("*.caffemodel")) if d.is_dir() else []


def _rel(p: Path) -> str:
    return str(p.relative_to(SHARED))


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} not found")
def test_shared_has_prototxts():
    assert len(_prototxts()) >= 30


@pytest.mark.parametrize("path", _prototxts(), ids=_rel)
def test_prototxt_parses(path):
    text = path.read_text()
    if "solver" in path.name:
        msg = caffe_pb2.SolverParameter()
        text_format.Merge(text, msg)
        assert msg.HasField("net") or msg.HasField("net_param") or msg.HasField("train_net")
    else:
        msg = caffe_pb2.NetParameter()
        text_format.Merge(text, msg)
        assert len(msg.layer) + len(msg.layers) > 0


@pytest.mark.parametrize("path", _caffemodels(), ids=_rel)
def test_caffemodel_decodes_without_unknown_fields(path):
    net = caffe_pb2.NetParameter()
    net.ParseFromString(path.read_bytes())
    assert len(net.layer) + len(net.layers) > 0

    def check(msg, where):
        assert len(unknown_fields.UnknownFieldSet(msg)) == 0, where
        for fd, value in msg.ListFields():
            if fd.message_type is None:
                continue
            items = value if fd.is_repeated else [value]
            for i, sub in enumerate(items):
                check(sub, f"{where}.{fd.name}[{i}]")

    check(net, path.name)
