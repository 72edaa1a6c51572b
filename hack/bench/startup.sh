#!/usr/bin/env bash
# CLI start-up benchmark: what every `stepseal` start costs before it does
# anything, for the binary of a git ref ($BEFORE, default main) and of the
# working tree, measured side by side in the same run:
#   - binary size, package initialisers and their total init time
#     (GODEBUG=inittrace=1)
#   - `stepseal --help`: wall time (hyperfine if installed, else a loop) and
#     peak RSS (GNU time), median of $RUNS interleaved runs (default 30)
#   - `stepseal verify` of a small chain ($STEPS steps x $ARTIFACTS
#     artifacts, default 5 x 10, made by hack/bench/genchain): the same
#   - `stepseal layout create` of examples/go-build: where a ref has
#     stepseal-tekton, this is the handover (stepseal execs stepseal-tekton)
# Both binaries are built here from clean sources (git archive of $BEFORE,
# the working tree for "after"); the build cache makes the second build fast.
# The load average is printed: on a shared host other work adds to every figure.
set -euo pipefail
cd "$(dirname "$0")/../.."

BEFORE=${BEFORE:-main}
RUNS=${RUNS:-30}
STEPS=${STEPS:-5}
ARTIFACTS=${ARTIFACTS:-10}
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "GNU time is needed for peak RSS: apt-get install -y time" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# build DIR SRC: the CLI of source tree SRC into DIR (and stepseal-tekton
# when SRC has it).
build() {
	local out=$1 src=$2 pkgs=(./images/stepseal)
	mkdir -p "$out"
	[ -d "$src/images/stepseal-tekton" ] && pkgs+=(./images/stepseal-tekton)
	(cd "$src" && go build -o "$out/" "${pkgs[@]}")
}
echo "== building $BEFORE ($(git rev-parse --short "$BEFORE")) and the working tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . || echo ', modified'))"
mkdir -p "$work/src-before"
git archive "$BEFORE" | tar -x -C "$work/src-before"
build "$work/before" "$work/src-before"
build "$work/after" "$PWD"
B="$work/before/stepseal"
A="$work/after/stepseal"

go build -o "$work/genchain" ./hack/bench/genchain
"$work/genchain" -out "$work/chain" -steps "$STEPS" -artifacts "$ARTIFACTS" >/dev/null
verify_args=(verify --layout "$work/chain/root.layout" --layout-key "$work/chain/owner.pub" --links "$work/chain/links")
# examples/go-build's Functionaries file with a public key per functionary.
for n in owner fetcher tester builder packager; do
	"$A" keys generate --out "$work" --name "$n" >/dev/null
done
sed -E 's|^  - name: (.*)$|  - name: \1\n    publicKey: \1.pub|' examples/go-build/functionaries.yaml >"$work/functionaries.yaml"
layout_args=(layout create --pipeline examples/go-build/pipeline.yaml --tasks examples/go-build/tasks
	--functionaries "$work/functionaries.yaml" --owner-key "$work/owner.key" --force)
for bin in "$B" "$A"; do
	"$bin" "${verify_args[@]}" >/dev/null || { echo "FAIL: $bin verify does not pass the generated chain" >&2; exit 1; }
	"$bin" "${layout_args[@]}" --out "$work/root.layout" >/dev/null || { echo "FAIL: $bin layout create" >&2; exit 1; }
done

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
inits() { GODEBUG=inittrace=1 "$1" --help 2>&1 >/dev/null | awk '/^init /{n++; ms+=$5} END {printf "%d inits, %.1f ms", n, ms}'; }
size() { awk -v b="$(stat -c %s "$1")" 'BEGIN {printf "%.1f MB", b / 1e6}'; }

# rss NAME ARGS...: median peak RSS (MiB) of RUNS runs of both binaries,
# interleaved. Prints "before after".
rss() {
	local i b
	: >"$work/rss.before"
	: >"$work/rss.after"
	for i in $(seq "$RUNS"); do
		for b in before after; do
			"$TIME" -f %M -o "$work/t" "$work/$b/stepseal" "$@" >/dev/null 2>&1 || true
			tail -1 "$work/t" >>"$work/rss.$b"
		done
	done
	echo "$(($(median <"$work/rss.before") / 1024)) $(($(median <"$work/rss.after") / 1024))"
}

# wall ARGS...: median wall time (ms) of both binaries. Prints "before after".
wall() {
	if command -v hyperfine >/dev/null; then
		hyperfine -N --style none --warmup 3 --runs "$RUNS" --export-json "$work/h.json" \
			"$(printf '%q ' "$B" "$@")" "$(printf '%q ' "$A" "$@")" >/dev/null 2>&1
		python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(" ".join("%.1f" % (x["median"]*1000) for x in r))' "$work/h.json"
		return
	fi
	local i b s e
	: >"$work/ms.before"
	: >"$work/ms.after"
	for i in $(seq "$RUNS"); do
		for b in before after; do
			s=$(date +%s%N)
			"$work/$b/stepseal" "$@" >/dev/null 2>&1 || true
			e=$(date +%s%N)
			echo $(((e - s) / 1000)) >>"$work/ms.$b"
		done
	done
	awk -v b="$(median <"$work/ms.before")" -v a="$(median <"$work/ms.after")" 'BEGIN {printf "%.1f %.1f\n", b / 1000, a / 1000}'
}

echo "== measuring ($RUNS runs each, interleaved; nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg); timer: $(command -v hyperfine >/dev/null && hyperfine --version || echo 'date loop'))"
read -r help_b help_a < <(wall --help)
read -r helprss_b helprss_a < <(rss --help)
read -r ver_b ver_a < <(wall "${verify_args[@]}")
read -r verrss_b verrss_a < <(rss "${verify_args[@]}")
read -r lay_b lay_a < <(wall "${layout_args[@]}" --out "$work/root.layout")
read -r layrss_b layrss_a < <(rss "${layout_args[@]}" --out "$work/root.layout")
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

tekton_size="-"
[ -x "$work/after/stepseal-tekton" ] && tekton_size="$(size "$work/after/stepseal-tekton") (stepseal-tekton)"
echo
printf '| %s | %s | %s |\n' "stepseal" "before ($BEFORE)" "after (working tree)"
printf '|---|---|---|\n'
printf '| %s | %s | %s |\n' "binary" "$(size "$B")" "$(size "$A"); $tekton_size"
printf '| %s | %s | %s |\n' "package inits (\`--help\`)" "$(inits "$B")" "$(inits "$A")"
printf '| %s | %s ms, %s MiB | %s ms, %s MiB |\n' "\`--help\`: wall, peak RSS" "$help_b" "$helprss_b" "$help_a" "$helprss_a"
printf '| %s | %s ms, %s MiB | %s ms, %s MiB |\n' "\`verify\` ${STEPS}x${ARTIFACTS} chain: wall, peak RSS" "$ver_b" "$verrss_b" "$ver_a" "$verrss_a"
printf '| %s | %s ms, %s MiB | %s ms, %s MiB |\n' "\`layout create\` (go-build): wall, peak RSS" "$lay_b" "$layrss_b" "$lay_a" "$layrss_a"
