# Shared by hack/kube/node-up.sh and node-down.sh (sourced, not run).
# shellcheck shell=bash disable=SC2034,SC2154  # variables for and ($dir) from the scripts that source it

node_name=stepseal-node
node_bridge=stepseal0
node_subnet=10.244.0.0/24
# The one node of this host: its DIR. A kubelet owns /kubepods in every cgroup
# hierarchy, host sysctls and the CNI bridge, so two nodes cannot share a host.
node_owner=/run/stepseal-node.dir
node_cache="${STEPSEAL_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stepseal-node}"

# decoder_bin: the path of the ctd-decoder build-node.sh builds from
# hack/tools/ctd-decoder (named by a hash of its files, so an edit rebuilds it).
# Needs $gobin.
decoder_bin() {
  local src
  src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../tools/ctd-decoder" && pwd)"
  echo "$gobin/ctd-decoder-$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)"
}

# Sysctls the kubelet (setupKernelTunables) and the CNI bridge plugin set.
node_sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
  kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
  net.ipv4.conf.all.route_localnet)

# running PID: the process exists and is not a zombie.
running() {
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# pid_of NAME: the PID in DIR/NAME.pid if that process is still running.
pid_of() {
  local f="$dir/$1.pid" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  running "$pid" && echo "$pid"
}

# stop_daemon NAME [GRACE_S]: SIGTERM the process of DIR/NAME.pid (only if its
# command line still names NAME: PIDs get reused), SIGKILL after GRACE_S.
stop_daemon() {
  local name="$1" grace="${2:-20}" pid
  if pid="$(pid_of "$name")" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "${3:-$name}"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq $((grace * 10))); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      echo "node-down: $name ($pid) ignored SIGTERM for $grace s: killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$dir/$name.pid"
}

# snapshot OUT: the host state a node changes, one file per aspect, so that
# node-down.sh can compare it with the state before node-up.sh.
snapshot() {
  local out="$1" k h
  mkdir -p "$out"
  for k in "${node_sysctls[@]}"; do
    echo "$k=$(sysctl -n "$k" 2>/dev/null || echo absent)"
  done >"$out/sysctl"
  # Rules without packet counters.
  { iptables-save 2>/dev/null || true; } | sed -e '/^#/d' -e 's/\[[0-9]*:[0-9]*\]//' >"$out/iptables"
  { ip6tables-save 2>/dev/null || true; } | sed -e '/^#/d' -e 's/\[[0-9]*:[0-9]*\]//' >"$out/ip6tables"
  { nft list tables 2>/dev/null || true; } | sort >"$out/nft-tables"
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort >"$out/links"
  awk '{print $5}' /proc/self/mountinfo | grep -E "^($dir|/var/lib/kubelet|/run/netns|/var/run/netns|/run/containerd)(/|$)" |
    sort >"$out/mounts" || true
  { ls -1 /run/netns 2>/dev/null || true; } | sort >"$out/netns"
  for h in /sys/fs/cgroup/*/; do
    [[ -d "$h/kubepods" ]] && echo "$h"kubepods
  done >"$out/cgroups" || true
  { ls -1 /var/log/containers 2>/dev/null || true; } | sort >"$out/logs"
  [[ -d /var/log/pods ]] && echo /var/log/pods >>"$out/logs"
  true
}
