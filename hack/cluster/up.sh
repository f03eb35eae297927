#!/usr/bin/env bash
# up.sh — start a real single-node Kubernetes cluster on this machine (root only): etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, containerd+runc, kubelet, a CNI bridge
# with no way out, and (CSI=1, default) a CSI hostpath driver with provisioner, snapshotter and
# snapshot-controller as host processes, and the test S3 server (versitygw) on the node address.
# Prints the admin kubeconfig path on stdout and writes $STATE/cluster.env (kubeconfig, S3
# endpoint and keys, images) for tests and the demo.
#
# Everything stays inside the machine: the apiserver and kubelet listen on NODE_IP (on a portless
# bridge), pods sit on a bridge with no uplink and no default route (global ip_forward untouched,
# no NAT), and a guard chain drops anything with a pod/service/node address that would leave by
# another interface.
#
# Knobs (lib.sh): CSI=0 skips the CSI stack; KUBE_PROXY=0 replaces the real kube-proxy (iptables
# mode) by one static DNAT rule for the kubernetes Service (enough for in-cluster clients, not for
# Services backed by pods); FERRY_CLUSTER_STATE, FERRY_CLUSTER_VAR, NODE_NAME, ...
# On failure it stops what it started (down.sh) and leaves the logs in $STATE.logs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
CSI=${CSI:-1}
KUBE_PROXY=${KUBE_PROXY:-1}
T0=$(date +%s.%N)
need_root
S3_BIN=$("$HERE/../install-tool.sh" versitygw 2>/dev/null) || die "versitygw missing: run install.sh first"
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl pause; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing: run install.sh first"
done
[ "$CSI" = 1 ] && for b in csi-hostpath csi-registrar csi-provisioner csi-snapshotter snapshot-controller; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing: run install.sh first (or CSI=0)"
done
command -v containerd >/dev/null && command -v runc >/dev/null || die "containerd/runc missing: install.sh apt"
# A previous cluster, whole or killed halfway (state, links or mounts left): take it down first.
if [ -d "$STATE" ] || ip link show "$DUMMY" >/dev/null 2>&1 || ip link show "$BRIDGE" >/dev/null 2>&1 ||
  grep -q " $KUBELET_DIR/" /proc/self/mountinfo; then
  log "a previous cluster (or what is left of one) found: running down.sh first"
  "$HERE/down.sh" || die "down.sh could not clean up the previous cluster"
fi
# Every port this cluster listens on must be free (another etcd, apiserver or kubelet here).
taken=""
for p in "127.0.0.1:$ETCD_PORT" "127.0.0.1:$((ETCD_PORT + 1))" "$NODE_IP:$API_PORT" "$NODE_IP:10250" "$NODE_IP:10248" \
  "$NODE_IP:10257" "$NODE_IP:10259" "$NODE_IP:10249" "$NODE_IP:10256" "$NODE_IP:$S3_PORT"; do
  ss -Hltn "sport = :${p##*:}" | awk '{print $4}' | grep -Eq "^(\*|0\.0\.0\.0|\[::\]|${p%:*}):${p##*:}$" && taken+=" $p"
done
[ -z "$taken" ] || die "port(s) already in use:$taken (another cluster or server on this machine?)"

mkdir -p "$STATE"/{pids,logs,pki,kubeconfigs,containerd,cni/net.d} "$VAR"
exec 8>"$STATE/.lock"; flock -n 8 || die "another up.sh runs"
up_ok=0
trap '[ $up_ok = 1 ] || { log "up.sh failed: stopping what it started (logs: $STATE.logs)"; exec 8>&-; "$HERE/down.sh" >&2; }' EXIT
K="$BIN/kubectl --kubeconfig=$KUBECONFIG_ADMIN"
PKI="$STATE/pki"

