#!/bin/sh
# tests/dns/run.sh - the DNS checks in the real daemon against a real nsd
# (tests/dns/test_dns.py): every check in both directions, SERVFAIL,
# timeouts, slow answers, DNSBL error codes and zone self-tests; then the
# IPv6 part inside a network namespace this script creates (root), with
# clients on fd00::/64 addresses of the namespace's lo.
set -u
cd "$(dirname "$0")/../.."
[ -x build/host/mailmoat ] || make -s all >/dev/null || { echo "not ok - dns:build"; exit 1; }
rc=0
/usr/bin/python3 tests/dns/test_dns.py || rc=1

ns=mmdns$$
if ip netns add "$ns" 2>/dev/null; then
	trap 'ip netns del "$ns" 2>/dev/null' EXIT INT TERM
	ip -n "$ns" link set lo up
	for a in fd00::1 fd00::25 fd00::26 fd00::27 fd00::28; do
		ip -n "$ns" addr add "$a/128" dev lo nodad
	done
	ip netns exec "$ns" /usr/bin/python3 tests/dns/test_dns.py --ipv6-inner || rc=1
else
	echo "not ok - dns:ipv6 (cannot create a network namespace; needs root)"
	rc=1
fi
exit $rc
