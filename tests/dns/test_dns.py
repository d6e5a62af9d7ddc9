#!/usr/bin/python3
"""test_dns.py - the DNS checks (dnsbl, rdns, dynamic, helo, sender_tld,
sender_mx) in the real daemon, against a real nsd.

Peers, all real: nsd (tests/lib/dnsserver.py) serving the zones below,
behind a DelayProxy that only delays or drops chosen names (timeouts,
slow answers; the answers themselves are nsd's); SERVFAIL from zones nsd
is configured for but cannot load; the aiosmtpd backend; the real
build/host/mailmoat; SMTP clients from distinct 127.0.10.x addresses.
IPv6: the same inside a network namespace (--ipv6-inner, started by
run.sh through `ip netns exec`), clients from fd00::/64 addresses on lo.

Prints "ok - dns:NAME" / "not ok - dns:NAME # detail".
"""
import ipaddress
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import mm                                          # noqa: E402
from dnsserver import DnsServer, DelayProxy       # noqa: E402

results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    print("%s - dns:%s%s" % ("ok" if cond else "not ok", name,
                             "" if cond else " # " + str(detail)[:300]))
    sys.stdout.flush()


def strip_id(text):
    return mm.ID_RE.sub("", text)


def expect(name, reply, want):
    """expect - the reply, without its [id=...], equals want exactly."""
    got = strip_id(reply.text) if reply is not None else None
    check(name, got == want, "got %r, want %r" % (got, want))


ORG = "mmtest.org"
RDNS_TEXT = ("Your IP address does not resolve to a hostname - no proper "
             "reverse mapping exists")
DYN_TEXT = ("You are a dynamic host - please use your providers mailserver "
            "to send emails")


MXW = "mxw.com"
# Addresses a mail server cannot be reached at, by the name the 550 gives;
# the tests' reachable MX hosts are in 198.18.0.0/15 (benchmarking).
REFUSED = [("lo", "A", "127.0.0.1", "loopback"),
           ("lo6", "AAAA", "::1", "loopback"),
           ("ll", "A", "169.254.7.7", "link-local"),
           ("ll6", "AAAA", "fe80::25", "link-local"),
           ("mc", "A", "224.0.0.25", "multicast"),
           ("mc6", "AAAA", "ff02::25", "multicast"),
           ("doc", "A", "192.0.2.25", "documentation"),
           ("doc2", "A", "198.51.100.25", "documentation"),
           ("doc3", "A", "203.0.113.25", "documentation"),
           ("doc6", "AAAA", "2001:db8::25", "documentation"),
           ("unspec", "A", "0.0.0.0", "unspecified"),
           ("unspec6", "AAAA", "::", "unspecified"),
           ("mapped", "AAAA", "::ffff:127.0.0.1", "loopback")]
PRIVATE = [("priv10", "A", "10.1.2.3"), ("priv172", "A", "172.20.1.1"),
           ("priv192", "A", "192.168.4.4"), ("cgn", "A", "100.64.1.1"),
           ("ula", "AAAA", "fd12::25")]


def mx_world():
    """mx_world - the zone mxw.com: NAME MX 10 NAME-host, NAME-host with
    the address of REFUSED / PRIVATE; more cases by hand."""
    z = ["good-host A 198.18.7.7", "txtonly TXT \"no address\""]
    for name, rtype, addr, *_ in REFUSED + PRIVATE:
        z += ["%s MX 10 %s-host.%s." % (name, name, MXW),
              "%s-host %s %s" % (name, rtype, addr),
              "a-%s %s %s" % (name, rtype, addr)]   # for mx-or-a
    z += ["gone MX 10 nohost.%s." % MXW,
          "noaddr MX 10 txtonly.%s." % MXW,
          "mixed MX 10 lo-host.%s." % MXW, "mixed MX 20 good-host.%s." % MXW,
          "mixgone MX 10 nohost.%s." % MXW,
          "mixgone MX 20 lo-host.%s." % MXW,
          "dual MX 10 dual-host.%s." % MXW, "dual-host A 127.0.0.1",
          "dual-host AAAA 2a00:1450:4001::25",
          "tmp MX 10 mx.broken-mxhost.com.",
          "slow MX 10 mx.slowhost.%s." % MXW,
          "tmpmix MX 10 mx.broken-mxhost.com.",
          "tmpmix MX 20 lo-host.%s." % MXW,
          "tmpok MX 10 mx.broken-mxhost.com.",
          "tmpok MX 20 good-host.%s." % MXW,
          "a-good A 198.18.7.8", "a-good6 AAAA 2a00:1450:4001::26"]
    return z


