#!/usr/bin/python3
"""test_daemon.py - the spf check inside the real daemon.

build/host/mailmoat with action_spf = reject, in front of the aiosmtpd
backend (tests/lib/mm.py), resolving through the loopback DNS server of
spfsuite.py (timeouts, TCP fallback).  Clients connect from 127.0.30.x.
Prints "ok - spf:daemon/<name>" or "not ok - ..." per test.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import mm            # noqa: E402
import spfsuite      # noqa: E402

BIG = ["google-site-verification=" + ("%02d" % i) * 100 for i in range(6)]

ZONE = {
    "pass.test": [{"SPF": "v=spf1 ip4:127.0.30.1 -all"}],
    "exp.test": [{"SPF": "v=spf1 ip4:127.0.30.1 -all exp=why.exp.test"}],
    "why.exp.test": [{"TXT": "Not authorized: see http://x.test/%{i}"}],
    "inject.test": [{"SPF": "v=spf1 -all exp=why.inject.test"}],
    "why.inject.test": [{"TXT": "bad\r\n250 2.0.0 ok"}],
    "soft.test": [{"SPF": "v=spf1 ip4:127.0.30.1 ~all"}],
    "broken.test": [{"SPF": "v=spf1 ip4:127.0.30.1 a:museum -all"}],
    "slow.test": ["TIMEOUT"],
    "helo.fail.test": [{"SPF": "v=spf1 -all"}],
    "helo.pass.test": [{"SPF": "v=spf1 ip4:127.0.30.1 -all"}],
    "1.30.0.127.in-addr.arpa": [{"PTR": "mail.pass.test"}],
    "mail.pass.test": [{"A": "127.0.30.1"}],
    "six.test": [{"SPF": "v=spf1 ip6:::1/128 -all"}],
    # answered after spfsuite.DELAY_S: many evaluations wait at once
    "delay.conc.test": [{"SPF": "v=spf1 ip4:127.0.30.1 -all"}],
    "notsix.test": [{"SPF": "v=spf1 ip6:2001:db8::/32 ip4:127.0.0.1 -all"}],
    "big.test": [{"TXT": t} for t in BIG] +
                [{"TXT": "v=spf1 ip4:127.0.30.1 -all"}],
}

results = []
D_CONF = {}


def check(name, cond, detail=""):
    results.append(cond)
    print("%s - spf:daemon/%s%s" % ("ok" if cond else "not ok", name,
                                     "" if cond else " # " + detail))
    sys.stdout.flush()


def mail(d, src, sender, helo="client.example.net"):
    """mail - the reply to MAIL FROM:<sender> from address src."""
    with mm.Client(d.port, src=src) as c:
        c.hello(helo)
        r = c.cmd("MAIL FROM:<%s>" % sender)
        c.cmd("QUIT")
        return r


def main():
    spfsuite.load_zone(ZONE)
    port = spfsuite.start_dns()
    conf = dict(action_spf="reject", dns_servers="127.0.0.1:%d" % port,
                dns_timeout="1s")
    D_CONF.update(conf)
    with mm.Backend() as be:
        d = mm.Daemon(be.port, **conf)
        d2 = mm.Daemon(be.port, spf_softfail="tempfail",
                       spf_permerror="reject", action_rdns="log",
                       ipv6=True, **conf)
        try:
            d.start()
            d2.start()
            run(d, d2, be)
        finally:
            d.cleanup()
            d2.cleanup()
    return 0 if all(results) else 1


def run(d, d2, be):
    # pass, and the Authentication-Results header reaches the backend
    with mm.Client(d.port, src="127.0.30.1") as c:
        c.hello()
        r = c.cmd("MAIL FROM:<alice@pass.test>")
        check("pass-mail-accepted", r.code == 250, repr(r))
        r = c.cmd("RCPT TO:<alice@example.com>")
        r = c.cmd("DATA")
        c.send("Subject: spf\r\n\r\nhello\r\n.\r\n")
        r = c.reply()
        check("pass-delivered", r.code == 250, repr(r))
        c.cmd("QUIT")
    be.wait_closed()
    msgs = be.messages()
    body = msgs[-1][1].decode("latin-1") if msgs else ""
    want = ("Authentication-Results: mx.mailmoat.test; spf=pass "
            "smtp.mailfrom=alice@pass.test")
    check("auth-results-header", want in body, repr(body[:400]))
    print("# " + "\n# ".join(l for l in body.splitlines()
                              if l.startswith("Authentication-Results")))

    # with the rdns check on, the header carries iprev too
    be.clear()
    with mm.Client(d2.port, src="127.0.30.1") as c:
        c.hello()
        c.cmd("MAIL FROM:<alice@pass.test>")
        c.cmd("RCPT TO:<alice@example.com>")
        c.cmd("DATA")
        c.send("Subject: spf\r\n\r\nhello\r\n.\r\n")
        r = c.reply()
        c.cmd("QUIT")
    be.wait_closed()
    msgs = be.messages()
    body = msgs[-1][1].decode("latin-1") if msgs else ""
    want = ("Authentication-Results: mx.mailmoat.test; spf=pass "
            "smtp.mailfrom=alice@pass.test; iprev=pass "
            "policy.iprev=127.0.30.1 (mail.pass.test)")
    check("auth-results-iprev", want in body, repr(body[:400]))

    r = mail(d, "127.0.30.2", "bob@pass.test")
    want = ("550 5.7.1 SPF check failed: domain pass.test does not "
            "designate 127.0.30.2 as permitted sender")
    check("fail-rejected", r.full.startswith(want), repr(r))
    check("fail-logged", bool(d.wait_decision(reason="spf")), d.log_text())

    r = mail(d, "127.0.30.2", "bob@exp.test")
    want = ("550 5.7.1 SPF check failed: Not authorized: see "
            "http://x.test/127.0.30.2")
    check("fail-explanation", r.full.startswith(want), repr(r))

    r = mail(d, "127.0.30.2", "bob@inject.test")
    check("explanation-with-crlf-not-used",
          len(r.lines) == 1 and r.full.startswith(
              "550 5.7.1 SPF check failed: domain inject.test does not"),
          repr(r))

    r = mail(d, "127.0.30.2", "bob@soft.test")
    check("softfail-default-log-accepts", r.code == 250, repr(r))
    r = mail(d2, "127.0.30.2", "bob@soft.test")
    check("softfail-tempfail",
          r.full.startswith("451 4.7.1 SPF check failed (softfail)"),
          repr(r))

    r = mail(d, "127.0.30.1", "bob@broken.test")
    check("permerror-default-log-accepts", r.code == 250, repr(r))
    r = mail(d2, "127.0.30.1", "bob@broken.test")
    check("permerror-reject",
          r.full.startswith("550 5.7.1 SPF check failed: the SPF record "
                            "of broken.test is invalid"), repr(r))

    r = mail(d, "127.0.30.1", "bob@slow.test")
    check("timeout-tempfails", r.full.startswith("451 4.4.3"), repr(r))

    # the client leaves while its evaluation waits for DNS: the
    # answer is dropped, the daemon goes on
    c = mm.Client(d.port, src="127.0.30.1")
    c.hello()
    c.send("MAIL FROM:<gone@slow.test>\r\n")
    c.close()
    r = mail(d, "127.0.30.1", "bob@slow.test")
    check("client-gone-during-lookup",
          d.alive() and r.full.startswith("451 4.4.3"), repr(r))

    r = mail(d, "127.0.30.1", "", helo="helo.fail.test")
    check("null-sender-helo-identity-fail",
          r.full.startswith("550 5.7.1 SPF check failed: domain "
                            "helo.fail.test does not designate"), repr(r))
    r = mail(d, "127.0.30.1", "", helo="helo.pass.test")
    check("null-sender-helo-identity-pass", r.code == 250, repr(r))

    # an IPv6 client (d2 also listens on [::1])
    with mm.Client(d2.port, host="::1", src="::1") as c:
        c.hello()
        r1 = c.cmd("MAIL FROM:<a@six.test>")
        c.cmd("RSET")
        r2 = c.cmd("MAIL FROM:<a@notsix.test>")
        c.cmd("QUIT")
    check("ipv6-client-pass", r1.code == 250, repr(r1))
    check("ipv6-client-fail",
          r2.full.startswith("550 5.7.1 SPF check failed: domain "
                             "notsix.test does not designate ::1"), repr(r2))

    concurrency(be)

    tcp = spfsuite.STATS["tcp"]
    r = mail(d, "127.0.30.1", "bob@big.test")
    check("large-answer-tcp-fallback-pass",
          r.code == 250 and spfsuite.STATS["tcp"] > tcp,
          "%r, TCP connections %d -> %d" % (r, tcp, spfsuite.STATS["tcp"]))
    r = mail(d, "127.0.30.2", "bob@big.test")
    check("large-answer-tcp-fallback-fail", r.code == 550, repr(r))


def concurrency(be):
    """concurrency - 100 evaluations waiting for DNS at once all get
    their answer (the threadpool version had at most 64 jobs and told the
    others "451 4.4.3 SPF checks are busy")."""
    n = 100
    d = mm.Daemon(be.port, action_spf="reject", max_per_ip="200",
                  dns_servers=D_CONF["dns_servers"], dns_timeout="3s")
    clients = []
    try:
        d.start()
        for _ in range(n):
            c = mm.Client(d.port, src="127.0.30.1")
            c.hello()
            clients.append(c)
        for i, c in enumerate(clients):
            c.send("MAIL FROM:<c%d@delay.conc.test>\r\n" % i)
        replies = [c.reply() for c in clients]
        bad = [r for r in replies if r.code != 250]
        check("concurrency-100-evaluations-no-busy", not bad,
              "%d of %d not accepted, e.g. %r" % (len(bad), n,
                                                  bad[:1]))
    finally:
        for c in clients:
            c.close()
        d.cleanup()


if __name__ == "__main__":
    sys.exit(main())
