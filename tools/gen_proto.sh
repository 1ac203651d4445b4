#!/usr/bin/env bash
# Regenerate bnconvert/caffe_pb2.py from proto/caffe.proto.
#
# Usage (from anywhere):   tools/gen_proto.sh
#
# protoc comes from a pinned grpcio-tools wheel installed into a private venv
# under .cache/protoc-venv (gitignored), so the project's own environment is
# not touched. The pinned version bundles protoc 35.1, whose Python gencode
# (7.35.1) loads with any protobuf runtime >= 7.35.1.
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

cd "$ROOT"
"$VENV/bin/python" -m grpc_tools.protoc -I proto --python_out=bnconvert proto/caffe.proto

{
  echo "# sha256 of the schema and of the module generated from it (tools/gen_proto.sh)"
  sha256sum proto/caffe.proto bnconvert/caffe_pb2.py
} > bnconvert/caffe_pb2.sha256

"$VENV/bin/python" -m grpc_tools.protoc --version >&2
echo "wrote bnconvert/caffe_pb2.py and bnconvert/caffe_pb2.sha256" >&2
