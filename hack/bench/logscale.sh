#!/usr/bin/env bash
# Usage: hack/bench/logscale.sh [N]
#
# The served log at N entries (default 1000000), what `make bench` runs:
#
#   1. A fixture of N signed DSSE provenance documents (hack/bench/logfixture:
#      appended in-process through logserver.Server.Add with large Tessera
#      batches; real signatures, tiles, checkpoints and index). Building a
#      million takes long: FIXTURE=DIR keeps it in DIR and reuses it on the
#      next run when it holds at least N entries (the later steps append a
#      burst and rebuild the index, both harmless to a reuse).
#   2. `stepseal log serve` opens it unchanged; 2000 searches (half one of
#      100 popular subjects, half a unique one; first page of 20, every
#      proof verified, every answer checked complete: a unique subject is
#      exactly its document, a popular one a full page; then three popular
#      subjects read to the last page): p50/p99. Server peak RSS (VmHWM).
#   3. Restart to serving after SIGTERM; after SIGKILL during a burst of
#      appends (catch-up from the watermark); with index.db deleted (the
#      whole index rebuilt from the log), and its peak RSS.
#
# MEMLIMIT=256M runs every `log serve` in a memory cgroup of its own with
# that limit (what a container's memory limit is: page cache of the mapped
# index counted, and reclaimed before the process is killed) and reports
# the cgroup's peak usage, how often it hit the limit and whether the
# kernel killed the server. Needs root and a writable memory cgroup (v1 or
# v2).
#
# Output: one JSON line per measurement, and a summary at the end, with the
# load average beside it.
set -euo pipefail

N="${1:-1000000}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d)"
PORT="${PORT:-18481}"
URL="http://127.0.0.1:$PORT/"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "building into $WORK" >&2
(cd "$ROOT" && go build -o "$WORK/stepseal" ./images/stepseal && go build -o "$WORK/logload" ./hack/bench/logload &&
  go build -o "$WORK/logfixture" ./hack/bench/logfixture)

DATA="${FIXTURE:-$WORK/data}"
KEYS="$DATA.keys"
mkdir -p "$DATA"
if [ ! -f "$KEYS/writer.key" ]; then
  "$WORK/stepseal" keys generate --out "$KEYS" --name writer >/dev/null
fi
size() { [ -f "$DATA/log/checkpoint" ] && sed -n 2p "$DATA/log/checkpoint" || echo 0; }
if [ "$(size)" -ge "$N" ]; then
  echo "fixture: reusing $DATA ($(size) entries)" >&2
else
  echo "fixture: building $N documents in $DATA (load $(load))" >&2
  "$WORK/logfixture" -dir "$DATA" -n "$N" -writer-key "$KEYS/writer.key" -allow "$KEYS/writer.pub" -prefix fixture | tee "$WORK/fixture.json"
fi
SIZE=$(size)

CG=""
if [ -n "${MEMLIMIT:-}" ]; then
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then # v2
    CG="/sys/fs/cgroup$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)/stepseal-logscale-$$"
    mkdir "$CG" && echo "$MEMLIMIT" >"$CG/memory.max"
  else # v1
    CG="/sys/fs/cgroup/memory$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)/stepseal-logscale-$$"
    mkdir "$CG" && echo "$MEMLIMIT" >"$CG/memory.limit_in_bytes"
  fi
  echo "memory limit $MEMLIMIT: cgroup $CG" >&2
  # Page cache is charged to the cgroup that first read it: drop the
  # fixture's pages (read by the builder, outside), so the server's reads
  # of the index and log count against its limit.
  sync
  echo 1 >/proc/sys/vm/drop_caches 2>/dev/null || echo "warning: could not drop the page cache; pages read before the server started are not charged to its cgroup" >&2
fi
cleanup_cg() { [ -z "$CG" ] || { sleep 1; rmdir "$CG" 2>/dev/null || true; }; }
trap 'cleanup; cleanup_cg' EXIT
# cg_stats: the cgroup's peak usage, limit hits and OOM kills, as JSON fields.
cg_stats() {
  if [ -f "$CG/memory.peak" ]; then
    echo "\"cgroupPeakKiB\":$(($(cat "$CG/memory.peak") / 1024)),\"cgroupMaxEvents\":$(awk '$1 == "max" {print $2}' "$CG/memory.events"),\"oomKills\":$(awk '$1 == "oom_kill" {print $2}' "$CG/memory.events")"
  else
    echo "\"cgroupPeakKiB\":$(($(cat "$CG/memory.max_usage_in_bytes") / 1024)),\"cgroupLimitHits\":$(cat "$CG/memory.failcnt"),\"oomKills\":$(awk '$1 == "oom_kill" {k = $2} END {print k + 0}' "$CG/memory.oom_control")"
  fi
}

