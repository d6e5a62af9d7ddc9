#!/bin/sh
# bench/dns/run.sh - the DNS benchmarks (by hand, not part of make test):
#   bench/dns/run.sh                 latency and rate
#   bench/dns/run.sh latency --delays 100 --zones 1 4 16
#   bench/dns/run.sh rate --sessions 4000 --conc 200
# Needs build/host/mailmoat (make), nsd, python3-dnslib, python3-aiosmtpd.
# Figures recorded in bench/dns/RESULTS.md.
cd "$(dirname "$0")/../.." || exit 1
[ -x build/host/mailmoat ] || { echo "run make first" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
exec /usr/bin/python3 bench/dns/dns_bench.py "$@"
