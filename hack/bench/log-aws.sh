#!/usr/bin/env bash
# Usage: hack/bench/log-aws.sh [N] [WRITERS]
#
# Appends/s of two `stepseal log serve` replicas on Tessera's AWS driver
# (a private MariaDB and SeaweedFS, as in TestLogReplicasAWS) against one
# replica on the POSIX driver, in one run on this host: N (default 2000)
# signed documents per target from WRITERS (default 128) concurrent
# writers, every answer verified. Prints appends/s, p50/p99 latency, the
# CPU time per append of the replicas and of MariaDB + SeaweedFS (from
# /proc), and the load average. Needs hack/install-test-deps.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
STEPSEAL_BENCH_AWS="${1:-2000}" STEPSEAL_BENCH_WRITERS="${2:-128}" \
  go test -count=1 -timeout 60m -run '^TestBenchReplicasAWS$' -v ./pkg/logserver/awslog | grep -E '^BENCH|^(ok|FAIL|---)'
