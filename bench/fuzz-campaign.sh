#!/bin/bash
# bench/fuzz-campaign.sh - long libFuzzer + ASan/UBSan campaigns over every
# parser (outside CI; CI keeps the short runs of tests/fuzz/run.sh).
#
#   FUZZ_RUNS      executions per harness (default 10000000)
#   FUZZ_END       epoch second by which the whole campaign must end
#                  (default: now + 2 h); each harness gets an equal share of
#                  what is left when it starts, so fast ones leave time to
#                  the slow ones
#   FUZZ_ONLY      harness names (space separated), default all
#   FUZZ_NOBUILD   set: run the binaries already in build/fuzz-campaign/bin
#                  (a second campaign running beside the first)
#
# Runs one harness at a time, under nice -n 19, single job, so a shared
# box keeps its CPU.  Each harness NAME starts from tests/fuzz/seeds/NAME
# and tests/fuzz/corpus/NAME (the kept, minimized corpus) and works in
# build/fuzz-campaign/work/NAME; at the end its corpus is minimized with
# -merge=1 back into tests/fuzz/corpus/NAME, kept under 1 MiB by
# bench/fuzz-shrink.sh (inputs cut shorter, merged again).  Crashes land in
# tests/fuzz/crashes/NAME-*.  A summary line per harness (executions,
# seconds, exec/s, corpus size, findings) goes to
# build/fuzz-campaign/summary.txt and stdout.
set -u
cd "$(dirname "$0")/.."
RUNS=${FUZZ_RUNS:-10000000}
END=${FUZZ_END:-$(($(date +%s) + 7200))}
ALL="smtp data config dns spf spfdns dynamic tls"
ONLY=${FUZZ_ONLY:-$ALL}
C=build/fuzz-campaign
mkdir -p "$C/bin" "$C/work" "$C/logs" tests/fuzz/crashes
SUM=$C/summary.txt

# Build: tests/fuzz/run.sh builds the proxy library and every harness
# (one second of fuzzing each); fuzz_tls as tests/tls/run.sh builds it.
# The binaries are copied so a later rebuild does not change a running one.
build() {
	# (FUZZ_ONLY is this script's: run.sh is to build every harness)
	FUZZ_ONLY= FUZZ_SECONDS=1 FUZZ_MAX_LEN=64 tests/fuzz/run.sh \
		>"$C/logs/build.txt" 2>&1
	for n in smtp data config dns spf spfdns dynamic; do
		[ -x build/fuzz/fuzz_$n ] && cp build/fuzz/fuzz_$n "$C/bin/"
	done
	# The SPF harnesses against libspf2 built with coverage and ASan/UBSan
	# (tests/spf/run.sh makes build/spf2-asan), so the fuzzer sees libspf2's
	# branches too, not only spf.c's.
	asan=build/spf2-asan
	if [ -f "$asan/lib/libspf2.a" ]; then
		for n in spf spfdns; do
			clang -std=c11 -g -O1 -fsanitize=fuzzer,address,undefined \
				-fno-sanitize-recover=undefined -D_GNU_SOURCE -Iproxy \
				-I"$asan/include" -o "$C/bin/fuzz_$n" tests/fuzz/fuzz_$n.c \
				proxy/spf.c proxy/dns.c proxy/util.c \
				proxy/log.c tests/spf/stats_stub.c "$asan/lib/libspf2.a" \
				-lresolv -luv -lcares -lpthread \
				>"$C/logs/build-$n-asan.txt" 2>&1
		done
	fi
	clang -g -O1 -fsanitize=fuzzer,address,undefined -Iproxy -D_GNU_SOURCE \
		-o "$C/bin/fuzz_tls" tests/tls/fuzz_tls.c proxy/tls.c proxy/util.c \
		proxy/log.c -luv -lmbedtls -lmbedx509 -lmbedcrypto -lpthread \
		>"$C/logs/build-tls.txt" 2>&1
}
[ -n "${FUZZ_NOBUILD:-}" ] || build

seeds_of() {
	case $1 in
	tls) echo tests/tls/seeds ;;
	*) echo tests/fuzz/seeds/$1 ;;
	esac
}
maxlen_of() {
	case $1 in
	tls) echo 4096 ;;
	*) echo 8192 ;;
	esac
}

set -- $ONLY
left=$#
for n in "$@"; do
	bin=$C/bin/fuzz_$n
	if [ ! -x "$bin" ]; then
		echo "$n: not built (see $C/logs/)" | tee -a "$SUM"
		left=$((left - 1))
		continue
	fi
	now=$(date +%s)
	share=$(((END - now) / left))
	left=$((left - 1))
	[ "$share" -lt 30 ] && share=30
	work=$C/work/$n
	keep=tests/fuzz/corpus/$n
	mkdir -p "$work" "$keep"
	log=$C/logs/$n.log
	t0=$(date +%s)
	FUZZ_TLS_DIR=$C/work ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1 \
		nice -n 19 "$bin" -runs="$RUNS" -max_total_time="$share" \
		-timeout=10 -rss_limit_mb=2048 -max_len="$(maxlen_of "$n")" \
		-print_final_stats=1 -artifact_prefix="tests/fuzz/crashes/$n-" \
		"$work" "$keep" "$(seeds_of "$n")" >"$log" 2>&1
	rc=$?
	secs=$(($(date +%s) - t0))
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	crash=$(grep -o "tests/fuzz/crashes/$n-[^ ]*" "$log" | tail -1)
	# Minimize into the kept corpus (fresh directory, then swap).
	rm -rf "$keep.new"
	mkdir -p "$keep.new"
	FUZZ_TLS_DIR=$C/work nice -n 19 "$bin" -merge=1 -timeout=10 \
		-max_len="$(maxlen_of "$n")" "$keep.new" "$keep" "$work" \
		>"$C/logs/$n-merge.log" 2>&1 &&
		{ rm -rf "$keep" && mv "$keep.new" "$keep"; }
	rm -rf "$keep.new"
	FUZZ_TLS_DIR=$C/work bench/fuzz-shrink.sh "$n" "$bin" 1024
	files=$(find "$keep" -type f | wc -l)
	size=$(du -sk --apparent-size "$keep" | cut -f1)
	line="$n: ${execs:-?} executions in ${secs}s ($(( ${execs:-0} / (secs > 0 ? secs : 1) ))/s), exit $rc, corpus $files files ${size} KiB, findings: ${crash:-none}"
	echo "$line" | tee -a "$SUM"
done
