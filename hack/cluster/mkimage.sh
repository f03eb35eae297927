#!/usr/bin/env bash
# mkimage.sh — build a single-layer OCI image archive offline (no registry, no daemon), for
# `ctr -n k8s.io images import`. The layer is the content of ROOTDIR.
#
# Usage: mkimage.sh REF OUT.tar ROOTDIR [ENTRYPOINT...]
#   REF: image name containerd will know it by, e.g. registry.local/ferry-cluster/pause:v1
set -euo pipefail
ref=$1 out=$2 root=$3; shift 3
ep=; for a in "$@"; do ep+="${ep:+,}\"${a//\"/\\\"}\""; done; ep="[$ep]"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/blobs/sha256"
# Reproducible layer: sorted, fixed mtime and owner.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$root" -cf "$tmp/layer.tar" .
ld=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1); ls=$(stat -c %s "$tmp/layer.tar")
mv "$tmp/layer.tar" "$tmp/blobs/sha256/$ld"
printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/local/bin:/usr/bin:/bin"],"Entrypoint":%s,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
  "$ep" "$ld" >"$tmp/config.json"
cd_=$(sha256sum "$tmp/config.json" | cut -d' ' -f1); cs=$(stat -c %s "$tmp/config.json")
mv "$tmp/config.json" "$tmp/blobs/sha256/$cd_"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
  "$cd_" "$cs" "$ld" "$ls" >"$tmp/manifest.json"
md=$(sha256sum "$tmp/manifest.json" | cut -d' ' -f1); ms=$(stat -c %s "$tmp/manifest.json")
mv "$tmp/manifest.json" "$tmp/blobs/sha256/$md"
printf '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
  "$md" "$ms" "$ref" "${ref##*:}" >"$tmp/index.json"
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp" -cf "$out.tmp" oci-layout index.json blobs
mv -f "$out.tmp" "$out"