def host(n):
    return "127.0.10.%d" % n


def zones():
    """zones - the test's DNS data: clients 127.0.10.N, senders, lists."""
    rev = []        # in 127.in-addr.arpa
    org = ["good.client A 127.0.10.1",
           "good.client TXT \"client\"",
           "unconfirmed.client A 127.0.99.99",
           "dsl-127-0-10-4.dyn A 127.0.10.4",
           "noaddr-host TXT \"no address here\""]

    def ptr(n, name):
        rev.append("%d.10.0 PTR %s." % (n, name))

    # 1: the good client; 2: no PTR; 3: PTR not confirmed; 4: dynamic;
    # 6: PTR zone SERVFAIL; 7: PTR dropped (timeout); 8: PTR slow
    ptr(1, "good.client." + ORG)
    ptr(3, "unconfirmed.client." + ORG)
    ptr(4, "dsl-127-0-10-4.dyn." + ORG)
    ptr(7, "host7.senders." + ORG)
    org.append("host7.senders A 127.0.10.7")
    for n in (5, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21):
        ptr(n, "host%d.senders.%s" % (n, ORG))
        org.append("host%d.senders A 127.0.10.%d" % (n, n))

    bl = [
        "2.0.0.127 A 127.0.0.2",            # RFC 5782 test point
        "5.10.0.127 A 127.0.0.2", "5.10.0.127 A 127.0.0.4",
        "9.10.0.127 A 127.255.255.254",     # "public resolver" code
        "10.10.0.127 A 127.0.0.99",         # outside the accepted set
        "11.10.0.127 A 127.0.0.2",          # dropped by the proxy
    ]
    # a list that refuses us: everything, even 127.0.0.1, answers 127.0.0.2
    refused = ["* A 127.0.0.2"]
    return {
        "127.in-addr.arpa": rev,
        ORG: org,
        "bl." + ORG: bl,
        "refused." + ORG: refused,
        "good-sender.com": ["@ MX 10 mx.good-sender.com.",
                            "mx A 198.18.10.200",
                            "@ TXT \"v=spf1 ip4:127.0.10.0/24 -all\""],
        "nomx-sender.com": ["@ A 198.18.10.201"],
        "nullmx-sender.com": ["@ MX 0 ."],
        "slow-sender.com": ["@ MX 10 mx.slow-sender.com."],
        # 40 MX records: over 512 bytes, so nsd truncates the UDP answer
        # and c-ares must retry over TCP
        "bigmx-sender.com": ["@ MX %d mx%02d-with-a-long-name.bigmx-sender"
                             ".com." % (i, i) for i in range(40)] +
                            ["mx%02d-with-a-long-name A 198.18.11.%d" % (i, i)
                             for i in range(40)],
        # sender_mx: the MX hosts must resolve to a reachable address
        MXW: mx_world(),
        # the cache: same MX, one kept 300 s, one 1 s; update_zones()
        # turns both into null MX
        "ttl-sender.com": ["long 300 MX 10 mx.good-sender.com.",
                           "short 1 MX 10 mx.good-sender.com."],
        # sender_mx = mx-or-a: no MX (NODATA here), and the A/AAAA of the
        # implicit MX fails: A_FAIL_RULES send those queries to a second
        # nsd where the zone is broken (SERVFAIL), or drop them (timeout)
        "nomx-afail.com": ["@ TXT \"no MX; A and AAAA answer SERVFAIL\""],
        "nomx-slowa.com": ["@ TXT \"no MX; A and AAAA time out\""],
    }


SERVFAIL = ["6.10.0.127.in-addr.arpa", "broken-sender.com",
            "broken-mxhost.com"]
RULES = [("7.10.0.127.in-addr.arpa", None),      # PTR timeout
         ("8.10.0.127.in-addr.arpa", 300),       # PTR slow, in time
         ("11.10.0.127.bl." + ORG, None),         # DNSBL timeout
         ("slow-sender.com", None),               # MX timeout
         ("slowhost." + MXW, None),               # MX host A timeout
         # client 13: its PTR and DNSBL answers all come 300 ms late
         ("13.10.0.127.in-addr.arpa", 300),
         ("13.10.0.127.bl." + ORG, 300),
         ("13.10.0.127.refused." + ORG, 300),
         # client 21: its PTR comes 300 ms late (lookups join in flight)
         ("21.10.0.127.in-addr.arpa", 300)]


