#!/bin/sh
# busybox.sh - build BusyBox statically with musl from firmware/busybox.config.
#
#   firmware/busybox.sh BOARD
#
# Output: build/deps/<arch>/busybox/{busybox,busybox.links}.  The kernel
# uapi headers come from the toolchain shim (build/tc/<arch>/kh).  Stamped
# on the config, the source version and this script.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/board/$1/board.conf"
tc=$top/build/tc/$ARCH
d=$top/build/deps/$ARCH
o=$d/busybox
src=$top/build/src/busybox-1.35.0
"$top/firmware/toolchain.sh" "$1" "$tc"
export PATH="$tc/bin:$PATH"
export SOURCE_DATE_EPOCH=1700000000 KBUILD_BUILD_TIMESTAMP=@1700000000
export KBUILD_BUILD_USER=mailmoat KBUILD_BUILD_HOST=build
s=$( { echo "$MUSL_TRIPLET"; cat "$top/build/src/.busybox.stamp" \
	"$top/firmware/busybox.config" "$0"; } | sha256sum | cut -c1-32)
[ -x "$o/busybox" ] && [ "$(cat "$o/.stamp" 2>/dev/null)" = "$s" ] && exit 0
echo "busybox.sh: busybox ($ARCH)"
rm -rf "$o"; mkdir -p "$o"
cp "$top/firmware/busybox.config" "$o/.config"
log=$d/busybox.log
{
	(yes '' || true) | make -C "$src" O="$o" oldconfig &&
	make -C "$src" O="$o" -j"$(nproc)" CROSS_COMPILE="$MUSL_TRIPLET-" \
		EXTRA_CFLAGS="-isystem $tc/kh -ffile-prefix-map=$top=." \
		EXTRA_LDFLAGS="$LDFLAGS_ARCH" &&
	make -C "$src" O="$o" busybox.links
} > "$log" 2>&1 || { tail -n 30 "$log" >&2; echo "busybox.sh: failed ($log)" >&2; exit 1; }
echo "$s" > "$o/.stamp"
