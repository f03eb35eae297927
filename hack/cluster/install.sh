#!/usr/bin/env bash
# install.sh — build and install everything the real single-node cluster needs into $CACHE
# (default ~/.cache/ferry/cluster), offline but for Debian packages and the Go module proxy.
# Idempotent: each part is skipped when its stamp matches (warm run: well under a second); the Go
# build cache is shared with hack/install-control-plane.sh, so kube-apiserver compiles once.
# Sources: Debian packages (containerd, runc, CNI plugins, iptables, conntrack, busybox-static),
# the Go module proxy (Kubernetes, etcd, external-provisioner, external-snapshotter, versitygw);
# src/ holds Ferry's own pause, CSI hostpath driver and registrar (the proxy serves neither the
# upstream csi-driver-host-path nor node-driver-registrar).
#
# Usage: install.sh [all|apt|k8s|etcd|tools|images|csi|s3]...   (default: all)
# Knobs: K8S_VERSION, ETCD_VERSION, FERRY_CACHE, FORCE=1 (rebuild everything).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"

. "$HERE/../gobuild.sh"
mkdir -p "$BIN" "$IMAGES" "$BUILD"
exec 9>"$BUILD/.lock"; flock 9

# CSI sidecars: versions that the module proxy serves (it refuses many others, v6.0.0 and v8.4.0 among them).
# Both use k8s.io libraries v0.36.1, so one wrapper module builds them with shared packages.
PROVISIONER_VERSION=${PROVISIONER_VERSION:-v6.3.0}
SNAPSHOTTER_VERSION=${SNAPSHOTTER_VERSION:-v8.6.0}

stamp_ok() { # stamp_ok NAME WANT [BIN...]: built already (stamp matches, binaries present)
  local b
  [ "${FORCE:-0}" != 1 ] && [ -f "$CACHE/.stamp-$1" ] && [ "$(cat "$CACHE/.stamp-$1")" = "$2" ] || return 1
  for b in "${@:3}"; do [ -x "$BIN/$b" ] || return 1; done
}
stamp_set() { printf '%s' "$2" >"$CACHE/.stamp-$1"; }
timed() { # timed LABEL CMD...: run and log the wall time
  local label=$1 t0; shift
  t0=$(date +%s)
  "$@" || return
  log "$label: $(($(date +%s) - t0))s"
}

install_apt() {
  command -v apt-get >/dev/null || die "apt-get not found: install containerd, runc, the CNI plugins, iptables, conntrack, iproute2, openssl, jq and busybox-static yourself"
  local pkgs="containerd runc containernetworking-plugins iptables conntrack iproute2 openssl jq busybox-static bc" missing=""
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing+=" $p"; done
  [ -z "$missing" ] && return 0
  need_root
  log "apt-get install$missing"
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || die "apt-get install$missing failed"
}

K8S_CMDS="kube-apiserver kubelet kube-scheduler kube-controller-manager kube-proxy kubectl"
install_k8s() {
  stamp_ok k8s "$K8S_VERSION $K8S_CMDS" $K8S_CMDS && return 0
  log "building $K8S_CMDS $K8S_VERSION (cold: tens of CPU-minutes on 2 cores)"
  # shellcheck disable=SC2086
  timed "go build kubernetes" build_k8s "$K8S_VERSION" "$BUILD" "$BIN" $K8S_CMDS || die "building Kubernetes $K8S_VERSION failed"
  stamp_set k8s "$K8S_VERSION $K8S_CMDS"
}

install_etcd() {
  stamp_ok etcd "$ETCD_VERSION" etcd && return 0
  timed "go build etcd" build_etcd "$ETCD_VERSION" "$BUILD" "$BIN/etcd" || die "building etcd $ETCD_VERSION failed"
  stamp_set etcd "$ETCD_VERSION"
}

# replaces_of GOMOD VERSION: the module's replace directives as wrapper lines; a relative one
# (./client) becomes the published submodule at the same VERSION.
replaces_of() {
  go mod edit -json "$1" | jq -r --arg v "$2" '.Replace // [] | .[] |
    "\t\(.Old.Path) => " + (if (.New.Path|startswith(".")) then "\(.Old.Path) \($v)" else "\(.New.Path) \(.New.Version)" end)'
}

