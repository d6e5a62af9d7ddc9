#!/bin/bash
# render.sh - how long the web UI's pages take on a booted box under QEMU:
# time to the last byte (curl's time_total, a fresh connection each time,
# logged in) of dashboard, decisions, settings and status, N times each
# (and 5 logins: the PBKDF2 of the password is the dearest request),
# for every board named (default: x86_64 rpi4), booted one after the other
# from its factory disk (build/<board>/disk.img: `make firmware BOARD=...`)
# with the firmware suite's helpers (tests/firmware/lib.sh) and a backend
# on the host.  Before timing, M mails go through the box: the decisions
# page shows its most, the newest 500 (the ring keeps 2048).
#
#   bench/webui/render.sh [BOARD...]     N=30 M=500 by default
#
# Prints one line per board and page: median, 90th percentile and max in
# milliseconds; raw times go to build/bench-webui/<board>-<page>.txt.
# The rpi4 root runs on qemu-system-aarch64 -M virt (cortex-a57, TCG):
# the same kernel, BusyBox httpd and CGIs as the Pi, on an emulated CPU.
set -u
TOP=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$TOP/tests/firmware
cd "$TOP"
. "$HERE/lib.sh"
N=${N:-30} M=${M:-500}
W=$TOP/build/bench-webui
rm -rf "$W"; mkdir -p "$W"
QPID= BPID=
trap 'box_kill; [ -n "$BPID" ] && kill $BPID 2>/dev/null' EXIT
BP=$(free_port)
/usr/bin/python3 tests/integ/backend.py --port "$BP" --spool "$W/spool" > "$W/backend.log" 2>&1 &
BPID=$!
CONF="mmconf.backend=10.0.2.2:$BP mmconf.hostname=mx.bench.example
 mmconf.local_domains=example.com mmconf.recipient_verify=list
 mmconf.action_dnsbl=off mmconf.action_rdns=off mmconf.action_dynamic=off
 mmconf.action_sender_mx=off mmconf.action_spf=off mmconf.action_greylist=off
 mmconf.greet_pause=0s mmconf.dns_timeout=2s mm.committimeout=40"
# stats FILE - median p90 max (ms) of the seconds in FILE
stats() {
	sort -n "$1" | awk '{v[NR] = $1 * 1000} END {
		printf "%.0f %.0f %.0f", v[int((NR + 1) / 2)], v[int(NR * 0.9 + 0.5)], v[NR] }'
}
for b in ${@:-x86_64 rpi4}; do
	R=$TOP/build/$b
	[ -f "$R/disk.img" ] || { echo "# $b: no build/$b/disk.img (make firmware BOARD=$b)"; continue; }
	cp --sparse=always "$R/disk.img" "$W/$b-disk.img"
	MM_QEMU_MEM=${MM_QEMU_MEM:-128} box_start $b "$R/boot" "$W/$b-disk.img" "$W/$b-boot.log" $CONF
	if ! box_banner 300; then
		echo "# $b: no SMTP banner: $(tail -n 3 "$W/$b-boot.log" | tr '\n' ' ')"
		box_kill; continue
	fi
	box_wait_log "$W/$b-boot.log" 'mailmoat is serving' 60
	PW=$(sed -n 's/.*admin password for the web UI: user admin password \([A-Za-z0-9]*\).*/\1/p' "$W/$b-boot.log" | head -n 1)
	# M messages, 20 per SMTP session (smtplib)
	/usr/bin/python3 - "$SP" "$M" <<'PY'
import smtplib, sys
port, m = int(sys.argv[1]), int(sys.argv[2])
s = None
for i in range(m):
    if i % 20 == 0:
        if s:
            s.quit()
        s = smtplib.SMTP("127.0.0.1", port, "client.example.net", 60)
    s.sendmail("alice%d@example.net" % i, ["bob@example.com"],
               "Subject: bench %d\r\n\r\nhello\r\n" % i)
s.quit()
PY
	# the login itself: PBKDF2-SHA256, 100000 iterations, on the box
	: > "$W/$b-login.txt"
	for i in $(seq 5); do
		curl -s -o /dev/null -w '%{time_total}\n' -d user=admin \
			--data-urlencode "password=$PW" "http://127.0.0.1:$HP/cgi-bin/login" >> "$W/$b-login.txt"
	done
	echo "$b login(POST) median/p90/max_ms $(stats "$W/$b-login.txt")"
	web_login
	for p in dashboard decisions settings status; do
		curl -s -o /dev/null -b "$W/web.jar" "http://127.0.0.1:$HP/cgi-bin/$p"   # warm
		: > "$W/$b-$p.txt"
		for i in $(seq "$N"); do
			curl -s -o /dev/null -w '%{time_total}\n' -b "$W/web.jar" \
				"http://127.0.0.1:$HP/cgi-bin/$p" >> "$W/$b-$p.txt"
		done
		sz=$(curl -s -b "$W/web.jar" "http://127.0.0.1:$HP/cgi-bin/$p" | wc -c)
		echo "$b $p median/p90/max_ms $(stats "$W/$b-$p.txt") bytes $sz"
	done
	box_kill
done
