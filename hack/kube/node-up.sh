#!/usr/bin/env bash
# Usage: hack/kube/node-up.sh DIR
#
# Starts a real single-node Kubernetes v1.35.4 with the real Tekton Pipelines
# controller, all state under DIR, and prints DIR/kubeconfig:
#
#   etcd + kube-apiserver + Tekton CRDs   hack/kube/start.sh DIR
#   docker-registry on a free 127.0.0.1 port over the image store build-node.sh filled,
#   and a scratch one (storage under DIR) for the images tests push
#   containerd (own root, state, socket, config) with a CNI bridge ($node_bridge, 10.244.0.0/24)
#   kubelet, kube-scheduler, kube-controller-manager (loopback only)
#   Tekton's controller as a process in a private network namespace (its
#   probe and pprof ports bind every interface), reaching the apiserver through
#   a Unix socket; its images are the local registry's, by digest
#
# DIR/images.env names the images (BUSYBOX=127.0.0.1:PORT/busybox@sha256:..).
# DIR/scratch-registry names a second, empty registry (HOST:PORT, storage under
# DIR) for the images tests push.
# DIR/keys (0700) is the node's decryption key directory: a private key put
# there lets containerd pull images encrypted to it (ctd-decoder).
# Stop with hack/kube/node-down.sh DIR, which also restores the host state the
# kubelet and CNI change (recorded in DIR/host-before). One node per host; needs
# root. Warm start (binaries and images cached by build-node.sh): ~10-20 s.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mkdir -p "$1"
dir="$(cd "$1" && pwd)"
# shellcheck source=SCRIPTDIR/node-lib.sh
source "$here/node-lib.sh"
gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"
kube_version=v1.35.4
start=$SECONDS
log() { echo "node-up: [$((SECONDS - start))s] $*" >&2; }
die() { echo "node-up: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root (containerd, kubelet, CNI)"
for b in kubelet kube-scheduler kube-controller-manager; do
  [[ -x "$gobin/$b-$kube_version" ]] || die "$gobin/$b-$kube_version missing: run hack/kube/build-node.sh"
done
tekton_version="$(cd "$root" && go list -m -f '{{.Version}}' github.com/tektoncd/pipeline)"
tekton_bin="$gobin/tekton-controller-$tekton_version"
[[ -x "$tekton_bin" ]] || die "$tekton_bin missing: run hack/kube/build-node.sh"
decoder="$(decoder_bin)"
[[ -x "$decoder" ]] || die "$decoder missing: run hack/kube/build-node.sh decoder"
images="$node_cache/images-$tekton_version.env"
[[ -s "$images" ]] || die "$images missing: run hack/kube/build-node.sh"
for c in containerd runc ctr socat docker-registry kubectl unshare ip iptables-save; do
  command -v "$c" >/dev/null || die "$c missing: run hack/kube/build-node.sh apt"
done
[[ -x /usr/lib/cni/bridge ]] || die "/usr/lib/cni/bridge missing: run hack/kube/build-node.sh apt"

if [[ -f "$node_owner" ]]; then
  other="$(cat "$node_owner")"
  if [[ -f "$other/kubelet.pid" ]] && running "$(cat "$other/kubelet.pid")"; then
    die "a node already runs from $other on this host: hack/kube/node-down.sh $other first"
  fi
  [[ "$other" == "$dir" ]] || die "$node_owner names $other, which was not stopped: run hack/kube/node-down.sh $other"
fi
echo "$dir" >"$node_owner"

# On failure, take down what was started (and restore the host).
trap 'rc=$?; if ((rc)); then echo "node-up: failed; logs in $dir; stopping" >&2; "$here/node-down.sh" "$dir" >&2 || true; fi' EXIT

snapshot "$dir/host-before"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# daemon NAME CMD...: start CMD in its own session (so killing the caller's
# process group does not take it down), output to DIR/NAME.log, PID to DIR/NAME.pid.
daemon() {
  local name="$1"
  shift
  setsid "$@" >>"$dir/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/$name.pid"
}

# wait_for WHAT TIMEOUT_S CMD...: poll CMD every 0.1 s.
wait_for() {
  local what="$1" timeout="$2"
  shift 2
  for _ in $(seq $((timeout * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$what not ready after $timeout s (logs in $dir)"
}

# 1. etcd, kube-apiserver, Tekton CRDs: the existing harness, in the
# background while the registry and containerd start. It writes DIR/kubeconfig
# once the apiserver is ready, then applies the CRDs.
kubeconfig="$dir/kubeconfig"
export KUBECONFIG="$kubeconfig"
rm -f "$kubeconfig"
"$here/start.sh" "$dir" >/dev/null 2>"$dir/start.log" &
start_pid=$!

# 2. The registry, over build-node.sh's image store.
reg_port="$(free_port)"
reg="127.0.0.1:$reg_port"
cat >"$dir/registry.yml" <<CFG
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $node_cache/registry}, maintenance: {uploadpurging: {enabled: false}}}
http: {addr: $reg}
CFG
daemon registry docker-registry serve "$dir/registry.yml"
wait_for registry 15 curl -fsS "http://$reg/v2/"
sed "s#=#=$reg/#" "$images" >"$dir/images.env"
# A scratch registry for what tests push (their own images, signatures,
# encrypted layers): its storage is under DIR, so it goes with the node and
# never grows the cached image store above.
scratch="127.0.0.1:$(free_port)"
cat >"$dir/scratch-registry.yml" <<CFG
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $dir/scratch-images}, maintenance: {uploadpurging: {enabled: false}}}
http: {addr: $scratch}
CFG
daemon scratch-registry docker-registry serve "$dir/scratch-registry.yml"
wait_for "scratch registry" 15 curl -fsS "http://$scratch/v2/"
echo "$scratch" >"$dir/scratch-registry"
# shellcheck source=/dev/null
source "$dir/images.env"
log "registry on $reg, scratch registry on $scratch"

