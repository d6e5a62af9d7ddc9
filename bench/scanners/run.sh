#!/bin/sh
# bench/scanners/run.sh - clamd's cost in front of smtp-sink (issue 9):
# latency at the dot and throughput with and without a scanner.
set -u
cd "$(dirname "$0")/../.."
[ -x build/host/mailmoat ] || make -s all >/dev/null || exit 1
exec /usr/bin/python3 bench/scanners/bench_scanners.py "$@"
