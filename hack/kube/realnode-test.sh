#!/usr/bin/env bash
# Usage: hack/kube/realnode-test.sh [DIR]      (make realnode)
#
# Builds what the real test node needs (hack/kube/build-node.sh: a no-op once
# cached), starts it in DIR (default: a new temporary directory) with
# hack/kube/node-up.sh, runs every TestRealNode* test with STEPSEAL_REALNODE=DIR,
# and always stops the node again (hack/kube/node-down.sh, which also checks
# the host is as before). Needs root.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
keep="${1:-}"
dir="${1:-$(mktemp -d "${TMPDIR:-/tmp}/stepseal-realnode.XXXXXX")}"

# One node per host: a second run waits for the first to stop its node.
exec 9>"${TMPDIR:-/tmp}/stepseal-realnode.lock"
flock 9

"$here/build-apiserver.sh" >/dev/null
"$here/build-etcd.sh" >/dev/null
"$here/build-node.sh"

# The packages with real-node tests.
cd "$root"
mapfile -t pkgs < <(git grep -l '^func TestRealNode' -- '*_test.go' | xargs -n1 dirname | sort -u | sed 's#^#./#')
((${#pkgs[@]})) || { echo "realnode-test: no TestRealNode tests found" >&2; exit 1; }

# A temporary DIR (containerd's images, logs) is removed when all went well.
trap 'rc=$?; "$here/node-down.sh" "$dir" || rc=1
if ((rc == 0)) && [[ -z "$keep" ]]; then rm -rf "$dir"; else echo "realnode-test: logs in $dir" >&2; fi
exit $rc' EXIT
"$here/node-up.sh" "$dir" >/dev/null
rc=0
STEPSEAL_REALNODE="$dir" go test -count=1 -timeout 25m -run '^TestRealNode' -v "${pkgs[@]}" >"$dir/go-test.log" 2>&1 || rc=$?
# The tests' own lines (not the controllers' logs); everything is in go-test.log.
grep -E '^(=== RUN|\s*--- |\s+\S+_test\.go:|PASS|FAIL|ok|panic)' "$dir/go-test.log" || true
((rc == 0)) || echo "realnode-test: tests failed; full output in $dir/go-test.log" >&2
exit "$rc"
