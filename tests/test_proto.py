"""Checks on the project's Caffe schema (proto/caffe.proto) and its generated module.

1. bnconvert/caffe_pb2.py is up to date with proto/caffe.proto and not hand-edited
   (hash stamp written by tools/gen_proto.sh; byte-exact regeneration when a protoc
   is at hand). Its classes live in a private descriptor pool, so it coexists with any
   other Caffe schema module (package caffe in the default pool) in either import order.
2. Wire compatibility with BVLC Caffe: every message of ../shared/reference/caffe.proto
   exists in ours, with the same fields (number, label, type, packing, default) and
   the same enum values.
3. Every prototxt under ../shared/zoo and ../shared/caffe-ref parses, and the
   caffe-ref weight files decode without unknown fields.
"""

from __future__ import annotations

import copy
import hashlib
import os
import pickle
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, text_format, unknown_fields

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


def _protoc_venv() -> Path | None:
    """tools/gen_proto.sh's private protoc venv, when it exists (the test never installs it)."""
    venv_py = ROOT / ".cache" / "protoc-venv" / "bin" / "python"
    if venv_py.exists():
        probe = subprocess.run([str(venv_py), "-c", "import grpc_tools"], capture_output=True)
        if probe.returncode == 0:
            return venv_py.parent.parent
    return None


def test_regenerated_module_is_identical(tmp_path):
    venv = _protoc_venv()
    if venv is None:
        pytest.skip("no .cache/protoc-venv with grpc_tools (run tools/gen_proto.sh once to create it)")
    subprocess.run(["bash", str(ROOT / "tools" / "gen_proto.sh"), str(tmp_path)], check=True,
                   env={**os.environ, "PROTOC_VENV": str(venv)}, capture_output=True)
    assert (tmp_path / "caffe_pb2.py").read_bytes() == PB2.read_bytes(), (
        "regenerating proto/caffe.proto gives a different caffe_pb2.py "
        "(different protoc version, or stale module); run tools/gen_proto.sh")


def test_descriptor_is_package_caffe_proto2():
    fdp = descriptor_pb2.FileDescriptorProto.FromString(caffe_pb2.SERIALIZED_FILE)
    assert fdp.name == "caffe.proto" and fdp.package == "caffe"
    assert fdp.syntax in ("", "proto2")
    assert caffe_pb2.DESCRIPTOR.name == "caffe.proto"


# ---------------------------------------------------------------------------
# 1b. a private descriptor pool: the module offers what protoc's module did
# ---------------------------------------------------------------------------

def test_schema_is_not_in_the_default_pool():
    assert caffe_pb2.DESCRIPTOR.pool is not descriptor_pool.Default()
    assert caffe_pb2.NetParameter.DESCRIPTOR.file is caffe_pb2.DESCRIPTOR
    with pytest.raises(KeyError):
        descriptor_pool.Default().FindFileByName("caffe.proto")


def test_module_exposes_every_message_and_enum():
    fdp = descriptor_pb2.FileDescriptorProto.FromString(caffe_pb2.SERIALIZED_FILE)
    assert len(fdp.message_type) > 50
    for d in fdp.message_type:
        cls = getattr(caffe_pb2, d.name)
        assert cls.DESCRIPTOR.full_name == f"caffe.{d.name}"
        assert cls.__module__ == "bnconvert.caffe_pb2"
        for e in d.enum_type:  # nested enums: wrapper and values on the class
            assert getattr(cls, e.name).Name(e.value[-1].number) == e.value[-1].name
            assert getattr(cls, e.value[-1].name) == e.value[-1].number
    for e in fdp.enum_type:
        assert {v.name: getattr(caffe_pb2, v.name) for v in e.value} == {v.name: v.number for v in e.value}
    assert caffe_pb2.Phase.Name(caffe_pb2.TEST) == "TEST" and caffe_pb2.TRAIN == 0
    assert caffe_pb2.V1LayerParameter.LayerType.Value("CONVOLUTION") == caffe_pb2.V1LayerParameter.CONVOLUTION == 4


def test_messages_pickle_and_copy():
    net = caffe_pb2.NetParameter(name="n")
    net.layer.add(name="bn", type="BatchNorm").batch_norm_param.eps = 1e-3
    assert pickle.loads(pickle.dumps(net)) == net
    assert copy.deepcopy(net) == net
    assert net.layer[0].batch_norm_param.moving_average_fraction == pytest.approx(0.999)


