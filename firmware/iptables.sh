#!/bin/sh
# iptables.sh - build iptables (legacy backend, IPv4 and IPv6, every extension built
# in) statically with musl from Debian's source package: the packet filter
# that installs the transparent-interception rules (rcS).
#
#   firmware/iptables.sh BOARD
#
# Output: build/deps/<arch>/iptables/xtables-legacy-multi (stripped).
# Stamped on the source version and this script.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/board/$1/board.conf"
tc=$top/build/tc/$ARCH
d=$top/build/deps/$ARCH
o=$d/iptables
src=$top/build/src/iptables-1.8.9
"$top/firmware/toolchain.sh" "$1" "$tc"
export PATH="$tc/bin:$PATH"
export SOURCE_DATE_EPOCH=1700000000
s=$( { echo "$MUSL_TRIPLET"; cat "$top/build/src/.iptables.stamp" "$0"; } | sha256sum | cut -c1-32)
[ -x "$o/xtables-legacy-multi" ] && [ "$(cat "$o/.stamp" 2>/dev/null)" = "$s" ] && exit 0
echo "iptables.sh: iptables ($ARCH)"
rm -rf "$o"; mkdir -p "$o/b"
log=$d/iptables.log
(
	cd "$o/b"
	"$src/configure" --host="$MUSL_TRIPLET" CC="$MUSL_TRIPLET-gcc" \
		CFLAGS="-Os -ffunction-sections -fdata-sections -isystem $tc/kh -ffile-prefix-map=$top=." \
		--disable-nftables --enable-static --disable-shared \
		--disable-devel --disable-libipq --disable-bpf-compiler \
		--disable-nfsynproxy --disable-connlabel --without-kernel --prefix=/ &&
	make -j"$(nproc)" LDFLAGS="-all-static -Wl,--gc-sections $LDFLAGS_ARCH"
) > "$log" 2>&1 || { tail -n 30 "$log" >&2; echo "iptables.sh: failed ($log)" >&2; exit 1; }
cp "$o/b/iptables/xtables-legacy-multi" "$o/"
"$MUSL_TRIPLET-strip" "$o/xtables-legacy-multi"
rm -rf "$o/b"
echo "$s" > "$o/.stamp"
