#!/usr/bin/env bash
# install-tool.sh NAME — build a pinned third-party tool from the Go module proxy, once per machine,
# and print the path of the binary. Tools:
#   versitygw  S3-compatible server (Apache-2.0) the S3 tests run against
#   kopia      the kopia CLI, for compatibility tests and the benchmark
#   restic     the restic CLI shipped in Ferry's image as /restic (restores of Velero's restic
#              backups; the tests use the distribution's restic, hack/install-restic.sh)
# Binaries are cached in ${FERRY_CACHE:-~/.cache/ferry}/tools/<name>-<version>.
#
# Why a wrapper module: `go install pkg@version` refuses modules with replace directives and the
# proxy refuses kopia's version list; a tiny main module that requires the tool builds fine.
set -euo pipefail
name=${1:?usage: install-tool.sh versitygw|kopia|restic}
case "$name" in
  versitygw) module=github.com/versity/versitygw; version=${VERSITYGW_VERSION:-v1.8.0}; pkg=$module/cmd/versitygw ;;
  kopia)     module=github.com/kopia/kopia;       version=${KOPIA_VERSION:-v0.22.3};    pkg=$module ;;
  restic)    module=github.com/restic/restic;     version=${RESTIC_VERSION:-v0.18.1};   pkg=$module/cmd/restic ;;
  *) echo "install-tool.sh: unknown tool $name" >&2; exit 2 ;;
esac
cache=${FERRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry}/tools
bin="$cache/$name-$version"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false"
work="$cache/build/$name-$version"
mkdir -p "$work"
exec 9>"$work/.lock"
flock 9
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
gomod=$(cd "$work" && go list -m -f '{{.GoMod}}' "$module@$version") ||
  { echo "install-tool.sh: $module@$version is not available from the module proxy" >&2; exit 1; }
gover=$(awk '$1=="go"{print $2; exit}' "$gomod")
printf 'module ferry.local/tools/%s\n\ngo %s\n\nrequire %s %s\n' "$name" "$gover" "$module" "$version" >"$work/go.mod"
printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"$work/tools.go"
echo "building $name $version (first time on this machine; several minutes on 2 cores)" >&2
(cd "$work" && go mod tidy >&2 && go build -trimpath -ldflags "-s -w" -o "$bin.tmp" "$pkg")
mv -f "$bin.tmp" "$bin"
echo "$bin"