def a_fail_rules(broken):
    """a_fail_rules - proxy rules for the implicit-MX failures: A/AAAA of
    nomx-afail.com from the broken nsd, of nomx-slowa.com dropped."""
    return [("nomx-afail.com", 0, ("A", "AAAA"), (broken.host, broken.port)),
            ("nomx-slowa.com", None, ("A", "AAAA"))]


def a_fallback_test(d, d2):
    """a_fallback_test - sender_mx = mx-or-a, no MX, and the A/AAAA lookup
    of the implicit MX fails temporarily: a tempfail, never a 550 (d2);
    sender_mx = mx refuses the same domains for having no MX (d)."""
    tmp = "451 4.4.3 Temporary DNS failure resolving the sender domain "
    expect("sender_mx=mx-or-a/no MX, A servfail tempfails",
           mail(d2, "a@nomx-afail.com"), tmp + "nomx-afail.com")
    expect("sender_mx=mx-or-a/no MX, A timeout tempfails",
           mail(d2, "a@nomx-slowa.com"), tmp + "nomx-slowa.com")
    for dom in ("nomx-afail.com", "nomx-slowa.com"):
        expect("sender_mx=mx/%s without MX refused" % dom,
               mail(d, "a@" + dom),
               "550 5.7.1 Sender domain has no MX record: " + dom)


def cache_test(d, dns):
    """cache_test - answers are cached for their TTL, and only that long."""
    r1 = mail(d, "a@long.ttl-sender.com")
    r2 = mail(d, "a@short.ttl-sender.com")
    check("cache/before the zone change", r1.code == 250 and r2.code == 250,
          (r1, r2))
    z = zones()
    z["ttl-sender.com"] = ["long 300 MX 0 .", "short 1 MX 0 ."]
    dns.update(z)
    rc, ans = dns.query("short.ttl-sender.com", "MX")
    check("cache/nsd serves the new zone", ans == ["0 ."], (rc, ans))
    r = mail(d, "a@long.ttl-sender.com")
    check("cache/answer within its TTL comes from the cache",
          r.code == 250, r)
    # the 1 s TTL runs out (a wait for expiry, not a timed assertion)
    mm.wait_for(lambda: mail(d, "a@short.ttl-sender.com").code == 550,
                "the 1 s TTL to expire", timeout=10, step=0.5)
    expect("cache/expired answer is fetched again",
           mail(d, "a@short.ttl-sender.com"),
           "550 5.7.1 Sender domain does not accept mail (null MX): "
           "short.ttl-sender.com")
    st = d.stats().get("dns", {})
    check("cache/stats count hits",
          st.get("cache_hits", 0) > 0 and st.get("sent", 0) > 0, st)


def reload_test(be, dns_addr):
    """reload_test - SIGHUP applies a new dns_servers."""
    from dnsserver import Blackhole
    with Blackhole() as bh:
        d = mm.Daemon(be.port, **conf_for(bh.addr, dns_timeout="500ms"))
        try:
            d.start()
            expect("reload/dead server: tempfail", banner(d, host(1)),
                   "451 4.4.3 Temporary DNS failure looking up your "
                   "reverse mapping")
            check("reload/the blackhole saw the queries", bh.count > 0,
                  bh.count)
            # a server that is not there at all (ICMP port unreachable)
            d.conf["dns_servers"] = "127.0.0.1:%d" % mm.free_port()
            d.write_conf()
            d.reload()
            expect("reload/closed port: tempfail", banner(d, host(1)),
                   "451 4.4.3 Temporary DNS failure looking up your "
                   "reverse mapping")
            d.conf["dns_servers"] = dns_addr
            d.write_conf()
            d.reload()
            b = banner(d, host(1))
            check("reload/new dns_servers used", b.code == 220, b)
        finally:
            d.cleanup()


def banner(d, src):
    with mm.Client(d.port, src=src) as c:
        b = c.banner()
        try:
            c.cmd("QUIT")
        except (mm.Closed, mm.HarnessError):
            pass
        return b


def helo(d, name, src=None):
    with mm.Client(d.port, src=src or host(1)) as c:
        b = c.banner()
        if b.code != 220:
            return b
        r = c.cmd("EHLO " + name)
        c.cmd("QUIT")
        return r


def mail(d, sender, src=None, helo_name="good.client." + ORG):
    with mm.Client(d.port, src=src or host(1)) as c:
        b = c.banner()
        if b.code != 220:
            return b
        r = c.cmd("EHLO " + helo_name)
        if r.code != 250:
            return r
        r = c.cmd("MAIL FROM:<%s>" % sender if sender else "MAIL FROM:<>")
        c.cmd("QUIT")
        return r


