#!/bin/bash
# bench/greylist/run.sh - the greylist on the store at 10k, 100k and 1M
# triplets (bench_greylist.c), then postgrey on the same triplets when it
# is installed (postgrey.py).  Results: bench/RESULTS.md "Greylist".
#   bench/greylist/run.sh [SIZES]   (default "10000 100000 1000000")
set -eu
cd "$(dirname "$0")/../.."
make -s -j2 build/host/libmailmoat.a
mkdir -p build/bench
cc -std=c11 -O2 -g -Iproxy -D_GNU_SOURCE -o build/bench/bench_greylist \
	bench/greylist/bench_greylist.c build/host/libmailmoat.a -luv -lm -lpthread
for n in ${1:-10000 100000 1000000}; do
	d=$(mktemp -d /tmp/bench_greylist.XXXXXX)
	build/bench/bench_greylist "$n" "$d" "$d/bench-triplets.list" 2>/dev/null
	if command -v postgrey >/dev/null; then
		/usr/bin/python3 bench/greylist/postgrey.py "$d/bench-triplets.list" || true
	fi
	rm -rf "$d"
done
