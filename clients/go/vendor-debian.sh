#!/usr/bin/env bash
# Lays out vendor/ for building this module offline from Debian's Go library packages.
#
# vendor/<module> is a symlink to the module's source tree in /usr/share/gocode (installed
# by golang-google-grpc-dev, golang-google-protobuf-dev and their dependencies), and
# vendor/modules.txt lists, for each module, the version go.mod requires and the packages
# this module imports (computed with `go list -deps` in GOPATH mode, which needs no
# modules.txt). With vendor/ in place, plain `go build ./...` and `go test ./...` work in
# module mode with nothing downloaded (go 1.14+ uses -mod=vendor when vendor/modules.txt
# exists). vendor/ is machine-specific and not committed.
#
# Installs the Debian packages when missing (apt-get, needs root). Run again after changing
# imports. Online, a Go team can instead delete vendor/ and use the module proxy as usual.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
GOCODE=/usr/share/gocode/src
MODULE=curecserve.local/client

# module path, the version go.mod requires, and the Debian package that ships it
modules=(
    "github.com/golang/protobuf v1.3.5 golang-github-golang-protobuf-1-3-dev"
    "golang.org/x/net v0.7.0 golang-golang-x-net-dev"
    "golang.org/x/sys v0.3.0 golang-golang-x-sys-dev"
    "golang.org/x/text v0.7.0 golang-golang-x-text-dev"
    "google.golang.org/genproto v0.0.0-20200526211855-cb27e3aa2013 golang-google-genproto-dev"
    "google.golang.org/grpc v1.33.3 golang-google-grpc-dev"
    "google.golang.org/protobuf v1.28.1 golang-google-protobuf-dev"
)

missing=()
command -v go >/dev/null || missing+=(golang-go)
for entry in "${modules[@]}"; do
    read -r path _ package <<<"$entry"
    [ -d "$GOCODE/$path" ] || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# An existing vendor/ would be used by GOPATH mode too; start from none.
rm -rf "$HERE/vendor"

# The packages this module needs (its own and test dependencies), found in GOPATH mode
# through a throwaway GOPATH in which the module directory appears at its import path.
gopath="$(mktemp -d)"
trap 'rm -rf "$gopath"' EXIT
mkdir -p "$gopath/src/$(dirname "$MODULE")"
ln -s "$HERE" "$gopath/src/$MODULE"
own=()
while IFS= read -r dir; do
    own+=("$MODULE${dir#.}")
done < <(cd "$HERE" && find . -name '*.go' -not -path './vendor/*' -not -path './.cache/*' -printf '%h\n' | sort -u)
deps="$(cd "$gopath/src/$MODULE" && GO111MODULE=off GOPATH="$gopath:/usr/share/gocode" GOFLAGS= GOPROXY=off \
    GOCACHE="${GOCACHE:-$HERE/.cache/go-build}" \
    go list -deps -test -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "${own[@]}" \
    | sed 's/ \[.*//' | grep -vE '(\.test|_test)$' | sort -u)"
if ! grep -q '^google\.golang\.org/grpc$' <<<"$deps"; then
    echo "vendor-debian.sh: go list found no dependencies" >&2
    exit 1
fi

mkdir -p "$HERE/vendor"
{
    for entry in "${modules[@]}"; do
        read -r path version _ <<<"$entry"
        mkdir -p "$HERE/vendor/$(dirname "$path")"
        ln -s "$GOCODE/$path" "$HERE/vendor/$path"
        echo "# $path $version"
        # The go directive of the module's own go.mod sets the language version its
        # packages are compiled with (x/sys needs go1.17 features).
        go_version="$(awk '$1 == "go" { print $2; exit }' "$GOCODE/$path/go.mod" 2>/dev/null || true)"
        echo "## explicit${go_version:+; go $go_version}"
        grep -E "^${path//./\\.}(/|\$)" <<<"$deps" || true
    done
} > "$HERE/vendor/modules.txt"

# Every dependency must belong to one of the modules above.
unknown="$(grep -vE "^${MODULE//./\\.}(/|\$)" <<<"$deps" | while read -r pkg; do
    grep -qxF "$pkg" "$HERE/vendor/modules.txt" || echo "$pkg"
done)"
if [ -n "$unknown" ]; then
    echo "vendor-debian.sh: packages outside the listed modules:" >&2
    echo "$unknown" >&2
    exit 1
fi
echo "vendor/ laid out from $GOCODE ($(grep -vc '^#' "$HERE/vendor/modules.txt") packages)"
