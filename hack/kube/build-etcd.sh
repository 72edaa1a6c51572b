#!/usr/bin/env bash
# Builds etcd v3.6.5 (the version kube-apiserver v1.35 is released with) from
# Go modules (the wrapper module in hack/tools/etcd) into
# $(go env GOPATH)/bin/etcd-v3.6.5 and prints its path; skipped when that
# binary exists and reports the right version. Cold build: about 40 s.
#
# Why not Debian's etcd-server: it is 3.4.23, which lacks the
# RequestWatchProgress support kube-apiserver needs to serve streaming lists
# (WatchList, on by default in client-go 0.35 and kube-apiserver 1.34+). On
# it every informer falls back to one LIST of all objects, decoded at once —
# not what a controller meets on a current cluster, and it doubled our
# controller's peak memory in the benchmark.
set -euo pipefail

version=v3.6.5
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
gobin="$(go env GOPATH)/bin"
out="$gobin/etcd-$version"

reports_version() {
  [[ -x "$1" ]] && "$1" --version 2>/dev/null | grep -qx "etcd Version: ${version#v}"
}

if reports_version "$out"; then
  echo "$out"
  exit 0
fi
mkdir -p "$gobin"
exec 9>"$gobin/.etcd-$version.lock"
flock 9
if reports_version "$out"; then
  echo "$out"
  exit 0
fi
echo "building etcd $version..." >&2
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$root/hack/tools/etcd" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$tmp" .)
if ! reports_version "$tmp"; then
  echo "built etcd reports '$("$tmp" --version 2>&1 | head -1 || true)', want $version" >&2
  exit 1
fi
mv "$tmp" "$out"
echo "$out"
