#!/usr/bin/env bash
# Local runner benchmark: what `stepseal run` adds to the steps it runs.
# A generated PipelineRun of $TASKS tasks (default 50) in a runAfter chain,
# every other task with two script steps (75 steps for 50 tasks), each step
# writing one small file to a shared emptyDir workspace, is run by
# `stepseal run` (load, layout, execute with a signed link per step, seal
# into the transparency log, verify) and, as the baseline, the same scripts
# are executed directly by `sh` in sequence into a plain directory. $RUNS
# interleaved repetitions of each (default 5); prints the wall time of
# every run, the medians, their ratio, the per-step overhead in ms (of the
# whole command, and of its execution phase alone, as `stepseal run`
# reports it: "pipeline … succeeded in …"), and the load average: on a
# shared host other work adds to every figure.
set -euo pipefail
cd "$(dirname "$0")/../.."

TASKS=${TASKS:-50}
RUNS=${RUNS:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== building bin/stepseal and bin/stepseal-tekton ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo ', modified'))"
mkdir -p bin
go build -o bin/ ./images/stepseal ./images/stepseal-tekton

# The step's script; $1 is the workspace directory, $2 the task, $3 the step.
script() {
	printf 'echo "%s %s" > %s/%s-%s.txt\ncat %s/%s-%s.txt | tr a-z A-Z | sha256sum | cut -c1-16 >> %s/%s-%s.txt\n' \
		"$2" "$3" "$1" "$2" "$3" "$1" "$2" "$3" "$1" "$2" "$3"
}

echo "== generating a PipelineRun of $TASKS tasks and its baseline scripts"
pr="$work/run/pipelinerun.yaml"
mkdir -p "$work/run" "$work/scripts"
steps=0
{
	echo "apiVersion: tekton.dev/v1"
	echo "kind: PipelineRun"
	echo "metadata:"
	echo "  name: bench-chain"
	echo "spec:"
	echo "  workspaces:"
	echo "  - name: shared"
	echo "    emptyDir: {}"
	echo "  pipelineSpec:"
	echo "    workspaces:"
	echo "    - name: shared"
	echo "    tasks:"
	for i in $(seq -w 1 "$TASKS"); do
		echo "    - name: t$i"
		[ -z "${prev:-}" ] || echo "      runAfter: [t$prev]"
		echo "      workspaces:"
		echo "      - name: ws"
		echo "        workspace: shared"
		echo "      taskSpec:"
		echo "        workspaces:"
		echo "        - name: ws"
		echo "        steps:"
		n=1
		[ $((10#$i % 2)) -eq 0 ] && n=2
		for s in $(seq 1 "$n"); do
			echo "        - name: s$s"
			echo "          image: docker.io/library/busybox:1.36"
			echo "          script: |"
			script '$(workspaces.ws.path)' "t$i" "s$s" | sed 's/^/            /'
			script '"$WS"' "t$i" "s$s" >"$work/scripts/t$i-s$s.sh"
			steps=$((steps + 1))
		done
		prev=$i
	done
} >"$pr"
cat >"$work/run/functionaries.yaml" <<'EOF'
apiVersion: stepseal.dev/v1alpha1
kind: Functionaries
metadata:
  name: bench
spec:
  functionaries:
  - name: builder
  steps:
  - match: "*"
    functionaries: [builder]
EOF
for n in owner publisher builder; do
	bin/stepseal keys generate --out "$work/keys" --name "$n" >/dev/null
done
echo "$TASKS tasks, $steps steps"

# Checks once that both produce the same files; this run's progress lines
# are timestamped (ms since start) for the phase breakdown below.
now() { echo "${EPOCHREALTIME/./}"; } # µs, without a fork
start=$(now)
bin/stepseal run "$pr" --keys "$work/keys" --out "$work/check" 2>&1 |
	while IFS= read -r l; do echo "$((($(now) - start) / 1000)) $l"; done >"$work/check.log" ||
	{ cat "$work/check.log"; echo "FAIL: stepseal run of the generated pipeline" >&2; exit 1; }
total=$((($(now) - start) / 1000))
grep -q "VERIFICATION PASSED" "$work/check.log" || { cat "$work/check.log"; echo "FAIL: not verified" >&2; exit 1; }
at() { awk -v p="$1" 'index($0, p) {print $1; exit}' "$work/check.log"; }
t1=$(at "stepseal: running pipeline")
t2=$(at "pipeline bench-chain succeeded")
t3=$(at "transparency log ")
t4=$(at "verifying ")
echo "phases of one run (ms): start, load, keys, layout $t1; execute $((t2 - t1)) ($steps steps, a signed link each);" \
	"seal into the transparency log $((t3 - t2)); verify $((total - t4)); total $total"
mkdir -p "$work/base"
for f in "$work"/scripts/*.sh; do WS="$work/base" sh -e "$f"; done
diff -r "$work/check/work/workspaces/shared" "$work/base" >/dev/null ||
	{ echo "FAIL: stepseal run and the baseline wrote different files" >&2; exit 1; }

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }

echo "== timing $RUNS interleaved runs each (wall clock, ms; nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg))"
: >"$work/ours.ms"
: >"$work/exec.ms"
: >"$work/base.ms"
for r in $(seq "$RUNS"); do
	rm -rf "$work/out" "$work/base"
	s=$(date +%s%N)
	bin/stepseal run "$pr" --keys "$work/keys" --out "$work/out" -q >"$work/run.log" 2>&1 || { cat "$work/run.log"; exit 1; }
	ms "$s" >>"$work/ours.ms"
	# The execution phase as stepseal reports it ("succeeded in 1.234s" or "in 870ms").
	sed -n 's/.*pipeline bench-chain succeeded in \([0-9.]*\)\(m\{0,1\}s\).*/\1 \2/p' "$work/run.log" |
		awk '{printf "%d\n", ($2 == "s" ? $1 * 1000 : $1)}' >>"$work/exec.ms"
	mkdir -p "$work/base"
	s=$(date +%s%N)
	for f in "$work"/scripts/*.sh; do WS="$work/base" sh -e "$f"; done
	ms "$s" >>"$work/base.ms"
done
o=$(median <"$work/ours.ms")
x=$(median <"$work/exec.ms")
b=$(median <"$work/base.ms")
echo "stepseal run:          median ${o} ms  (runs: $(tr '\n' ' ' <"$work/ours.ms"))"
echo "  its execution phase: median ${x} ms  (runs: $(tr '\n' ' ' <"$work/exec.ms"))"
echo "sh, in sequence:       median ${b} ms  (runs: $(tr '\n' ' ' <"$work/base.ms"))"
awk -v o="$o" -v x="$x" -v b="$b" -v n="$steps" 'BEGIN {
	printf "ratio: stepseal run %.1fx the baseline (execution phase %.1fx)\n", o / (b > 0 ? b : 1), x / (b > 0 ? b : 1)
	printf "overhead per step: %.1f ms (execution phase: %.1f ms), %d steps\n", (o - b) / n, (x - b) / n, n
}'
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
