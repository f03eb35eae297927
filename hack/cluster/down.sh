#!/usr/bin/env bash
# down.sh — stop what up.sh started, by recorded PID, and undo its mounts, links, iptables chains
# and cgroups; also cleans up after an up.sh that was killed halfway. Keeps the binaries and the
# containerd image store (PURGE=1 removes $VAR too).
# Logs of the last cluster are kept in $STATE.logs (FERRY_CLUSTER_STATE.logs).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
need_root
T0=$(date +%s.%N)
K="$BIN/kubectl --kubeconfig=$KUBECONFIG_ADMIN --request-timeout=5s"
CTR="ctr --address $CTRD_SOCK -n k8s.io"

stop() { # stop NAME: TERM, wait up to 10 s, then KILL — only the process up.sh recorded
  local pid i
  alive "$1" || return 0
  pid=$(cat "$STATE/pids/$1.pid")
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 50; i++)); do
    alive "$1" || { [ $i -ge 10 ] && log "$1 took $((i / 5)).$((i % 5 * 2))s to stop"; return 0; }
    sleep 0.2
  done
  log "$1 ($pid) ignored SIGTERM: SIGKILL"; kill -KILL "$pid" 2>/dev/null; sleep 0.2
}
mounts_under() { # mount points at or below $1, deepest first
  awk -v p="$1" '{m=$5; gsub(/\\040/," ",m); if (m==p || index(m, p"/")==1) print length(m), m}' /proc/self/mountinfo |
    sort -rn | cut -d' ' -f2-
}

# The pods' own logs go with their pods: keep a copy beside the components' logs.
[ -d "$STATE/logs" ] && [ -d /var/log/pods ] && cp -r /var/log/pods "$STATE/logs/pods" 2>/dev/null

if [ -d "$STATE/pids" ]; then
  # 1. No new pods, then let the kubelet tear the existing ones down (CNI DEL, volume unmounts).
  stop kube-controller-manager; stop kube-scheduler
  if alive kube-apiserver && alive kubelet; then
    $K delete pods --all -A --force --grace-period=0 --wait=false >/dev/null 2>&1
    for ((i = 0; i < 150; i++)); do
      [ -z "$(ls -A "$KUBELET_DIR/pods" 2>/dev/null)" ] && [ -z "$($CTR tasks ls -q 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  # 2. The remaining components, newest first.
  tac "$STATE/pids/order" 2>/dev/null | while read -r n; do [ "$n" = containerd ] || stop "$n"; done
  # 3. Containers the kubelet did not get to, then containerd itself.
  netns=""
  if alive containerd; then
    for c in $($CTR containers ls -q 2>/dev/null); do
      netns+=" $($CTR containers info "$c" 2>/dev/null | jq -r '.Spec.linux.namespaces[]? | select(.type=="network") | .path // empty')"
      $CTR tasks kill -s SIGKILL "$c" >/dev/null 2>&1
    done
    sleep 0.5
    for c in $($CTR containers ls -q 2>/dev/null); do $CTR tasks delete -f "$c" >/dev/null 2>&1; $CTR containers delete "$c" >/dev/null 2>&1; done
    stop containerd
  fi
  # shims of our containerd that outlived it (found by our socket path, not by name)
  for p in /proc/[0-9]*; do
    { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "-address $CTRD_SOCK " && kill -KILL "${p#/proc/}" 2>/dev/null
  done
  for n in $netns; do [ -e "$n" ] && { umount "$n" 2>/dev/null; rm -f "$n"; }; done
fi

# 4. Mounts left under the kubelet dir and our state (deepest first).
for d in "$KUBELET_DIR" "$STATE" "$VAR"; do
  mounts_under "$d" | while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cannot unmount $m"; done
done

# 5. cgroups the kubelet created (cgroupfs driver: /kubepods in every hierarchy), deepest first.
for h in /sys/fs/cgroup/*/; do
  [ -d "$h/kubepods" ] && find "$h/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
done

# 6. Network: links, routes (go with the links), iptables chains of ours, the kubelet's and kube-proxy's.
ip link del "$BRIDGE" 2>/dev/null; ip link del "$DUMMY" 2>/dev/null
while iptables -w -t mangle -D POSTROUTING -j $GUARD_CHAIN 2>/dev/null; do :; done
iptables -w -t mangle -F $GUARD_CHAIN 2>/dev/null; iptables -w -t mangle -X $GUARD_CHAIN 2>/dev/null
for c in PREROUTING OUTPUT; do while iptables -w -t nat -D "$c" -j $SERVICES_CHAIN 2>/dev/null; do :; done; done
iptables -w -t nat -F $SERVICES_CHAIN 2>/dev/null; iptables -w -t nat -X $SERVICES_CHAIN 2>/dev/null
if [ -f "$STATE/pids/kube-proxy.pid" ] || [ -f "$STATE/pids/kubelet.pid" ]; then
  [ -x "$BIN/kube-proxy" ] && [ -f "$STATE/pids/kube-proxy.pid" ] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1
  for t in filter nat mangle; do # the kubelet's canary/firewall chains (KUBE-*), nobody else's
    iptables -w -t $t -S 2>/dev/null | awk '$1=="-A" && $0 ~ /-j KUBE-/' | while read -r _ rest; do
      eval "iptables -w -t $t -D $rest" 2>/dev/null; done
    for ch in $(iptables -w -t $t -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^KUBE-/ {print $2}'); do iptables -w -t $t -F "$ch" 2>/dev/null; done
    for ch in $(iptables -w -t $t -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^KUBE-/ {print $2}'); do iptables -w -t $t -X "$ch" 2>/dev/null; done
  done
fi

# 7. State: keep the logs, drop the rest; the kubelet dir only when nothing is mounted below it.
if [ -d "$STATE" ]; then
  rm -rf "$STATE.logs"; [ -d "$STATE/logs" ] && cp -r "$STATE/logs" "$STATE.logs"
  rm -rf "$STATE"
fi
if [ -z "$(mounts_under "$KUBELET_DIR")" ]; then rm -rf "$KUBELET_DIR"; else log "mounts remain under $KUBELET_DIR: kept"; fi
rm -rf "$VAR/etcd" "$VAR/csi-data" "$VAR/s3" /var/log/pods /var/log/containers   # the kubelet's pod logs (copied above)
[ "${PURGE:-0}" = 1 ] && rm -rf "$VAR"
log "down in $(echo "$(date +%s.%N) - $T0" | bc | xargs printf '%.1f')s"
