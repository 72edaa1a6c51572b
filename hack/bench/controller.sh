#!/usr/bin/env bash
# Usage: hack/bench/controller.sh [N] [EXISTING]
#
# Benchmarks the stepseal TaskRun controller against Tekton Chains v0.26.3
# on one kube-apiserver (hack/kube/start.sh), in one run:
#
#   1. N (default 1000) finished TaskRuns of 5 steps are created as fast as
#      the apiserver takes them in namespace bench-ours while stepseal runs;
#      hack/bench/loadtaskruns -mode watch prints TaskRuns signed per second
#      and completion->signed p50/p99.
#   2. stepseal is stopped; Chains (built by hack/tools/chains, restricted with
#      -namespace to bench-chains) gets the same N in bench-chains.
#   3. stepseal again with EXISTING (default 10000) finished, already signed
#      TaskRuns in its informer cache plus N new ones: peak RSS (VmHWM).
#
# BACKENDS (default "dir") sets stepseal's storage backends, e.g.
# BACKENDS=dir,tlog to sign into the embedded transparency log as well.
# CHAINS=0 skips the Chains run; EXISTING=0 skips the RSS run.
# OURS_ARGS adds flags to stepseal's controller (e.g. -threads-per-controller 8).
# OURS_GOMEMLIMIT sets stepseal's GOMEMLIMIT (default off; the release
# Deployment sets 200MiB under its 256Mi limit).
#
# Both controllers get the same client rate limits (QPS/BURST, default 50/100)
# and the same key: one ECDSA P-256 cosign key (cosign generate-key-pair),
# given to stepseal as the Secret signing-secrets and to Chains at its fixed
# path /etc/signing-secrets: a copy of /etc holding it is bind-mounted over
# /etc in a private mount namespace (unshare -m), so the host's /etc is not
# touched. Chains' knative flags are
# the same (-kube-api-qps/-kube-api-burst); Chains doubles them internally
# (see DEPENDENCIES.md), so it is given QPS/4 and BURST/4 to end up equal.
# Chains uses artifacts.taskrun.format=slsa/v1, storage=tekton (signatures as
# annotations), no OCI storage, no transparency log: one signature per
# TaskRun; stepseal signs one link per step plus one provenance (6 per
# TaskRun) and writes them to a dir store on disk.
set -euo pipefail

N="${1:-1000}"
EXISTING="${2:-10000}"
QPS="${QPS:-50}"
BURST="${BURST:-100}"
BACKENDS="${BACKENDS:-dir}"
CHAINS="${CHAINS:-1}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/stepseal-bench.XXXXXX")"
bin="$work/bin"
mkdir -p "$bin"
cd "$root"

echo "== building (work dir $work)"
go build -o "$bin/stepseal-controller" ./images/controller
go build -o "$bin/loadtaskruns" ./hack/bench/loadtaskruns
if [[ "$CHAINS" == 0 ]]; then
  :
elif [[ -n "${CHAINS_BIN:-}" ]]; then
  cp "$CHAINS_BIN" "$bin/chains-controller"
else
  (cd hack/tools/chains && go build -o "$bin/chains-controller" github.com/tektoncd/chains/cmd/controller)
fi
command -v cosign >/dev/null || { echo "cosign not found (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5)" >&2; exit 1; }

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  hack/kube/stop.sh "$work/kube" >/dev/null 2>&1 || true
}
trap cleanup EXIT

export KUBECONFIG
KUBECONFIG="$(hack/kube/start.sh "$work/kube")"
kubectl() { command kubectl "$@" 2>&1 | grep -v 'version difference' || true; }

# One ECDSA P-256 cosign key for both.
(cd "$work" && COSIGN_PASSWORD=benchpw cosign generate-key-pair >/dev/null 2>&1)
mkdir -p "$work/signing-secrets"
cp "$work/cosign.key" "$work/cosign.pub" "$work/signing-secrets/"
printf benchpw >"$work/signing-secrets/cosign.password"

for ns in stepseal bench-ours tekton-chains bench-chains bench-rss; do kubectl create namespace "$ns" >/dev/null; done
kubectl -n stepseal create secret generic signing-secrets \
  --from-file=cosign.key="$work/cosign.key" --from-literal=cosign.password=benchpw >/dev/null
kubectl -n stepseal create configmap stepseal-config --from-literal=backends="$BACKENDS" \
  --from-literal=storage.dir.path="$work/store" --from-literal=storage.tlog.path="$work/tlog" >/dev/null
kubectl -n tekton-chains create configmap chains-config \
  --from-literal=artifacts.taskrun.format=slsa/v1 --from-literal=artifacts.taskrun.storage=tekton \
  --from-literal=artifacts.oci.storage= --from-literal=artifacts.pipelinerun.storage=tekton >/dev/null

