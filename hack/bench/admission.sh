#!/usr/bin/env bash
# Usage: hack/bench/admission.sh [N] [CONCURRENCY]
#
# Measures what the admission webhook adds to Pod CREATE, through a real
# kube-apiserver (hack/kube/start.sh) calling the webhook binary over TLS,
# in one run:
#
#   1. A Distribution registry on loopback (hack/registry.sh) gets one
#      "warm" image and N x levels "cold" images, each signed with one fresh
#      key (hack/bench/admissionload -mode setup); controllers/config/admission
#      is applied with the policy "apps" (require: signed, that key), the
#      Service as ExternalName localhost (no kube-proxy) and the webhooks'
#      port set to the one the webhook listens on.
#   2. `stepseal admission serve --policy-configmap ...` runs as the
#      Deployment runs it (on the admin kubeconfig here; its certificate from
#      knative's certificates controller), --insecure for the loopback
#      registry.
#   3. For each concurrency level (CONCURRENCY, default 1,50,200), N Pods
#      (default 200) are created by that many creators: in a namespace
#      without the opt-in label (baseline: the webhook is not called), in the
#      opted-in namespace naming the warm image (its verdict cached), and
#      there again each naming a cold image (first sight of a digest:
#      manifest, signature, verification). It prints p50/p99 per case and the
#      added latency (case minus baseline).
#   4. BenchmarkCacheHeap: the heap held by 10 000 cached verdicts.
#
# Every case also prints the CPU milliseconds per Pod CREATE spent by the
# kube-apiserver, etcd, the webhook and the load generator (utime+stime
# from /proc/PID/stat: load-independent, unlike the latencies).
#
# PROFILE=C (e.g. PROFILE=50) then runs, at C creators for PROFILE_SECONDS
# (default 10) each without pause, the baseline and the warm case three
# times: as shipped, without the validating webhook's matchConditions, and
# without either Pod webhook's. It records the kube-apiserver's CPU profile
# (/debug/pprof/profile) and the webhook's (perf record -g), and prints
# where each spends its CPU (files kept in the work dir's prof/).
#
# Pods stay Pending (no kubelet). The machine's load average is printed: the
# figures are only comparable on a quiet machine.
set -euo pipefail

N="${1:-200}"
CONC="${2:-1,50,200}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/stepseal-bench-admission.XXXXXX")"
bin="$work/bin"
mkdir -p "$bin"
cd "$root"

echo "== building (work dir $work)"
go build -o "$bin/stepseal" ./images/stepseal
# serve --policy-configmap runs in stepseal-tekton, which stepseal execs.
go build -o "$bin/stepseal-tekton" ./images/stepseal-tekton
go build -o "$bin/admissionload" ./hack/bench/admissionload

pids=()
registry_port=""
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -z "$registry_port" ]] || hack/registry.sh stop "$registry_port" >/dev/null 2>&1 || true
  hack/kube/stop.sh "$work/kube" >/dev/null 2>&1 || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

export KUBECONFIG
KUBECONFIG="$(hack/kube/start.sh "$work/kube")"
export STEPSEAL_REGISTRY_STATE="$work/registry"
registry="$(hack/registry.sh start)"
registry_port="${registry##*:}"
port="$(free_port)"
metrics="127.0.0.1:$(free_port)"
levels=$(awk -F, '{print NF}' <<<"$CONC")

echo "== set-up: registry $registry, $((N * levels)) cold images + 1 warm, signed"
"$bin/admissionload" -mode setup -registry "$registry" -port "$port" -images "$((N * levels))" -out "$work"

echo "== webhook on 127.0.0.1:$port (metrics $metrics)"
SYSTEM_NAMESPACE=stepseal "$bin/stepseal" admission serve --policy-configmap stepseal-admission-policy \
  --namespace-label stepseal.dev/admission --addr "127.0.0.1:$port" --metrics-addr "$metrics" \
  --kubeconfig "$KUBECONFIG" --insecure >"$work/webhook.log" 2>&1 &
pids+=("$!")
# Ready: the certificate is in the Secret and its CA in the configurations.
for _ in $(seq 100); do
  if curl -ks "https://127.0.0.1:$port/healthz" >/dev/null 2>&1 &&
    [[ -n "$(kubectl get validatingwebhookconfiguration stepseal-admission -o jsonpath='{.webhooks[0].clientConfig.caBundle}' 2>/dev/null)" ]]; then
    break
  fi
  sleep 0.2
done
sleep 1 # the apiserver picks up the caBundle

echo "== load: N=$N per case, concurrency $CONC (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
pidlist="apiserver=$(cat "$work/kube/kube-apiserver.pid"),etcd=$(cat "$work/kube/etcd.pid"),webhook=${pids[0]}"
"$bin/admissionload" -mode load -c "$CONC" -n "$N" -out "$work" -pids "$pidlist"
reviews() { curl -s "http://$metrics/metrics" | awk -v w="$1" '$0 ~ "^stepseal_admission_latency_seconds_count" && $0 ~ "webhook=\"" w "\"" {s+=$NF} END{print s+0}'; }
echo "webhook reviews: validate $(reviews validate), mutate $(reviews mutate)"
echo "webhook decisions: $(curl -s "http://$metrics/metrics" | awk '/^stepseal_admission_decisions_total/{s+=$NF} END{print s}'), cache hits/misses: $(curl -s "http://$metrics/metrics" | awk '/^stepseal_admission_cache_hits_total/{h+=$NF} /^stepseal_admission_cache_misses_total/{m+=$NF} END{print h "/" m}')"

if [[ -n "${PROFILE:-}" ]]; then
  echo "== profile: baseline and warm at $PROFILE creators, ${PROFILE_SECONDS:-10} s each (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$bin/admissionload" -mode profile -c "$PROFILE" -d "${PROFILE_SECONDS:-10}s" -out "$work" -pids "$pidlist" -prof "$work/prof"
  # Where the kube-apiserver's CPU goes (cumulative seconds of the case):
  # storage (finishRequest), the mutating and validating admission chain,
  # the webhook calls, matchConditions (CEL), garbage collection.
  for f in "$work"/prof/*.pprof; do
    echo "-- kube-apiserver $(basename "$f" .pprof)"
    go tool pprof -top -cum -nodecount=2000 "$f" 2>/dev/null | grep -E 'Total samples|finisher.finishRequest.func1$|auditHandler\).(Admit|Validate)$|mutatingDispatcher\).callAttrMutatingHook$|validatingDispatcher\).callHook$|ShouldCallHook$|matchconditions.\(\*matcher\).Match$|gcBgMarkWorker$|priorityAndFairnessHandler\).Handle$' || true
  done
  for f in "$work"/prof/*.perf.data; do
    [[ -f "$f" ]] || continue
    echo "-- webhook $(basename "$f" .perf.data): share of its samples (children included)"
    perf report -i "$f" --children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9.]+%' |
      grep -E 'admission\.\(\*Handler\)\.(ServeHTTP|respond)|encoding/json.Unmarshal |serverHandshake |Decider\)\.Decide|gcBgMarkWorker|finish_task_switch' | awk '{print "  " $1 " " $4}' | head -12 || true
  done
fi

echo "== heap: 10 000 cached verdicts"
go test -run '^$' -bench '^BenchmarkCacheHeap$' -benchtime 1x ./pkg/admission | grep -E 'Benchmark|ok'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); logs in $work"