# 3. containerd.
mkdir -p "$dir/containerd" "$dir/cni/net.d" "$dir/cni/ipam" "$dir/keys"
chmod 700 "$dir/keys"
cat >"$dir/containerd.toml" <<CFG
# containerd 1.6 (Debian 12) for the test node: own root/state/socket, cgroupfs
# (no systemd), images from the plain-HTTP registry on $reg.
version = 2
root = "$dir/containerd/root"
state = "$dir/containerd/state"
oom_score = 0

[grpc]
  address = "$dir/containerd/containerd.sock"
[ttrpc]
  address = ""
[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "$PAUSE"
    enable_selinux = false
    disable_apparmor = true
    # Without CAP_SYS_RESOURCE (some sandboxes) runc cannot set the pause
    # container's oom_score_adj=-998 and fails with "can't get final child's
    # PID from pipe: EOF"; keep every container at or above containerd's score.
    restrict_oom_score_adj = true
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "$(command -v runc)"
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$dir/cni/net.d"
    [plugins."io.containerd.grpc.v1.cri".registry]
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$reg"]
        endpoint = ["http://$reg"]
      [plugins."io.containerd.grpc.v1.cri".registry.mirrors."$scratch"]
        endpoint = ["http://$scratch"]
    # Encrypted images (ocicrypt): ctd-decoder decrypts each +encrypted layer
    # while containerd unpacks it, with the private keys in $dir/keys (read on
    # every layer: a key put there or removed counts from the next pull).
    [plugins."io.containerd.grpc.v1.cri".image_decryption]
      key_model = "node"

[stream_processors]
  [stream_processors."io.containerd.ocicrypt.decoder.v1.tar.gzip"]
    accepts = ["application/vnd.oci.image.layer.v1.tar+gzip+encrypted"]
    returns = "application/vnd.oci.image.layer.v1.tar+gzip"
    path = "$decoder"
    args = ["--decryption-keys-path", "$dir/keys"]
  [stream_processors."io.containerd.ocicrypt.decoder.v1.tar"]
    accepts = ["application/vnd.oci.image.layer.v1.tar+encrypted"]
    returns = "application/vnd.oci.image.layer.v1.tar"
    path = "$decoder"
    args = ["--decryption-keys-path", "$dir/keys"]
CFG
cat >"$dir/cni/net.d/10-stepseal.conflist" <<CFG
{
  "cniVersion": "1.0.0",
  "name": "stepseal",
  "plugins": [
    {"type": "bridge", "bridge": "$node_bridge", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "dataDir": "$dir/cni/ipam", "ranges": [[{"subnet": "$node_subnet"}]]}},
    {"type": "loopback"}
  ]
}
CFG
ctr_() { ctr -a "$dir/containerd/containerd.sock" "$@"; }
daemon containerd containerd --config "$dir/containerd.toml"
wait_for containerd 20 ctr_ version
log "containerd ready"

for i in $(seq 1200); do
  [[ -s "$kubeconfig" ]] && kubectl get --raw /readyz >/dev/null 2>&1 && break
  running "$start_pid" || [[ -s "$kubeconfig" ]] || die "hack/kube/start.sh failed: $(cat "$dir/start.log")"
  ((i < 1200)) || die "kube-apiserver not ready after 120 s: $(cat "$dir/start.log")"
  sleep 0.1
done
api_port="$(sed -n 's#.*server: https://127.0.0.1:\([0-9]*\)#\1#p' "$kubeconfig")"
log "apiserver on 127.0.0.1:$api_port"

