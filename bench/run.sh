#!/bin/sh
# run.sh - mailmoat's benchmarks (by hand, not part of make test):
#   bench/run.sh                      throughput, memory, callgrind
#   bench/run.sh throughput           just one of them
#   bench/run.sh --msgs-5k 2000 ...   see bench/bench.py --help
# Needs build/host/mailmoat (make), Postfix's smtp-source/smtp-sink and
# valgrind (tools/packages/integ.list).  Results: printed, and raw JSON in
# build/bench-results.json; bench/RESULTS.md holds the recorded figures.
cd "$(dirname "$0")/.." || exit 1
[ -x build/host/mailmoat ] || { echo "run make first" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
exec /usr/bin/python3 bench/bench.py "$@"