since() { echo "$(date +%s.%N) - $T0" | bc | xargs printf '%.1f'; }
start() { # start NAME CMD...: run in its own session, record pid and start time (see alive)
  local name=$1; shift
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/pids/$name.pid"
  starttime $! >"$STATE/pids/$name.start"
  echo "$name" >>"$STATE/pids/order"
}
wait_for() { # wait_for WHAT SECONDS PROC CMD...: poll CMD every 0.2 s while PROC lives
  local what=$1 secs=$2 proc=$3 i; shift 3
  for ((i = 0; i < secs * 5; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    if [ "$proc" != - ] && ! alive "$proc"; then tail -20 "$STATE/logs/$proc.log" >&2; die "$proc exited ($what)"; fi
    sleep 0.2
  done
  [ "$proc" != - ] && tail -20 "$STATE/logs/$proc.log" >&2
  die "timed out after ${secs}s waiting for $what"
}

# ---- network: a link for the node IP, a bridge for pods, a guard chain
ip link show "$DUMMY" >/dev/null 2>&1 || ip link add "$DUMMY" type bridge   # no CONFIG_DUMMY here: a portless bridge
ip addr replace "$NODE_IP/32" dev "$DUMMY"
ip link set "$DUMMY" up
ip route replace "$SERVICE_CIDR" dev "$DUMMY"        # untranslated service IPs end here
ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
# A fixed (locally administered) MAC: a bridge without one takes the lowest MAC of its ports and
# changes it when that pod goes, and every pod's ARP entry for the node then points nowhere for
# up to minutes (kubelet probes time out, the node-agent was killed mid-backup).
ip link set "$BRIDGE" address 02:66:65:72:72:79
ip addr replace "$POD_GW/${POD_CIDR#*/}" dev "$BRIDGE"
ip link set "$BRIDGE" up
# Forwarding only for packets that come in on the pod bridge (pod -> ClusterIP -> pod needs it);
# the global ip_forward stays as it is (0 here), eth0 never forwards.
sysctl -qw "net.ipv4.conf.$BRIDGE.forwarding=1"
# Guard in mangle/POSTROUTING: after routing and DNAT, before any SNAT, and no ACCEPT of
# kube-proxy's can skip it. Whatever would leave by a real interface with a pod/service/node
# address is dropped.
iptables -w -t mangle -N $GUARD_CHAIN 2>/dev/null || iptables -w -t mangle -F $GUARD_CHAIN
for o in lo "$BRIDGE" "$DUMMY"; do iptables -w -t mangle -A $GUARD_CHAIN -o "$o" -j RETURN; done
for n in "$POD_CIDR" "$SERVICE_CIDR" "$NODE_IP/32"; do
  iptables -w -t mangle -A $GUARD_CHAIN -s "$n" -j DROP
  iptables -w -t mangle -A $GUARD_CHAIN -d "$n" -j DROP
done
iptables -w -t mangle -C POSTROUTING -j $GUARD_CHAIN 2>/dev/null || iptables -w -t mangle -I POSTROUTING -j $GUARD_CHAIN
if [ "$KUBE_PROXY" != 1 ]; then # one static rule instead of kube-proxy: kubernetes Service -> apiserver
  iptables -w -t nat -N $SERVICES_CHAIN 2>/dev/null || iptables -w -t nat -F $SERVICES_CHAIN
  iptables -w -t nat -A $SERVICES_CHAIN -d "$API_SERVICE_IP/32" -p tcp --dport 443 -j DNAT --to-destination "$NODE_IP:$API_PORT"
  for c in PREROUTING OUTPUT; do iptables -w -t nat -C "$c" -j $SERVICES_CHAIN 2>/dev/null || iptables -w -t nat -I "$c" -j $SERVICES_CHAIN; done
fi
cat >"$STATE/cni/net.d/10-ferry-cluster.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "ferry-cluster", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": false, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": "$STATE/cni/ipam",
            "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
            "routes": [{"dst": "$SERVICE_CIDR"}, {"dst": "$NODE_IP/32"}]}}]}
JSON

# ---- PKI (fresh per cluster; EC P-256 so it takes well under a second)
(
  cd "$PKI"
  openssl ecparam -name prime256v1 -genkey -noout -out ca.key 2>/dev/null
  openssl req -x509 -new -key ca.key -subj /CN=ferry-cluster-ca -days 3650 -out ca.crt 2>/dev/null
  cert() { # cert NAME SUBJECT USAGE [SAN]
    openssl ecparam -name prime256v1 -genkey -noout -out "$1.key" 2>/dev/null
    openssl req -new -key "$1.key" -subj "$2" -out "$1.csr" 2>/dev/null
    { echo "keyUsage=critical,digitalSignature,keyEncipherment"; echo "extendedKeyUsage=$3"; [ -n "${4:-}" ] && echo "subjectAltName=$4"; } >"$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
  }
  cert apiserver /CN=kube-apiserver serverAuth \
    "IP:$NODE_IP,IP:$API_SERVICE_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert kubelet-serving "/CN=system:node:$NODE_NAME/O=system:nodes" serverAuth "IP:$NODE_IP,DNS:$NODE_NAME"
  cert apiserver-kubelet-client "/CN=kube-apiserver-kubelet-client/O=system:masters" clientAuth
  cert admin "/CN=ferry-cluster-admin/O=system:masters" clientAuth
  cert kubelet "/CN=system:node:$NODE_NAME/O=system:nodes" clientAuth
  cert kube-scheduler /CN=system:kube-scheduler clientAuth
  cert kube-controller-manager /CN=system:kube-controller-manager clientAuth
  cert kube-proxy /CN=system:kube-proxy clientAuth
  openssl ecparam -name prime256v1 -genkey -noout -out sa.key 2>/dev/null
  openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
)
for u in admin kubelet kube-scheduler kube-controller-manager kube-proxy; do
  cat >"$STATE/kubeconfigs/$u.kubeconfig" <<YAML
