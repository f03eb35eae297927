#!/usr/bin/env bash
# smoke.sh — check a cluster started by up.sh end to end, one timed step per goal:
# pods on hostNetwork and on the bridge, hostPath/emptyDir/CSI volumes on disk where a node agent
# reads them, scheduler + DaemonSet, ServiceAccount tokens from inside pods, no way out of the
# machine (no route, and the guard chain drops cluster addresses leaving by another interface),
# Services (with KUBE_PROXY=1), CSI provision -> snapshot -> restore.
# Ends with "N passed, N failed"; exit status 1 when any step failed.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
K="$BIN/kubectl --kubeconfig=$KUBECONFIG_ADMIN"
NS=smoke
pass=0 fail=0
step() { # step NAME CMD...: run, time, count
  local name=$1 t0 out rc; shift
  t0=$(date +%s.%N)
  out=$("$@" 2>&1); rc=$?
  local dt; dt=$(echo "$(date +%s.%N) - $t0" | bc | xargs printf '%.1f')
  if [ $rc = 0 ]; then pass=$((pass + 1)); printf 'PASS %-38s %5ss\n' "$name" "$dt"
  else fail=$((fail + 1)); printf 'FAIL %-38s %5ss\n%s\n' "$name" "$dt" "$(echo "$out" | tail -15 | sed 's/^/    /')"; fi
}
waitpod() { $K -n $NS wait --for=jsonpath='{.status.phase}'="$2" "pod/$1" --timeout="${3:-60}s" >/dev/null; }
uid() { $K -n $NS get pod "$1" -o jsonpath='{.metadata.uid}'; }

$K delete ns $NS --ignore-not-found --wait=true >/dev/null 2>&1
$K create ns $NS >/dev/null
until $K -n $NS get sa default >/dev/null 2>&1; do sleep 0.2; done
$K apply -n $NS -f - >/dev/null <<YAML
apiVersion: v1
kind: ServiceAccount
metadata: {name: reader}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects: [{kind: ServiceAccount, name: reader, namespace: $NS}]
YAML

pod() { # pod NAME HOSTNET SCRIPT [extra spec yaml lines]: a pod from the tools image
  $K apply -n $NS -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1, labels: {app: $1}}
spec:
  restartPolicy: Never
  hostNetwork: $2
  serviceAccountName: reader
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: $TOOLS_IMAGE
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", $(printf '%s' "$3" | jq -Rs .)]
${4:-}
YAML
}

