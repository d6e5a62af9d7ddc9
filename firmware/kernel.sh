#!/bin/sh
# kernel.sh - fetch the board's Debian kernel and trim its modules.
#
#   firmware/kernel.sh BOARD
#
# Resolves KERNEL_META (board.conf) to the versioned linux-image package
# (never a hard-coded ABI), downloads it with `apt-get download`, extracts
# it without installing, runs depmod, and resolves KERNEL_MODULES with
# `modprobe --show-depends` into build/kernel/<board>/mods/: the .ko files
# the board needs plus load.list, the insmod order (they go into the boot
# selector's initramfs), and FILTER_MODULES likewise into mods-filter/
# (root file system, loaded only for transparent interception).  Output also:
# build/kernel/<arch>/vmlinuz and KVER.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/board/$1/board.conf"
k=$top/build/kernel/$1
mkdir -p "$k"
pkg=$(apt-cache depends "$KERNEL_META:$DEB_ARCH" 2>/dev/null |
	awk '/Depends: linux-image-[0-9]/{print $2; exit}')
pkg=${pkg%%:*}
[ -n "$pkg" ] || { echo "kernel.sh: cannot resolve $KERNEL_META:$DEB_ARCH" >&2; exit 1; }
s=$(echo "$pkg $KERNEL_MODULES $FILTER_MODULES" | cat - "$0" | sha256sum | cut -c1-32)
[ -f "$k/vmlinuz" ] && [ "$(cat "$k/.stamp" 2>/dev/null)" = "$s" ] && exit 0
echo "kernel.sh: $pkg ($1)"
rm -rf "$k/x" "$k/mods" "$k/mods-filter"; mkdir -p "$k/x" "$k/mods"
(cd "$k" && rm -f ./*.deb && apt-get download -q "$pkg:$DEB_ARCH" >/dev/null)
dpkg-deb -x "$k"/*.deb "$k/x"
kver=$(ls "$k/x/lib/modules" | head -1)
depmod -b "$k/x" "$kver"
cp "$k/x/boot/vmlinuz-$kver" "$k/vmlinuz"
: > "$k/mods/load.list"
for m in $KERNEL_MODULES; do
	modprobe -d "$k/x" -S "$kver" --show-depends "$m" 2>/dev/null |
		awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
	b=$(basename "$ko")
	cp "$ko" "$k/mods/$b"
	echo "$b" >> "$k/mods/load.list"
done
# The packet filter's modules go into the root file system instead.
mkdir -p "$k/mods-filter"; : > "$k/mods-filter/load.list"
for m in $FILTER_MODULES; do
	modprobe -d "$k/x" -S "$kver" --show-depends "$m" 2>/dev/null |
		awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r ko; do
	b=$(basename "$ko")
	grep -qx "$b" "$k/mods/load.list" && continue
	cp "$ko" "$k/mods-filter/$b"
	echo "$b" >> "$k/mods-filter/load.list"
done
echo "$kver" > "$k/KVER"
rm -rf "$k/x" "$k"/*.deb
echo "$s" > "$k/.stamp"
