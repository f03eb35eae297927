# lib.sh — settings shared by the cluster scripts (sourced, not run). Every knob can be set in the
# environment; the defaults are what `make test` and `make demo` use.
K8S_VERSION=${K8S_VERSION:-v1.34.4}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
FERRY_CACHE=${FERRY_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ferry}
CACHE="$FERRY_CACHE/cluster"     # binaries, images, wrapper modules; survives fresh clones
BIN="$CACHE/bin"                 # every binary the cluster runs (containerd/runc come from Debian)
IMAGES="$CACHE/images"           # OCI image archives built offline, imported at every up
BUILD="$CACHE/build"             # wrapper modules
STATE=${FERRY_CLUSTER_STATE:-/run/ferry-cluster}   # runtime state: pids, logs, certs, sockets
VAR=${FERRY_CLUSTER_VAR:-/var/lib/ferry-cluster}   # containerd root (image store), CSI and S3 data
NODE_NAME=${NODE_NAME:-ferry-node}
# Addresses that exist only inside this machine: a portless bridge (fy0) carries the node and
# apiserver address, a CNI bridge (fybr0) with no uplink holds the pods; the global ip_forward
# stays as it is, and a guard chain drops any packet with these addresses that would leave by
# another interface.
NODE_IP=${NODE_IP:-10.250.0.1}
POD_CIDR=${POD_CIDR:-10.244.0.0/24}
POD_GW=${POD_GW:-10.244.0.1}
SERVICE_CIDR=${SERVICE_CIDR:-10.96.0.0/16}
API_SERVICE_IP=${API_SERVICE_IP:-10.96.0.1}
API_PORT=${API_PORT:-6443}
ETCD_PORT=${ETCD_PORT:-23790}    # on 127.0.0.1, off the defaults, so it cannot clash with another etcd
S3_PORT=${S3_PORT:-9000}         # the test S3 server, on NODE_IP: reachable from every pod
KUBELET_DIR=/var/lib/kubelet     # fixed: ferry install's node-agent reads $KUBELET_DIR/pods
PAUSE_IMAGE=registry.local/ferry-cluster/pause:v1
TOOLS_IMAGE=registry.local/ferry-cluster/tools:v1   # busybox + kubectl, for test and demo pods
CTRD_SOCK="$STATE/containerd/containerd.sock"
CSI_DRIVER=hostpath.csi.k8s.io
CSI_SOCK="$KUBELET_DIR/plugins/$CSI_DRIVER/csi.sock"
BRIDGE=fybr0
DUMMY=fy0
GUARD_CHAIN=FERRY-GUARD
SERVICES_CHAIN=FERRY-SERVICES
KUBECONFIG_ADMIN="$STATE/kubeconfigs/admin.kubeconfig"
CLUSTER_ENV="$STATE/cluster.env" # what tests and the demo read: kubeconfig, S3 endpoint and keys, images

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
need_root() { [ "$(id -u)" = 0 ] || die "the cluster scripts run as root (they start a kubelet, containerd and iptables rules)"; }

# alive NAME: the process up.sh recorded under NAME still runs. Identity is pid + start time
# (field 22 of /proc/PID/stat), so a reused pid never matches, and a rebuilt binary (whose exe
# link then reads "... (deleted)") still does. A zombie counts as gone (init here reaps late).
starttime() { awk '{sub(/^.*\) /, ""); if ($1 != "Z" && $1 != "X") print $20}' "/proc/$1/stat" 2>/dev/null; }
alive() {
  local pidf="$STATE/pids/$1.pid" pid st
  [ -f "$pidf" ] || return 1
  pid=$(cat "$pidf"); st=$(starttime "$pid")
  [ -n "$pid" ] && [ -n "$st" ] && [ "$st" = "$(cat "$STATE/pids/$1.start" 2>/dev/null)" ]
}
