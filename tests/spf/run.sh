#!/bin/sh
# tests/spf/run.sh - the SPF suite.
#
#  1. spf:<scenario>/<test>  the RFC 7208 conformance suite (openspf/pyspf
#     rfc7208-tests.yml, 203 tests) through the project's SPF path:
#     spf_eval_start() with the patched libspf2 answered from dns.c (on a
#     small libuv loop, as in the daemon), against
#     a loopback DNS server serving each scenario's zone (spfsuite.py).
#     Passes when at least SPF_MIN_PASS (195) pass and every failure is
#     listed in xfail.txt.
#  2. spf:asan-rfc7208  the same 203 cases with libspf2, spf.c and the
#     driver built with ASan/UBSan (clang; libspf2 via firmware/libspf2.sh
#     EXTRA_CFLAGS): any memory error fails it.
#  3. spf:fuzz-asan  tests/fuzz/fuzz_spf.c against that libspf2 for
#     SPF_FUZZ_SECONDS (30), seeds in tests/fuzz/seeds/spf (crash seeds
#     are regression tests).
#  4. spf:fuzz-finds-unpatched-cve  the harness is able to fail: the
#     URL-encoding seed crashes a libspf2 built WITHOUT the project's CVE
#     patches (only the build fixes).  SPF_FUZZ_SELFTEST=0 skips it.
#  5. spf:musl-rfc7208  the RFC suite again with a static musl driver (the
#     firmware's libc), when the firmware's musl c-ares has been built.
#  6. spf:daemon/<test>  the spf check in the real daemon (test_daemon.py).
set -u
cd "$(dirname "$0")/../.." || exit 1
MIN_PASS=${SPF_MIN_PASS:-195}
SECS=${SPF_FUZZ_SECONDS:-30}
B=build/host/tests/spf
L=build/test-logs
mkdir -p "$B" "$L" tests/fuzz/crashes
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
SUITE="tests/spf/data/rfc7208-tests.yml tests/spf/xfail.txt"
# The SPF path as the daemon runs it: spf.c on dns.c (stats_stub.c for
# the one stats.c function dns.c calls).
SPFSRC="proxy/spf.c proxy/dns.c proxy/util.c proxy/log.c tests/spf/stats_stub.c"
WARN="-Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers"
rc=0

make -s build/spf2-host/lib/libspf2.a || exit 1
# Built from the few sources it needs, so the suite does not depend on
# the rest of the daemon compiling.
if ! cc -std=c11 -O1 -g $WARN -D_GNU_SOURCE -Iproxy \
	-Ibuild/spf2-host/include -o "$B/spf_driver" tests/spf/spf_driver.c \
	$SPFSRC build/spf2-host/lib/libspf2.a \
	-lresolv -luv -lcares -lpthread; then
	echo "not ok - spf:build (spf_driver)"
	exit 1
fi
/usr/bin/python3 tests/spf/spfsuite.py "$B/spf_driver" $SUITE "$MIN_PASS" ||
	rc=1

# ASan/UBSan: libspf2 itself instrumented (and for the fuzzer's coverage).
asan=$PWD/build/spf2-asan
if ! command -v clang >/dev/null; then
	echo "not ok - spf:asan-rfc7208 (clang not installed)"
	rc=1
elif ! firmware/libspf2.sh "$asan" clang "" \
	"$SAN -fsanitize=fuzzer-no-link" >"$L/spf-asan-build.log" 2>&1; then
	echo "not ok - spf:asan-rfc7208 (libspf2 ASan build failed, see $L/spf-asan-build.log)"
	rc=1
