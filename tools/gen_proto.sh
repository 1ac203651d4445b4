#!/usr/bin/env bash
# Regenerate bnconvert/caffe_pb2.py from proto/caffe.proto.
#
# Usage (from anywhere):   tools/gen_proto.sh            # writes bnconvert/caffe_pb2.py + .sha256
#                          tools/gen_proto.sh OUTDIR     # writes OUTDIR/caffe_pb2.py only (tests)
#
# protoc comes from a pinned grpcio-tools wheel installed into a private venv
# under .cache/protoc-venv (gitignored), so the project's own environment is
# not touched. The pinned version bundles protoc 35.1.
#
# protoc compiles the schema to a FileDescriptorSet (--descriptor_set_out), and
# tools/gen_proto_module.py writes it into caffe_pb2.py as a bytes literal that
# bnconvert/caffe/schema.py loads into a private descriptor pool: bnconvert's
# schema never enters protobuf's default pool, so it cannot clash with pycaffe's
# or any other caffe_pb2 (package caffe) in the same process. The module needs
# no protobuf gencode version check and loads with any protobuf >= 4.22.
#
# Besides caffe_pb2.py the script writes bnconvert/caffe_pb2.sha256, holding the
# sha256 of the .proto and of the generated module; tests/test_proto.py uses it
# to catch a stale or hand-edited caffe_pb2.py.
#
# Environment: PYTHON (interpreter used to create the venv, default python3),
#              PROTOC_VENV (venv location, default <repo>/.cache/protoc-venv).
set -euo pipefail

GRPCIO_TOOLS_VERSION="1.85.1"   # bundles libprotoc 35.1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PROTOC_VENV:-$ROOT/.cache/protoc-venv}"
PY="${PYTHON:-python3}"

if ! "$VENV/bin/python" -c "import grpc_tools, importlib.metadata as m, sys; sys.exit(m.version('grpcio-tools') != '$GRPCIO_TOOLS_VERSION')" 2>/dev/null; then
  echo "creating $VENV with grpcio-tools==$GRPCIO_TOOLS_VERSION" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet "grpcio-tools==$GRPCIO_TOOLS_VERSION"
fi

OUTDIR=""
if [ $# -gt 0 ]; then OUTDIR="$(cd "$1" && pwd)"; fi
cd "$ROOT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
"$VENV/bin/python" -m grpc_tools.protoc -I proto --descriptor_set_out="$TMP/caffe.desc" proto/caffe.proto
PROTOC_VERSION="$("$VENV/bin/python" -m grpc_tools.protoc --version)"
"$VENV/bin/python" tools/gen_proto_module.py "$TMP/caffe.desc" "$TMP/caffe_pb2.py" "$PROTOC_VERSION"

if [ -n "$OUTDIR" ]; then
  cp "$TMP/caffe_pb2.py" "$OUTDIR/caffe_pb2.py"
  echo "wrote $OUTDIR/caffe_pb2.py ($PROTOC_VERSION)" >&2
  exit 0
fi
mv "$TMP/caffe_pb2.py" bnconvert/caffe_pb2.py
{
  echo "# sha256 of the schema and of the module generated from it (tools/gen_proto.sh)"
  sha256sum proto/caffe.proto bnconvert/caffe_pb2.py
} > bnconvert/caffe_pb2.sha256
echo "wrote bnconvert/caffe_pb2.py and bnconvert/caffe_pb2.sha256 ($PROTOC_VERSION)" >&2
