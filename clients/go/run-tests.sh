#!/usr/bin/env bash
# Runs the Go client's tests offline against a live curecd (started by the tests; see
# daemon_test.go), in module mode with vendor/ laid out from Debian's Go packages by
# vendor-debian.sh. Extra arguments go to `go test` (e.g. -run TestCancelJob).
# Environment: CURECD (daemon binary, default .build/debug/curecd), CURECD_ADDR (use a
# running daemon instead). Ends with a line "go: N passed, N failed, N skipped".
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE"
./vendor-debian.sh >/dev/null

export GO111MODULE=on GOFLAGS=-mod=vendor GOPROXY=off GOWORK=off
export GOCACHE="${GOCACHE:-$HERE/.cache/go-build}"

go vet ./...
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
go test -count=1 -timeout 900s -v "$@" ./... 2>&1 | tee "$log" \
    | grep -E '^(\s*--- (PASS|FAIL|SKIP)|ok |FAIL|PASS$|panic:|\s+\S+_test\.go:[0-9]+:)'
status="${PIPESTATUS[0]}"
set -e
passed="$(grep -cE '^--- PASS' "$log" || true)"
failed="$(grep -cE '^--- FAIL' "$log" || true)"
skipped="$(grep -cE '^--- SKIP' "$log" || true)"
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
    failed=1  # the package failed without a failing test (build error, TestMain, panic)
    tail -40 "$log"
fi
echo "go: $passed passed, $failed failed, $skipped skipped"
exit "$status"
