#!/usr/bin/env bash
# demo.sh — `make demo`: Ferry's main job on a real single-node Kubernetes on this machine.
# Brings the cluster up (hack/cluster), builds Ferry's image and imports it, installs Ferry with
# `ferry install`, and runs test/e2e's TestDemo: an application's volumes backed up with live
# progress, its namespace deleted and re-created, restored, every file verified, a summary.
# The cluster goes down at the end; DEMO_KEEP=1 keeps it and prints how to look around.
# Needs root (kubelet, containerd, iptables); without it, `make demo-sim` plays the same story
# on simulated nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "make demo runs a real kubelet and containerd and needs root; 'make demo-sim' runs without" >&2; exit 1; }
state=${FERRY_CLUSTER_STATE:-/run/ferry-cluster}
hack/cluster/install.sh
if [ "${DEMO_KEEP:-0}" != 1 ]; then trap 'hack/cluster/down.sh' EXIT; fi
kubeconfig=$(hack/cluster/up.sh)
image=$(hack/cluster/image.sh)
FERRY_DEMO=1 FERRY_E2E_ENV=$state/cluster.env FERRY_E2E_IMAGE=$image \
  go test ./test/e2e -run '^TestDemo$' -count=1 -v -timeout 30m
if [ "${DEMO_KEEP:-0}" = 1 ]; then
  kubectl=$(. "$state/cluster.env"; echo "$KUBECTL")
  cat <<TXT
== the cluster stays up (DEMO_KEEP=1):
   export KUBECONFIG=$kubeconfig
   $kubectl get nodes -o wide
   $kubectl get pods -A -o wide
   $kubectl get backups,restores,podvolumebackups,podvolumerestores -n velero
   $kubectl logs -n velero -l name=node-agent
   take it down with: hack/cluster/down.sh
TXT
fi
