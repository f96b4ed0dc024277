#!/usr/bin/env bash
# Runs the Go interop suite with grpc-go's client (Debian's golang-google-grpc-dev).
#
# GOPATH mode, offline: this directory is a GOPATH workspace (src/curecinterop/...), and
# the libraries come from Debian's /usr/share/gocode. Extra arguments go to `go test`
# (e.g. -run TestPingPong). Environment: CURECD, CURECD_ADDR, INTEROP_REFERENCE as in
# the Python suite.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
missing=()
command -v go >/dev/null || missing+=(golang-go)
[ -d /usr/share/gocode/src/google.golang.org/grpc ] || missing+=(golang-google-grpc-dev)
[ -d /usr/share/gocode/src/google.golang.org/protobuf ] || missing+=(golang-google-protobuf-dev)
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
export GO111MODULE=off
export GOPATH="$HERE:/usr/share/gocode"
export GOFLAGS=
export GOPROXY=off
export GOCACHE="${GOCACHE:-$HERE/.cache/go-build}"
cd "$HERE/src/curecinterop/interop"
exec go test -count=1 -timeout 300s -v "$@" curecinterop/interop