build_csi() {
  local want="provisioner $PROVISIONER_VERSION snapshotter $SNAPSHOTTER_VERSION" dir="$BUILD/csi-sidecars"
  local pm sm gover mod crd
  stamp_ok csi "$want" csi-provisioner csi-snapshotter snapshot-controller && return 0
  pm=$(gomod_of "$BUILD" "github.com/kubernetes-csi/external-provisioner/v6@$PROVISIONER_VERSION") || die "no csi-provisioner"
  sm=$(gomod_of "$BUILD" "github.com/kubernetes-csi/external-snapshotter/v8@$SNAPSHOTTER_VERSION") || die "no csi-snapshotter"
  gover=$(awk '$1=="go"{print $2; exit}' "$pm")
  mod="module ferry.local/cluster/csi-sidecars

go $gover

require (
	github.com/kubernetes-csi/external-provisioner/v6 $PROVISIONER_VERSION
	github.com/kubernetes-csi/external-snapshotter/v8 $SNAPSHOTTER_VERSION
)

replace (
$( { replaces_of "$pm" "$PROVISIONER_VERSION"; replaces_of "$sm" "$SNAPSHOTTER_VERSION"; } | sort -u -k1,1)
)"
  write_module "$dir" "$mod"
  tools_go "$dir" github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner \
    github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter \
    github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller
  (cd "$dir" && go mod tidy) || die "go mod tidy for the CSI sidecars failed"
  mkdir -p "$dir/out"
  (cd "$dir" && timed "go build csi-provisioner" go build -trimpath -ldflags "-s -w -X main.version=$PROVISIONER_VERSION" \
    -o "$dir/out/" github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner)
  (cd "$dir" && timed "go build csi-snapshotter+snapshot-controller" go build -trimpath -ldflags "-s -w -X main.version=$SNAPSHOTTER_VERSION" \
    -o "$dir/out/" github.com/kubernetes-csi/external-snapshotter/v8/cmd/csi-snapshotter \
    github.com/kubernetes-csi/external-snapshotter/v8/cmd/snapshot-controller)
  for p in csi-provisioner csi-snapshotter snapshot-controller; do mv -f "$dir/out/$p" "$BIN/$p"; done
  # The VolumeSnapshot CRDs ship in the client module.
  crd=$(cd "$dir" && go list -m -f '{{.Dir}}' github.com/kubernetes-csi/external-snapshotter/client/v8)/config/crd
  rm -rf "$CACHE/manifests/snapshot-crds"; mkdir -p "$CACHE/manifests/snapshot-crds"
  cp "$crd"/snapshot.storage.k8s.io_*.yaml "$CACHE/manifests/snapshot-crds/"
  chmod -R u+w "$CACHE/manifests/snapshot-crds"
  stamp_set csi "$want"
}

# Our own small programs (src/): pause (sandbox image), csi-hostpath driver, csi-registrar.
build_tools() {
  local want dir="$BUILD/tools"
  want="$(cd "$HERE/src" && cat go.mod go.sum $(find . -name '*.go' | sort) | sha256sum | cut -c1-16)"
  stamp_ok tools "$want" pause csi-hostpath csi-registrar && return 0
  rm -rf "$dir"; mkdir -p "$dir"; cp -r "$HERE/src/." "$dir/"
  (cd "$dir" && timed "go build tools" go build -trimpath -ldflags "-s -w" -o "$BIN/" ./...)
  stamp_set tools "$want"
}

# Images, built offline as OCI archives: pause (sandbox) and tools (busybox + kubectl).
build_images() {
  local want root
  want="$(cat "$BIN/pause" /bin/busybox "$BIN/kubectl" "$HERE/mkimage.sh" | sha256sum | cut -c1-16)"
  stamp_ok images "$want" && return 0
  root=$(mktemp -d)
  mkdir -p "$root/pause" "$root/tools/bin" "$root/tools/tmp" "$root/tools/etc"
  cp "$BIN/pause" "$root/pause/pause"
  cp /bin/busybox "$BIN/kubectl" "$root/tools/bin/"
  for a in $(/bin/busybox --list); do [ -e "$root/tools/bin/$a" ] || ln -s busybox "$root/tools/bin/$a"; done
  chmod 1777 "$root/tools/tmp"
  "$HERE/mkimage.sh" "$PAUSE_IMAGE" "$IMAGES/pause.tar" "$root/pause" /pause
  "$HERE/mkimage.sh" "$TOOLS_IMAGE" "$IMAGES/tools.tar" "$root/tools" /bin/sh
  rm -rf "$root"
  stamp_set images "$want"
}

install_s3() { # the S3-compatible server up.sh binds to the node address (shared with the other tests)
  "$HERE/../install-tool.sh" versitygw >/dev/null
}

parts=("$@"); [ ${#parts[@]} -eq 0 ] && parts=(all)
for part in "${parts[@]}"; do
  case $part in
    apt) install_apt ;;
    k8s) install_k8s ;;
    etcd) install_etcd ;;
    tools) build_tools ;;
    images) build_images ;;
    csi) build_csi ;;
    s3) install_s3 ;;
    all) install_apt; install_k8s; install_etcd; build_tools; build_images; build_csi; install_s3 ;;
    *) die "unknown part $part" ;;
  esac
done
log "ready: $CACHE"