# rss PID OUT: polls VmHWM (peak RSS) of PID until it exits.
rss() { while [[ -r /proc/$1/status ]]; do grep VmHWM /proc/"$1"/status >"$2.tmp" 2>/dev/null && mv "$2.tmp" "$2"; sleep 0.5; done; }

start_ours() {
  GOMEMLIMIT="${OURS_GOMEMLIMIT:-off}" SYSTEM_NAMESPACE=stepseal METRICS_DOMAIN=stepseal.dev/stepseal \
    "$bin/stepseal-controller" -kubeconfig "$KUBECONFIG" -disable-ha \
    -kube-api-qps "$QPS" -kube-api-burst "$BURST" ${OURS_ARGS:-} >"$work/$1.log" 2>&1 &
  ours=$!; pids+=("$ours")
  rss "$ours" "$work/$1.rss" &
}

echo "== stepseal: $N TaskRuns x 5 steps (QPS $QPS burst $BURST, backends $BACKENDS)"
start_ours ours
"$bin/loadtaskruns" -mode watch -namespace bench-ours -n "$N" -annotation stepseal.dev/signed -label stepseal >"$work/ours.result" &
w=$!
"$bin/loadtaskruns" -mode create -namespace bench-ours -n "$N" -prefix ours
wait "$w"; cat "$work/ours.result"
kill "$ours"; wait "$ours" 2>/dev/null || true
echo "stepseal peak RSS: $(awk '{print $2/1024 " MiB"}' "$work/ours.rss")"

if [[ "$CHAINS" != 0 ]]; then
echo "== Tekton Chains v0.26.3: $N TaskRuns x 5 steps (-namespace bench-chains)"
# A private copy of /etc with signing-secrets in it, bind-mounted over /etc in
# Chains' own mount namespace only.
cp -a /etc "$work/etc" 2>/dev/null || true
mkdir -p "$work/etc/signing-secrets"
unshare -m sh -c '
  mount --bind "$0/../etc" /etc
  mount --bind "$0" /etc/signing-secrets
  exec env SYSTEM_NAMESPACE=tekton-chains METRICS_DOMAIN=tekton.dev/chains \
    CONFIG_LOGGING_NAME=config-logging CONFIG_OBSERVABILITY_NAME=config-observability \
    "$1" -kubeconfig "$2" -namespace bench-chains \
    -kube-api-qps "$3" -kube-api-burst "$4"' \
  "$work/signing-secrets" "$bin/chains-controller" "$KUBECONFIG" "$((QPS / 4))" "$((BURST / 4))" \
  >"$work/chains.log" 2>&1 &
chains=$!; pids+=("$chains")
sleep 3
rss "$(pgrep -P "$chains" || echo "$chains")" "$work/chains.rss" &
"$bin/loadtaskruns" -mode watch -namespace bench-chains -n "$N" -annotation chains.tekton.dev/signed -label chains -timeout "${CHAINS_TIMEOUT:-20m}" >"$work/chains.result" &
w=$!
"$bin/loadtaskruns" -mode create -namespace bench-chains -n "$N" -prefix chains
if wait "$w"; then
  cat "$work/chains.result"
  echo "chains peak RSS: $(awk '{print $2/1024 " MiB"}' "$work/chains.rss" 2>/dev/null)"
  o=$(awk '/^RESULT/{print $3}' "$work/ours.result"); c=$(awk '/^RESULT/{print $3}' "$work/chains.result")
  echo "throughput ratio stepseal/chains: $(awk -v o="$o" -v c="$c" 'BEGIN{printf "%.2f", o/c}')"
else
  echo "chains did not finish; log tail:"; tail -20 "$work/chains.log"
fi
kill "$chains" 2>/dev/null; wait "$chains" 2>/dev/null || true

fi

if ((EXISTING > 0)); then
echo "== stepseal peak RSS: $EXISTING existing signed TaskRuns + $N new"
"$bin/loadtaskruns" -mode create -namespace bench-rss -n "$EXISTING" -prefix old -annotate stepseal.dev/signed=true
start_ours rss
"$bin/loadtaskruns" -mode watch -namespace bench-rss -n "$((EXISTING + N))" -annotation stepseal.dev/signed -label stepseal-rss >"$work/rss.result" &
w=$!
"$bin/loadtaskruns" -mode create -namespace bench-rss -n "$N" -prefix new
wait "$w"; grep -v RESULT "$work/rss.result" || true
sleep 1
echo "stepseal peak RSS with $EXISTING+$N TaskRuns: $(awk '{print $2/1024 " MiB"}' "$work/rss.rss") (target < 256 MiB)"
fi
echo "logs in $work"