def test_nested_message_classes_are_attributes():
    # caffe.proto has no nested messages today; a fork schema may add some.
    from bnconvert.caffe.schema import build_module

    fdp = descriptor_pb2.FileDescriptorProto(name="nested_test.proto", package="bnconvert_test")
    outer = fdp.message_type.add(name="Outer")
    inner = outer.nested_type.add(name="Inner")
    inner.field.add(name="x", number=1, type=FDP.TYPE_INT32, label=FDP.LABEL_OPTIONAL)
    outer.field.add(name="inner", number=1, type=FDP.TYPE_MESSAGE, label=FDP.LABEL_OPTIONAL,
                    type_name=".bnconvert_test.Outer.Inner")
    ns = {"__name__": "nested_test"}
    build_module(fdp.SerializeToString(), ns)
    msg = ns["Outer"](inner=ns["Outer"].Inner(x=3))
    assert msg.inner.x == 3 and ns["Outer"].Inner.__qualname__ == "Outer.Inner"


def _fake_schema_module(folder: Path, file_name: str, extra_field: bool) -> None:
    """A stand-in for pycaffe's/MMdnn's caffe_pb2: the same package ``caffe`` registered in protobuf's
    default pool, under ``file_name``; ``extra_field`` makes it a fork's schema (different content)."""
    fdp = descriptor_pb2.FileDescriptorProto.FromString(caffe_pb2.SERIALIZED_FILE)
    fdp.name = file_name
    if extra_field:
        net = next(m for m in fdp.message_type if m.name == "NetParameter")
        net.field.add(name="fork_only", number=9999, type=FDP.TYPE_INT32, label=FDP.LABEL_OPTIONAL)
    (folder / "caffe_pb2.py").write_text(
        "from google.protobuf import descriptor_pool, message_factory\n"
        f"DESCRIPTOR = descriptor_pool.Default().AddSerializedFile({fdp.SerializeToString()!r})\n"
        "NetParameter = message_factory.GetMessageClass(DESCRIPTOR.message_types_by_name['NetParameter'])\n")


_COEXIST = """
import sys
from google.protobuf import descriptor_pool, text_format

def other():
    import caffe_pb2
    return caffe_pb2

def ours():
    from bnconvert.caffe.graph import load_net
    from bnconvert.caffe.io import pb2, read_prototxt
    return pb2(), load_net, read_prototxt

if sys.argv[1] == "other-first":
    theirs = other(); pb2, load_net, read_prototxt = ours()
    # the fake really clashes: registering our schema in the default pool now fails
    try:
        descriptor_pool.Default().AddSerializedFile(pb2.SERIALIZED_FILE)
    except TypeError as e:
        print("clash:", str(e)[-60:])
    else:
        raise SystemExit("the stand-in module does not clash with a default-pool caffe.proto")
else:
    pb2, load_net, read_prototxt = ours(); theirs = other()
proto, v1 = sys.argv[2:4]
mine = read_prototxt(proto)
other_net = text_format.Parse(open(proto).read(), theirs.NetParameter())
assert mine.SerializeToString() == other_net.SerializeToString()
assert text_format.MessageToString(mine) == text_format.MessageToString(other_net)
net = load_net(v1)  # V1 layers upgraded through the V1LayerParameter enums
assert net.layers and pb2.Phase.Name(pb2.TEST) == "TEST"
print("ok", len(mine.layer), len(net.layers))
"""


@pytest.mark.parametrize("order", ["other-first", "bnconvert-first"])
@pytest.mark.parametrize("file_name,extra_field", [("caffe.proto", True), ("caffe/proto/caffe.proto", False)],
                         ids=["fork-caffe.proto", "pycaffe-like"])
