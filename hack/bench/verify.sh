#!/usr/bin/env bash
# Verification benchmark: a layout of $STEPS steps (default 50) with
# $ARTIFACTS materials and products per step (default 1000), verified by
# `stepseal verify` and by in-toto-golang's `in-toto-golang verify` on the same
# files. Checks both verdicts agree (on the good chain and on a tampered
# copy), times $RUNS interleaved runs of each (default 7) and prints the
# medians and their ratio (goal: $GOAL times faster, default 20), and the
# medians of their CPU time. Before
# that, the CLI's start-up cost: binary size, package inits, and the median
# wall time and peak RSS of `stepseal --help` and of `stepseal verify`
# (GNU time, if installed).
set -euo pipefail
cd "$(dirname "$0")/../.."

STEPS=${STEPS:-50}
ARTIFACTS=${ARTIFACTS:-1000}
RUNS=${RUNS:-7}
GOAL=${GOAL:-20}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== generating $STEPS steps x $ARTIFACTS artifacts"
go build -o "$work/genchain" ./hack/bench/genchain
"$work/genchain" -out "$work/chain" -steps "$STEPS" -artifacts "$ARTIFACTS"
du -sh "$work/chain/links" | awk '{print "links: " $1}'

# Ours: the CLI if it builds, else the same engine through genchain -verify.
mkdir -p bin
if go build -o bin/ ./images/stepseal ./images/stepseal-tekton 2>"$work/build.log"; then
	ours() { bin/stepseal verify --layout "$1/root.layout" --layout-key "$1/owner.pub" --links "$1/links"; }
	echo "ours: bin/stepseal verify"
else
	echo "ours: the stepseal CLI does not build here (see below); timing hack/bench/genchain -verify, the same pkg/verify engine"
	sed 's/^/  /' "$work/build.log" | head -5
	ours() { "$work/genchain" -verify -out "$1"; }
fi

INTOTO=$(command -v in-toto-golang || true)
[ -n "$INTOTO" ] || INTOTO="$(go env GOPATH)/bin/in-toto-golang"
if [ ! -x "$INTOTO" ]; then
	echo "installing in-toto-golang v0.11.0"
	go install github.com/in-toto/in-toto-golang@v0.11.0
fi
theirs() { "$INTOTO" verify -l "$1/root.layout" -k "$1/owner.pub" -d "$1/links"; }
echo "in-toto-golang: $INTOTO"

verdict() { if "$@" >"$work/out.log" 2>&1; then echo pass; else echo fail; fi; }

echo "== verdicts"
a=$(verdict ours "$work/chain"); b=$(verdict theirs "$work/chain")
echo "good chain:     stepseal $a, in-toto-golang $b"
if [ "$a" != pass ] || [ "$b" != pass ]; then
	cat "$work/out.log"
	echo "FAIL: both must accept the generated chain" >&2
	exit 1
fi
cp -r "$work/chain" "$work/tampered"
mid=$(ls "$work/tampered/links" | sort | sed -n "$((STEPS / 2 + 1))p")
# Lengthen one digest of the middle link (still hex, no longer what was signed).
sed -i '0,/"sha256": "[0-9a-f]/s/"sha256": "\([0-9a-f]\)/"sha256": "\1\1/' "$work/tampered/links/$mid"
a=$(verdict ours "$work/tampered"); b=$(verdict theirs "$work/tampered")
echo "tampered $mid: stepseal $a, in-toto-golang $b"
if [ "$a" != fail ] || [ "$b" != fail ]; then
	echo "FAIL: both must reject the tampered chain" >&2
	exit 1
fi

# ms FILE CMD...: appends CMD's wall time (ms) to FILE.ms and its CPU time
# (user + system, ms; children included) to FILE.cpu.
ms() {
	local f=$1 TIMEFORMAT='%3R %3U %3S' r u s
	shift
	read -r r u s < <({ time "$@" >/dev/null 2>&1; } 2>&1)
	awk -v r="$r" 'BEGIN {printf "%d\n", r * 1000}' >>"$f.ms"
	awk -v u="$u" -v s="$s" 'BEGIN {printf "%d\n", (u + s) * 1000}' >>"$f.cpu"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

if [ -x bin/stepseal ] && command -v /usr/bin/time >/dev/null; then
	echo "== start-up of bin/stepseal ($RUNS runs each; median, range)"
	echo "binary: $(($(stat -c %s bin/stepseal) / 1000000)) MB, $(GODEBUG=inittrace=1 bin/stepseal --help 2>&1 >/dev/null | grep -c '^init ') package inits"
	startup() {
		local what=$1 i s e
		shift
		: >"$work/wall"
		: >"$work/rss"
		for i in $(seq "$RUNS"); do
			s=$(date +%s%N)
			/usr/bin/time -f %M -o "$work/t" "$@" >/dev/null 2>&1 || true
			e=$(date +%s%N)
			echo $(((e - s) / 1000000)) >>"$work/wall"
			tail -1 "$work/t" >>"$work/rss"
		done
		echo "$what: $(median <"$work/wall") ms ($(sort -n "$work/wall" | head -1)-$(sort -n "$work/wall" | tail -1)), peak RSS $(($(median <"$work/rss") / 1024)) MiB ($(($(sort -n "$work/rss" | head -1) / 1024))-$(($(sort -n "$work/rss" | tail -1) / 1024)))"
	}
	startup "stepseal --help " bin/stepseal --help
	startup "stepseal verify " bin/stepseal verify --layout "$work/chain/root.layout" --layout-key "$work/chain/owner.pub" --links "$work/chain/links"
fi

echo "== timing $RUNS interleaved runs each (wall clock, ms; nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg))"
: >"$work/ours.ms"
: >"$work/theirs.ms"
: >"$work/ours.cpu"
: >"$work/theirs.cpu"
for _ in $(seq "$RUNS"); do
	ms "$work/ours" ours "$work/chain"
	ms "$work/theirs" theirs "$work/chain"
done
o=$(median <"$work/ours.ms")
t=$(median <"$work/theirs.ms")
echo "stepseal verify:       median ${o} ms  (runs: $(tr '\n' ' ' <"$work/ours.ms"))"
echo "in-toto-golang verify: median ${t} ms  (runs: $(tr '\n' ' ' <"$work/theirs.ms"))"
# CPU time is less disturbed by other work on a shared host than wall time
# (but our verify runs on every core, theirs mostly on one).
oc=$(median <"$work/ours.cpu")
tc=$(median <"$work/theirs.cpu")
echo "CPU (user+sys): stepseal median ${oc} ms, in-toto-golang median ${tc} ms: $(awk -v o="$oc" -v t="$tc" 'BEGIN {printf "%.1f", t / (o > 0 ? o : 1)}')x less; load now $(cut -d' ' -f1-3 /proc/loadavg)"
awk -v o="$o" -v t="$t" -v g="$GOAL" 'BEGIN {
	r = t / (o > 0 ? o : 1)
	printf "ratio: %.1fx faster (goal >= %sx: %s)\n", r, g, (r >= g ? "met" : "NOT met")
}'
