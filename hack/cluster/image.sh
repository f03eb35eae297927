#!/usr/bin/env bash
# image.sh — build Ferry's container image offline and import it into the cluster's containerd.
# The image holds the static programs at its root (/ferry-server, /ferry-node-agent,
# /ferry-datamover, /ferry, and /restic, the pinned restic CLI of hack/install-tool.sh that the
# node-agent runs for restores of Velero's restic backups), the CA bundle of this machine, and a
# /tmp; the tag is the content hash, so a changed build is a new image and `ferry install` rolls
# the pods. Prints the reference, for `ferry install --image REF --image-pull-policy Never`.
#
# Usage: image.sh              # build + import (the cluster must be up)
#        IMPORT=0 image.sh     # build the archive only ($CACHE/images/ferry.tar is not imported at up)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
ROOT=$(cd "$HERE/../.." && pwd)
OUT="$FERRY_CACHE/image"
mkdir -p "$OUT"
exec 9>"$OUT/.lock"; flock 9

root=$(mktemp -d); trap 'rm -rf "$root"' EXIT
# The flags of the test tiers' builds (no -trimpath), so the compiled packages come from Go's
# build cache (-s -w only changes the link).
(cd "$ROOT" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -ldflags "-s -w" -o "$root/" \
  ./cmd/ferry-server ./cmd/ferry-node-agent ./cmd/ferry-datamover ./cmd/ferry) || die "go build failed"
restic=$("$ROOT/hack/install-tool.sh" restic) || die "building restic failed"
cp "$restic" "$root/restic"
mkdir -p "$root/tmp" "$root/etc/ssl/certs" "$root/var/cache/ferry"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/:/ferry\nnobody:x:65534:65534:nobody:/:/ferry\nnonroot:x:65532:65532:nonroot:/:/ferry\n' >"$root/etc/passwd"
# Everything is owned by root (mkimage.sh); ferry-server runs as 65532 and must still run the
# programs and read the CA bundle, whatever this machine's umask.
chmod -R a+rX "$root"
chmod 1777 "$root/tmp"
tag=$(cd "$root" && find . -type f | sort | xargs sha256sum | sha256sum | cut -c1-16)
ref="registry.local/ferry/ferry:$tag"
"$HERE/mkimage.sh" "$ref" "$OUT/ferry.tar" "$root" /ferry
if [ "${IMPORT:-1}" = 1 ]; then
  need_root
  ctr --address "$CTRD_SOCK" version >/dev/null 2>&1 || die "the cluster's containerd is not running: hack/cluster/up.sh first"
  ctr --address "$CTRD_SOCK" -n k8s.io images import "$OUT/ferry.tar" >/dev/null || die "import $OUT/ferry.tar failed"
  # Earlier builds would pile up in the image store (it survives down.sh): drop them.
  for old in $(ctr --address "$CTRD_SOCK" -n k8s.io images ls -q | grep "^${ref%:*}:" | grep -vx "$ref"); do
    ctr --address "$CTRD_SOCK" -n k8s.io images rm "$old" >/dev/null 2>&1 || log "could not remove the old image $old"
  done
  log "image $ref imported into the cluster"
fi
echo "$ref"
