#!/usr/bin/env bash
# Usage: hack/kube/build-node.sh [PART...]     PART: apt kube tekton decoder images (default: all)
#
# Builds and caches what hack/kube/node-up.sh needs for a real single-node
# Kubernetes with the real Tekton Pipelines controller. Idempotent: a part whose
# outputs exist with the right version stamp is skipped, so a rerun is a no-op.
#
#   apt     Debian packages: containerd, runc, CNI plugins, busybox-static,
#           iptables, nftables, socat, docker-registry, kubectl, ... (only the
#           missing ones, --no-install-recommends)
#   kube    kubelet, kube-scheduler, kube-controller-manager v1.35.4 from the
#           wrapper module hack/tools/kube-node, into $(go env GOPATH)/bin/NAME-v1.35.4
#           (cold: ~950 CPU-s, ~1.9 GB; the apiserver comes from build-apiserver.sh)
#   tekton  Tekton Pipelines' controller at the main module's version, into
#           $(go env GOPATH)/bin/tekton-controller-VERSION
#   decoder containerd/imgcrypt's ctd-decoder (hack/tools/ctd-decoder), the
#           stream processor containerd runs to decrypt encrypted layers, into
#           $(go env GOPATH)/bin/ctd-decoder-HASH (HASH: of that module's files)
#   images  busybox (Debian busybox-static) and pause (hack/kube/pause) with
#           crane, and Tekton's step images (entrypoint, nop, workingdirinit,
#           sidecarlogresults) with ko, all pushed into the node's image store
#           $STEPSEAL_NODE_CACHE/registry (default ~/.cache/stepseal-node); their
#           digests go to $STEPSEAL_NODE_CACHE/images-TEKTONVERSION.env
set -euo pipefail

kube_version=v1.35.4
kube_major=1
kube_minor=35

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
cache="${STEPSEAL_NODE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stepseal-node}"
mkdir -p "$gobin" "$cache"

log() { echo "build-node: $*" >&2; }
# shellcheck source=SCRIPTDIR/node-lib.sh
source "$root/hack/kube/node-lib.sh"

sudo_() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