def datafile_test(be, px):
    """datafile_test - the TLD list and the dynamic patterns are data: a
    file named in the config replaces the built-in copy, and SIGHUP
    re-reads it (no new build)."""
    with open(os.path.join(HERE, "..", "..", "data", "tlds.txt")) as f:
        tlds = f.read()
    d = mm.Daemon(be.port, **conf_for(px.addr))
    d.conf["tld_list"] = d.write_file("tlds", tlds + "INVALIDTLD\n")
    d.conf["dynamic_patterns"] = d.write_file("dyn", "strong senders\n")
    d.write_conf()
    try:
        d.start()
        # the TLD passes now; the MX lookup is next (nsd refuses it)
        r = mail(d, "a@x.invalidtld")
        check("data/tld_list file adds a TLD", r.code == 451 and
              "resolving the sender domain" in r.text, r)
        expect("data/dynamic_patterns file replaces the rules",
               banner(d, host(14)), "550 5.7.1 " + DYN_TEXT)
        d.write_file("tlds", tlds)
        d.write_file("dyn", "# nothing\n")
        d.reload()
        expect("data/reload re-reads tld_list", mail(d, "a@x.invalidtld"),
               "550 5.7.1 Sender domain has an unregistered TLD: "
               "x.invalidtld")
        b = banner(d, host(14))
        check("data/reload re-reads dynamic_patterns", b.code == 220, b)
        d.write_file("dyn", "bogus line\n")
        n = len(d.log_text())
        d.signal(__import__("signal").SIGHUP)
        mm.wait_for(lambda: "keeping the old configuration" in
                    d.log_text()[n:], "the reload to be refused")
        check("data/bad pattern file refused on reload, daemon lives",
              d.alive() and "dyn:1: unknown directive" in d.log_text()[n:],
              d.log_text()[n:][-300:])
    finally:
        d.cleanup()


def late_dns_test(be):
    """late_dns_test - the DNS server comes up after the daemon: the zone
    is "unreachable" (not suspended) and used as soon as it answers."""
    port = mm.free_port()
    d = mm.Daemon(be.port, dns_servers="127.0.0.1:%d" % port,
                  dns_timeout="500ms", dnsbl="bl." + ORG,
                  action_dnsbl="reject")
    try:
        d.start()

        def state():
            return d.stats().get("dnsbl", {}).get("bl." + ORG, {})
        try:
            mm.wait_for(lambda: state().get("state") == "unreachable",
                        "the start self-test to fail", timeout=10)
            check("late dns/zone unreachable, reported unhealthy",
                  state().get("healthy") is False, state())
        except mm.HarnessError:
            check("late dns/zone unreachable, reported unhealthy", False,
                  state())
        with DnsServer({"bl." + ORG: ["2.0.0.127 A 127.0.0.2",
                                      "5.10.0.127 A 127.0.0.2"]},
                       port=port):
            expect("late dns/listed client refused at once",
                   banner(d, host(5)),
                   "554 5.7.1 We don't accept mail from your IP (listed "
                   "at bl.%s)" % ORG)
            check("late dns/zone healthy after its test",
                  state().get("state") == "healthy", state())
    finally:
        d.cleanup()


def concurrency_test(d, px):
    """concurrency_test - the connect-stage lookups of a session are in
    flight together: every one of them reaches the DNS server before the
    first (300 ms late) answer leaves it.  An ordering, not a timing."""
    b = banner(d, host(13))
    check("concurrent/slow PTR and DNSBL answers still pass",
          b.code == 220, b)
    ev = [e for e in px.events if e[1].startswith("13.10.0.127.")]
    qs = [t for k, n, t in ev if k == "q"]
    ans = [t for k, n, t in ev if k == "a"]
    check("concurrent/PTR and both DNSBL queries sent at once",
          len(qs) >= 3 and ans and max(qs) < min(ans),
          sorted((round(t - ev[0][2], 3), k, n) for k, n, t in ev))


