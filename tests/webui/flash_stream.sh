#!/bin/sh
# flash_stream.sh - mailmoat-flash's streamed install (IMAGE "-", what
# /cgi-bin/firmware uses) on the host: loop devices stand in for the
# inactive slot and the boot record; /etc and /run are private tmpfs
# mounts of a mount namespace, so nothing of the host is touched.
# Needs root (loop devices, unshare); prints ok/not ok lines.
set -u
cd "$(dirname "$0")/../.." || exit 1
if [ "$(id -u)" != 0 ] || ! command -v losetup >/dev/null || ! command -v unshare >/dev/null; then
	echo "ok - webui:streamed flash # SKIP needs root, losetup and unshare"
	exit 0
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/mmflash.XXXXXX")
loops=
cleanup() { for l in $loops; do losetup -d "$l"; done; rm -rf "$T"; }
trap cleanup EXIT INT TERM
CF="-std=c11 -O2 -D_GNU_SOURCE"
cc $CF -o "$T/mmsign" firmware/tools/mmsign.c firmware/tools/fwimg.c -lmbedtls -lmbedx509 -lmbedcrypto &&
cc $CF -o "$T/mailmoat-flash" firmware/tools/mailmoat-flash.c firmware/tools/fwimg.c -lmbedcrypto ||
	{ echo "not ok - webui:streamed flash (build)"; exit 1; }
cd "$T"
./mmsign genkey priv.pem pub.pem >/dev/null
head -c 3000000 /dev/urandom > k; head -c 5000000 /dev/urandom > r
./mmsign pack -b x86_64 -v 9.9.9 -c 999 -k k -r r -s priv.pem -o good.img >/dev/null
# one byte changed (to X, or to Y where it happens to be X already: the
# payload is random, so a fixed byte would leave 1 image in 256 intact)
c=X; [ "$(dd if=good.img bs=1 skip=5000000 count=1 2>/dev/null)" = X ] && c=Y
cp good.img bad.img; printf '%s' "$c" | dd of=bad.img bs=1 seek=5000000 conv=notrunc 2>/dev/null
cmp -s good.img bad.img && { echo "not ok - webui:streamed flash (tampering left the image as it was)"; exit 1; }
truncate -s 16M slot.img; truncate -s 1M rec.img
printf 'MMBOOT=1\nactive=A\ntry=\ntries=0\n' | dd of=rec.img conv=notrunc 2>/dev/null
LS=$(losetup -f --show slot.img); loops=$LS
LR=$(losetup -f --show rec.img); loops="$loops $LR"
cat > inner.sh <<EOF
mount --make-rprivate /
mount -t tmpfs tmpfs /run && mount -t tmpfs tmpfs /etc && mkdir /etc/mailmoat || exit 1
cp $T/pub.pem /etc/mailmoat/fw.pub; echo x86_64 > /etc/mailmoat/board; echo 100 > /etc/mailmoat/version_code
printf 'slot=A\ntrial=0\nbootrec=$LR\nslot_a=/dev/null\nslot_b=$LS\n' > /run/mailmoat-boot
hdr() { head -c 13 $LS; echo; }
# the streamed path (no spool: the data partition has no room)
export MAILMOAT_FLASH_SPOOL=
try() { dd if=$LR bs=64 count=1 2>/dev/null | grep -c '^try=B'; }
# tampered: written, verified in the slot, refused, header wiped, not activated
out=\$($T/mailmoat-flash -R - < $T/bad.img 2>&1); rc=\$?
echo "tampered rc=\$rc hdr=\$(hdr) try=\$(try) \$out"
# truncated upload
out=\$(head -c 100000 $T/good.img | $T/mailmoat-flash -R - 2>&1); rc=\$?
echo "truncated rc=\$rc hdr=\$(hdr) try=\$(try) \$out"
# wrong board: refused before anything is written
echo rpi4 > /etc/mailmoat/board
out=\$($T/mailmoat-flash -R - < $T/good.img 2>&1); rc=\$?
echo "board rc=\$rc hdr=\$(hdr) try=\$(try) \$out"
echo x86_64 > /etc/mailmoat/board
# spooled (room on the data partition): verified before the slot is touched
mkdir -p $T/spool; s0=\$(sha256sum < $LS)
out=\$(MAILMOAT_FLASH_SPOOL=$T/spool $T/mailmoat-flash -R - < $T/bad.img 2>&1); rc=\$?
s1=\$(sha256sum < $LS); left=\$(ls -A $T/spool | wc -l)
same=no; [ "\$s0" = "\$s1" ] && same=yes
echo "spooled rc=\$rc same=\$same left=\$left try=\$(try) \$out"
out=\$($T/mailmoat-flash -R - < $T/good.img 2>&1); rc=\$?
echo "good rc=\$rc hdr=\$(hdr) try=\$(try) \$out"
EOF
res=$(unshare -m sh inner.sh 2>&1)
printf '%s\n' "$res" | sed 's/^/# /'
ok() { if printf '%s\n' "$res" | grep -q "$2"; then echo "ok - webui:$1"; else echo "not ok - webui:$1"; fi; }
ok "streamed flash: a tampered image is refused, its slot wiped, not activated" '^tampered rc=1 hdr= try=0 refused: image is corrupt'
ok "streamed flash: a truncated upload is refused, not activated" '^truncated rc=1 hdr= try=0 refused: image is truncated'
ok "streamed flash: a wrong board is refused before writing" '^board rc=1 hdr= try=0 refused: image is for board'
ok "spooled flash: a tampered image is refused and nothing is written to the slot" '^spooled rc=1 same=yes left=0 try=0 refused: image is corrupt'
ok "streamed flash: a good image lands in the slot and is tried next" '^good rc=0 hdr=MAILMOAT-FW=1 try=1 flashed: version 9.9.9'
