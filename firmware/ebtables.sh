#!/bin/sh
# ebtables.sh - build ebtables (legacy: the kernel's ebtables tables, no
# nftables library) statically with musl from Debian's source package:
# the bridge-mode half of the packet filter (mailmoat-intercept bridge +
# start: the broute table takes port 25 out of the bridge).  The mirror
# carries no nftables source, and ebtables needs no library.
#
#   firmware/ebtables.sh BOARD
#
# Output: build/deps/<arch>/ebtables/ebtables (stripped).  Every extension
# is linked in (--whole-archive: they register themselves from
# constructors that nothing references).  Lock file: /run/ebtables.lock.
# The autotools are not rerun (Debian's patches only move install paths).
# Stamped on the source version and this script.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/board/$1/board.conf"
tc=$top/build/tc/$ARCH
d=$top/build/deps/$ARCH
o=$d/ebtables
src=$top/build/src/ebtables-2.0.11
"$top/firmware/toolchain.sh" "$1" "$tc"
export PATH="$tc/bin:$PATH"
export SOURCE_DATE_EPOCH=1700000000
s=$( { echo "$MUSL_TRIPLET"; cat "$top/build/src/.ebtables.stamp" "$0"; } | sha256sum | cut -c1-32)
[ -x "$o/ebtables" ] && [ "$(cat "$o/.stamp" 2>/dev/null)" = "$s" ] && exit 0
echo "ebtables.sh: ebtables ($ARCH)"
rm -rf "$o"; mkdir -p "$o/b"
log=$d/ebtables.log
cc="$MUSL_TRIPLET-gcc"
(
	cd "$o/b"
	"$src/configure" --host="$MUSL_TRIPLET" CC="$cc" \
		CFLAGS="-Os -ffunction-sections -fdata-sections -isystem $tc/kh -ffile-prefix-map=$top=." \
		LOCKFILE=/run/ebtables.lock --enable-static --disable-shared \
		--prefix=/ --sysconfdir=/etc &&
	make -j"$(nproc)" ACLOCAL=: AUTOCONF=: AUTOMAKE=: AUTOHEADER=: \
		libebtc.la ebtables-standalone.o &&
	$cc -static -Wl,--gc-sections $LDFLAGS_ARCH -o ebtables ebtables-standalone.o \
		-Wl,--whole-archive .libs/libebtc.a -Wl,--no-whole-archive
) > "$log" 2>&1 || { tail -n 30 "$log" >&2; echo "ebtables.sh: failed ($log)" >&2; exit 1; }
cp "$o/b/ebtables" "$o/"
"$MUSL_TRIPLET-strip" "$o/ebtables"
rm -rf "$o/b"
echo "$s" > "$o/.stamp"