def test_coexists_with_another_caffe_schema_module(tmp_path, order, file_name, extra_field):
    zoo = SHARED / "zoo"
    if not zoo.is_dir():
        pytest.skip(f"{zoo} not found")
    _fake_schema_module(tmp_path, file_name, extra_field)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    res = subprocess.run([sys.executable, "-c", _COEXIST, order, str(zoo / "resnet50" / "ResNet-50-deploy.prototxt"),
                          str(zoo / "vgg19_v1" / "VGG_ILSVRC_19_layers_deploy.prototxt")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines()[-1].startswith("ok ")
    assert ("clash:" in res.stdout) == (order == "other-first")


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
    fdp = descriptor_pb2.FileDescriptorProto.FromString(caffe_pb2.SERIALIZED_FILE)
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


@pytest.mark.parametrize("path", _caffemodels(), ids=_rel)
def test_caffemodel_reserializes_byte_identical(path):
    # Caffe writes fields in number order, as protobuf does: any change to the wire format shows here.
    data = path.read_bytes()
    assert caffe_pb2.NetParameter.FromString(data).SerializeToString() == data


# ---------------------------------------------------------------------------
# 4. the fork additions for BN, Interp and Upsample, listed explicitly
# ---------------------------------------------------------------------------

# (message, field) -> (number, type, default or None). Numbers are the forks' own where BVLC leaves
# them free (bn_param 45: SegNet/ENet; upsample_param 149: the YOLOv3 ports), else moved (interp_param:
# DeepLab v2/PSPNet use 143, BVLC's input_param); PSPNet's BN fields moved by 1000 (its momentum at
# 3 would clash with SegNet's bn_mode).
RESIZE_BN_FORK_FIELDS = {
    ("LayerParameter", "bn_param"): (45, ".caffe.BNParameter", None),
    ("LayerParameter", "interp_param"): (1143, ".caffe.InterpParameter", None),
    ("LayerParameter", "upsample_param"): (149, ".caffe.UpsampleParameter", None),
    ("BNParameter", "scale_filler"): (1, ".caffe.FillerParameter", None),
    ("BNParameter", "shift_filler"): (2, ".caffe.FillerParameter", None),
    ("BNParameter", "bn_mode"): (3, ".caffe.BNParameter.BNMode", "LEARN"),
    ("BNParameter", "slope_filler"): (1001, ".caffe.FillerParameter", None),
    ("BNParameter", "bias_filler"): (1002, ".caffe.FillerParameter", None),
    ("BNParameter", "momentum"): (1003, FDP.TYPE_FLOAT, "0.9"),
    ("BNParameter", "eps"): (1004, FDP.TYPE_FLOAT, "1e-05"),
    ("BNParameter", "frozen"): (1005, FDP.TYPE_BOOL, "false"),
    ("BNParameter", "engine"): (1006, ".caffe.BNParameter.Engine", "DEFAULT"),
    ("InterpParameter", "height"): (1, FDP.TYPE_INT32, "0"),
    ("InterpParameter", "width"): (2, FDP.TYPE_INT32, "0"),
    ("InterpParameter", "zoom_factor"): (3, FDP.TYPE_INT32, "1"),
    ("InterpParameter", "shrink_factor"): (4, FDP.TYPE_INT32, "1"),
    ("InterpParameter", "pad_beg"): (5, FDP.TYPE_INT32, "0"),
    ("InterpParameter", "pad_end"): (6, FDP.TYPE_INT32, "0"),
    ("UpsampleParameter", "scale"): (1, FDP.TYPE_UINT32, "2"),
    ("UpsampleParameter", "scale_h"): (2, FDP.TYPE_UINT32, None),
    ("UpsampleParameter", "scale_w"): (3, FDP.TYPE_UINT32, None),
    ("UpsampleParameter", "pad_out_h"): (4, FDP.TYPE_BOOL, "false"),
    ("UpsampleParameter", "pad_out_w"): (5, FDP.TYPE_BOOL, "false"),
    ("UpsampleParameter", "upsample_h"): (6, FDP.TYPE_UINT32, None),
    ("UpsampleParameter", "upsample_w"): (7, FDP.TYPE_UINT32, None),
}


def test_resize_and_bn_fork_fields_are_exactly_these():
    ours, _ = _our_descriptors()
    for (msg, name), (number, ftype, default) in RESIZE_BN_FORK_FIELDS.items():
        f = ours[f"caffe.{msg}"][name]
        assert f.number == number, (msg, name)
        assert (f.type_name == ftype) if isinstance(ftype, str) else (f.type == ftype), (msg, name)
        assert (f.default_value if f.HasField("default_value") else None) == default, (msg, name)
    for msg in ("BNParameter", "InterpParameter", "UpsampleParameter"):
        assert set(ours[f"caffe.{msg}"]) == {n for m, n in RESIZE_BN_FORK_FIELDS if m == msg}, msg


# Everything the schema adds to BVLC's, listed one by one: a fork field or message joins the schema
# only by being listed here (with its number), so nothing slips in by accident.
FORK_FIELDS = {
    ("caffe.LayerParameter", "bn_param", 45),  # SegNet/ENet's number (PSPNet: 152)
    ("caffe.LayerParameter", "dense_image_data_param", 46),  # ENet's number (SegNet: 138 = tile_param)
    ("caffe.LayerParameter", "upsample_param", 149),
    ("caffe.LayerParameter", "shuffle_channel_param", 164),
    ("caffe.LayerParameter", "permute_param", 202),
    ("caffe.LayerParameter", "prior_box_param", 203),
    ("caffe.LayerParameter", "detection_output_param", 204),
    ("caffe.LayerParameter", "norm_param", 206),
    ("caffe.LayerParameter", "interp_param", 1143),
    ("caffe.LayerParameter", "roi_pooling_param", 8266711),
    ("caffe.PoolingParameter", "ceil_mode", 1013),
    ("caffe.ImageDataParameter", "ignore_label", 15),  # DeepLab v2
    ("caffe.ImageDataParameter", "label_type", 16),  # DeepLab v2
    ("caffe.TransformationParameter", "scale_factors", 8),  # DeepLab v2
    ("caffe.TransformationParameter", "crop_width", 9),  # DeepLab v2
    ("caffe.TransformationParameter", "crop_height", 10),  # DeepLab v2
}
FORK_MESSAGES = {
    "caffe.PermuteParameter", "caffe.NormalizeParameter", "caffe.PriorBoxParameter",
    "caffe.NonMaximumSuppressionParameter", "caffe.ResizeParameter", "caffe.SaveOutputParameter",
    "caffe.DetectionOutputParameter", "caffe.ROIPoolingParameter", "caffe.ShuffleChannelParameter",
    "caffe.DenseImageDataParameter", "caffe.BNParameter", "caffe.InterpParameter", "caffe.UpsampleParameter",
}
FORK_ENUMS = {
    "caffe.ImageDataParameter.LabelType", "caffe.PriorBoxParameter.CodeType", "caffe.ResizeParameter.Resize_mode",
    "caffe.ResizeParameter.Pad_mode", "caffe.ResizeParameter.Interp_mode", "caffe.BNParameter.BNMode",
    "caffe.BNParameter.Engine",
}


def test_every_addition_to_the_reference_is_a_listed_fork_addition(reference):
    ref_msgs, ref_enums = reference
    ours_msgs, ours_enums = _our_descriptors()
    fields = {(m, f, d.number) for m, fs in ours_msgs.items() if m in ref_msgs
              for f, d in fs.items() if f not in ref_msgs[m]}
    assert fields == FORK_FIELDS
    assert set(ours_msgs) - set(ref_msgs) == FORK_MESSAGES
    assert set(ours_enums) - set(ref_enums) == FORK_ENUMS


_IMPL_PROBE = """
import hashlib, sys
from google.protobuf import text_format
from google.protobuf.internal import api_implementation
from bnconvert import caffe_pb2
net = text_format.Parse(open(sys.argv[1]).read(), caffe_pb2.NetParameter())
model = caffe_pb2.NetParameter.FromString(open(sys.argv[2], "rb").read())
print(api_implementation.Type(), hashlib.sha256(net.SerializeToString()).hexdigest(),
      hashlib.sha256(text_format.MessageToString(net).encode()).hexdigest(),
      hashlib.sha256(model.SerializeToString()).hexdigest())
"""


def test_pure_python_protobuf_reads_and_writes_the_same():
    """The private pool works in protobuf's pure-Python implementation too, with identical results."""
    proto = SHARED / "zoo" / "resnet50" / "ResNet-50-deploy.prototxt"
    model = SHARED / "caffe-ref" / "bn_factor" / "weights.caffemodel"
    if not (proto.exists() and model.exists()):
        pytest.skip(f"{SHARED} test files not found")
    net = text_format.Parse(proto.read_text(), caffe_pb2.NetParameter())
    want = [hashlib.sha256(net.SerializeToString()).hexdigest(),
            hashlib.sha256(text_format.MessageToString(net).encode()).hexdigest(),
            hashlib.sha256(caffe_pb2.NetParameter.FromString(model.read_bytes()).SerializeToString()).hexdigest()]
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", _IMPL_PROBE, str(proto), str(model)], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split() == ["python"] + want