def join_test(d, px):
    """join_test - five sessions from one new client at once: their PTR
    lookups join the one in flight, one query reaches the server."""
    j0 = d.stats().get("dns", {}).get("joined", 0)
    clients = [mm.Client(d.port, src=host(21)) for _ in range(5)]
    try:
        bs = [c.banner() for c in clients]
    finally:
        for c in clients:
            c.close()
    check("join/all five sessions pass", all(b.code == 220 for b in bs), bs)
    qs = [e for e in px.events
          if e[0] == "q" and e[1] == "21.10.0.127.in-addr.arpa"]
    # one lookup: c-ares sends it at most twice (tries = 2: the 300 ms
    # answer may come after the first try's dns_timeout/3); five own
    # lookups would be at least five
    check("join/one PTR lookup on the wire for five sessions",
          1 <= len(qs) <= 2, len(qs))
    j1 = d.stats().get("dns", {}).get("joined", 0)
    check("join/stats count the joined lookups", j1 - j0 >= 4, (j0, j1))


def run(d, d2, dns, be, px):
    # --- zone self-tests run at start, before any session
    def health():
        z = d2.stats().get("dnsbl", {})
        r, b = z.get("refused." + ORG, {}), z.get("bl." + ORG, {})
        return (r.get("state") == "suspended" and
                b.get("state") == "healthy") and z
    try:
        z = mm.wait_for(health, "self-tests at start", timeout=10)
        check("dnsbl/self-tested at start, before any session", True)
        check("dnsbl/stats name the failure",
              "127.0.0.1 is listed" in z["refused." + ORG]["reason"], z)
    except mm.HarnessError:
        check("dnsbl/self-tested at start, before any session", False,
              d2.stats().get("dnsbl"))

    # --- both directions: a good sender passes with every check on
    be.clear()
    with mm.Client(d.port, src=host(1)) as c:
        b = c.banner()
        check("good/banner", b.code == 220, b)
        r = c.cmd("EHLO good.client." + ORG)
        check("good/ehlo", r.code == 250, r)
        r = c.transaction("alice@good-sender.com", ["bob@example.com"],
                          mm.message("good"))
        check("good/delivered", r.code == 250, r)
        c.cmd("QUIT")
    be.wait_closed()
    check("good/backend got it", len(be.messages()) == 1,
          len(be.messages()))
    dec = d.decisions(client=host(1))
    check("good/ptr logged", any(x.get("ptr") == "good.client." + ORG
                                 for x in dec), dec[-1:] if dec else d.log_text()[-500:])

    # --- rdns
    expect("rdns/nxdomain", banner(d, host(2)), "550 5.7.1 " + RDNS_TEXT)
    expect("rdns/not confirmed", banner(d, host(3)), "550 5.7.1 " + RDNS_TEXT)
    expect("rdns/servfail tempfails", banner(d, host(6)),
           "451 4.4.3 Temporary DNS failure looking up your reverse mapping")
    expect("rdns/timeout tempfails", banner(d, host(7)),
           "451 4.4.3 Temporary DNS failure looking up your reverse mapping")
    b = banner(d, host(8))
    check("rdns/slow answer in time passes", b.code == 220, b)
    dec = d.decisions(client=host(2), reason="rdns")
    check("rdns/decision logged with reason", bool(dec), d.log_text()[-800:])

    # --- dynamic
    expect("dynamic/pool name", banner(d, host(4)), "550 5.7.1 " + DYN_TEXT)
    dec = d.decisions(client=host(4), reason="dynamic")
    check("dynamic/logged with the PTR name",
          dec and "dsl-127-0-10-4.dyn." + ORG in dec[-1].get("detail", ""),
          dec)

    # --- dnsbl
    expect("dnsbl/listed", banner(d, host(5)),
           "554 5.7.1 We don't accept mail from your IP (listed at bl.%s)"
           % ORG)
    dec = d.decisions(client=host(5), reason="dnsbl")
    check("dnsbl/detail has zone and every code",
          dec and dec[-1].get("detail") == "bl.%s=127.0.0.2,127.0.0.4" % ORG,
          dec)
    b = banner(d, host(9))
    check("dnsbl/127.255.255.254 is an error, not a listing",
          b.code == 220, b)
    check("dnsbl/127.255.255.254 logged",
          re.search(r"bl\.%s: 127\.0\.10\.9 answered 127\.255\.255\.254"
                    % re.escape(ORG), d.log_text()), d.log_text()[-600:])
    b = banner(d, host(10))
    check("dnsbl/code outside the accepted set is not a listing",
          b.code == 220, b)
    b = banner(d, host(11))
    check("dnsbl/zone timeout counts as not listed", b.code == 220, b)
    check("dnsbl/zone timeout logged",
          "lookup of 127.0.10.11 failed" in d.log_text(), "")
    b = banner(d, host(12))
    check("dnsbl/zone failing its self-test is suspended", b.code == 220, b)
    st = d.stats()
    z = st.get("dnsbl", {})
    check("dnsbl/stats: failing zone unhealthy",
          z.get("refused." + ORG, {}).get("healthy") is False, z)
    check("dnsbl/stats: good zone healthy",
          z.get("bl." + ORG, {}).get("healthy") is True, z)
    check("dnsbl/stats: reasons counted",
          st.get("reasons", {}).get("dnsbl", 0) >= 1 and
          st.get("reasons", {}).get("rdns", 0) >= 2, st.get("reasons"))

    # --- helo (from the good client)
    expect("helo/localhost", helo(d, "localhost"),
           "550 5.7.1 Invalid HELO name (not a fully qualified domain "
           "name): localhost")
    expect("helo/bare word", helo(d, "foo"),
           "550 5.7.1 Invalid HELO name (not a fully qualified domain "
           "name): foo")
    expect("helo/our hostname", helo(d, mm.HOSTNAME),
           "550 5.7.1 HELO name claims to be us")
    expect("helo/our domain", helo(d, "example.org"),
           "550 5.7.1 HELO name claims to be us")
    expect("helo/our address", helo(d, "[203.0.113.5]"),
           "550 5.7.1 HELO name claims to be us")
    expect("helo/literal mismatch", helo(d, "[127.0.10.99]"),
           "550 5.7.1 HELO address literal does not match your IP")
    r = helo(d, "[127.0.10.1]")
    check("helo/literal of the client passes", r.code == 250, r)
    expect("helo/unregistered tld", helo(d, "host.example.invalidtld"),
           "550 5.7.1 HELO name has an unregistered TLD")
    r = helo(d, "good.client." + ORG)
    check("helo/fqdn passes", r.code == 250, r)
    r = helo(d, "does-not-exist." + ORG)
    check("helo/no resolve needed without helo_resolve", r.code == 250, r)
    expect("helo_resolve/nxdomain", helo(d2, "does-not-exist." + ORG),
           "550 5.7.1 HELO name does not resolve: does-not-exist." + ORG)
    expect("helo_resolve/no address", helo(d2, "noaddr-host." + ORG),
           "550 5.7.1 HELO name does not resolve: noaddr-host." + ORG)
    r = helo(d2, "good.client." + ORG)
    check("helo_resolve/resolving name passes", r.code == 250, r)
    r = helo(d2, "x.broken-sender.com")
    check("helo_resolve/servfail tempfails",
          r.code == 451 and "Temporary DNS failure" in r.text, r)

    # --- sender_tld / sender_mx
    r = mail(d, "alice@good-sender.com")
    check("sender/good domain", r.code == 250, r)
    r = mail(d, None)
    check("sender/null sender skips both", r.code == 250, r)
    expect("sender_tld/unregistered", mail(d, "a@x.invalidtld"),
           "550 5.7.1 Sender domain has an unregistered TLD: x.invalidtld")
    expect("sender_mx/nxdomain", mail(d, "a@nx.good-sender.com"),
           "550 5.7.1 Sender domain has no MX record: nx.good-sender.com")
    expect("sender_mx/no mx", mail(d, "a@nomx-sender.com"),
           "550 5.7.1 Sender domain has no MX record: nomx-sender.com")
    expect("sender_mx/null mx", mail(d, "a@nullmx-sender.com"),
           "550 5.7.1 Sender domain does not accept mail (null MX): "
           "nullmx-sender.com")
    expect("sender_mx/servfail", mail(d, "a@broken-sender.com"),
           "451 4.4.3 Temporary DNS failure resolving the sender domain "
           "broken-sender.com")
    expect("sender_mx/timeout", mail(d, "a@slow-sender.com"),
           "451 4.4.3 Temporary DNS failure resolving the sender domain "
           "slow-sender.com")
    r = mail(d, "a@bigmx-sender.com")
    check("sender_mx/truncated UDP answer, retried over TCP",
          r.code == 250, r)
    r = mail(d2, "a@nomx-sender.com")
    check("sender_mx=mx-or-a/implicit MX passes", r.code == 250, r)
    expect("sender_mx=mx-or-a/nxdomain still refused",
           mail(d2, "a@nx.good-sender.com"),
           "550 5.7.1 Sender domain has no MX record: nx.good-sender.com")
    expect("sender_mx=mx-or-a/null mx still refused",
           mail(d2, "a@nullmx-sender.com"),
           "550 5.7.1 Sender domain does not accept mail (null MX): "
           "nullmx-sender.com")

    # --- no hidden exemptions: loopback is checked like anyone; the
    # allowlist is the way out
    b = banner(d2, host(2))
    check("allowlist exempts a host without PTR", b.code == 220, b)