apiVersion: v1
kind: Config
clusters:
- name: ferry-cluster
  cluster:
    server: https://$NODE_IP:$API_PORT
    certificate-authority: $PKI/ca.crt
users:
- name: $u
  user:
    client-certificate: $PKI/$u.crt
    client-key: $PKI/$u.key
contexts:
- name: ferry-cluster
  context: {cluster: ferry-cluster, user: $u}
current-context: ferry-cluster
YAML
done

# ---- containerd (own socket, root and state: does not touch a system containerd)
cat >"$STATE/containerd/config.toml" <<TOML
version = 2
root = "$VAR/containerd"
state = "$STATE/containerd/state"
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE_IMAGE"
    # No CAP_SYS_RESOURCE in this VM: negative oom_score_adj (sandbox -998, Guaranteed -997) is
    # refused and runc dies with "can't get final child's PID from pipe: EOF". Clamp to >= ours.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "$(command -v runc)"
          Root = "$STATE/containerd/runc"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$STATE/cni/net.d"
TOML
# No registry is reachable and none may be tried: a pull of an image that was not imported goes
# to a closed local "proxy" port and fails at once, without even a DNS lookup. (containerd 1.6
# has no catch-all hosts.toml, and mirrors always fall back to the real registry.)
start containerd env HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY= \
  "$(command -v containerd)" --config "$STATE/containerd/config.toml"

# ---- etcd + apiserver
rm -rf "$VAR/etcd"
start etcd "$BIN/etcd" --name ferry-cluster --data-dir "$VAR/etcd" --log-level warn --unsafe-no-fsync \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
  --initial-cluster "ferry-cluster=http://127.0.0.1:$((ETCD_PORT + 1))"
