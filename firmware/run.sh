#!/bin/bash
# run.sh - `make run`: build the x86_64 image and boot it under QEMU, with
# SMTP on 127.0.0.1:2525 and the web UI on http://127.0.0.1:8080, and a
# test mail server on the host (tests/integ/backend.py on 127.0.0.1:2526,
# spool in build/run/spool) as the box's backend (10.0.2.2:2526 from the
# box).  The disk (build/run/disk.img) persists between runs like a real
# box; RUN_FRESH=1 starts again from the factory image.  Every client
# reaches the box from QEMU's NAT address 10.0.2.2, which has no PTR, and
# a development machine may have no DNS for the internet, so this dev
# config only logs the checks that depend on it (rdns, dynamic, dnsbl,
# sender_mx, spf): their decisions show in the log and the counters while
# the suggested swaks command gets through.  The firmware's own default
# config (rootfs/etc/mailmoat.conf) rejects on all of them.  KVM is used only
# when a probe boot shows it really works here; else TCG.  Ctrl-C stops.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
firmware/firmware.sh x86_64
x=build/x86_64 r=build/run
mkdir -p "$r"
if [ "${RUN_FRESH:-0}" = 1 ] || [ ! -f "$r/disk.img" ]; then
	cp --sparse=always "$x/disk.img" "$r/disk.img"
	rm -f "$r/password"
fi

# kvm_works - a 25 s probe boot under KVM must reach the boot selector
kvm_works() {
	[ -w /dev/kvm ] || return 1
	if [ ! -f build/kvm-probe ]; then
		echo "run: probing KVM (once; result in build/kvm-probe)"
		cp --sparse=always "$x/disk.img" "$r/probe.img"
		MM_QEMU_ACCEL=kvm timeout 25 firmware/qemu.sh x86_64 "$x/boot" "$r/probe.img" 0 0 \
			> "$r/probe.log" 2>&1 || true
		if grep -q 'mailmoat-boot: booting' "$r/probe.log"; then echo kvm; else echo tcg; fi \
			> build/kvm-probe
		rm -f "$r/probe.img"
	fi
	[ "$(cat build/kvm-probe)" = kvm ]
}
accel=tcg
kvm_works && accel=kvm
echo "run: accelerator $accel"

/usr/bin/python3 tests/integ/backend.py --port 2526 --spool "$r/spool" > "$r/backend.log" 2>&1 &
bpid=$!
qpid=
tpid=
trap 'kill $bpid ${tpid:-} 2>/dev/null; [ -n "$qpid" ] && kill $qpid 2>/dev/null; echo; echo "run: stopped"' EXIT INT TERM
MM_QEMU_ACCEL=$accel firmware/qemu.sh x86_64 "$x/boot" "$r/disk.img" 2525 8080 \
	mmconf.backend=10.0.2.2:2526 mmconf.local_domains=example.com \
	mmconf.recipient_verify=list mmconf.action_rdns=log mmconf.action_dynamic=log \
	mmconf.action_dnsbl=log mmconf.action_sender_mx=log mmconf.action_spf=log \
	> "$r/console.log" 2>&1 &
qpid=$!
echo "run: booting (console: $r/console.log; backend spool: $r/spool)"
i=0
until grep -qE 'admin password|slot . up' "$r/console.log" 2>/dev/null; do
	kill -0 $qpid 2>/dev/null || { tail -n 20 "$r/console.log"; exit 1; }
	sleep 0.5; i=$((i + 1))
	[ $i -gt 600 ] && { echo "run: the box did not come up"; exit 1; }
done
pw=$(sed -n 's/.*admin password for the web UI: user admin password \([A-Za-z0-9]*\).*/\1/p' "$r/console.log" | head -n 1)
if [ -n "$pw" ]; then echo "$pw" > "$r/password"; else pw=$(cat "$r/password" 2>/dev/null || echo "(unknown: RUN_FRESH=1)"); fi
echo
echo "  mailmoat is booting under QEMU ($accel)"
echo "  web UI:  http://127.0.0.1:8080/   user admin   password $pw"
echo "  SMTP:    127.0.0.1:2525   (backend: test mail server on 127.0.0.1:2526)"
echo "  try:     swaks --server 127.0.0.1:2525 --helo test.example.net --from a@example.net --to b@example.com"
echo "  Ctrl-C to stop"
echo
tail -n +1 -f "$r/console.log" &
tpid=$!
wait $qpid || true
qpid=
kill $tpid 2>/dev/null
