#!/bin/bash
# tproxy.sh - the booted x86_64 box in-line, in tproxy mode, with two
# network interfaces (issue 11): sourced by run.sh after the build; on its
# own (after `firmware/firmware.sh x86_64`) it runs just this boot:
#   tests/firmware/tproxy.sh
#
# Two network namespaces the test builds, each holding one tap device
# that QEMU gets as an open fd (tapns.py): the box's eth0 is in "internet"
# (the office router, 192.0.2.254 and 2001:db8:2::fe, with the clients
# 203.0.113.10 and 2001:db8:1::10 behind it), its eth1 in "office" (the
# mail server 192.0.2.25 / 2001:db8:2::25: tests/transparent/office.py,
# aiosmtpd recording the peer it saw).  The host's own network is never
# touched.  The box is provisioned at first boot with bridge = eth0 eth1,
# transparent = tproxy, backend = original, local_addresses = the server
# (v4 and v6), its own address 192.0.2.2 / 2001:db8:2::2 on br0: rcS loads
# the filter modules, bridges, and mailmoat-intercept takes port 25 out
# of the bridge (ebtables broute) to TPROXY (iptables and ip6tables).
# Checked: a mail to the server's address passes through the box (the
# greeting is the box's), and the server sees the client's own address,
# IPv4 and IPv6 (and the decision log names the client and the original
# destination); another port passes untouched (bridged).
if [ -z "${TOP:-}" ]; then
	set -u
	HERE=$(cd "$(dirname "$0")" && pwd)
	TOP=$(cd "$HERE/../.." && pwd)
	cd "$TOP" || exit 1
	. "$HERE/lib.sh"
	FAILED=0 QPID=
	W=$TOP/build/fwtest-tproxy
	rm -rf "$W"; mkdir -p "$W"
	X=$TOP/build/x86_64
	TP_ALONE=1
	trap 'tp_cleanup' EXIT
fi
TPI=mmfi$$ TPO=mmfo$$ TP_OFFICE=
TPY=/usr/bin/python3
TPT=$TOP/tests/transparent

# tp_cleanup - the box, the office server, the namespaces (and their taps)
tp_cleanup() {
	box_kill
	[ -n "$TP_OFFICE" ] && kill "$TP_OFFICE" 2>/dev/null && wait "$TP_OFFICE" 2>/dev/null
	TP_OFFICE=
	for n in $TPI $TPO; do
		ip netns exec "$n" ip tuntap del dev tap0 mode tap 2>/dev/null
		ip netns del "$n" 2>/dev/null
	done
}

# tp_ns NS ADDR... - a namespace with lo up and tap0 carrying ADDRs
tp_ns() {
	local n=$1 a; shift
	ip netns add "$n" || return 1
	ip netns exec "$n" ip link set lo up
	ip netns exec "$n" ip tuntap add dev tap0 mode tap || return 1
	ip netns exec "$n" ip link set tap0 up
	for a; do
		case $a in
		*:*) ip netns exec "$n" ip -6 addr add "$a" dev tap0 nodad ;;
		*) ip netns exec "$n" ip addr add "$a" dev tap0 ;;
		esac
	done
}

# tp_events KIND - the office's JSON events of KIND, one a line
tp_events() { grep "\"ev\": \"$1\"" "$W/office.log" 2>/dev/null; }

