#!/bin/sh
# qemu.sh - boot a board's disk under QEMU (foreground; console on stdout).
#
#   firmware/qemu.sh BOARD BOOTDIR DISK SMTP_PORT HTTP_PORT [APPEND...]
#
# BOOTDIR holds vmlinuz and initramfs.cpio.gz (build/<board>/boot): QEMU's
# -kernel plays the boot loader, the initramfs is the boot selector that
# picks slot A or B of DISK.  127.0.0.1:SMTP_PORT and :HTTP_PORT on the
# host are forwarded to the box's ports 25 and 80; the host is 10.0.2.2
# from the box.  -no-reboot: a reboot (or poweroff) of the box ends QEMU,
# the caller decides what "power on again" means.  MM_QEMU_ACCEL=kvm uses
# KVM (only when it really works on the machine: see bench/firmware).
# MM_TAP_FDS="FD..." (open tap devices, tests/firmware/tapns.py) replaces
# the user networking: one virtio NIC per fd, eth0, eth1, ... in that
# order (MACs 52:54:00:4d:4d:0N), no host forwards (the ports are unused).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/board/$1/board.conf"
boot=$2 disk=$3 sp=$4 hp=$5
shift 5
accel=${MM_QEMU_ACCEL:-tcg}
case $ARCH in
x86_64)
	q="qemu-system-x86_64 -M q35 -cpu qemu64"
	[ "$accel" = kvm ] && q="qemu-system-x86_64 -M q35 -cpu host" ;;
aarch64)
	q="qemu-system-aarch64 -M virt -cpu cortex-a57" ;;
armhf)
	q="qemu-system-arm -M virt,highmem=off -cpu cortex-a15" ;;
esac
net="-netdev user,id=n0,hostfwd=tcp:127.0.0.1:$sp-:25,hostfwd=tcp:127.0.0.1:$hp-:80
	-device virtio-net-pci,netdev=n0,romfile="
if [ -n "${MM_TAP_FDS:-}" ]; then
	net= n=0
	for fd in $MM_TAP_FDS; do
		net="$net -netdev tap,id=n$n,fd=$fd -device virtio-net-pci,netdev=n$n,mac=52:54:00:4d:4d:0$n,romfile="
		n=$((n + 1))
	done
fi
# shellcheck disable=SC2086
exec $q -m "${MM_QEMU_MEM:-128}" -accel "$accel" -smp 1 -nographic -no-reboot \
	-kernel "$boot/vmlinuz" -initrd "$boot/initramfs.cpio.gz" \
	-append "console=$CONSOLE panic=-1 loglevel=4 mm.disk=/dev/vda $*" \
	-drive file="$disk",format=raw,if=none,id=d0,cache=writeback \
	-device virtio-blk-pci,drive=d0 \
	$net \
	-object rng-random,id=rng0,filename=/dev/urandom \
	-device virtio-rng-pci,rng=rng0 < /dev/null
