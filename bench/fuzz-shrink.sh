#!/bin/bash
# bench/fuzz-shrink.sh NAME BIN [LIMIT_KIB] - keep tests/fuzz/corpus/NAME
# under LIMIT_KIB (default 1024): while it is bigger, every input is cut
# to a shorter length (4096, 2048, 1024, 512 bytes) and the cut copies
# are minimized again with libFuzzer's -merge=1, which keeps what still
# adds coverage.  BIN is the harness binary; FUZZ_TLS_DIR as for it.
set -u
cd "$(dirname "$0")/.."
name=$1 bin=$2 limit=${3:-1024}
keep=tests/fuzz/corpus/$name
for len in 4096 2048 1024 512; do
	[ "$(du -sk --apparent-size "$keep" | cut -f1)" -le "$limit" ] && exit 0
	cut=$(mktemp -d) new=$(mktemp -d)
	for f in "$keep"/*; do
		[ -f "$f" ] && head -c "$len" "$f" >"$cut/$(basename "$f")"
	done
	if nice -n 19 "$bin" -merge=1 -timeout=10 -max_len="$len" "$new" \
		"$cut" >/dev/null 2>&1; then
		rm -rf "$keep" && mkdir -p "$keep" && cp "$new"/* "$keep"/ 2>/dev/null
	fi
	rm -rf "$cut" "$new"
done
[ "$(du -sk --apparent-size "$keep" | cut -f1)" -le "$limit" ]
