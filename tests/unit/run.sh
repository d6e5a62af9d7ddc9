#!/bin/bash
# unit/run.sh - every tests/unit/test_*.c, three ways: the normal build,
# an ASan/UBSan build (names prefixed "asan:"), and under Valgrind
# (prefixed "valgrind:").  Each binary prints its own ok/not ok lines.
set -u
cd "$(dirname "$0")/../.."
status=0
make -s BUILD=build/host unit-tests >/dev/null || { echo "not ok - unit build"; exit 1; }
make -s BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" unit-tests >/dev/null \
	|| { echo "not ok - unit asan build"; exit 1; }
for t in build/host/tests/test_*; do
	[ -x "$t" ] || continue
	"$t" || status=1
done
for t in build/asan/tests/test_*; do
	[ -x "$t" ] || continue
	ASAN_OPTIONS=detect_leaks=1 "$t" | sed 's/^\(not \)\{0,1\}ok - /&asan:/' || status=1
done
if command -v valgrind >/dev/null; then
	for t in build/host/tests/test_*; do
		[ -x "$t" ] || continue
		n=$(basename "$t")
		if valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite "$t" >/dev/null 2>"build/test-logs/valgrind-$n.log"; then
			echo "ok - valgrind:$n"
		else
			echo "not ok - valgrind:$n (see build/test-logs/valgrind-$n.log)"; status=1
		fi
	done
fi
exit $status
