#!/usr/bin/env bash
# Runs the client test suites against live daemons: the Python package (clients/python,
# pytest), the same package across its declared protobuf/grpcio range and beside tritonclient
# (clients/python/compat-test.sh, one venv per case, ~2 min) and the Go module (clients/go,
# go test, offline). Each suite starts its own curecd from .build/debug/curecd (or $CURECD) on
# 127.0.0.1; CURECD_ADDR=host:port makes them all use a running daemon instead. Installs the
# Python package and its pinned test dependencies into the current python3 ($PYTHON) first.
# Exits non-zero if any suite fails.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PYTHON="${PYTHON:-python3}"
cd "$ROOT"

echo "== Python client (clients/python)"
python_status=0
PIP_ROOT_USER_ACTION=ignore "$PYTHON" -m pip install -q --disable-pip-version-check \
    -r "$HERE/python/requirements-test.txt" "$HERE/python" || python_status=$?
if [ "$python_status" -eq 0 ]; then
    # From the repository root, so the installed package is tested, not the source tree.
    "$PYTHON" -m pytest -q -rs -p no:cacheprovider "$HERE/python/tests" 2>&1 | tee "$HERE/python/.last-test.log"
    python_status="${PIPESTATUS[0]}"
fi
python_summary="$(grep -E '^=*\s*[0-9]+ (passed|failed|skipped|error)' "$HERE/python/.last-test.log" 2>/dev/null | tail -1)"
rm -f "$HERE/python/.last-test.log"

echo
echo "== Python client across its protobuf range (clients/python/compat-test.sh)"
"$HERE/python/compat-test.sh" 2>&1 | tee "$HERE/python/.last-compat.log"
compat_status="${PIPESTATUS[0]}"
compat_summary="$(grep -E '^== protobuf range: ' "$HERE/python/.last-compat.log" | tail -1)"
rm -f "$HERE/python/.last-compat.log"

echo
echo "== Go client (clients/go)"
"$HERE/go/run-tests.sh" 2>&1 | tee "$HERE/go/.last-test.log"
go_status="${PIPESTATUS[0]}"
go_summary="$(grep -E '^go: ' "$HERE/go/.last-test.log" | tail -1)"
[ -n "$go_summary" ] || go_summary="no summary (see above)"
rm -f "$HERE/go/.last-test.log"

echo
echo "== Summary"
echo "python (exit $python_status): ${python_summary:-no summary (see above)}"
echo "python range (exit $compat_status): ${compat_summary#== protobuf range: }"
echo "go     (exit $go_status): ${go_summary#go: }"
if [ "$python_status" -ne 0 ] || [ "$compat_status" -ne 0 ] || [ "$go_status" -ne 0 ]; then
    exit 1
fi
