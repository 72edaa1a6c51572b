#!/usr/bin/env bash
# Runs every Fuzz target in the module for the given time each (default 10s).
#
# A target fails the run when the fuzzer found a failing input (it writes it
# to testdata/fuzz/<target>/ and says "Failing input written"). Go 1.26's
# fuzz coordinator can also fail a target with a bare "context deadline
# exceeded" at the -fuzztime boundary without finding anything — a race in
# the coordinator itself (golang/go#75804, fixed in Go 1.27). That case is
# reported as a flake, not a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
t="${1:-10s}"
failed=0 flaked=0 passed=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | awk '{print $2}' | sort -u); do
    echo "fuzz $pkg $f ($t)"
    out=$(go test -run='^$' -fuzz="^${f}\$" -fuzztime="$t" "$pkg" 2>&1)
    rc=$?
    if ((rc == 0)); then
      passed=$((passed + 1))
    elif grep -q "Failing input written" <<<"$out" || ! grep -q "context deadline exceeded" <<<"$out"; then
      echo "$out"
      echo "FAIL: $pkg $f"
      failed=$((failed + 1))
    else
      echo "$out" | tail -3
      echo "FLAKE (golang/go#75804, no failing input found): $pkg $f"
      flaked=$((flaked + 1))
    fi
  done
done
echo "fuzz: $passed passed, $failed failed, $flaked flaked"
((failed == 0))
