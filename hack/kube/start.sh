#!/usr/bin/env bash
# Usage: hack/kube/start.sh [DIR]
#
# Starts etcd v3.6.5 (hack/kube/build-etcd.sh; data on /dev/shm) and kube-apiserver v1.35.4 on free loopback
# ports, applies Tekton's v1 CRDs, writes DIR/kubeconfig (admin token,
# system:masters) and prints its path:
#
#   export KUBECONFIG=$(hack/kube/start.sh /tmp/kube)
#   ...
#   hack/kube/stop.sh /tmp/kube
#
# DIR defaults to a new temporary directory; it also holds the logs
# (etcd.log, kube-apiserver.log), certificates and pid files. About 4-8 s once
# the apiserver binary is built (hack/kube/build-apiserver.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir="${1:-$(mktemp -d "${TMPDIR:-/tmp}/stepseal-kube.XXXXXX")}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

etcd_built="$(go env GOPATH)/bin/etcd-v3.6.5"
[[ -n "${ETCD:-}" || ! -x "$etcd_built" ]] || export ETCD="$etcd_built"
if ! command -v "${ETCD:-etcd}" >/dev/null; then
  echo "etcd not found: run hack/kube/build-etcd.sh (or make deps)" >&2
  exit 1
fi
apiserver="${KUBE_APISERVER:-$(go env GOPATH)/bin/kube-apiserver-v1.35.4}"
if [[ ! -x "$apiserver" ]]; then
  echo "$apiserver not found: run hack/kube/build-apiserver.sh (or make deps)" >&2
  exit 1
fi
for name in kube-apiserver etcd; do
  if [[ -f "$dir/$name.pid" ]] && kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null; then
    echo "a cluster already runs in $dir: hack/kube/stop.sh $dir first" >&2
    exit 1
  fi
done

cd "$root"
KUBE_APISERVER="$apiserver" go run ./hack/kube/cluster "$dir"
