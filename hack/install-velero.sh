#!/usr/bin/env bash
# install-velero.sh — build Velero's own binary (server and CLI are one binary) and its AWS
# object-store plugin from the Go module proxy, once per machine, and print the directory that
# holds them: velero, and plugins/velero-plugin-for-aws (the directory for the server's
# --plugin-dir, which must hold plugins only); for Velero's images (hack/cluster/velero-images.sh)
# also velero-restore-helper, velero-helper and cp-plugin (the plugin image's entrypoint). The
# compatibility tier runs Velero's real server and CLI against Ferry's node-agent (test/compat),
# the end-to-end tier `velero install` on the real cluster (test/e2e).
# Binaries are cached in ${FERRY_CACHE:-~/.cache/ferry}/tools/velero-<version>/.
#
# Why not `go install`: Velero's go.mod replaces github.com/kopia/kopia with Velero's fork, and
# `go install pkg@version` refuses modules with replace directives. The script copies each module
# out of the (read-only) module cache and builds inside it, so the replace directives apply.
set -euo pipefail
velero_version=${VELERO_VERSION:-v1.18.3}
aws_version=${VELERO_PLUGIN_FOR_AWS_VERSION:-v1.14.3}
cache=${FERRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry}/tools
dir="$cache/velero-$velero_version"
done_mark="$dir/.plugin-for-aws-$aws_version.images"
built() { [ -e "$done_mark" ] && for f in velero velero-restore-helper velero-helper cp-plugin plugins/velero-plugin-for-aws; do [ -x "$dir/$f" ] || return 1; done; }
if built; then echo "$dir"; exit 0; fi

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false -mod=mod"
work="$cache/build/velero-$velero_version"
mkdir -p "$work" "$dir/plugins"
exec 9>"$work/.lock"
flock 9
if built; then echo "$dir"; exit 0; fi

# build MODULE VERSION PKG OUT [PKG OUT...]: copy MODULE@VERSION into $work and build each PKG
# (relative) as its OUT.
build() {
  local module=$1 version=$2 src
  src=$(cd "$work" && go mod download -json "$module@$version" | awk -F'"' '$2=="Dir"{print $4}')
  [ -n "$src" ] && [ -d "$src" ] ||
    { echo "install-velero.sh: $module@$version is not available from the module proxy" >&2; exit 1; }
  local copy="$work/$(basename "$module")-$version"
  rm -rf "$copy"
  cp -r "$src" "$copy"
  chmod -R u+w "$copy"
  echo "building $module $version (first time on this machine; several minutes on 2 cores)" >&2
  (cd "$copy" &&
    # Velero pins k8s.io/cli-runtime v0.33.12, which the proxy does not serve; v0.34.13 builds.
    if grep -q 'k8s.io/cli-runtime v0.33.12' go.mod && ! go mod download k8s.io/cli-runtime@v0.33.12 2>/dev/null; then
      go mod edit -replace k8s.io/cli-runtime=k8s.io/cli-runtime@v0.34.13
    fi &&
    shift 2 &&
    while [ $# -gt 0 ]; do
      if [ ! -x "$2" ]; then
        go build -trimpath -ldflags "-s -w -X github.com/vmware-tanzu/velero/pkg/buildinfo.Version=$version" -o "$2.tmp" "$1" >&2 &&
          mv -f "$2.tmp" "$2" || exit 1
      fi
      shift 2
    done)
  rm -rf "$copy"
}

build github.com/vmware-tanzu/velero "$velero_version" ./cmd/velero "$dir/velero" \
  ./cmd/velero-restore-helper "$dir/velero-restore-helper" ./cmd/velero-helper "$dir/velero-helper"
build github.com/vmware-tanzu/velero-plugin-for-aws "$aws_version" \
  ./velero-plugin-for-aws "$dir/plugins/velero-plugin-for-aws" ./hack/cp-plugin "$dir/cp-plugin"
touch "$done_mark"
echo "$dir"
