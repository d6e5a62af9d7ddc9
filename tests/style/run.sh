#!/bin/bash
# style/run.sh - the checked-in .clang-format holds for every C file the
# project writes (generated *_builtin.c and mbedTLS's own config text
# in firmware/mbedtls_config.h excepted): one "ok"/"not ok" per
# file, and the diff of a file that drifted.
set -u
cd "$(dirname "$0")/../.." || exit 1
command -v clang-format >/dev/null || { echo "not ok - style: clang-format missing"; exit 1; }
status=0
for f in $(git ls-files '*.c' '*.h' | grep -v -e '_builtin\.c$' -e 'mbedtls_config\.h$'); do
	if out=$(clang-format "$f" | diff -u "$f" - 2>&1); then
		echo "ok - clang-format: $f"
	else
		echo "not ok - clang-format: $f"
		printf '%s\n' "$out" | head -n 20 | sed 's/^/#   /'
		status=1
	fi
done
exit $status
