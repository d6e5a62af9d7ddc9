#!/bin/bash
# tproxy.sh - the booted x86_64 box in-line, in tproxy mode, with two
# network interfaces (issue 11): sourced by run.sh after the build; on its
# own (after `firmware/firmware.sh x86_64`) it runs just these boots:
#   tests/firmware/tproxy.sh [routed|bridge ...]      (default: both)
#
# Two network namespaces the test builds, each holding one tap device
# that QEMU gets as an open fd (tapns.py): the box's eth0 (router side) is
# in "internet", its eth1 (server side) in "office", where the mail server
# 192.0.2.25 / 2001:db8:2::25 runs (tests/transparent/office.py: aiosmtpd
# recording the peer it saw).  The host's own network is never touched.
# The box is provisioned at first boot with transparent = tproxy, backend =
# original, local_addresses = the server (v4 and v6), and
#   routed: eth0 203.0.113.1/24 2001:db8:1::1/64, eth1 192.0.2.1/24
#     2001:db8:2::1/64 (the server's gateway); the clients 203.0.113.10 /
#     2001:db8:1::10 sit on the internet side, routed through the box;
#   bridge: bridge = eth0 eth1, the box's own 192.0.2.2 / 2001:db8:2::2 on
#     br0; "internet" plays the office router (192.0.2.254, the server's
#     gateway) with the clients behind it; port 25 leaves the bridge
#     through ebtables broute.
# rcS loads the filter modules and mailmoat-intercept installs TPROXY
# (iptables and ip6tables).  Checked, IPv4 and IPv6: a mail to the
# server's address passes through the box (the greeting is the box's) and
# the server sees the client's own address; the decision log names the
# client and the original destination; another port passes untouched.
# One boot per topology (about 30 s each under TCG on an idle machine).
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
	[ $# -gt 0 ] && TP_TOPOS="$*"
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

# tp_run routed|bridge - one boot of the box in that topology
tp_run() {
	local topo=$1 net
	tp_cleanup
	if [ "$topo" = routed ]; then
		tp_ns "$TPI" 203.0.113.10/24 2001:db8:1::10/64 &&
			ip netns exec "$TPI" ip route add default via 203.0.113.1 &&
			ip netns exec "$TPI" ip -6 route add default via 2001:db8:1::1 &&
			tp_ns "$TPO" 192.0.2.25/24 2001:db8:2::25/64 &&
			ip netns exec "$TPO" ip route add default via 192.0.2.1 &&
			ip netns exec "$TPO" ip -6 route add default via 2001:db8:2::1 ||
			{ nok "tproxy box $topo: namespaces and taps"; return; }
		net="mmnet.NET_MODE=static mmnet.NET_ADDR=203.0.113.1/24
		 mmnet.NET_DNS=203.0.113.10 mmnet.NET_ADDR6=2001:db8:1::1/64
		 mmnet.NET_IF2=eth1 mmnet.NET_ADDR2=192.0.2.1/24,2001:db8:2::1/64"
	else
		tp_ns "$TPI" 192.0.2.254/24 2001:db8:2::fe/64 &&
			ip netns exec "$TPI" ip addr add 203.0.113.10/32 dev lo &&
			ip netns exec "$TPI" ip -6 addr add 2001:db8:1::10/128 dev lo &&
			tp_ns "$TPO" 192.0.2.25/24 2001:db8:2::25/64 &&
			ip netns exec "$TPO" ip route add default via 192.0.2.254 &&
			ip netns exec "$TPO" ip -6 route add default via 2001:db8:2::fe ||
			{ nok "tproxy box $topo: namespaces and taps"; return; }
		net="mmconf.bridge=eth0,eth1 mmnet.NET_MODE=static mmnet.NET_ADDR=192.0.2.2/24
		 mmnet.NET_GW=192.0.2.254 mmnet.NET_DNS=192.0.2.254
		 mmnet.NET_ADDR6=2001:db8:2::2/64 mmnet.NET_GW6=2001:db8:2::fe"
	fi
	: > "$W/office.log"
	ip netns exec "$TPO" "$TPY" "$TPT/office.py" "$W/office.log" plain 25 8080 \
		192.0.2.25 2001:db8:2::25 > /dev/null 2> "$W/office.err" &
	TP_OFFICE=$!
	local i=0
	until tp_events ready > /dev/null || [ $i -gt 200 ]; do sleep 0.1; i=$((i + 1)); done
	tp_events ready > /dev/null || { nok "tproxy box $topo: office server up" "$(tail -n 3 "$W/office.err")"; return; }

	cp --sparse=always "$X/disk.img" "$W/disk-tproxy.img"
	local L=$W/boot-tproxy-$topo.log T="tproxy box $topo"
	# shellcheck disable=SC2086
	BOX_WRAP="$TPY $HERE/tapns.py $TPI:tap0 $TPO:tap0 --" \
		box_start x86_64 "$X/boot" "$W/disk-tproxy.img" "$L" \
		mmconf.hostname=mx.fwtest.example mmconf.local_domains=example.com \
		mmconf.recipient_verify=list mmconf.action_dnsbl=off mmconf.action_rdns=off \
		mmconf.action_dynamic=off mmconf.action_sender_mx=off mmconf.action_spf=off \
		mmconf.action_greylist=off mmconf.greet_pause=0 mmconf.dns_timeout=2s \
		mmconf.transparent=tproxy mmconf.backend=original \
		mmconf.listen=0.0.0.0:25,[::]:25 mmconf.local_addresses=192.0.2.25,2001:db8:2::25 \
		$net mm.debug=1
	if box_wait_log "$L" 'mailmoat is serving' 240; then
		ok "$T (two NICs in namespaces): mailmoat is serving"
	else
		nok "$T (two NICs in namespaces): mailmoat is serving" \
			"$(grep -a 'mailmoat-rc' "$L" | tail -n 4 | tr '\n' ' ')"
		return
	fi
	if [ "$topo" = routed ]; then
		check "$T: eth0 (router side) and eth1 (server side) addressed" \
			eval "grep -q 'network: static 203.0.113.1/24 via none on eth0' '$L' &&
			grep -q 'network: eth1 192.0.2.1/24 2001:db8:2::1/64' '$L'"
	else
		check "$T: eth0 (router side) and eth1 (server side) bridged, IPv6 address on br0" \
			eval "grep -q 'network: bridge br0 of eth0 eth1' '$L' &&
			grep -q 'network: IPv6 2001:db8:2::2/64 via 2001:db8:2::fe on br0' '$L'"
	fi
	local tools="iptables, ip6tables"
	[ "$topo" = bridge ] && tools="$tools, ebtables broute"
	check "$T: packet filter rules installed ($tools)" \
		grep -q 'packet filter: transparent=tproxy for 192.0.2.25 2001:db8:2::25 port 25 to port 25 installed' "$L"
	check "$T: no packet filter errors" eval "! grep -aq 'mailmoat-intercept:' '$L'"

	local fam src dst d r n0 new
	for fam in 4 6; do
		if [ $fam = 4 ]; then src=203.0.113.10 dst=192.0.2.25; else src=2001:db8:1::10 dst=2001:db8:2::25; fi
		n0=$(tp_events msg | wc -l)
		r=$(ip netns exec "$TPI" "$TPY" "$TPT/client.py" "$src" "$dst" 25 user@example.com 2>&1 | tail -n 1)
		echo "$r" > "$W/client-v$fam.json"
		new=$(tp_events msg | tail -n +$((n0 + 1)))
		if grep -q '"banner_text": "mx.fwtest.example' <<< "$r"; then
			ok "$T v$fam: SMTP to the server's address $dst is answered by the box"
		else
			nok "$T v$fam: SMTP to the server's address $dst is answered by the box" "$r"
		fi
		if grep -q '"final": 250' <<< "$r" && [ "$(grep -c . <<< "$new")" = 1 ] &&
			grep -q "\"peer\": \"$src\", \"local\": \"$dst\"" <<< "$new"; then
			ok "$T v$fam: mail from $src passes through the box, the server saw $src"
		else
			nok "$T v$fam: mail from $src passes through the box, the server saw $src" \
				"client $r office $new $(grep -a 'mailmoat\[' "$L" | tail -n 3 | tr '\n' ' ')"
		fi
		# the daemon's decision log (on the console: mm.debug=1)
		[ $fam = 4 ] && d="$dst:25" || d="[$dst]:25"
		check "$T v$fam: decision log names client $src and original destination $d" \
			grep -aqF "client=$src dst=$d ptr=- helo=client.example.net from=<sender@example.net> to=<user@example.com> action=accept" "$L"
		n0=$(tp_events tcp | wc -l)
		r=$(ip netns exec "$TPI" "$TPY" "$TPT/client.py" --tcp "$src" "$dst" 8080 2>&1 | tail -n 1)
		new=$(tp_events tcp | tail -n +$((n0 + 1)))
		if grep -q '"got": "hello"' <<< "$r" && grep -q "\"peer\": \"$src\"" <<< "$new"; then
			ok "$T v$fam: port 8080 passes untouched, $([ $topo = bridge ] && echo bridged || echo routed) (the server saw $src)"
		else
			nok "$T v$fam: port 8080 passes untouched" "client $r office $new"
		fi
	done
}

for t in ${TP_TOPOS:-routed bridge}; do tp_run "$t"; done
tp_cleanup
if [ -n "${TP_ALONE:-}" ]; then
	trap - EXIT
	[ "$FAILED" = 0 ]
fi