def mx_test(d, d2, d3):
    """mx_test - sender_mx: an MX host (or, for mx-or-a, the domain) must
    resolve to a reachable address.  d: sender_mx = mx; d2: mx-or-a; d3:
    mx-or-a with sender_mx_private = yes."""
    no = "550 5.7.1 Sender domain cannot receive mail: "
    tmp = "451 4.4.3 Temporary DNS failure resolving the sender domain "
    for name, _, addr, why in REFUSED:
        dom = "%s.%s" % (name, MXW)
        expect("sender_mx/mx host %s (%s) refused" % (addr, why),
               mail(d, "a@" + dom),
               no + "its MX host %s-host.%s resolves only to %s (%s)"
               % (name, MXW, addr, why))
        expect("sender_mx=mx-or-a/%s (%s) refused" % (addr, why),
               mail(d2, "a@a-" + dom),
               no + "a-%s resolves only to %s (%s)" % (dom, addr, why))
    for name, _, addr in PRIVATE:
        dom = "%s.%s" % (name, MXW)
        expect("sender_mx/private mx host %s refused by default" % addr,
               mail(d, "a@" + dom),
               no + "its MX host %s-host.%s resolves only to %s (private)"
               % (name, MXW, addr))
        r = mail(d3, "a@" + dom)
        check("sender_mx_private=yes/mx host %s passes" % addr,
              r.code == 250, r)
        expect("sender_mx=mx-or-a/private %s refused by default" % addr,
               mail(d2, "a@a-" + dom),
               no + "a-%s resolves only to %s (private)" % (dom, addr))
        r = mail(d3, "a@a-" + dom)
        check("sender_mx_private=yes/implicit MX %s passes" % addr,
              r.code == 250, r)
    r = mail(d3, "a@lo." + MXW)
    check("sender_mx_private=yes/loopback still refused", r.code == 550, r)
    expect("sender_mx/mx host does not exist", mail(d, "a@gone." + MXW),
           no + "its MX host nohost.%s does not exist" % MXW)
    expect("sender_mx/mx host has no address", mail(d, "a@noaddr." + MXW),
           no + "its MX host txtonly.%s has no address" % MXW)
    r = mail(d, "a@mixed." + MXW)
    check("sender_mx/one reachable mx host of two passes", r.code == 250, r)
    expect("sender_mx/refused host named before a missing one",
           mail(d, "a@mixgone." + MXW),
           no + "its MX host lo-host.%s resolves only to 127.0.0.1 "
           "(loopback)" % MXW)
    r = mail(d, "a@dual." + MXW)
    check("sender_mx/loopback A but public AAAA passes", r.code == 250, r)
    expect("sender_mx/mx host servfail tempfails", mail(d, "a@tmp." + MXW),
           tmp + "tmp." + MXW)
    expect("sender_mx/mx host timeout tempfails", mail(d, "a@slow." + MXW),
           tmp + "slow." + MXW)
    expect("sender_mx/servfail and refused host tempfails",
           mail(d, "a@tmpmix." + MXW), tmp + "tmpmix." + MXW)
    r = mail(d, "a@tmpok." + MXW)
    check("sender_mx/servfail and reachable host passes", r.code == 250, r)
    for n in ("a-good", "a-good6"):
        r = mail(d2, "a@%s.%s" % (n, MXW))
        check("sender_mx=mx-or-a/reachable %s passes" % n, r.code == 250, r)
        expect("sender_mx=mx/%s without MX refused" % n,
               mail(d, "a@%s.%s" % (n, MXW)),
               "550 5.7.1 Sender domain has no MX record: %s.%s" % (n, MXW))
    expect("sender_mx=mx-or-a/no MX and no address refused",
           mail(d2, "a@txtonly." + MXW),
           "550 5.7.1 Sender domain has no MX record: txtonly." + MXW)


