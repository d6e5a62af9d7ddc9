#!/bin/bash
# fuzz/run.sh - build and run every tests/fuzz/fuzz_*.c harness with
# libFuzzer + ASan/UBSan (clang from Debian) for a bounded time each.
#
#   FUZZ_SECONDS   time per harness (default 30)
#   FUZZ_ONLY      run only these names (space separated, e.g. "smtp data")
#
# The proxy sources (all of proxy/*.c and proxy/checks/*.c but the two
# mains) are compiled once with -fsanitize=fuzzer-no-link,address,undefined
# into build/fuzz/libmailmoat.a; each harness links what it needs from it.
# A harness NAME (tests/fuzz/fuzz_NAME.c) starts from tests/fuzz/seeds/NAME/
# and tests/fuzz/corpus/NAME/ (the minimized corpus of the long campaigns,
# bench/fuzz-campaign.sh; both are replayed first, so committed crash seeds
# are regression tests),
# keeps what it finds in build/fuzz/corpus/NAME/, and on a crash leaves the
# input in tests/fuzz/crashes/NAME-* and prints "not ok - fuzz:NAME".
set -u
cd "$(dirname "$0")/../.."
SECS=${FUZZ_SECONDS:-30}
OUT=build/fuzz
LOGS=build/test-logs
mkdir -p "$OUT/obj" "$LOGS" tests/fuzz/crashes
CC=${FUZZ_CC:-clang}
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-g -O1 -std=c11 -Iproxy -Ibuild/spf2-host/include -D_GNU_SOURCE"

if ! command -v "$CC" >/dev/null; then
	echo "not ok - fuzz: $CC not installed"
	exit 1
fi

# The library: a source that does not build is skipped (and named), so
# one engineer's work in progress does not stop the other harnesses.
objs=()
for src in proxy/*.c proxy/checks/*.c; do
	case $src in proxy/main.c|proxy/mailmoatctl.c) continue ;; esac
	[ -f "$src" ] || continue
	obj=$OUT/obj/${src//\//_}
	obj=${obj%.c}.o
	if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ proxy/proxy.h -nt "$obj" ] ||
	   [ proxy/checks/check.h -nt "$obj" ]; then
		if ! $CC $CFLAGS $SAN -fsanitize=fuzzer-no-link -c "$src" -o "$obj" \
			2>"$LOGS/fuzz-build-$(basename "$src" .c).log"; then
			echo "# fuzz: $src does not build with clang, left out" \
			     "(see $LOGS/fuzz-build-$(basename "$src" .c).log)"
			rm -f "$obj"
			continue
		fi
	fi
	objs+=("$obj")
done
rm -f "$OUT/libmailmoat.a"
ar rcs "$OUT/libmailmoat.a" "${objs[@]}"

LIBS="-luv -lcares -lmbedtls -lmbedx509 -lmbedcrypto -lpthread -lm -lresolv"
[ -f build/spf2-host/lib/libspf2.a ] && LIBS="build/spf2-host/lib/libspf2.a $LIBS"

status=0
for h in tests/fuzz/fuzz_*.c; do
	[ -f "$h" ] || continue
	name=$(basename "$h" .c)
	name=${name#fuzz_}
	if [ -n "${FUZZ_ONLY:-}" ] && [[ " $FUZZ_ONLY " != *" $name "* ]]; then
		continue
	fi
	bin=$OUT/fuzz_$name
	log=$LOGS/fuzz-$name.log
	if ! $CC $CFLAGS $SAN -fsanitize=fuzzer "$h" "$OUT/libmailmoat.a" \
		$LIBS -o "$bin" >"$log" 2>&1; then
		echo "not ok - fuzz:$name (does not build, see $log)"
		status=1
		continue
	fi
	seeds=tests/fuzz/seeds/$name
	corpus=$OUT/corpus/$name
	kept=tests/fuzz/corpus/$name
	mkdir -p "$seeds" "$corpus"
	[ -d "$kept" ] || kept=
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1 \
	"$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
		-max_len="${FUZZ_MAX_LEN:-8192}" -print_final_stats=1 \
		-artifact_prefix="tests/fuzz/crashes/$name-" \
		"$corpus" "$seeds" ${kept:+"$kept"} >"$log" 2>&1
	rc=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	if [ "$rc" = 0 ]; then
		echo "ok - fuzz:$name (${runs:-?} runs in ${SECS}s)"
	else
		crash=$(grep -o "tests/fuzz/crashes/$name-[^ ]*" "$log" | tail -1)
		echo "not ok - fuzz:$name (exit $rc, input ${crash:-?}, see $log)"
		status=1
	fi
done
exit $status
