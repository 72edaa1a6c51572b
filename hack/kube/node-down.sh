#!/usr/bin/env bash
# Usage: hack/kube/node-down.sh DIR
#
# Stops what hack/kube/node-up.sh DIR started (pods first, so that the kubelet
# unmounts their volumes and containerd's shims exit), then restores the host
# state the kubelet and the CNI bridge changed: sysctls, iptables rules they
# added, the bridge, mounts under DIR, /run/netns/cni-*, the kubepods cgroups
# and /var/log/containers links into DIR. It compares the host with the
# snapshot node-up.sh took (DIR/host-before) and fails if they differ.
# DIR (logs, kubeconfig) is kept. Safe to run twice.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ -d "$1" ]] || { echo "node-down: no directory $1" >&2; exit 1; }
dir="$(cd "$1" && pwd)"
# shellcheck source=SCRIPTDIR/node-lib.sh
source "$here/node-lib.sh"
export KUBECONFIG="$dir/kubeconfig"
start=$SECONDS

# 1. Pods: Tekton first (it would recreate nothing, but keeps reconciling),
# then every pod, while the kubelet still runs to tear them down.
# unshare ignores SIGTERM while it waits for its child: stop the controller
# (its child, PID 1 of its PID namespace) and unshare follows.
if pid="$(pid_of tekton-controller)"; then
  for c in $(pgrep -P "$pid" || true); do kill -TERM "$c" 2>/dev/null || true; done
fi
stop_daemon tekton-controller 10 unshare
if pid_of kubelet >/dev/null && pid_of kube-apiserver >/dev/null; then
  kubectl delete pods --all --all-namespaces --grace-period=1 --wait=true --timeout=60s >/dev/null 2>&1 ||
    echo "node-down: pods not all deleted in 60 s" >&2
fi
stop_daemon kube-controller-manager 10
stop_daemon kube-scheduler 10
stop_daemon kubelet 20
stop_daemon apiserver-socat 5 socat
rm -f "$dir/apiserver.sock"

# 2. Containers the kubelet left behind, then containerd.
sock="$dir/containerd/containerd.sock"
if pid_of containerd >/dev/null && [[ -S "$sock" ]]; then
  for c in $(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null); do
    ctr -a "$sock" -n k8s.io tasks kill -s KILL "$c" >/dev/null 2>&1 || true
  done
  for _ in $(seq 50); do
    [[ -z "$(ctr -a "$sock" -n k8s.io tasks ls -q 2>/dev/null)" ]] && break
    sleep 0.1
  done
fi
stop_daemon containerd 20
# Shims outlive containerd by design; ours are those whose address is under DIR.
for p in $(pgrep -f "containerd-shim-runc-v2 .*-address $sock" || true); do
  kill -KILL "$p" 2>/dev/null || true
done
stop_daemon registry 5 docker-registry
stop_daemon scratch-registry 5 docker-registry

# 3. etcd and kube-apiserver.
if [[ -f "$dir/kube-apiserver.pid" || -f "$dir/etcd.pid" ]]; then
  "$here/stop.sh" "$dir"
fi

# 4. Host state.
before="$dir/host-before"
if [[ -d "$before" ]]; then
  # Mounts under DIR (kubelet's rshared self-bind of its root, pod volumes,
  # containerd's overlays and shm), deepest first.
  for _ in 1 2 3; do
    mapfile -t mnts < <(awk '{print $5}' /proc/self/mountinfo | grep -E "^$dir(/|$)" | sort -r)
    ((${#mnts[@]})) || break
    for m in "${mnts[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
  # Network namespaces containerd created for our pods.
  for ns in /run/netns/cni-*; do
    [[ -e "$ns" ]] || continue
    grep -qx "$(basename "$ns")" "$before/netns" && continue
    umount "$ns" 2>/dev/null || umount -l "$ns" 2>/dev/null || true
    rm -f "$ns"
  done
  # The CNI bridge (its veths went with the pods).
  if ! grep -qx "$node_bridge" "$before/links" && ip link show "$node_bridge" >/dev/null 2>&1; then
    ip link del "$node_bridge"
  fi
  # Sysctls, back to their values before.
  while IFS='=' read -r k v; do
    [[ "$v" == absent ]] && continue
    [[ "$(sysctl -n "$k" 2>/dev/null)" == "$v" ]] || sysctl -qw "$k=$v" >/dev/null
  done <"$before/sysctl"
  # iptables: delete the rules, then the chains, that were added (the kubelet's
  # KUBE-* chains); nothing else is touched.
  for fam in iptables ip6tables; do
    command -v "$fam-save" >/dev/null || continue
    after="$("$fam-save" 2>/dev/null | sed -e '/^#/d' -e 's/\[[0-9]*:[0-9]*\]//')" || continue
    table=""
    while read -r line; do
      case "$line" in
      \*) ;;
      \**) table="${line#\*}" ;;
      -A*) grep -qxF -- "$line" <(sed -n "/^\*$table\$/,/^COMMIT/p" "$before/$fam") ||
        eval "$fam -t $table -D ${line#-A }" 2>/dev/null || true ;;
      esac
    done <<<"$after"
    table=""
    while read -r line; do
      case "$line" in
      \**) table="${line#\*}" ;;
      :*) chain="${line#:}" chain="${chain%% *}"
        grep -q -- "^:$chain " <(sed -n "/^\*$table\$/,/^COMMIT/p" "$before/$fam") ||
          "$fam" -t "$table" -X "$chain" 2>/dev/null || true ;;
      esac
    done <<<"$after"
  done
  # Tables the kubelet's iptables (nf_tables backend) created, now empty.
  if command -v nft >/dev/null; then
    while read -r _ family name; do
      grep -qx "table $family $name" "$before/nft-tables" && continue
      case "$family" in ip) fam=iptables ;; ip6) fam=ip6tables ;; *) continue ;; esac
      "$fam-save" -t "$name" 2>/dev/null | grep -q '^-A' && continue
      nft delete table "$family" "$name"
    done < <(nft list tables 2>/dev/null)
  fi
  # kubepods cgroups (empty once every container is gone), deepest first.
  for h in /sys/fs/cgroup/*/; do
    [[ -d "$h/kubepods" ]] || continue
    grep -qx "$h"kubepods "$before/cgroups" && continue
    find "$h/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  # Container log links into DIR, and /var/log/pods if the kubelet made it.
  for l in /var/log/containers/*; do
    [[ -L "$l" ]] && [[ "$(readlink "$l")" == "$dir"/* ]] && rm -f "$l"
  done
  if [[ -d /var/log/containers ]] && ! grep -q . "$before/logs"; then rmdir /var/log/containers 2>/dev/null || true; fi
  if [[ -d /var/log/pods ]] && ! grep -qx /var/log/pods "$before/logs"; then rmdir /var/log/pods 2>/dev/null || true; fi

  snapshot "$dir/host-after"
  if ! diff -r "$before" "$dir/host-after" >"$dir/host-diff"; then
    echo "node-down: host state differs from before node-up ($dir/host-diff):" >&2
    cat "$dir/host-diff" >&2
    exit 1
  fi
  rm -rf "$before"
  echo "node-down: host state restored (sysctls, iptables, links, mounts, netns, cgroups, logs)" >&2
fi
if [[ -f "$node_owner" && "$(cat "$node_owner")" == "$dir" ]]; then rm -f "$node_owner"; fi
echo "node-down: stopped in $((SECONDS - start)) s" >&2