def conf_for(proxy_addr, **extra):
    c = dict(action_dnsbl="reject", action_rdns="reject",
             action_dynamic="reject", action_helo="reject",
             action_sender_tld="reject", action_sender_mx="reject",
             action_spf="reject",
             dnsbl="bl.%s=127.0.0.2..127.0.0.11 refused.%s" % (ORG, ORG),
             dns_servers=proxy_addr, dns_timeout="1s",
             local_addresses="203.0.113.5")
    c.update(extra)
    return c


def ipv6_inner():
    """ipv6_inner - inside the namespace: nsd, daemon on [fd00::1],
    clients from fd00::25 (good), fd00::26 (no PTR), fd00::27 (listed)."""
    good, nop, listed, dyn = "fd00::25", "fd00::26", "fd00::27", "fd00::28"

    def rp(a):
        return ipaddress.ip_address(a).reverse_pointer + "."

    bl_name = ipaddress.ip_address(listed).reverse_pointer.replace(
        ".ip6.arpa", "") + ".bl6." + ORG + "."
    z = {
        "ip6.arpa": [rp(good) + " PTR good6.client.%s." % ORG,
                     rp(listed) + " PTR listed6.client.%s." % ORG,
                     rp(dyn) + " PTR dyn-fd00-28.pool.%s." % ORG],
        ORG: ["good6.client AAAA " + good, "listed6.client AAAA " + listed,
              "dyn-fd00-28.pool AAAA " + dyn],
        "bl6." + ORG: [bl_name + " A 127.0.0.2",
                       "2.0.0.127 A 127.0.0.2"],
    }
    with DnsServer(z) as dns, mm.Backend(host="127.0.0.1") as be:
        d = mm.Daemon(be.port, listen="[fd00::1]:%d" % mm.free_port("::1"),
                      **conf_for(dns.addr, dnsbl="bl6." + ORG))
        # the daemon listens on [fd00::1]:port; mm waits on the port number
        d.port = int(d.conf["listen"].rsplit(":", 1)[1])
        d.write_conf()
        try:
            d.start()
            with mm.Client(d.port, host="fd00::1", src=good) as c:
                b = c.banner()
                check("ipv6/forward-confirmed PTR passes", b.code == 220, b)
                r = c.cmd("EHLO [IPv6:%s]" % good)
                check("ipv6/helo literal of the client passes",
                      r.code == 250, r)
                r = c.cmd("MAIL FROM:<>")
                c.cmd("QUIT")
            with mm.Client(d.port, host="fd00::1", src=nop) as c:
                expect("ipv6/no PTR refused", c.banner(),
                       "550 5.7.1 " + RDNS_TEXT)
            with mm.Client(d.port, host="fd00::1", src=dyn) as c:
                expect("ipv6/dynamic pool name refused", c.banner(),
                       "550 5.7.1 " + DYN_TEXT)
            with mm.Client(d.port, host="fd00::1", src=listed) as c:
                expect("ipv6/dnsbl nibble query listed", c.banner(),
                       "554 5.7.1 We don't accept mail from your IP "
                       "(listed at bl6.%s)" % ORG)
        finally:
            d.cleanup()


