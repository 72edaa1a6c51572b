#!/usr/bin/env bash
# Usage: hack/kube/stop.sh DIR
#
# Stops the kube-apiserver and etcd that hack/kube/start.sh DIR started and
# removes etcd's data from /dev/shm. DIR (logs, kubeconfig) is kept.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir="$1"

# running PID: the process exists and is not a zombie waiting for init to
# reap it (which takes up to 2 s in some sandboxes).
running() {
  local state
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# stop NAME SIGNAL: send SIGNAL to the process in DIR/NAME.pid if it still is
# NAME, and SIGKILL after 30 s.
stop() {
  local name="$1" signal="$2" pidfile="$dir/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  # The pid may have been reused since: only signal the binary we started.
  if running "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name"; then
    kill "-$signal" "$pid"
    for _ in $(seq 300); do
      running "$pid" || break
      sleep 0.1
    done
    if running "$pid"; then
      echo "$name ($pid) ignored SIG$signal for 30 s: killing it" >&2
      kill -KILL "$pid" || true
    fi
  fi
  rm -f "$pidfile"
}

# kube-apiserver first: without etcd its shutdown takes 10 s instead of 2.
stop kube-apiserver TERM
# etcd takes 2 s to honor SIGTERM, and its data is deleted next anyway.
stop etcd KILL

if [[ -f "$dir/etcd.datadir" ]]; then
  data="$(cat "$dir/etcd.datadir")"
  case "$(basename "$data")" in
  stepseal-kubetest-etcd-*) rm -rf "$data" "$data.pid" ;;
  *) echo "not removing unexpected etcd data dir $data" >&2 ;;
  esac
  rm -f "$dir/etcd.datadir"
fi