tp_run() {
	tp_ns "$TPI" 192.0.2.254/24 2001:db8:2::fe/64 &&
		ip netns exec "$TPI" ip addr add 203.0.113.10/32 dev lo &&
		ip netns exec "$TPI" ip -6 addr add 2001:db8:1::10/128 dev lo &&
		tp_ns "$TPO" 192.0.2.25/24 2001:db8:2::25/64 &&
		ip netns exec "$TPO" ip route add default via 192.0.2.254 &&
		ip netns exec "$TPO" ip -6 route add default via 2001:db8:2::fe ||
		{ nok "tproxy box: namespaces and taps"; return; }
	: > "$W/office.log"
	ip netns exec "$TPO" "$TPY" "$TPT/office.py" "$W/office.log" plain 25 8080 \
		192.0.2.25 2001:db8:2::25 > /dev/null 2> "$W/office.err" &
	TP_OFFICE=$!
	local i=0
	until tp_events ready > /dev/null || [ $i -gt 200 ]; do sleep 0.1; i=$((i + 1)); done
	tp_events ready > /dev/null || { nok "tproxy box: office server up" "$(tail -n 3 "$W/office.err")"; return; }

	cp --sparse=always "$X/disk.img" "$W/disk-tproxy.img"
	BOX_WRAP="$TPY $HERE/tapns.py $TPI:tap0 $TPO:tap0 --" \
		box_start x86_64 "$X/boot" "$W/disk-tproxy.img" "$W/boot-tproxy.log" \
		mmconf.hostname=mx.fwtest.example mmconf.local_domains=example.com \
		mmconf.recipient_verify=list mmconf.action_dnsbl=off mmconf.action_rdns=off \
		mmconf.action_dynamic=off mmconf.action_sender_mx=off mmconf.action_spf=off \
		mmconf.action_greylist=off mmconf.greet_pause=0 mmconf.dns_timeout=2s \
		mmconf.transparent=tproxy mmconf.backend=original mmconf.bridge=eth0,eth1 \
		mmconf.listen=0.0.0.0:25,[::]:25 mmconf.local_addresses=192.0.2.25,2001:db8:2::25 \
		mmnet.NET_MODE=static mmnet.NET_ADDR=192.0.2.2/24 mmnet.NET_GW=192.0.2.254 \
		mmnet.NET_DNS=192.0.2.254 mmnet.NET_ADDR6=2001:db8:2::2/64 \
		mmnet.NET_GW6=2001:db8:2::fe mm.debug=1
	local L=$W/boot-tproxy.log
	if box_wait_log "$L" 'mailmoat is serving' 240; then
		ok "tproxy box (two NICs in namespaces): mailmoat is serving"
	else
		nok "tproxy box (two NICs in namespaces): mailmoat is serving" \
			"$(grep -a 'mailmoat-rc' "$L" | tail -n 4 | tr '\n' ' ')"
		return
	fi
	check "tproxy box: eth0 (router side) and eth1 (server side) bridged" \
		grep -q 'network: bridge br0 of eth0 eth1' "$L"
	check "tproxy box: IPv6 address of its own on br0" \
		grep -q 'network: IPv6 2001:db8:2::2/64 via 2001:db8:2::fe on br0' "$L"
	check "tproxy box: packet filter rules installed (iptables, ip6tables, ebtables broute)" \
		grep -q 'packet filter: transparent=tproxy for 192.0.2.25 2001:db8:2::25 port 25 to port 25 installed' "$L"
	check "tproxy box: no packet filter errors" eval "! grep -aq 'mailmoat-intercept:' '$L'"

	local fam src dst d r n0 new
	for fam in 4 6; do
		if [ $fam = 4 ]; then src=203.0.113.10 dst=192.0.2.25; else src=2001:db8:1::10 dst=2001:db8:2::25; fi
		n0=$(tp_events msg | wc -l)
		r=$(ip netns exec "$TPI" "$TPY" "$TPT/client.py" "$src" "$dst" 25 user@example.com 2>&1 | tail -n 1)
		echo "$r" > "$W/client-v$fam.json"
		new=$(tp_events msg | tail -n +$((n0 + 1)))
		if grep -q '"banner_text": "mx.fwtest.example' <<< "$r"; then
			ok "tproxy box v$fam: SMTP to the server's address $dst is answered by the box"
		else
			nok "tproxy box v$fam: SMTP to the server's address $dst is answered by the box" "$r"
		fi
		if grep -q '"final": 250' <<< "$r" && [ "$(grep -c . <<< "$new")" = 1 ] &&
			grep -q "\"peer\": \"$src\", \"local\": \"$dst\"" <<< "$new"; then
			ok "tproxy box v$fam: mail from $src passes through the box, the server saw $src"
		else
			nok "tproxy box v$fam: mail from $src passes through the box, the server saw $src" \
				"client $r office $new $(grep -a 'mailmoat\[' "$L" | tail -n 3 | tr '\n' ' ')"
		fi
		# the daemon's decision log (on the console: mm.debug=1)
		[ $fam = 4 ] && d="$dst:25" || d="[$dst]:25"
		check "tproxy box v$fam: decision log names client $src and original destination $d" \
			grep -aqF "client=$src dst=$d ptr=- helo=client.example.net from=<sender@example.net> to=<user@example.com> action=accept" "$L"
		n0=$(tp_events tcp | wc -l)
		r=$(ip netns exec "$TPI" "$TPY" "$TPT/client.py" --tcp "$src" "$dst" 8080 2>&1 | tail -n 1)
		new=$(tp_events tcp | tail -n +$((n0 + 1)))
		if grep -q '"got": "hello"' <<< "$r" && grep -q "\"peer\": \"$src\"" <<< "$new"; then
			ok "tproxy box v$fam: port 8080 is bridged untouched (the server saw $src)"
		else
			nok "tproxy box v$fam: port 8080 is bridged untouched" "client $r office $new"
		fi
	done
}

tp_run
tp_cleanup
if [ -n "${TP_ALONE:-}" ]; then
	trap - EXIT
	[ "$FAILED" = 0 ]
fi