wait_for "containerd socket" 30 containerd ctr --address "$CTRD_SOCK" version
wait_for "etcd port" 30 etcd bash -c "exec 3<>/dev/tcp/127.0.0.1/$ETCD_PORT"
for img in "$IMAGES"/*.tar; do ctr --address "$CTRD_SOCK" -n k8s.io images import "$img" >/dev/null; done
start kube-apiserver "$BIN/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address="$NODE_IP" --advertise-address="$NODE_IP" --secure-port="$API_PORT" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" --client-ca-file="$PKI/ca.crt" \
  --service-cluster-ip-range="$SERVICE_CIDR" --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
  --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction --allow-privileged=true \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP --profiling=false
wait_for "apiserver /readyz" 90 kube-apiserver $K get --raw /readyz
log "apiserver ready after $(since)s"

# ---- controller-manager, scheduler
start kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig="$STATE/kubeconfigs/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$STATE/kubeconfigs/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$STATE/kubeconfigs/kube-controller-manager.kubeconfig" \
  --bind-address="$NODE_IP" --leader-elect=false --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" --profiling=false
start kube-scheduler "$BIN/kube-scheduler" --kubeconfig="$STATE/kubeconfigs/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$STATE/kubeconfigs/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$STATE/kubeconfigs/kube-scheduler.kubeconfig" \
  --bind-address="$NODE_IP" --leader-elect=false --profiling=false

# ---- kubelet
cat >"$STATE/kubelet-config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
readOnlyPort: 0
healthzBindAddress: $NODE_IP
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
failSwapOn: false
failCgroupV1: false
oomScoreAdj: 0
clusterDomain: cluster.local
resolvConf: ""
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
syncFrequency: 10s
fileCheckFrequency: 10s
nodeStatusUpdateFrequency: 5s
YAML
start kubelet "$BIN/kubelet" --config="$STATE/kubelet-config.yaml" --kubeconfig="$STATE/kubeconfigs/kubelet.kubeconfig" \
  --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --root-dir="$KUBELET_DIR" --v=1

if [ "$KUBE_PROXY" = 1 ]; then
  cat >"$STATE/kube-proxy-config.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kubeconfigs/kube-proxy.kubeconfig}
mode: iptables
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: $NODE_IP:10256
metricsBindAddress: $NODE_IP:10249
nodePortAddresses: ["$NODE_IP/32"]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
  start kube-proxy "$BIN/kube-proxy" --config="$STATE/kube-proxy-config.yaml"
fi

wait_for "node $NODE_NAME Ready" 120 kubelet $K wait --for=condition=Ready "node/$NODE_NAME" --timeout=2s
wait_for "default ServiceAccount" 60 kube-controller-manager $K get serviceaccount default
log "node Ready after $(since)s"

# ---- CSI: hostpath driver + registrar + provisioner + snapshotter + snapshot-controller
if [ "$CSI" = 1 ]; then
  $K apply -f "$CACHE/manifests/snapshot-crds/" >/dev/null
  start csi-hostpath "$BIN/csi-hostpath" --endpoint="$CSI_SOCK" --drivername="$CSI_DRIVER" --nodeid="$NODE_NAME" --data-dir="$VAR/csi-data"
  wait_for "CSI socket" 30 csi-hostpath test -S "$CSI_SOCK"
  start csi-registrar "$BIN/csi-registrar" --driver-name="$CSI_DRIVER" --csi-address="$CSI_SOCK" --registry-dir="$KUBELET_DIR/plugins_registry"
  start csi-provisioner "$BIN/csi-provisioner" --csi-address="$CSI_SOCK" --kubeconfig="$KUBECONFIG_ADMIN" \
    --leader-election=false --extra-create-metadata --node-deployment=false --v=2
  $K wait --for=condition=Established --timeout=60s crd/volumesnapshots.snapshot.storage.k8s.io \
    crd/volumesnapshotcontents.snapshot.storage.k8s.io crd/volumesnapshotclasses.snapshot.storage.k8s.io >/dev/null
  start csi-snapshotter "$BIN/csi-snapshotter" --csi-address="$CSI_SOCK" --kubeconfig="$KUBECONFIG_ADMIN" --leader-election=false --v=2
  start snapshot-controller "$BIN/snapshot-controller" --kubeconfig="$KUBECONFIG_ADMIN" --leader-election=false --v=2
  $K apply -f - >/dev/null <<YAML
apiVersion: storage.k8s.io/v1
kind: CSIDriver
metadata: {name: $CSI_DRIVER}
spec: {attachRequired: false, podInfoOnMount: false, volumeLifecycleModes: [Persistent]}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: csi-hostpath
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: $CSI_DRIVER
reclaimPolicy: Delete
volumeBindingMode: Immediate
---
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshotClass
metadata:
  name: csi-hostpath-snapclass
  annotations: {snapshot.storage.kubernetes.io/is-default-class: "true"}
driver: $CSI_DRIVER
deletionPolicy: Delete
YAML
  wait_for "CSINode with $CSI_DRIVER" 60 csi-registrar sh -c "$K get csinode $NODE_NAME -o jsonpath='{.spec.drivers[*].name}' | grep -qw $CSI_DRIVER"
  log "CSI ready after $(since)s"
fi
# ---- the test S3 server, on the node address: reachable from bridge and hostNetwork pods alike.
# Fresh keys per cluster, kept in root-only files.
mkdir -p "$VAR/s3/objects" "$VAR/s3/versions"
S3_ACCESS_KEY="ferry$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')"
S3_SECRET_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
(umask 077; printf 'ROOT_ACCESS_KEY=%s\nROOT_SECRET_KEY=%s\n' "$S3_ACCESS_KEY" "$S3_SECRET_KEY" >"$STATE/s3.keys")
start s3 sh -c "set -a; . '$STATE/s3.keys'; VGW_QUIET=true exec '$S3_BIN' --port '$NODE_IP:$S3_PORT' --region us-east-1 \
  posix --versioning-dir '$VAR/s3/versions' '$VAR/s3/objects'"
wait_for "S3 server on $NODE_IP:$S3_PORT" 30 s3 bash -c "exec 3<>/dev/tcp/$NODE_IP/$S3_PORT"

(umask 077; cat >"$CLUSTER_ENV" <<ENV
KUBECONFIG=$KUBECONFIG_ADMIN
KUBECTL=$BIN/kubectl
CLUSTER_NODE=$NODE_NAME
CLUSTER_NODE_IP=$NODE_IP
CLUSTER_CTR_ADDRESS=$CTRD_SOCK
CLUSTER_TOOLS_IMAGE=$TOOLS_IMAGE
CLUSTER_STORAGE_CLASS=csi-hostpath
CLUSTER_S3_URL=http://$NODE_IP:$S3_PORT
CLUSTER_S3_REGION=us-east-1
CLUSTER_S3_ACCESS_KEY=$S3_ACCESS_KEY
CLUSTER_S3_SECRET_KEY=$S3_SECRET_KEY
ENV
)
date +%s >"$STATE/up"
up_ok=1
log "cluster up in $(since)s; kubectl --kubeconfig=$KUBECONFIG_ADMIN"
echo "$KUBECONFIG_ADMIN"
