#!/bin/sh
# app.sh - build mailmoat's own programs for a board, static with musl.
#
#   firmware/app.sh BOARD OUTDIR
#
# OUTDIR gets mailmoat, mailmoatctl (the daemon: every proxy/*.c and
# proxy/checks/*.c, mains main.c and mailmoatctl.c, as proxy/proxy.mk),
# mailmoat-flash and mmsign (firmware/tools), and the CGI programs
# (webui-cgi/*.c, one per page plus cgi.c).  All stripped.  (The interim
# placeholder daemon used before proxy/ linked is gone: a daemon that does
# not build is a build failure.)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/board/$1/board.conf"
out=$2
tc=$top/build/tc/$ARCH
sys=$top/build/deps/$ARCH/sysroot
export PATH="$tc/bin:$PATH"
CC=$MUSL_TRIPLET-gcc
CF="-std=c11 -Os -D_GNU_SOURCE -ffunction-sections -fdata-sections
	-ffile-prefix-map=$top=. -Wall -Wno-unused-parameter
	-Wno-missing-field-initializers -I$top/proxy -I$sys/include
	-idirafter $tc/kh"
LF="-static -Wl,--gc-sections -s $LDFLAGS_ARCH -L$sys/lib"
LIBS="-lspf2 -lcares -luv -lmbedtls -lmbedx509 -lmbedcrypto -lpthread -lm"
mkdir -p "$out/obj"
cd "$top"

# cc_all DIR SOURCES... - compile into DIR/*.o; prints the objects
cc_all() {
	o=$1; shift
	for c in "$@"; do
		ob=$o/$(echo "$c" | tr / _).o
		$CC $CF -c "$c" -o "$ob" >&2 || return 1
		echo "$ob"
	done
}

# The daemon: same source list as proxy/proxy.mk.
rm -f "$out/DAEMON" "$out/mailmoat"
lib=$(ls proxy/*.c proxy/checks/*.c | grep -v -e '^proxy/main\.c$' \
	-e '^proxy/mailmoatctl\.c$' | sort)
if ! objs=$(cc_all "$out/obj" $lib proxy/main.c 2>"$out/daemon.log") ||
   ! $CC $LF -o "$out/mailmoat" $objs $LIBS >>"$out/daemon.log" 2>&1; then
	tail -n 20 "$out/daemon.log" >&2
	echo "app.sh: the daemon does not build with musl ($out/daemon.log)" >&2
	exit 1
fi
echo real > "$out/DAEMON"
$CC $CF $LF -o "$out/mailmoatctl" proxy/mailmoatctl.c $LIBS

T=firmware/tools
$CC $CF $LF -o "$out/mailmoat-flash" $T/mailmoat-flash.c $T/fwimg.c $LIBS
$CC $CF $LF -o "$out/mmsign" $T/mmsign.c $T/fwimg.c $LIBS
mkdir -p "$out/cgi-bin"
for p in webui-cgi/*.c; do
	n=$(basename "$p" .c)
	[ "$n" = cgi ] && continue
	$CC $CF -Iwebui-cgi $LF -o "$out/cgi-bin/$n" "$p" webui-cgi/cgi.c -lmbedcrypto
done