else
	clang -std=c11 -O1 -g $SAN -D_GNU_SOURCE -Iproxy -I"$asan/include" \
		-o "$B/spf_driver_asan" tests/spf/spf_driver.c $SPFSRC \
		"$asan/lib/libspf2.a" \
		-lresolv -luv -lcares -lpthread >"$L/spf-asan-driver.log" 2>&1
	if /usr/bin/python3 tests/spf/spfsuite.py "$B/spf_driver_asan" \
		$SUITE "$MIN_PASS" >"$L/spf-asan-rfc7208.log" 2>&1; then
		echo "ok - spf:asan-rfc7208 ($(tail -1 "$L/spf-asan-rfc7208.log" | sed 's/^# //'))"
	else
		echo "not ok - spf:asan-rfc7208 (see $L/spf-asan-rfc7208.log)"
		rc=1
	fi

	fz=$B/fuzz_spf_asan
	corpus=build/fuzz/corpus/spf-asan
	mkdir -p "$corpus"
	if ! clang -std=c11 -O1 -g $SAN -fsanitize=fuzzer -D_GNU_SOURCE \
		-Iproxy -I"$asan/include" -o "$fz" tests/fuzz/fuzz_spf.c \
		$SPFSRC "$asan/lib/libspf2.a" \
		-lresolv -luv -lcares -lpthread >"$L/spf-fuzz-build.log" 2>&1; then
		echo "not ok - spf:fuzz-asan (does not build, see $L/spf-fuzz-build.log)"
		rc=1
	else
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1 \
		"$fz" -max_total_time="$SECS" -timeout=10 -max_len=4096 \
			-rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix=tests/fuzz/crashes/spf- \
			"$corpus" tests/fuzz/seeds/spf >"$L/spf-fuzz.log" 2>&1
		frc=$?
		runs=$(sed -n 's/^stat::number_of_executed_units: *//p' \
			"$L/spf-fuzz.log" | tail -1)
		if [ "$frc" = 0 ]; then
			echo "ok - spf:fuzz-asan (${runs:-?} runs in ${SECS}s)"
		else
			echo "not ok - spf:fuzz-asan (exit $frc, see $L/spf-fuzz.log)"
			rc=1
		fi
	fi

	if [ "${SPF_FUZZ_SELFTEST:-1}" != 0 ]; then
		up=$PWD/build/spf2-asan-unpatched
		seed=tests/fuzz/seeds/spf/regress-urlencode-nonascii
		if LIBSPF2_ONLY_PATCHES=0001 firmware/libspf2.sh "$up" clang "" \
			"$SAN -fsanitize=fuzzer-no-link" >"$L/spf-unpatched.log" 2>&1 &&
		   clang -std=c11 -O1 -g $SAN -fsanitize=fuzzer -D_GNU_SOURCE \
			-Iproxy -I"$up/include" -o "$B/fuzz_spf_unpatched" \
			tests/fuzz/fuzz_spf.c $SPFSRC \
			"$up/lib/libspf2.a" -lresolv -luv -lcares -lpthread \
			>>"$L/spf-unpatched.log" 2>&1; then
			ASAN_OPTIONS=detect_leaks=0 "$B/fuzz_spf_unpatched" "$seed" \
				>>"$L/spf-unpatched.log" 2>&1
			if grep -q "AddressSanitizer: heap-buffer-overflow" \
				"$L/spf-unpatched.log"; then
				echo "ok - spf:fuzz-finds-unpatched-cve (heap-buffer-overflow in Debian's code, fixed by 0002)"
			else
				echo "not ok - spf:fuzz-finds-unpatched-cve (no overflow reported, see $L/spf-unpatched.log)"
				rc=1
			fi
		else
			echo "not ok - spf:fuzz-finds-unpatched-cve (build failed, see $L/spf-unpatched.log)"
			rc=1
		fi
	fi
fi

# The shipping libc: the same suite with a static musl driver, when the
# firmware's x86_64 sysroot (firmware/deps.sh: musl c-ares) is there.
cares_musl=build/deps/x86_64/sysroot/lib/libcares.a
if command -v x86_64-linux-musl-gcc >/dev/null && [ -f "$cares_musl" ]; then
	m=$PWD/build/spf2-musl-test
	if firmware/libspf2.sh "$m" x86_64-linux-musl-gcc x86_64-linux-musl \
		"-Os" >"$L/spf-musl-build.log" 2>&1 &&
	   x86_64-linux-musl-gcc -static -std=c11 -Os -D_GNU_SOURCE -Iproxy \
		-I"$m/include" -Ibuild/deps/x86_64/sysroot/include \
		-o "$B/spf_driver_musl" tests/spf/spf_driver.c $SPFSRC \
		"$m/lib/libspf2.a" build/deps/x86_64/sysroot/lib/libuv.a \
		"$cares_musl" \
		>>"$L/spf-musl-build.log" 2>&1; then
		if /usr/bin/python3 tests/spf/spfsuite.py "$B/spf_driver_musl" \
			$SUITE "$MIN_PASS" >"$L/spf-musl-rfc7208.log" 2>&1; then
			echo "ok - spf:musl-rfc7208 ($(tail -1 "$L/spf-musl-rfc7208.log" | sed 's/^# //'))"
		else
			echo "not ok - spf:musl-rfc7208 (see $L/spf-musl-rfc7208.log)"
			rc=1
		fi
	else
		echo "not ok - spf:musl-rfc7208 (build failed, see $L/spf-musl-build.log)"
		rc=1
	fi
else
	echo "# spf:musl-rfc7208 not run (no x86_64-linux-musl-gcc or $cares_musl yet)"
fi

# The check inside the real daemon (needs `make`).
if [ -x build/host/mailmoat ]; then
	/usr/bin/python3 tests/spf/test_daemon.py || rc=1
else
	echo "not ok - spf:daemon (build/host/mailmoat missing: run make)"
	rc=1
fi
exit $rc
