#!/usr/bin/env bash
# Tests the Python client across the dependency range that pyproject.toml declares: it
# creates one virtual environment per case below, installs the package with the case's
# pins, checks that pip's resolution kept them and is consistent (pip check), that the
# package imports with warnings as errors, and runs a part of the client suite
# (COMPAT_TESTS) against a live daemon (tests/conftest.py: .build/debug/curecd or $CURECD,
# or CURECD_ADDR=host:port).
#
#   lowest   protobuf and grpcio at the floors pyproject.toml declares
#   highest  the newest protobuf 7 and grpcio the client suite pins (requirements-test.txt)
#   triton   beside tritonclient[grpc], which pins protobuf < 7; tritonclient.grpc is
#            imported with the client in one process before the tests
#
# Needs PyPI through pip (or its cache). Exits non-zero if any case fails.
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
cd "$ROOT"

LOWEST=(protobuf==3.20.3 grpcio==1.49.1)
HIGHEST=(protobuf==7.36.2 grpcio==1.85.1)
TRITON=(tritonclient[grpc]==2.73.0)
read -r -a TESTS <<< "${COMPAT_TESTS:-tests/test_recommend.py tests/test_plugins.py tests/test_models.py}"
mapfile -t TEST_PINS < <(grep -E '^pytest' "$HERE/requirements-test.txt")

work="$(mktemp -d "${TMPDIR:-/tmp}/curec-py-compat.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore

# run_case NAME IMPORTS PIN...: one environment, one pytest run. IMPORTS are extra modules
# imported with curec_client before the tests.
run_case() {
    local name="$1" imports="$2"
    shift 2
    local venv="$work/$name"
    echo "-- $name: $*"
    "$PYTHON" -m venv "$venv" || return 1
    "$venv/bin/python" -m pip install -q "$@" "${TEST_PINS[@]}" "$wheel" || return 1
    "$venv/bin/python" -m pip check || return 1
    "$venv/bin/python" -W error - "$imports" "$@" <<'PY' || return 1
import importlib, importlib.metadata as metadata, pkgutil, sys
import curec_client._proto.curec.v1 as stubs
for module in [m.name for m in pkgutil.iter_modules(stubs.__path__, stubs.__name__ + ".")] + sys.argv[1].split():
    importlib.import_module(module)
for pin in sys.argv[2:]:
    if "==" in pin:
        name, version = pin.split("==")
        installed = metadata.version(name.split("[")[0])
        if installed != version:
            sys.exit("%s: pip installed %s, not the pinned %s" % (name, installed, version))
import curec_client, google.protobuf, grpc
print("   protobuf %s, grpcio %s, curec_client from %s"
      % (google.protobuf.__version__, grpc.__version__, curec_client.__file__))
PY
    # From the repository root, so the installed package is tested, not the source tree.
    "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider "${TESTS[@]/#/$HERE/}"
}

# The package is built once; every case installs the same wheel.
"$PYTHON" -m pip wheel -q --no-deps -w "$work/dist" "$HERE" || exit 1
wheel="$(ls "$work"/dist/curec_client-*.whl)"

status=0
summary=()
for case in lowest highest triton; do
    case "$case" in
        lowest) run_case lowest "" "${LOWEST[@]}" ;;
        highest) run_case highest "" "${HIGHEST[@]}" ;;
        triton) run_case triton "tritonclient.grpc" "${TRITON[@]}" ;;
    esac
    code=$?
    summary+=("$case: exit $code")
    [ "$code" -eq 0 ] || status=1
    rm -rf "${work:?}/$case"
done
echo "== protobuf range: ${summary[*]}"
exit "$status"