start_server() { # LOGFILE
  if [ -n "$CG" ]; then
    sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$CG" \
      "$WORK/stepseal" log serve "$DATA" --allow "$KEYS/writer.pub" --addr "127.0.0.1:$PORT" 2>"$1" &
  else
    "$WORK/stepseal" log serve "$DATA" --allow "$KEYS/writer.pub" --addr "127.0.0.1:$PORT" 2>"$1" &
  fi
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

# rss_parts PID: the process's resident memory now, anonymous (heap,
# stacks) and file-backed (mapped files: the index), as JSON fields.
rss_parts() {
  awk '/RssAnon/ {a=$2} /RssFile/ {f=$2} END {printf "\"rssAnonKiB\":%d,\"rssFileKiB\":%d", a, f}' "/proc/$1/status"
}

start_server "$WORK/serve1.log"
MS=$(wait_serving "$WORK/serve1.log")
echo "{\"openFixtureMs\":$MS,\"entries\":$SIZE,\"load\":\"$(load)\"}"
"$WORK/logload" -server "$URL" -log-key "$DATA/log.pub" -writer-key "$KEYS/writer.key" -n "$N" -mode search -searches 2000 -prefix fixture |
  sed "s/}\$/,\"entries\":$SIZE,\"load\":\"$(load)\"}/" | tee "$WORK/search.json"
RSS=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
# The index is a memory-mapped file: its pages the searches touched count
# in RSS as file pages (page cache the kernel can reclaim), beside the heap.
echo "{\"serverPeakRSSKiB\":$RSS,$(rss_parts "$SERVER"),\"entries\":$SIZE}"
[ -z "$CG" ] || echo "{\"memoryLimit\":\"$MEMLIMIT\",$(cg_stats),\"serverAlive\":$(kill -0 "$SERVER" 2>/dev/null && echo true || echo false)}"
echo "{\"indexKiB\":$(du -k "$DATA/index.db" | cut -f1),\"logKiB\":$(du -sk "$DATA/log" | cut -f1)}"

kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true
start_server "$WORK/serve2.log"
MS_TERM=$(wait_serving "$WORK/serve2.log")
echo "{\"restartAfterSIGTERMms\":$MS_TERM,\"entries\":$SIZE,\"load\":\"$(load)\"}"

# SIGKILL during a burst of appends, then catch up from the watermark.
"$WORK/logload" -server "$URL" -log-key "$DATA/log.pub" -writer-key "$KEYS/writer.key" -n 5000 -c 256 -searches 0 -prefix "burst-$(date +%s)" >/dev/null 2>&1 &
LOAD=$!
sleep 3
kill -KILL "$SERVER"; wait "$SERVER" 2>/dev/null || true
wait "$LOAD" 2>/dev/null || true
start_server "$WORK/serve3.log"
MS_KILL=$(wait_serving "$WORK/serve3.log")
echo "{\"restartAfterSIGKILLms\":$MS_KILL,\"entries\":$(size),\"load\":\"$(load)\"}"
# It serves: the searches again, fewer, every answer checked.
"$WORK/logload" -server "$URL" -log-key "$DATA/log.pub" -writer-key "$KEYS/writer.key" -n "$N" -mode search -searches 200 -prefix fixture >/dev/null

kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true
rm -f "$DATA/index.db"
start_server "$WORK/serve4.log"
MS_REBUILD=$(wait_serving "$WORK/serve4.log")
RSS_REBUILD=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER/status")
echo "{\"indexRebuiltFromLogms\":$MS_REBUILD,\"peakRSSKiB\":$RSS_REBUILD,$(rss_parts "$SERVER"),\"entries\":$(size),\"load\":\"$(load)\"}"
[ -z "$CG" ] || echo "{\"memoryLimit\":\"$MEMLIMIT\",$(cg_stats),\"afterRebuild\":true}"
"$WORK/logload" -server "$URL" -log-key "$DATA/log.pub" -writer-key "$KEYS/writer.key" -n "$N" -mode search -searches 200 -prefix fixture >/dev/null
kill -TERM "$SERVER"; wait "$SERVER" 2>/dev/null || true

P50=$(sed -n 's/.*"searchP50ms":\([0-9.]*\).*/\1/p' "$WORK/search.json")
P99=$(sed -n 's/.*"searchP99ms":\([0-9.]*\).*/\1/p' "$WORK/search.json")
cat >&2 <<SUMMARY
summary at $SIZE entries (load average $(load) on $(nproc) CPUs):
  search p50 / p99, every proof verified: $P50 / $P99 ms   (goal <= 5 / <= 50 ms)
  server peak RSS after the searches:    $((RSS / 1024)) MiB         (goal <= 256 MiB; file pages of the index included)
  restart to serving: SIGTERM $MS_TERM ms, SIGKILL mid-burst $MS_KILL ms   (goal <= 10 s)
  index rebuilt from the log on start:   $MS_REBUILD ms, peak RSS $((RSS_REBUILD / 1024)) MiB
SUMMARY
[ -z "$CG" ] || echo "  under a ${MEMLIMIT} memory cgroup: $(cg_stats)" >&2