# 4. kubelet.
kubelet_port="$(free_port)"
healthz_port="$(free_port)"
mkdir -p "$dir/kubelet/pki" "$dir/pod-logs"
cat >"$dir/kubelet.yaml" <<CFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# 1.35 refuses cgroup v1 hosts unless told otherwise.
failCgroupV1: false
# No systemd; matches containerd's SystemdCgroup = false.
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$dir/containerd/containerd.sock
address: 127.0.0.1
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}, x509: {}}
authorization: {mode: AlwaysAllow}
failSwapOn: false
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
podLogsDir: $dir/pod-logs
CFG
daemon kubelet "$gobin/kubelet-$kube_version" --config="$dir/kubelet.yaml" --kubeconfig="$kubeconfig" \
  --root-dir="$dir/kubelet" --cert-dir="$dir/kubelet/pki" --hostname-override="$node_name"

# 5. Scheduler and controller manager (node lifecycle removes the not-ready
# taint; the service account controller creates the default ServiceAccounts).
daemon kube-scheduler "$gobin/kube-scheduler-$kube_version" --kubeconfig="$kubeconfig" \
  --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
  --leader-elect=false --bind-address=127.0.0.1 --secure-port="$(free_port)"
daemon kube-controller-manager "$gobin/kube-controller-manager-$kube_version" --kubeconfig="$kubeconfig" \
  --authentication-kubeconfig="$kubeconfig" --authorization-kubeconfig="$kubeconfig" \
  --leader-elect=false --bind-address=127.0.0.1 --secure-port="$(free_port)" \
  --service-account-private-key-file="$dir/sa.key" --root-ca-file="$dir/serving.crt" \
  --use-service-account-credentials=false

node_ready() {
  [[ "$(kubectl get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status} {.spec.taints}' 2>/dev/null)" == "True " ]]
}
wait_for "node $node_name (Ready, untainted)" 90 node_ready
wait_for "default ServiceAccount" 30 kubectl get serviceaccount default -n default
log "node $node_name Ready"

# 6. Tekton: its CRDs (start.sh), namespace and config ConfigMaps, then the controller.
wait "$start_pid" || die "hack/kube/start.sh failed: $(cat "$dir/start.log")"
tekton_dir="$(cd "$root" && go list -m -f '{{.Dir}}' github.com/tektoncd/pipeline)"
[[ -n "$tekton_dir" ]] || tekton_dir="$(cd "$root" && go mod download -json github.com/tektoncd/pipeline | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
args=(-f "$tekton_dir/config/100-namespace/100-namespace.yaml")
for f in "$tekton_dir"/config/config-*.yaml; do args+=(-f "$f"); done
kubectl apply "${args[@]}" >/dev/null

# The controller always binds its probe (:8080) and pprof (:8008) ports on
# every interface, so it runs in a network namespace of its own with only
# loopback; socat carries 127.0.0.1:$api_port in there to the apiserver over a
# Unix socket, so the same kubeconfig works inside.
rm -f "$dir/apiserver.sock"
daemon apiserver-socat socat "UNIX-LISTEN:$dir/apiserver.sock,fork,mode=600" "TCP:127.0.0.1:$api_port"
wait_for "apiserver socket" 10 test -S "$dir/apiserver.sock"
cat >"$dir/tekton-controller.sh" <<SH
#!/bin/sh
# PID 1 of a private network and PID namespace (node-up.sh): when it exits, socat goes too.
set -e
ip link set lo up
socat TCP-LISTEN:$api_port,bind=127.0.0.1,fork,reuseaddr UNIX-CONNECT:$dir/apiserver.sock &
export SYSTEM_NAMESPACE=tekton-pipelines KUBERNETES_MIN_VERSION=v1.28.0 METRICS_DOMAIN=tekton.dev/pipeline
export CONFIG_DEFAULTS_NAME=config-defaults CONFIG_LOGGING_NAME=config-logging
export CONFIG_OBSERVABILITY_NAME=config-observability CONFIG_FEATURE_FLAGS_NAME=feature-flags
export CONFIG_LEADERELECTION_NAME=config-leader-election-controller CONFIG_SPIRE=config-spire
exec "$tekton_bin" -kubeconfig "$kubeconfig" -disable-ha \\
  -entrypoint-image "$ENTRYPOINT" -nop-image "$NOP" -workingdirinit-image "$WORKINGDIRINIT" \\
  -sidecarlogresults-image "$SIDECARLOGRESULTS" -shell-image "$BUSYBOX" \\
  -shell-image-win mcr.microsoft.com/powershell:nanoserver-unused-on-linux
SH
chmod +x "$dir/tekton-controller.sh"
daemon tekton-controller unshare --net --pid --fork --kill-child "$dir/tekton-controller.sh"
wait_for "Tekton controller" 60 grep -q 'Starting controllers' "$dir/tekton-controller.log"
log "Tekton controller $tekton_version started"

trap - EXIT
echo "node-up: ready in $((SECONDS - start)) s; stop with hack/kube/node-down.sh $dir" >&2
echo "$kubeconfig"
