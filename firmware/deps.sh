#!/bin/sh
# deps.sh - build the static musl libraries of one board's architecture.
#
#   firmware/deps.sh BOARD
#
# Output: build/deps/<arch>/sysroot/{lib,include} with libuv.a, libcares.a,
# libmbed{tls,x509,crypto}.a (trimmed config firmware/mbedtls_config.h) and
# the project's patched libspf2.a (firmware/libspf2.sh).  Sources come from
# build/src (firmware/sources.sh).  Every library has a stamp of its inputs,
# so a second run with nothing changed does nothing.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/board/$1/board.conf"
tc=$top/build/tc/$ARCH
d=$top/build/deps/$ARCH
sys=$d/sysroot
src=$top/build/src
jobs=$(nproc 2>/dev/null || echo 2)
"$top/firmware/toolchain.sh" "$1" "$tc"
export PATH="$tc/bin:$PATH"
CC=$MUSL_TRIPLET-gcc
# Reproducible objects: no build paths, no timestamps in the outputs.
export SOURCE_DATE_EPOCH=1700000000
CF="-Os -ffunction-sections -fdata-sections -ffile-prefix-map=$top=."
MBCFG=$top/firmware/mbedtls_config.h
mkdir -p "$sys/lib" "$sys/include" "$d/b"

# stamp_ok NAME INPUTS... - true when NAME was built from these inputs
stamp_ok() {
	n=$1; shift
	s=$( { echo "$CC $CF"; cat "$@"; } | sha256sum | cut -c1-32)
	echo "$s" > "$d/.$n.want"
	[ "$(cat "$d/.$n.stamp" 2>/dev/null)" = "$s" ]
}
# stamp_set NAME - record that NAME is built
stamp_set() { mv "$d/.$1.want" "$d/.$1.stamp"; }
# run NAME CMD... - run a build step into a log; show its tail on failure
run() {
	n=$1; shift
	"$@" >> "$d/$n.log" 2>&1 || {
		tail -n 30 "$d/$n.log" >&2
		echo "deps.sh: $n failed (log: $d/$n.log)" >&2
		exit 1
	}
}
cmake_args="-DCMAKE_C_COMPILER=$CC -DCMAKE_SYSTEM_NAME=Linux
	-DCMAKE_SYSTEM_PROCESSOR=$CMAKE_CPU -DCMAKE_AR=$tc/bin/$MUSL_TRIPLET-ar
	-DCMAKE_RANLIB=$tc/bin/$MUSL_TRIPLET-ranlib -DCMAKE_BUILD_TYPE=MinSizeRel
	-DCMAKE_INSTALL_PREFIX=$sys -DCMAKE_INSTALL_LIBDIR=lib"

if ! stamp_ok libuv "$src/.libuv1.stamp" "$0"; then
	echo "deps.sh: libuv ($ARCH)"
	rm -rf "$d/b/libuv"; : > "$d/libuv.log"
	run libuv cmake -S "$src"/libuv1-1.44.2 -B "$d/b/libuv" $cmake_args \
		-DCMAKE_C_FLAGS_MINSIZEREL="$CF" -DLIBUV_BUILD_TESTS=OFF \
		-DLIBUV_BUILD_BENCH=OFF
	run libuv make -C "$d/b/libuv" -j"$jobs" uv_a
	cp "$d/b/libuv/libuv_a.a" "$sys/lib/libuv.a"
	cp -r "$src"/libuv1-1.44.2/include/* "$sys/include/"
	stamp_set libuv
fi

if ! stamp_ok cares "$src/.c-ares.stamp" "$0"; then
	echo "deps.sh: c-ares ($ARCH)"
	rm -rf "$d/b/cares"; : > "$d/cares.log"
	run cares cmake -S "$src"/c-ares-1.18.1 -B "$d/b/cares" $cmake_args \
		-DCMAKE_C_FLAGS_MINSIZEREL="$CF" -DCARES_STATIC=ON \
		-DCARES_SHARED=OFF -DCARES_BUILD_TOOLS=OFF -DCARES_BUILD_TESTS=OFF
	run cares make -C "$d/b/cares" -j"$jobs" install
	stamp_set cares
fi

if ! stamp_ok mbedtls "$src/.mbedtls.stamp" "$0" "$MBCFG"; then
	echo "deps.sh: mbedtls ($ARCH)"
	rm -rf "$d/b/mbedtls"; : > "$d/mbedtls.log"
	run mbedtls cmake -S "$src"/mbedtls-2.28.3 -B "$d/b/mbedtls" $cmake_args \
		-DCMAKE_C_FLAGS_MINSIZEREL="$CF -DMBEDTLS_CONFIG_FILE='\"$MBCFG\"'" \
		-DENABLE_PROGRAMS=OFF -DENABLE_TESTING=OFF -DGEN_FILES=OFF \
		-DUSE_SHARED_MBEDTLS_LIBRARY=OFF -DUSE_STATIC_MBEDTLS_LIBRARY=ON \
		-DMBEDTLS_FATAL_WARNINGS=OFF
	run mbedtls make -C "$d/b/mbedtls" -j"$jobs" install
	# consumers see the same config through the default header name
	cp "$MBCFG" "$sys/include/mbedtls/config.h"
	stamp_set mbedtls
fi

# libspf2: the SPF work's script has its own stamp and patches.
"$top/firmware/libspf2.sh" "$d/spf2" "$CC" "$MUSL_TRIPLET" "$CF"
cp "$d/spf2/lib/libspf2.a" "$sys/lib/"
rm -rf "$sys/include/spf2"; cp -r "$d/spf2/include/spf2" "$sys/include/"