def main():
    if "--ipv6-inner" in sys.argv:
        try:
            ipv6_inner()
        except Exception as e:  # a broken harness must fail a test
            check("ipv6/harness", False, repr(e))
        return 0 if all(results) else 1

    with DnsServer(zones(), servfail=SERVFAIL) as dns, \
            DnsServer({"unused.test": ["@ TXT \"-\""]},
                      servfail=["nomx-afail.com"]) as broken, \
            DelayProxy((dns.host, dns.port),
                       a_fail_rules(broken) + RULES) as px, \
            mm.Backend() as be:
        try:
            dns.selftest()
            broken.selftest()
            check("harness/nsd serves SERVFAIL zones", True)
        except RuntimeError as e:
            check("harness/nsd serves SERVFAIL zones", False, e)
        d = mm.Daemon(be.port, **conf_for(px.addr))
        d2 = mm.Daemon(be.port, allowlist="127.0.10.2\n",
                       **conf_for(px.addr, helo_resolve="yes",
                                  sender_mx="mx-or-a"))
        d3 = mm.Daemon(be.port, **conf_for(px.addr, sender_mx="mx-or-a",
                                           sender_mx_private="yes"))
        try:
            d.start()
            d2.start()
            d3.start()
            run(d, d2, dns, be, px)
            mx_test(d, d2, d3)
            a_fallback_test(d, d2)
            concurrency_test(d, px)
            join_test(d, px)
            datafile_test(be, px)
            late_dns_test(be)
            cache_test(d, dns)
            reload_test(be, px.addr)
        except Exception as e:
            check("harness", False, repr(e))
            sys.stderr.write("# harness: %s\n" % e)
        finally:
            log = d.log_text()
            d.cleanup()
            d2.cleanup()
            d3.cleanup()
            if not all(results):
                sys.stderr.write(log[-3000:])
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
