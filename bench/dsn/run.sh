#!/bin/bash
# bench/dsn/run.sh - build and run bench_dsn against the host build's
# libmailmoat.a: CPU per message and the scanner's heap, plus the
# instruction count per message under callgrind when valgrind is there.
#   bench/dsn/run.sh [REPEAT]   (default 10)
set -eu
cd "$(dirname "$0")/../.."
make -s -j2 build/host/libmailmoat.a
mkdir -p build/bench
cc -std=c11 -O2 -g -Iproxy -D_GNU_SOURCE -o build/bench/bench_dsn \
	bench/dsn/bench_dsn.c build/host/libmailmoat.a -luv -lm
CORPUS=${DSN_CORPUS:-/work/shared/data/dsn-bounces-sisimai}
build/bench/bench_dsn "$CORPUS" "${1:-10}"
/usr/bin/time -f "max RSS of the whole run: %M KiB (holds the 10 MB messages)" \
	build/bench/bench_dsn "$CORPUS" 1 >/dev/null
