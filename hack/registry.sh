#!/usr/bin/env bash
# Starts or stops a CNCF Distribution registry (Debian docker-registry) on
# 127.0.0.1 for manual use and benchmarks, with the same configuration the
# tests use (internal/testregistry): filesystem storage, deletes enabled.
#
#   hack/registry.sh start [PORT]   prints HOST:PORT (PORT 0 or absent: a free one)
#   hack/registry.sh stop  [PORT]   stops the registry started on PORT (or all started by this script)
#   hack/registry.sh dir   [PORT]   prints the storage directory
#
# State (config, storage, pid, log) lives under ${STEPSEAL_REGISTRY_STATE:-${TMPDIR:-/tmp}/stepseal-registry}/PORT.
set -euo pipefail

state_root="${STEPSEAL_REGISTRY_STATE:-${TMPDIR:-/tmp}/stepseal-registry}"
cmd="${1:-}"
port="${2:-0}"

free_port() {
  python3 - <<'PY' 2>/dev/null || { echo "hack/registry.sh: give a PORT (python3 not found to pick a free one)" >&2; exit 2; }
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

stop_one() {
  local dir="$1" pid
  [[ -f "$dir/pid" ]] || return 0
  pid="$(cat "$dir/pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$dir"
}

case "$cmd" in
start)
  command -v docker-registry >/dev/null || { echo "docker-registry not installed: run make deps" >&2; exit 1; }
  [[ "$port" == 0 ]] && port="$(free_port)"
  dir="$state_root/$port"
  if [[ -f "$dir/pid" ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "127.0.0.1:$port"; exit 0
  fi
  mkdir -p "$dir/storage"
  cat >"$dir/config.yml" <<CFG
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/storage
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
CFG
  nohup docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 150); do
    if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
      echo "127.0.0.1:$port"; exit 0
    fi
    kill -0 "$(cat "$dir/pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "docker-registry did not start on 127.0.0.1:$port:" >&2
  cat "$dir/log" >&2
  stop_one "$dir"
  exit 1
  ;;
stop)
  if [[ "$port" != 0 ]]; then
    stop_one "$state_root/$port"
  else
    for d in "$state_root"/*/; do [[ -d "$d" ]] && stop_one "${d%/}"; done
  fi
  ;;
dir)
  echo "$state_root/$port/storage"
  ;;
*)
  echo "usage: $0 start|stop|dir [PORT]" >&2
  exit 2
  ;;
esac
