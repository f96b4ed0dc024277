#!/usr/bin/env bash
# Generates the protobuf/gRPC stubs of the client libraries from Protos/curec/v1:
#
#   clients/python/curec_client/_proto/curec/v1/   grpcio-tools output; its cross-imports are
#                                                   rewritten to relative imports so the stubs
#                                                   resolve inside the curec_client package
#   clients/go/curecv1/                             Debian protoc-gen-go + protoc-gen-go-grpc
#                                                   output, import path curecserve.local/client/curecv1
#
# Output is committed. Needs protoc, protoc-gen-go, protoc-gen-go-grpc (Debian) and
# grpcio-tools (PyPI; python-protoc beside this script pins it and keeps it in a private venv).
# May be run alone or from scripts/generate-protos.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
GO_IMPORT_PATH=curecserve.local/client/curecv1
protos=(curec/v1/recommend.proto curec/v1/reward.proto curec/v1/plugin.proto curec/v1/job.proto curec/v1/model.proto curec/v1/generation.proto curec/v1/dataset.proto)

missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v protoc-gen-go >/dev/null || missing+=(protoc-gen-go)
command -v protoc-gen-go-grpc >/dev/null || missing+=(protoc-gen-go-grpc)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# ---------------------------------------------------------------- Python
py_pkg="clients/python/curec_client/_proto"
mkdir -p "$tmp/py"
"$ROOT/scripts/generate-protos.d/python-protoc" -I Protos \
    --python_out="$tmp/py" --pyi_out="$tmp/py" --grpc_python_out="$tmp/py" "${protos[@]}"
rm -rf "$py_pkg"
mkdir -p "$py_pkg/curec/v1"
echo '"""Generated protobuf and gRPC stubs of Protos/curec/v1 (scripts/generate-protos.d/clients.sh)."""' \
    > "$py_pkg/__init__.py"
echo '"""Generated code. Do not edit."""' > "$py_pkg/curec/__init__.py"
echo '"""Generated code of the curec.v1 API. Do not edit."""' > "$py_pkg/curec/v1/__init__.py"
for f in "$tmp"/py/curec/v1/*.py "$tmp"/py/curec/v1/*.pyi; do
    # "from curec.v1 import x_pb2 as ..." -> "from . import x_pb2 as ..."
    sed -E 's/^from curec\.v1 import /from . import /; s/^import curec\.v1\.([a-z_0-9]+) as /from . import \1 as /' \
        "$f" > "$py_pkg/curec/v1/$(basename "$f")"
done
if grep -nE '^(from|import) curec\.' "$py_pkg"/curec/v1/*.py "$py_pkg"/curec/v1/*.pyi; then
    echo "clients.sh: unrewritten curec.v1 import left in generated Python code" >&2
    exit 1
fi
echo "generated Python into $py_pkg"

# ---------------------------------------------------------------- Go
go_out="clients/go/curecv1"
mapping=""
for p in "${protos[@]}"; do mapping="$mapping,M$p=$GO_IMPORT_PATH"; done
mapping="${mapping#,}"
mkdir -p "$tmp/go"
protoc -I Protos \
    --go_out="$tmp/go" --go_opt=paths=source_relative --go_opt="$mapping" \
    --go-grpc_out="$tmp/go" --go-grpc_opt=paths=source_relative --go-grpc_opt="$mapping" \
    "${protos[@]}"
rm -rf "$go_out"
mkdir -p "$go_out"
cp "$tmp"/go/curec/v1/*.go "$go_out"/
echo "generated Go into $go_out"
