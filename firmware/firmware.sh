#!/bin/sh
# firmware.sh - build the signed firmware image of one board.
#
#   firmware/firmware.sh BOARD          (what `make firmware BOARD=...` runs)
#
# Output in build/<board>/ (or $MM_FW_OUT):
#   mailmoat-<board>.img   the signed image (header, kernel, squashfs root)
#   disk.img               factory disk: boot record, slot A = the image,
#                          slot B empty, data partition blank (formatted by
#                          the box at first boot)
#   boot/vmlinuz, boot/initramfs.cpio.gz
#                          what QEMU (or the board's boot loader) loads: the
#                          kernel and the boot selector
#   rootfs.squashfs, rootfs/ (staging tree), SIZES
# Environment:
#   MAILMOAT_SIGN_KEY/MAILMOAT_SIGN_PUB  release key pair (PEM); default: a
#                          development pair made once in build/keys/
#   MM_FW_VERSION, MM_FW_CODE  version text and monotonic code of the image
#                          (default: MAILMOAT_VERSION of proxy/proxy.h)
#   MM_FW_OUT              output directory (test variants)
#   MM_FW_BREAK_DAEMON=1   test variant whose daemon cannot start
# Every step is stamped or cheap, so a second run is quick; the same inputs
# give the same image bytes (fixed times, sorted archives, RFC 6979 ECDSA).
set -eu
b=$1
top=$(cd "$(dirname "$0")/.." && pwd)
[ -f "$top/board/$b/board.conf" ] || { echo "firmware.sh: unknown board '$b' (board/*/board.conf)" >&2; exit 2; }
. "$top/board/$b/board.conf"
cd "$top"
export SOURCE_DATE_EPOCH=1700000000
out=${MM_FW_OUT:-$top/build/$b}
mkdir -p "$out"

firmware/sources.sh "$top/build/src"
firmware/deps.sh "$b"
firmware/busybox.sh "$b"
firmware/kernel.sh "$b"
firmware/iptables.sh "$b"
firmware/ebtables.sh "$b"

# Host tool: sign and verify with Debian's libmbedtls.
ht=$top/build/host-tools
mkdir -p "$ht"
T=firmware/tools
if [ ! -x "$ht/mmsign" ] || [ -n "$(find $T -newer "$ht/mmsign" -name '*.[ch]')" ]; then
	cc -std=c11 -O2 -D_GNU_SOURCE -Wall -o "$ht/mmsign" $T/mmsign.c $T/fwimg.c \
		-lmbedtls -lmbedx509 -lmbedcrypto
fi
if [ -n "${MAILMOAT_SIGN_KEY:-}" ]; then
	key=$MAILMOAT_SIGN_KEY pub=${MAILMOAT_SIGN_PUB:?MAILMOAT_SIGN_PUB must name the public key}
else
	key=$top/build/keys/dev.key pub=$top/build/keys/dev.pub
	if [ ! -f "$key" ]; then
		mkdir -p "$top/build/keys"
		"$ht/mmsign" genkey "$key" "$pub"
		echo "firmware.sh: made a DEVELOPMENT signing key pair in build/keys/"
	fi
fi

app=$top/build/app/$b
firmware/app.sh "$b" "$app"

ver=${MM_FW_VERSION:-$(sed -n 's/^#define MAILMOAT_VERSION "\(.*\)"/\1/p' proxy/proxy.h)}
if [ -z "${MM_FW_CODE:-}" ]; then
	MM_FW_CODE=$(echo "$ver" | awk -F'[.+-]' '{printf "%d", ($1*1000000+$2*1000+$3)*100}')
fi

# --- root filesystem ------------------------------------------------------
r=$out/rootfs
rm -rf "$r"; mkdir -p "$r"
cp -a rootfs/. "$r/"
mkdir -p "$r/usr/share/mailmoat" "$r/etc/mailmoat"
if [ -f "$r/etc/mailmoat.conf" ]; then
	mv "$r/etc/mailmoat.conf" "$r/usr/share/mailmoat/mailmoat.conf.default"
fi
ln -s /data/etc/mailmoat.conf "$r/etc/mailmoat.conf"
ln -s /data/etc/httpd.conf "$r/etc/httpd.conf"
ln -s /run/resolv.conf "$r/etc/resolv.conf"
ln -s /run/var "$r/var"
for d in proc sys dev tmp run data root bin sbin usr/bin usr/sbin www/cgi-bin; do
	mkdir -p "$r/$d"
done
bb=$top/build/deps/$ARCH/busybox
cp "$bb/busybox" "$r/bin/busybox"
while read -r l; do
	case $l in /bin/busybox) continue ;; esac
	ln -sf /bin/busybox "$r$l"