part_apt() {
  local need=()
  command -v containerd >/dev/null || need+=(containerd)
  [[ -x /usr/sbin/runc ]] || need+=(runc)
  [[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
    need+=(containernetworking-plugins)
  [[ -x /bin/busybox ]] || need+=(busybox-static)
  command -v iptables-save >/dev/null || need+=(iptables)
  command -v nft >/dev/null || need+=(nftables)
  command -v socat >/dev/null || need+=(socat)
  command -v docker-registry >/dev/null || need+=(docker-registry)
  command -v kubectl >/dev/null || need+=(kubernetes-client)
  command -v openssl >/dev/null || need+=(openssl)
  command -v curl >/dev/null || need+=(curl)
  command -v unshare >/dev/null || need+=(util-linux)
  command -v ip >/dev/null || need+=(iproute2)
  command -v python3 >/dev/null || need+=(python3)
  ((${#need[@]})) || return 0
  log "apt-get install ${need[*]}"
  sudo_ apt-get update -qq
  # On a host with systemd the packages would start their own containerd and
  # registry; node-up.sh uses its own sockets and ports, so they do not clash.
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

kube_ok() {
  local b
  for b in kubelet kube-scheduler kube-controller-manager; do
    [[ -x "$gobin/$b-$kube_version" ]] || return 1
    "$gobin/$b-$kube_version" --version 2>/dev/null | grep -qx "Kubernetes $kube_version" || return 1
  done
}

part_kube() {
  kube_ok && return 0
  exec 8>"$gobin/.kube-node-$kube_version.lock"
  flock 8
  kube_ok && return 0
  local ldflags="-s -w" pkg tmp b start=$SECONDS
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$kube_version -X $pkg.gitMajor=$kube_major -X $pkg.gitMinor=$kube_minor"
    ldflags+=" -X $pkg.gitTreeState=clean"
  done
  tmp="$(mktemp -d "$gobin/.kube-node.XXXXXX")"
  log "building kubelet, kube-scheduler, kube-controller-manager $kube_version (cold: ~950 CPU-s, ~1.9 GB)"
  # One go build for all three: shared packages compile once. Same flags as
  # build-apiserver.sh, so the packages they share hit the same GOCACHE entries.
  (cd "$root/hack/tools/kube-node" &&
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler \
      k8s.io/kubernetes/cmd/kube-controller-manager) || { rm -rf "$tmp"; return 1; }
  for b in kubelet kube-scheduler kube-controller-manager; do
    mv "$tmp/$b" "$gobin/$b-$kube_version"
  done
  rm -rf "$tmp"
  kube_ok || { log "built binaries do not report Kubernetes $kube_version"; return 1; }
  log "built kube binaries in $((SECONDS - start)) s"
}

tekton_version() { (cd "$root" && go list -m -f '{{.Version}}' github.com/tektoncd/pipeline); }

part_tekton() {
  local v out
  v="$(tekton_version)"
  out="$gobin/tekton-controller-$v"
  [[ -x "$out" ]] && return 0
  log "building Tekton Pipelines controller $v"
  # Built inside the main module with its default settings, so it shares the
  # GOCACHE entries of go build ./... and go test (CGO_ENABLED=0 would not).
  (cd "$root" && go build -o "$out.tmp.$$" github.com/tektoncd/pipeline/cmd/controller)
  mv "$out.tmp.$$" "$out"
}

part_decoder() {
  local out
  out="$(decoder_bin)"
  [[ -x "$out" ]] && return 0
  log "building ctd-decoder (imgcrypt v1.1.11)"
  (cd "$root/hack/tools/ctd-decoder" &&
    CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$out.tmp.$$" .)
  mv "$out.tmp.$$" "$out"
}

# registry_start: a throwaway docker-registry on a free port over the image
# store; prints HOST:PORT and sets reg_pid.
registry_start() {
  local port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  mkdir -p "$cache/registry"
  cat >"$cache/registry-build.yml" <<CFG
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $cache/registry}, maintenance: {uploadpurging: {enabled: false}}}
http: {addr: 127.0.0.1:$port}
CFG
  docker-registry serve "$cache/registry-build.yml" >"$cache/registry-build.log" 2>&1 &
  reg_pid=$!
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && { reg="127.0.0.1:$port"; return 0; }
    sleep 0.1
  done
  log "docker-registry did not start: $(cat "$cache/registry-build.log")"
  return 1
}

part_images() {
  local v env tmp dig
  v="$(tekton_version)"
  env="$cache/images-$v.env"
  [[ -s "$env" ]] && return 0
  command -v crane >/dev/null || { log "crane missing: run hack/install-test-deps.sh"; return 1; }
  command -v ko >/dev/null || { log "ko missing: run hack/install-test-deps.sh"; return 1; }
  exec 7>"$cache/.images.lock"
  flock 7
  [[ -s "$env" ]] && return 0
  registry_start
  trap 'kill $reg_pid 2>/dev/null || true' RETURN
  tmp="$(mktemp -d)"
  : >"$env.tmp"

  # busybox: Debian's static busybox plus one symlink per applet.
  mkdir -p "$tmp/bb/bin" "$tmp/bb/etc" "$tmp/bb/tmp" "$tmp/bb/root"
  chmod 1777 "$tmp/bb/tmp"
  cp /bin/busybox "$tmp/bb/bin/busybox"
  for a in $(/bin/busybox --list); do [[ "$a" == busybox ]] || ln -sf busybox "$tmp/bb/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$tmp/bb/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$tmp/bb/etc/group"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp/bb" -cf "$tmp/bb.tar" .
  crane append --oci-empty-base -f "$tmp/bb.tar" -t "$reg/busybox:stepseal" >/dev/null
  crane mutate --set-platform linux/amd64 --env PATH=/bin -t "$reg/busybox:stepseal" "$reg/busybox:stepseal" >/dev/null
  echo "BUSYBOX=busybox@$(crane digest "$reg/busybox:stepseal")" >>"$env.tmp"

  # pause: the sandbox image, a static Go binary that sleeps until signalled.
  mkdir -p "$tmp/pause"
  (cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp/pause/pause" ./hack/kube/pause)
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp/pause" -cf "$tmp/pause.tar" pause
  crane append --oci-empty-base -f "$tmp/pause.tar" -t "$reg/pause:stepseal" >/dev/null
  crane mutate --set-platform linux/amd64 --entrypoint /pause -t "$reg/pause:stepseal" "$reg/pause:stepseal" >/dev/null
  echo "PAUSE=pause@$(crane digest "$reg/pause:stepseal")" >>"$env.tmp"

  # Tekton's images, on our busybox (the entrypoint image is copied into each
  # step with `cp`, so its base needs a shell-free binary only, but ko needs a base).
  local img
  for img in entrypoint nop workingdirinit sidecarlogresults; do
    log "ko build tekton $img"
    dig="$(cd "$root" && KO_DOCKER_REPO="$reg/tekton" KO_DEFAULTBASEIMAGE="$reg/busybox:stepseal" \
      ko build -B --platform=linux/amd64 --sbom=none "github.com/tektoncd/pipeline/cmd/$img" 2>"$tmp/ko.log")" ||
      { cat "$tmp/ko.log" >&2; return 1; }
    echo "$(echo "$img" | tr '[:lower:]' '[:upper:]')=tekton/$img@${dig##*@}" >>"$env.tmp"
  done
  rm -rf "$tmp"
  mv "$env.tmp" "$env"
  log "images in $cache/registry: $(tr '\n' ' ' <"$env")"
}

parts=("$@")
((${#parts[@]})) || parts=(apt kube tekton decoder images)
for p in "${parts[@]}"; do
  case "$p" in
  apt | kube | tekton | decoder | images) "part_$p" ;;
  *) echo "usage: $0 [apt|kube|tekton|decoder|images]..." >&2; exit 2 ;;
  esac
done
