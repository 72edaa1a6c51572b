#!/usr/bin/env bash
# TUF client benchmark: a repository of $ROLES delegated roles (default
# 1000) of $TARGETS targets each (default 100: 100 000 targets), signed with
# ed25519, consistent snapshots, length and sha256 in snapshot and
# timestamp meta, served over loopback HTTP. Side by side, each in a process
# of its own: stepseal's client (pkg/trust) and go-tuf v2.4.2's plain
# updater, each a cold and a warm refresh with one lookup, and with a
# lookup in every role; and stepseal's full load (Refresh + LoadAll, as
# `trust status --all`). Prints wall time, refresh time, CPU time (user +
# sys), peak RSS, requests and bytes of each, lookup times, and the CPU
# ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROLES=${ROLES:-1000}
TARGETS=${TARGETS:-100}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/trustbench" ./hack/bench/trustbench
"$work/trustbench" -roles "$ROLES" -targets "$TARGETS"
