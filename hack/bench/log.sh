#!/usr/bin/env bash
# Usage: hack/bench/log.sh [N] [CLIENTS] [ANCHOR_N]
#
# Benchmarks `stepseal log serve` and, in the same run, Tessera's POSIX
# conformance server (the anchor, built from the tessera version in go.mod):
#
#   1. stepseal: N (default 100000) signed DSSE provenance documents of about
#      1 KiB (3 subjects: a unique artifact, one of 100 shared base images,
#      and a run ID shared by 6) appended by CLIENTS (default 256) concurrent
#      HTTP writers on loopback; every answer's checkpoint signature,
#      consistency and inclusion proof is verified by the writer
#      (hack/bench/logload). Then 2000 searches (half a popular subject,
#      half a unique one; first page of 20, every result's proof verified):
#      p50/p99. Server peak RSS (VmHWM).
#   2. Restart time: SIGTERM, then start again until it serves; SIGKILL
#      during a burst of appends, then start again (catch-up from the
#      watermark); index.db deleted, then start again (the whole index
#      rebuilt from the log).
#      The server's CPU time (user + system, from /proc) per append is
#      printed too: it depends much less on the host's load than the rate.
#   3. The anchor with ANCHOR_N (default N) entries: "tessera" is POST /add
#      answering once the entry is sequenced (its published figure's
#      meaning); "tessera-proof" then waits for a checkpoint covering it and
#      verifies its inclusion from the served tiles (what a stepseal answer
#      carries). ANCHOR_N=0 skips it.
#
# BEFORE=<commit> also runs step 1 with `stepseal` built from that commit
# (before the current one, on a fresh directory), so a change is compared
# within one run on the same loaded host.
#
# Output: one JSON line per measurement, and a summary at the end.
set -euo pipefail

N="${1:-100000}"
CLIENTS="${2:-256}"
ANCHOR_N="${3:-$N}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d)"
PORT="${PORT:-18480}"
URL="http://127.0.0.1:$PORT/"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "building into $WORK" >&2
(cd "$ROOT" && go build -o "$WORK/stepseal" ./images/stepseal && go build -o "$WORK/logload" ./hack/bench/logload)
if [ -n "${BEFORE:-}" ]; then
  echo "building stepseal at $BEFORE" >&2
  mkdir -p "$WORK/before-src"
  (cd "$ROOT" && git archive "$BEFORE" | tar -x -C "$WORK/before-src")
  (cd "$WORK/before-src" && go build -o "$WORK/stepseal-before" ./images/stepseal)
fi
"$WORK/stepseal" keys generate --out "$WORK/keys" --name writer >/dev/null

BIN="$WORK/stepseal"
start_server() { # DIR LOGFILE
  "$BIN" log serve "$1" --allow "$WORK/keys/writer.pub" --addr "127.0.0.1:$PORT" --origin bench.stepseal.test/log 2>"$2" &
  SERVER=$!
  PIDS+=("$SERVER")
}

# wait_serving LOGFILE: until the server prints that it serves; prints ms.
wait_serving() {
  local t0 t1
  t0=$(date +%s%N)
  until grep -q '^serving' "$1" 2>/dev/null; do
    kill -0 "$SERVER" 2>/dev/null || { cat "$1" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s%N)
  echo $(((t1 - t0) / 1000000))
}

# cpu_ms PID: user + system CPU time of a process so far, in ms.
cpu_ms() {
  awk -v t="$(getconf CLK_TCK)" '{print int(($14 + $15) * 1000 / t)}' "/proc/$1/stat"
}

