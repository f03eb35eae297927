#!/usr/bin/env bash
# velero-images.sh — Velero's own images, built offline from the binaries hack/install-velero.sh
# builds from the Go module proxy, and imported into the cluster's containerd, so that
# `velero install` runs on the real cluster with no registry. They hold what Velero's release
# images hold, at the same paths:
#   registry.local/velero/velero:VERSION                  /velero (server, node-agent, CLI, and the
#       mover and pod-volume pods), /velero-restore-helper (the restore-wait init container),
#       /velero-helper; a CA bundle, a HOME and a /tmp. Velero's image also carries restic for
#       restic restores; this one does not (the stories use Kopia).
#   registry.local/velero/velero-plugin-for-aws:VERSION   /plugins/velero-plugin-for-aws and
#       /bin/cp-plugin, its entrypoint (the init container that copies the plugin into /target).
# Velero's images run as a non-root user (cnb, 65532 for the plugin); these declare none, and the
# pods run as whatever their manifests say (velero install sets runAsUser 0 on the node-agent).
# Prints the two references, one per line.
#
# Usage: velero-images.sh             # build + import (the cluster must be up)
#        IMPORT=0 velero-images.sh    # build the archives only
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
ROOT=$(cd "$HERE/../.." && pwd)
bins=$("$ROOT/hack/install-velero.sh") || die "building Velero failed"
version=$(basename "$bins"); version=${version#velero-}
# The plugin binary is the last one install-velero.sh built: its mark is the newest.
aws_version=$(cd "$bins" && ls -t .plugin-for-aws-*.images 2>/dev/null | head -n1 | sed 's/^\.plugin-for-aws-//; s/\.images$//')
[ -n "$aws_version" ] || die "no velero-plugin-for-aws build in $bins"
OUT="$FERRY_CACHE/image"
mkdir -p "$OUT"
exec 9>"$OUT/.velero.lock"; flock 9

velero_ref="registry.local/velero/velero:$version"
plugin_ref="registry.local/velero/velero-plugin-for-aws:$aws_version"
# The archives are rebuilt only when a binary is newer than them.
if [ ! -s "$OUT/velero.tar" ] || [ -n "$(find "$bins" -maxdepth 1 -type f -newer "$OUT/velero.tar")" ]; then
  root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
  cp "$bins/velero" "$bins/velero-restore-helper" "$bins/velero-helper" "$root/"
  mkdir -p "$root/tmp" "$root/home/cnb" "$root/etc/ssl/certs"
  [ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  printf 'root:x:0:0:root:/home/cnb:/velero\ncnb:x:1000:1000:cnb:/home/cnb:/velero\n' >"$root/etc/passwd"
  chmod -R a+rX "$root"
  chmod 1777 "$root/tmp" "$root/home/cnb"
  "$HERE/mkimage.sh" "$velero_ref" "$OUT/velero.tar" "$root" /velero
  rm -rf "$root"
fi
if [ ! -s "$OUT/velero-plugin-for-aws.tar" ] || [ "$bins/plugins/velero-plugin-for-aws" -nt "$OUT/velero-plugin-for-aws.tar" ]; then
  root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
  mkdir -p "$root/plugins" "$root/bin"
  cp "$bins/plugins/velero-plugin-for-aws" "$root/plugins/"
  cp "$bins/cp-plugin" "$root/bin/"
  chmod -R a+rX "$root"
  "$HERE/mkimage.sh" "$plugin_ref" "$OUT/velero-plugin-for-aws.tar" "$root" \
    /bin/cp-plugin /plugins/velero-plugin-for-aws /target/velero-plugin-for-aws
  rm -rf "$root"
fi
if [ "${IMPORT:-1}" = 1 ]; then
  need_root
  ctr --address "$CTRD_SOCK" version >/dev/null 2>&1 || die "the cluster's containerd is not running: hack/cluster/up.sh first"
  for a in velero velero-plugin-for-aws; do
    ctr --address "$CTRD_SOCK" -n k8s.io images import "$OUT/$a.tar" >/dev/null || die "import $OUT/$a.tar failed"
  done
  log "Velero's images $velero_ref and $plugin_ref imported into the cluster"
fi
echo "$velero_ref"
echo "$plugin_ref"
