#!/bin/sh
# libspf2.sh - fetch, patch and build the project's static libspf2.
#
#   firmware/libspf2.sh PREFIX CC HOST_TRIPLET [EXTRA_CFLAGS]
#
# PREFIX        where lib/libspf2.a and include/spf2/*.h go (absolute)
# CC            the compiler ("cc", "x86_64-linux-musl-gcc", ...)
# HOST_TRIPLET  configure --host; empty for a native build
# EXTRA_CFLAGS  appended to CFLAGS and LDFLAGS (e.g. -fsanitize=address)
#
# The source is Debian bookworm's libspf2 1.2.10 orig tarball, fetched with
# `apt-get source --download-only` into build/src/ and checked against the
# SHA-256 of the .dsc (the Debian .debian.tar.xz is 404 on the reachable
# mirror, so the project carries its own patches: firmware/patches/libspf2/).
# A deb-src entry is added (/etc/apt/sources.list.d/mailmoat-src.sources)
# when apt knows no source package.
#
# Idempotent: a stamp of the inputs (tarball, patches, this script, CC,
# triplet, flags) skips the build when nothing changed.  Quiet on success;
# on failure the tail of the build log is printed.
set -eu

[ $# -ge 3 ] || { echo "usage: $0 PREFIX CC HOST_TRIPLET [EXTRA_CFLAGS]" >&2; exit 2; }
PREFIX=$1 CC=$2 HOST=$3 EXTRA=${4:-}
case $PREFIX in /*) ;; *) echo "libspf2.sh: PREFIX must be absolute" >&2; exit 2 ;; esac

VER=1.2.10
TARBALL=libspf2_$VER.orig.tar.gz
SHA256=d91e3de81ae287a2976c44f60283bd3000d720e6a112dc7142eedf1831b821c9

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
srcdir=$top/build/src
work=$PREFIX.work
log=$work/build.log

# fail - print the build log tail and stop.
fail() {
	echo "libspf2.sh: $*" >&2
	[ -f "$log" ] && tail -n 40 "$log" >&2
	exit 1
}

# add_deb_src - derive deb-src entries from the configured Debian sources.
add_deb_src() {
	f=/etc/apt/sources.list.d/mailmoat-src.sources
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	tmp=$(mktemp)
	for s in /etc/apt/sources.list.d/*.sources; do
		[ -f "$s" ] && [ "$s" != "$f" ] || continue
		grep -q 'debian' "$s" || continue
		sed 's/^Types:.*$/Types: deb-src/' "$s" >> "$tmp"
		echo >> "$tmp"
	done
	if [ -f /etc/apt/sources.list ]; then
		grep -E '^deb[[:space:]]' /etc/apt/sources.list | grep debian |
		sed 's/^deb[[:space:]]/deb-src /' > "$tmp.list" || true
		[ -s "$tmp.list" ] &&
			$SUDO cp "$tmp.list" /etc/apt/sources.list.d/mailmoat-src.list
		rm -f "$tmp.list"
	fi
	[ -s "$tmp" ] && $SUDO cp "$tmp" "$f" && $SUDO chmod 644 "$f"
	rm -f "$tmp"
	$SUDO apt-get update -q >/dev/null 2>&1 || true
}

# fetch - make sure build/src/$TARBALL is there and intact.
fetch() {
	mkdir -p "$srcdir"
	if [ -f "$srcdir/$TARBALL" ] &&
	   echo "$SHA256  $srcdir/$TARBALL" | sha256sum -c --status; then
		return 0
	fi
	rm -f "$srcdir/$TARBALL"
	apt-cache showsrc libspf2 >/dev/null 2>&1 &&
		apt-cache showsrc libspf2 2>/dev/null | grep -q "$TARBALL" ||
		add_deb_src
	# The .debian.tar.xz may 404: apt then exits non-zero after having
	# fetched the orig tarball, which is all we use.
	(cd "$srcdir" && apt-get source --download-only -q libspf2 \
		>"$srcdir/apt-source.log" 2>&1) || true
	[ -f "$srcdir/$TARBALL" ] ||
		{ cat "$srcdir/apt-source.log" >&2; fail "could not fetch $TARBALL"; }
	echo "$SHA256  $srcdir/$TARBALL" | sha256sum -c --status ||
		fail "$TARBALL: SHA-256 mismatch"
}

# One build at a time per PREFIX (parallel makes, several engineers).
mkdir -p "$(dirname "$PREFIX")"
exec 9>"$PREFIX.lock"
flock 9
fetch
patches=$(ls "$here"/patches/libspf2/*.patch 2>/dev/null | sort)
# LIBSPF2_ONLY_PATCHES="0001 0002": apply only those (to show what the
# fuzzer finds without the fixes); never for a real build.
if [ -n "${LIBSPF2_ONLY_PATCHES:-}" ]; then
	sel=
	for p in $patches; do
		for n in $LIBSPF2_ONLY_PATCHES; do
			case $(basename "$p") in "$n"*) sel="$sel $p" ;; esac
		done
	done
	patches=$sel
fi
stamp=$( { echo "$SHA256 $CC|$HOST|$EXTRA"; cat "$0" $patches; } | sha256sum | cut -c1-32)
if [ -f "$PREFIX/lib/libspf2.a" ] && [ -f "$PREFIX/include/spf2/spf.h" ] &&
   [ "$(cat "$PREFIX/.stamp" 2>/dev/null)" = "$stamp" ]; then
	exit 0
fi

# Build and install beside the old copy, then swap: a make running
# meanwhile keeps seeing a complete (old or new) library.
new=$PREFIX.new
rm -rf "$work" "$new"
mkdir -p "$work/obj" "$new"
: > "$log"
tar xzf "$srcdir/$TARBALL" -C "$work" || fail "cannot extract $TARBALL"
src=$work/libspf2-$VER
for p in $patches; do
	echo "== $p" >> "$log"
	patch -d "$src" -p1 --no-backup-if-mismatch < "$p" >> "$log" 2>&1 ||
		fail "patch $(basename "$p") does not apply"
done
# The 2011 config.sub knows neither musl nor aarch64.
for f in config.sub config.guess; do
	for d in /usr/share/misc /usr/share/automake-1.16; do
		[ -f "$d/$f" ] && { cp "$d/$f" "$src/config/$f"; break; }
	done
done
# Keep autotools from regenerating anything after patching.
find "$src" -name Makefile.in -exec touch {} + 2>/dev/null || true
touch "$src/configure" "$src/config.h.in"

host_arg=
[ -n "$HOST" ] && host_arg=--host=$HOST
cd "$work/obj"
# The ac_cv_* values: musl provides ns_initparse & co. under their public
# names (libreplace's copies would collide), and cross builds cannot run
# the malloc/realloc/memcmp/setpgrp probes.
"$src/configure" $host_arg --prefix="$new" --disable-shared --enable-static \
	CC="$CC" CFLAGS="-O2 -g -ffunction-sections -fdata-sections $EXTRA" \
	LDFLAGS="$EXTRA" \
	ac_cv_func___ns_initparse=yes ac_cv_func___ns_name_uncompress=yes \
	ac_cv_func___ns_msg_getflag=yes \
	ac_cv_func_malloc_0_nonnull=yes ac_cv_func_realloc_0_nonnull=yes \
	ac_cv_func_memcmp_working=yes ac_cv_func_setpgrp_void=yes \
	>> "$log" 2>&1 || fail "configure failed"
jobs=$(nproc 2>/dev/null || echo 2)
{ make -C src/libreplace -j"$jobs" && make -C src/libspf2 -j"$jobs" &&
  make -C src/libspf2 install && make -C src/include install; } \
	>> "$log" 2>&1 || fail "build failed"
[ -f "$new/lib/libspf2.a" ] || fail "no libspf2.a after install"
echo "$stamp" > "$new/.stamp"
rm -rf "$PREFIX"
mv "$new" "$PREFIX"
