#!/bin/sh
# toolchain.sh - make the musl cross/native toolchain shim for one board.
#
#   firmware/toolchain.sh BOARD OUTDIR
#
# Debian's musl-dev:<arch> ships only <triplet>-gcc (a wrapper around the
# GNU cross gcc with musl's specs).  Autotools, CMake and BusyBox want a
# full prefix, so OUTDIR/bin gets <musl-triplet>-{gcc,ar,ranlib,strip,...}
# and OUTDIR/kh holds only the kernel uapi headers (linux, asm,
# asm-generic, mtd) that BusyBox needs; never all of /usr/include, which
# would mix glibc headers into a musl build.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/board/$1/board.conf"
out=$2
mkdir -p "$out/bin" "$out/kh"
gcc=/usr/bin/$MUSL_TRIPLET-gcc
need=
[ -x "$gcc" ] || need=1
[ "$(uname -m)" = "$ARCH" ] || [ -f "/usr/$GNU_TRIPLET/include/linux/types.h" ] || need=1
if [ -n "$need" ] && [ "$(id -u)" = 0 ]; then
	# Cross musl comes from the foreign architecture's musl-dev.
	echo "toolchain.sh: installing musl-dev:$DEB_ARCH gcc-$GNU_TRIPLET linux-libc-dev-$DEB_ARCH-cross"
	dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH" ||
		dpkg --add-architecture "$DEB_ARCH"
	apt-get update -q >/dev/null 2>&1 || true  # a half-synced mirror index is not fatal
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"musl-dev:$DEB_ARCH" "gcc-$GNU_TRIPLET" "linux-libc-dev-$DEB_ARCH-cross" >/dev/null
fi
[ -x "$gcc" ] || {
	echo "toolchain.sh: $gcc missing: apt-get install musl-dev:$DEB_ARCH gcc-$GNU_TRIPLET" >&2
	exit 1
}
ln -sf "$gcc" "$out/bin/$MUSL_TRIPLET-gcc"
ln -sf "$gcc" "$out/bin/$MUSL_TRIPLET-cc"
for t in ar ranlib strip nm objcopy objdump ld readelf as; do
	ln -sf "/usr/bin/$GNU_TRIPLET-$t" "$out/bin/$MUSL_TRIPLET-$t"
done
if [ "$(uname -m)" = "$ARCH" ]; then
	inc=/usr/include
	asm=/usr/include/$GNU_TRIPLET/asm
else
	inc=/usr/$GNU_TRIPLET/include
	asm=$inc/asm
fi
for d in linux asm-generic mtd; do ln -sfn "$inc/$d" "$out/kh/$d"; done
ln -sfn "$asm" "$out/kh/asm"
[ -f "$out/kh/linux/types.h" ] || {
	echo "toolchain.sh: no kernel headers at $inc/linux" >&2; exit 1; }