t_hostnet() { pod hostnet true 'echo ok'; waitpod hostnet Succeeded; }
t_volumes_on_disk() {
  mkdir -p "${TMPDIR:-/tmp}/ferry-cluster-smoke-hostpath"
  pod vols false 'echo ed > /e/f.txt; echo hp > /h/f.txt; sleep 600' "    volumeMounts: [{name: e, mountPath: /e}, {name: h, mountPath: /h}]
  volumes: [{name: e, emptyDir: {}}, {name: h, hostPath: {path: ${TMPDIR:-/tmp}/ferry-cluster-smoke-hostpath}}]"
  waitpod vols Running && sleep 1
  grep -qx ed "$KUBELET_DIR/pods/$(uid vols)/volumes/kubernetes.io~empty-dir/e/f.txt" && grep -qx hp "${TMPDIR:-/tmp}/ferry-cluster-smoke-hostpath/f.txt"
}
t_daemonset_agent() {
  $K apply -n $NS -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      hostNetwork: true
      terminationGracePeriodSeconds: 1
      containers:
      - name: agent
        image: $TOOLS_IMAGE
        command: ["sleep", "100000"]
        securityContext: {privileged: true}
        volumeMounts: [{name: pods, mountPath: /host_pods, mountPropagation: HostToContainer}]
      volumes: [{name: pods, hostPath: {path: $KUBELET_DIR/pods}}]
YAML
  $K -n $NS rollout status ds/agent --timeout=60s && $K -n $NS exec ds/agent -- cat "/host_pods/$(uid vols)/volumes/kubernetes.io~empty-dir/e/f.txt"
}
t_sa_podnet() { pod client-podnet false 'kubectl get pods -o name | grep -q client-podnet'; waitpod client-podnet Succeeded; }
t_sa_hostnet() { pod client-hostnet true 'kubectl auth whoami | grep -q system:serviceaccount:smoke:reader'; waitpod client-hostnet Succeeded; }
t_no_way_out() { # a route lookup only: nothing is sent
  pod noegress false 'ip route get 192.0.2.1 2>&1 | grep -q unreachable && ! ip route | grep -q default'; waitpod noegress Succeeded
}
# t_guard: a veth into a network namespace of our own (held by a sleeping process: `ip netns add`
# would bind-mount /run/netns over itself and hide the namespaces containerd mounted there, which
# then can never be removed). The host's own address gets through; a cluster address is dropped.
t_guard() {
  local rc=0 holder before after
  ip link del fyguard0 2>/dev/null
  unshare --net sleep 60 & holder=$!
  guard_drops() { iptables -w -t mangle -L "$GUARD_CHAIN" -vnx | awk -v a="$NODE_IP" '$3=="DROP" && $8==a {print $1}'; }
  in_ns() { nsenter -t "$holder" -n "$@"; }
  until [ "$(readlink /proc/$holder/ns/net)" != "$(readlink /proc/self/ns/net)" ]; do sleep 0.05; done
  ip link add fyguard0 type veth peer name fyguard1 && ip link set fyguard1 netns "$holder" &&
    ip addr add 10.99.0.1/30 dev fyguard0 && ip link set fyguard0 up &&
    in_ns ip addr add 10.99.0.2/30 dev fyguard1 && in_ns ip link set fyguard1 up || rc=1
  before=$(guard_drops)
  [ $rc = 0 ] && busybox ping -c 1 -W 2 -I 10.99.0.1 10.99.0.2 >/dev/null || { echo "control: the host's own address did not get through"; rc=1; }
  busybox ping -c 1 -W 1 -I "$NODE_IP" 10.99.0.2 >/dev/null 2>&1 && { echo "a packet from $NODE_IP left by fyguard0"; rc=1; }
  after=$(guard_drops)
  [ "${after:-0}" -gt "${before:-0}" ] || { echo "the guard chain counted no drop ($before -> $after)"; rc=1; }
  ip link del fyguard0 2>/dev/null; kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
  return $rc
}
t_pod_to_pod() {
  pod web false 'mkdir -p /www && echo hi-from-web > /www/index.html && httpd -f -p 8080 -h /www'
  waitpod web Running || return 1
  local ip; ip=$($K -n $NS get pod web -o jsonpath='{.status.podIP}')
  pod web-client false "timeout 10 wget -qO- http://$ip:8080/ | grep -q hi-from-web"; waitpod web-client Succeeded
}
t_service() {
  $K -n $NS expose pod web --port=80 --target-port=8080 >/dev/null
  pod svc-client false "for i in 1 2 3 4 5 6 7 8 9 10; do timeout 3 wget -qO- http://\$WEB_SERVICE_HOST/ | grep -q hi-from-web && exit 0; sleep 1; done; exit 1"
  waitpod svc-client Succeeded 60
}
t_csi_snapshot_restore() {
  $K apply -n $NS -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
YAML
  pod writer false 'echo snapshot-me > /d/f.txt && dd if=/dev/urandom of=/d/blob bs=1M count=8 2>/dev/null && cd /d && md5sum blob > blob.md5 && sync && touch /d/done && sleep 600' \
    "    volumeMounts: [{name: d, mountPath: /d}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: data}}]"
  waitpod writer Running || return 1
  until $K -n $NS exec writer -- test -e /d/done 2>/dev/null; do sleep 0.2; done
  $K -n $NS exec ds/agent -- sh -c "cat /host_pods/$(uid writer)/volumes/kubernetes.io~csi/*/mount/f.txt" | grep -qx snapshot-me || return 1
  $K apply -n $NS -f - >/dev/null <<YAML
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata: {name: snap}
spec: {source: {persistentVolumeClaimName: data}}
YAML
  $K -n $NS wait --for=jsonpath='{.status.readyToUse}'=true volumesnapshot/snap --timeout=60s >/dev/null || return 1
  $K apply -n $NS -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: restored}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: snap}
YAML
  pod reader false 'grep -qx snapshot-me /d/f.txt && cd /d && md5sum -c blob.md5' \
    "    volumeMounts: [{name: d, mountPath: /d}]
  volumes: [{name: d, persistentVolumeClaim: {claimName: restored}}]"
  waitpod reader Succeeded 90
}
t_cleanup() {
  $K delete ns $NS --wait=true --timeout=120s >/dev/null && [ -z "$($K get pv -o name)" ] && [ -z "$($K get volumesnapshotcontent -o name 2>/dev/null)" ]
}

step "hostNetwork pod, scheduled, completes" t_hostnet
step "emptyDir + hostPath on disk" t_volumes_on_disk
step "DaemonSet reads /var/lib/kubelet/pods" t_daemonset_agent
step "SA token in-cluster (bridge pod)" t_sa_podnet
step "SA token in-cluster (hostNetwork pod)" t_sa_hostnet
step "no route out of the machine" t_no_way_out
step "guard drops cluster addresses leaving" t_guard
step "pod to pod over the bridge" t_pod_to_pod
if [ -f "$STATE/pids/kube-proxy.pid" ]; then step "ClusterIP Service via kube-proxy" t_service; fi
if [ -f "$STATE/pids/csi-hostpath.pid" ]; then step "CSI provision, snapshot, restore" t_csi_snapshot_restore; fi
step "namespace delete cleans PV/snapshots" t_cleanup
echo "smoke: $pass passed, $fail failed"
[ $fail = 0 ]
