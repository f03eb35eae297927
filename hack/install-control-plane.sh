#!/usr/bin/env bash
# install-control-plane.sh — build kube-apiserver and etcd for envtest from the Go module proxy.
#
# Usage: hack/install-control-plane.sh            # prints the directory to use as KUBEBUILDER_ASSETS
#
# The binaries are built once per version into a cache directory that survives fresh clones
# (FERRY_CACHE, default ${XDG_CACHE_HOME:-$HOME/.cache}/ferry) and are reused when they report the
# wanted version. Nothing is downloaded but Go modules: no prebuilt release archives, no Docker.
#
# How: hack/gobuild.sh (wrapper modules). Debian's etcd-server (3.4.23) cannot serve
# kube-apiserver >= 1.34 (watches fail with "Too large resource version"), hence etcd 3.6 from
# source.
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

. "$(dirname "$0")/gobuild.sh"
mkdir -p "$DEST" "$WORK"

# One build at a time per cache (parallel CI jobs or a test run racing a demo).
exec 9>"$WORK/.lock"
flock 9

has() { # has BIN WANT
  [ -x "$DEST/$1" ] && [ "${FORCE:-0}" != 1 ] && [[ "$("$DEST/$1" --version 2>/dev/null || true)" == *"$2"* ]]
}

if ! has etcd "etcd Version: ${ETCD_VERSION#v}"; then
  log "building etcd $ETCD_VERSION (cold: ~3 min on 2 cores)"
  build_etcd "$ETCD_VERSION" "$WORK" "$DEST/etcd" || die "building etcd $ETCD_VERSION failed"
fi
if ! has kube-apiserver "Kubernetes $K8S_VERSION"; then
  log "building kube-apiserver $K8S_VERSION (cold: 4-15 min on 2 cores, once per machine)"
  build_k8s "$K8S_VERSION" "$WORK" "$DEST" kube-apiserver || die "building kube-apiserver $K8S_VERSION failed"
fi
log "ready: $("$DEST/kube-apiserver" --version), etcd ${ETCD_VERSION}"
echo "$DEST"
