#!/usr/bin/env bash
# test-e2e.sh — the end-to-end tier: a real single-node cluster (hack/cluster), Ferry's image
# imported into it, `ferry install`, and the stories of test/e2e; first hack/cluster/smoke.sh
# checks the cluster itself (pods, volumes, CSI snapshots, the network guard). The cluster comes
# up once and goes down on exit, whatever happened (its logs stay in /run/ferry-cluster.logs).
#
# It needs root and Linux (kubelet, containerd, iptables); elsewhere it prints one line saying
# it was skipped and why, and exits 0. FERRY_E2E=0 skips it on purpose. Extra `go test` flags:
# E2E_FLAGS (e.g. E2E_FLAGS='-run Restore').
set -euo pipefail
cd "$(dirname "$0")/.."
skip() { echo "e2e tier SKIPPED: $*"; exit 0; }
[ "${FERRY_E2E:-1}" != 0 ] || skip "FERRY_E2E=0"
[ "$(uname -s)" = Linux ] || skip "the real cluster runs on Linux only"
[ "$(id -u)" = 0 ] || skip "not root (the real cluster starts a kubelet, containerd and iptables rules); run 'sudo make test-e2e'"
if ! { command -v containerd && command -v runc; } >/dev/null && ! command -v apt-get >/dev/null; then
  skip "containerd and runc are not installed and there is no apt-get to install them"
fi

t0=$(date +%s)
hack/cluster/install.sh
t1=$(date +%s)
trap 'hack/cluster/down.sh' EXIT
hack/cluster/up.sh >/dev/null
t2=$(date +%s)
hack/cluster/smoke.sh
t3=$(date +%s)
image=$(hack/cluster/image.sh)
# Velero's own images and binaries, for the story that runs `velero install` (test/e2e/veleroswap_test.go).
velero_images=$(hack/cluster/velero-images.sh | tr '\n' ' ')
velero=$(hack/install-velero.sh)
echo "e2e: install $((t1 - t0))s, cluster up $((t2 - t1))s, smoke $((t3 - t2))s, images $(( $(date +%s) - t3 ))s"
FERRY_E2E_ENV=${FERRY_CLUSTER_STATE:-/run/ferry-cluster}/cluster.env FERRY_E2E_IMAGE=$image \
  FERRY_E2E_VELERO=$velero FERRY_E2E_VELERO_IMAGES=$velero_images \
  go test ./test/e2e -count=1 -v -timeout 40m ${E2E_FLAGS:-}
echo "e2e: tier took $(( $(date +%s) - t0 ))s"
