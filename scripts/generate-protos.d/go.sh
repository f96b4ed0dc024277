#!/usr/bin/env bash
# Generates the Go stubs used by the Go interop test suite (Tests/Interop/go).
#
# Tests/Interop/go is laid out as a GOPATH workspace (GO111MODULE=off), so the stubs
# go under its src/ with the import path curecinterop/grpc_testing.
# Uses Debian's protoc-gen-go and protoc-gen-go-grpc so that the output matches the
# Debian grpc-go and protobuf-go libraries in /usr/share/gocode.
# May be run alone or from scripts/generate-protos.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"
GRPC_PROTO=/usr/share/grpc-proto
IMPORT_PATH=curecinterop/grpc_testing

missing=()
command -v protoc >/dev/null || missing+=(protobuf-compiler)
[ -d "$GRPC_PROTO" ] || missing+=(grpc-proto)
command -v protoc-gen-go >/dev/null || missing+=(protoc-gen-go)
command -v protoc-gen-go-grpc >/dev/null || missing+=(protoc-gen-go-grpc)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

out="Tests/Interop/go/src/$IMPORT_PATH"
protos=(grpc/testing/empty.proto grpc/testing/messages.proto grpc/testing/test.proto)
mapping=""
for p in "${protos[@]}"; do
    mapping="$mapping,M$p=$IMPORT_PATH"
done
mapping="${mapping#,}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
protoc -I "$GRPC_PROTO" \
    --go_out="$tmp" --go_opt=paths=source_relative --go_opt="$mapping" \
    --go-grpc_out="$tmp" --go-grpc_opt=paths=source_relative --go-grpc_opt="$mapping" \
    "${protos[@]}"

rm -rf "$out"
mkdir -p "$out"
cp "$tmp"/grpc/testing/*.go "$out"/
echo "generated Go into $out"
