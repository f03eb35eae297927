#!/usr/bin/env bash
# install-control-plane.sh — build kube-apiserver and etcd for envtest from the Go module proxy.
#
# Usage: hack/install-control-plane.sh            # prints the directory to use as KUBEBUILDER_ASSETS
#
# The binaries are built once per version into a cache directory that survives fresh clones
# (FERRY_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/ferry) and are reused when they report the
# wanted version. Nothing is downloaded but Go modules: no prebuilt release archives, no Docker.
#
# Why wrapper modules: k8s.io/kubernetes and go.etcd.io/etcd/server/v3 carry `replace` directives,
# so `go install pkg@version` refuses them. A small main module that requires them builds fine; for
# Kubernetes it must also map each staging module (required there as v0.0.0) to its published
# v0.X.Y release. Debian's etcd-server (3.4.23) cannot serve kube-apiserver >= 1.34 (watches fail
# with "Too large resource version"), hence etcd 3.6 from source.
#
# Knobs: K8S_VERSION (v1.34.4), ETCD_VERSION (v3.6.16), FORCE=1 rebuilds.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
CACHE=${FERRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry}
DEST="$CACHE/control-plane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION"
WORK="$CACHE/control-plane/build"

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
command -v go >/dev/null || die "go is not on PATH"

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-modcacherw -buildvcs=false"
mkdir -p "$DEST" "$WORK"

# One build at a time per cache (parallel CI jobs or a test run racing a demo).
exec 9>"$WORK/.lock"
flock 9

has() { # has BIN WANT
  [ -x "$DEST/$1" ] && [ "${FORCE:-0}" != 1 ] && [[ "$("$DEST/$1" --version 2>/dev/null || true)" == *"$2"* ]]
}

# write_module DIR CONTENT: keep go.sum when the module file did not change (fast re-runs).
write_module() {
  if ! cmp -s <(printf '%s\n' "$2") "$1/go.mod.want" 2>/dev/null; then
    printf '%s\n' "$2" >"$1/go.mod.want"
    cp "$1/go.mod.want" "$1/go.mod"
    rm -f "$1/go.sum"
  fi
}

build_apiserver() {
  local dir="$WORK/kubernetes-$K8S_VERSION" gomod gover staging minor ld p mod
  mkdir -p "$dir"
  gomod=$(cd "$WORK" && go list -m -f '{{.GoMod}}' "k8s.io/kubernetes@$K8S_VERSION") ||
    die "k8s.io/kubernetes@$K8S_VERSION is not available from the module proxy"
  gover=$(awk '$1=="go"{print $2; exit}' "$gomod")
  staging=$(awk '$2=="v0.0.0" && $1 ~ /^k8s\.io\// {print $1}' "$gomod" | sort -u)
  [ -n "$staging" ] || die "no staging modules found in $gomod"
  mod="module ferry.local/controlplane/kubernetes

go $gover

require k8s.io/kubernetes $K8S_VERSION

replace ("
  for p in $staging; do mod+=$'\n'"	$p => $p v0.${K8S_VERSION#v1.}"; done
  mod+=$'\n)'
  write_module "$dir" "$mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' >"$dir/tools.go"
  (cd "$dir" && go mod tidy) || die "go mod tidy for kubernetes $K8S_VERSION failed"
  minor=$(echo "$K8S_VERSION" | cut -d. -f2)
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  log "building kube-apiserver $K8S_VERSION (cold: 4-15 min on 2 cores, once per machine)"
  (cd "$dir" && go build -trimpath -ldflags "$ld" -o "$DEST/.kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver)
  mv -f "$DEST/.kube-apiserver.tmp" "$DEST/kube-apiserver"
}

build_etcd() {
  local dir="$WORK/etcd-$ETCD_VERSION" gomod gover
  mkdir -p "$dir"
  gomod=$(cd "$WORK" && go list -m -f '{{.GoMod}}' "go.etcd.io/etcd/server/v3@$ETCD_VERSION") ||
    die "go.etcd.io/etcd/server/v3@$ETCD_VERSION is not available from the module proxy"
  gover=$(awk '$1=="go"{print $2; exit}' "$gomod")
  write_module "$dir" "module ferry.local/controlplane/etcd

go $gover

require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$dir/tools.go"
  (cd "$dir" && go mod tidy) || die "go mod tidy for etcd $ETCD_VERSION failed"
  log "building etcd $ETCD_VERSION (cold: ~3 min on 2 cores)"
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$DEST/.etcd.tmp" go.etcd.io/etcd/server/v3)
  mv -f "$DEST/.etcd.tmp" "$DEST/etcd"
}

has etcd "etcd Version: ${ETCD_VERSION#v}" || build_etcd
has kube-apiserver "Kubernetes $K8S_VERSION" || build_apiserver
log "ready: $("$DEST/kube-apiserver" --version), etcd ${ETCD_VERSION}"
echo "$DEST"