done < "$bb/busybox.links"
for p in mailmoat mailmoatctl mailmoat-flash mmsign; do cp "$app/$p" "$r/usr/sbin/$p"; done
cp "$app"/cgi-bin/* "$r/www/cgi-bin/"
# Packet filter for transparent interception: iptables and ip6tables (one
# binary), ebtables for bridge mode, and their modules.
cp "$top/build/deps/$ARCH/iptables/xtables-legacy-multi" "$r/usr/sbin/"
ln -s xtables-legacy-multi "$r/usr/sbin/iptables"
ln -s xtables-legacy-multi "$r/usr/sbin/ip6tables"
cp "$top/build/deps/$ARCH/ebtables/ebtables" "$r/usr/sbin/"
mkdir -p "$r/lib/modules/filter"
cp "$top/build/kernel/$b"/mods-filter/* "$r/lib/modules/filter/"
if [ "${MM_FW_BREAK_DAEMON:-0}" = 1 ]; then
	printf '#!/bin/sh\necho "mailmoat: deliberately broken test build" >&2\nexit 1\n' > "$r/usr/sbin/mailmoat"
	chmod 755 "$r/usr/sbin/mailmoat"
fi
echo "$b" > "$r/etc/mailmoat/board"
printf 'NET_IF=%s\nCONSOLE=%s\n' "$NET_IF" "$CONSOLE" > "$r/etc/mailmoat/board.env"
echo "$ver" > "$r/etc/mailmoat/version"
echo "$MM_FW_CODE" > "$r/etc/mailmoat/version_code"
cp "$pub" "$r/etc/mailmoat/fw.pub"
cp "$app/DAEMON" "$r/etc/mailmoat/daemon"
# The data partition's first-boot file system (the box has no mke2fs):
# an empty ext4 of exactly the partition's size, gzipped.
tpl=$top/build/data-$PART_DATA_MB.ext4
if [ ! -f "$tpl.gz" ]; then
	rm -f "$tpl"; truncate -s "${PART_DATA_MB}M" "$tpl"
	E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mkfs.ext4 -q -F -L mmdata \
		-U 6d61696c-6d6f-6174-2d64-617461000001 \
		-E hash_seed=6d61696c-6d6f-6174-2d68-617368000001,root_owner=0:0 \
		-O ^metadata_csum_seed "$tpl"
	gzip -n -9 "$tpl"
fi
cp "$tpl.gz" "$r/usr/share/mailmoat/data-ext4.img.gz"
find "$r" -exec touch -h -d @$SOURCE_DATE_EPOCH {} +
rm -f "$out/rootfs.squashfs"
mksquashfs "$r" "$out/rootfs.squashfs" -comp xz -all-root -noappend -quiet \
	-no-progress >/dev/null

# --- the signed image -----------------------------------------------------
k=$top/build/kernel/$b
img=$out/mailmoat-$b.img
"$ht/mmsign" pack -b "$b" -v "$ver" -c "$MM_FW_CODE" -k "$k/vmlinuz" \
	-r "$out/rootfs.squashfs" -s "$key" -o "$img"
"$ht/mmsign" verify "$pub" "$img" >/dev/null

# --- boot selector initramfs -----------------------------------------------
i=$out/initramfs
rm -rf "$i"; mkdir -p "$i/bin" "$i/sbin" "$i/dev" "$i/proc" "$i/sys" "$i/newroot" "$i/lib/modules"
cp "$bb/busybox" "$i/bin/busybox"
for a in sh mount umount insmod dd tr sed grep head cat sleep mkdir losetup \
	 switch_root printf echo; do
	ln -s busybox "$i/bin/$a"
done
cp firmware/initramfs/init "$i/init"
cp "$k"/mods/*.ko "$k/mods/load.list" "$i/lib/modules/"
find "$i" -exec touch -h -d @$SOURCE_DATE_EPOCH {} +
mkdir -p "$out/boot"
(cd "$i" && find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --reproducible --quiet) |
	gzip -n -9 > "$out/boot/initramfs.cpio.gz"
cp "$k/vmlinuz" "$out/boot/vmlinuz"

# --- factory disk ------------------------------------------------------------
disk=$out/disk.img
s1=$((1 * 2048)) n1=$((PART_BOOT_MB * 2048))
s2=$((s1 + n1)) n2=$((PART_SLOT_MB * 2048))
s3=$((s2 + n2)) s4=$((s3 + n2)) n4=$((PART_DATA_MB * 2048))
isz=$(stat -c %s "$img")
[ "$isz" -le $((PART_SLOT_MB * 1048576)) ] ||
	{ echo "firmware.sh: image ($isz B) larger than a slot (${PART_SLOT_MB} MiB)" >&2; exit 1; }
rm -f "$disk"; truncate -s $(( (s4 + n4) * 512 )) "$disk"
printf 'label: dos\nlabel-id: 0x6d6d6f61\n%s,%s,83\n%s,%s,83\n%s,%s,83\n%s,%s,83\n' \
	$s1 $n1 $s2 $n2 $s3 $n2 $s4 $n4 | sfdisk -q "$disk" >/dev/null
printf 'MMBOOT=1\nactive=A\ntry=\ntries=0\n' > "$out/bootrec"
dd if="$out/bootrec" of="$disk" bs=512 seek=$s1 count=1 conv=sync,notrunc 2>/dev/null
dd if="$img" of="$disk" bs=512 seek=$s2 conv=notrunc 2>/dev/null
cat > "$out/layout" <<EOT
# sectors of 512 bytes: start size
bootrec $s1 $n1
slot_a $s2 $n2
slot_b $s3 $n2
data $s4 $n4
EOT

# --- figures ------------------------------------------------------------------
{
	echo "board=$b version=$ver version_code=$MM_FW_CODE daemon=$(cat "$app/DAEMON")"
	echo "rootfs.squashfs $(stat -c %s "$out/rootfs.squashfs")"
	echo "kernel $(stat -c %s "$k/vmlinuz")"
	echo "image $(stat -c %s "$img")"
	echo "image_without_kernel $(( $(stat -c %s "$img") - $(stat -c %s "$k/vmlinuz") ))"
	echo "initramfs $(stat -c %s "$out/boot/initramfs.cpio.gz")"
	echo "sha256 $(sha256sum "$img" | cut -d' ' -f1)"
} > "$out/SIZES"
cat "$out/SIZES"