# appends LABEL DATA: the append and search measurement against a fresh
# server in DATA, which is left running.
appends() {
  start_server "$2" "$WORK/serve-$1.log"
  wait_serving "$WORK/serve-$1.log" >/dev/null
  echo "$1: appending $N documents with $CLIENTS writers" >&2
  local c0 c1
  c0=$(cpu_ms "$SERVER")
  "$WORK/logload" -server "$URL" -log-key "$2/log.pub" -writer-key "$WORK/keys/writer.key" -n "$N" -c "$CLIENTS" -searches 0 -prefix "$1" | sed "s/^{/{\"run\":\"$1\",/"
  c1=$(cpu_ms "$SERVER")
  echo "{\"run\":\"$1\",\"serverCPUms\":$((c1 - c0)),\"serverCPUmsPerAppend\":$(awk -v c=$((c1 - c0)) -v n="$N" 'BEGIN {printf "%.3f", c / n}'),\"load\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}"
}

if [ -n "${BEFORE:-}" ]; then
  BIN="$WORK/stepseal-before"
  appends before "$WORK/data-before"
  kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true
  BIN="$WORK/stepseal"
fi
DATA="$WORK/data"
appends stepseal "$DATA"
"$WORK/logload" -server "$URL" -log-key "$DATA/log.pub" -writer-key "$WORK/keys/writer.key" -n "$N" -c "$CLIENTS" -searches 2000 -prefix stepseal -mode search | tee "$WORK/ours.json"
RSS=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
echo "{\"serverPeakRSSKiB\":$RSS,\"entries\":$N}"
INDEX_KIB=$(du -k "$DATA/index.db" | cut -f1)
LOG_KIB=$(du -sk "$DATA/log" | cut -f1)
echo "{\"indexKiB\":$INDEX_KIB,\"logKiB\":$LOG_KIB}"

kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true
start_server "$DATA" "$WORK/serve2.log"
MS=$(wait_serving "$WORK/serve2.log")
echo "{\"restartAfterSIGTERMms\":$MS,\"entries\":$N}"

# SIGKILL during a burst, then catch up.
"$WORK/logload" -server "$URL" -log-key "$DATA/log.pub" -writer-key "$WORK/keys/writer.key" -n 5000 -c "$CLIENTS" -searches 0 -prefix burst >/dev/null 2>&1 &
LOAD=$!
sleep 3
kill -KILL "$SERVER"; wait "$SERVER" 2>/dev/null || true
wait "$LOAD" 2>/dev/null || true
start_server "$DATA" "$WORK/serve3.log"
MS=$(wait_serving "$WORK/serve3.log")
echo "{\"restartAfterSIGKILLms\":$MS}"

kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true
rm -f "$DATA/index.db"
start_server "$DATA" "$WORK/serve4.log"
MS=$(wait_serving "$WORK/serve4.log")
RSS=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
echo "{\"indexRebuiltFromLogms\":$MS,\"peakRSSKiB\":$RSS}"
kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true

if [ "$ANCHOR_N" -gt 0 ]; then
  echo "anchor: building Tessera's POSIX conformance server" >&2
  TV=$(cd "$ROOT" && go list -m -f '{{.Version}}' github.com/transparency-dev/tessera)
  mkdir -p "$WORK/anchor" && (cd "$WORK/anchor" && go mod init anchor >/dev/null 2>&1 &&
    GOFLAGS=-mod=mod go get "github.com/transparency-dev/tessera@$TV" >/dev/null 2>&1 &&
    GOFLAGS=-mod=mod go build -o "$WORK/tessera-posix" github.com/transparency-dev/tessera/cmd/conformance/posix)
  for MODE in tessera tessera-proof; do
    rm -rf "$WORK/tess"
    "$WORK/tessera-posix" --storage_dir="$WORK/tess" --listen="127.0.0.1:$PORT" --private_key="$DATA/log.key" 2>"$WORK/tess.log" &
    SERVER=$!
    PIDS+=("$SERVER")
    until curl -s -o /dev/null "$URL/checkpoint"; do sleep 0.05; done
    "$WORK/logload" -mode "$MODE" -server "$URL" -log-key "$DATA/log.pub" -n "$ANCHOR_N" -c "$CLIENTS" -prefix "$MODE"
    RSS=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
    echo "{\"anchor\":\"$MODE\",\"serverPeakRSSKiB\":$RSS}"
    kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true
  done
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs" >&2
