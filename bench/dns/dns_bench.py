#!/usr/bin/python3
"""dns_bench.py - the two DNS benchmarks of issue #3 (run by bench/dns/run.sh).

  latency   Time from connect to the answer to RCPT when every DNS answer
            is delayed by D ms (a DelayProxy in front of a real nsd), with
            N DNSBL zones: the connect-stage lookups (N zones + PTR) run
            concurrently, so the time should grow with the dependency chain
            (PTR at connect, MX at MAIL: 2 x D; the forward A of the one
            PTR name all sessions share is cached), not with N x D.
            Also connect -> banner with only the DNSBL check on (N lookups,
            one round trip: ~D).  Every session comes from a fresh 127.x
            address and uses a fresh sender domain, so nothing is cached.
  rate      Lookups per second the daemon sustains against nsd directly:
            many concurrent sessions from distinct addresses, each needing
            PTR + N DNSBL lookups; the rate is the daemon's own count of
            queries sent to the server ("dns" section of mailmoatctl stats)
            over the wall time.

Prints one line per measurement and a Markdown table at the end.  Nothing
is asserted: the figures go into bench/dns/RESULTS.md by hand.
"""
import argparse
import asyncio
import os
import socket
import statistics
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import mm                                        # noqa: E402
from dnsserver import DnsServer, DelayProxy     # noqa: E402

ORG = "bench-mm.org"


def zones(n_zones):
    z = {
        # every 127.0.x.y has a PTR; the forward name resolves (wildcard)
        "127.in-addr.arpa": ["* PTR h.clients.%s." % ORG],
        ORG: ["h.clients A 127.0.0.1"],
        # any sender domain under bench-sender.com has an MX
        "bench-sender.com": ["* MX 10 mx.bench-sender.com.",
                             "mx A 198.18.0.1"],  # reachable (sender_mx)
    }
    for i in range(n_zones):
        z["bl%d.%s" % (i, ORG)] = ["2.0.0.127 A 127.0.0.2"]
    return z


def addr(i, base=40):
    return "127.%d.%d.%d" % (base + (i >> 16), (i >> 8) & 255, i & 255)


def session_time(d, src, sender, upto):
    """session_time - seconds from connect to the banner (upto="banner")
    or to the RCPT reply."""
    t0 = time.monotonic()
    with mm.Client(d.port, src=src) as c:
        b = c.banner()
        if upto == "banner":
            t = time.monotonic() - t0
            c.cmd("QUIT")
            return t, b.code
        c.cmd("EHLO h.clients.%s" % ORG)
        c.cmd("MAIL FROM:<a@%s>" % sender)
        r = c.cmd("RCPT TO:<bob@example.com>")
        t = time.monotonic() - t0
        c.cmd("QUIT")
        return t, r.code


def latency(args, out):
    for delay in args.delays:
        for n in args.zones:
            with DnsServer(zones(max(args.zones))) as dns, \
                    DelayProxy((dns.host, dns.port), [("", delay)]) as px, \
                    mm.Backend() as be:
                bl = " ".join("bl%d.%s" % (i, ORG) for i in range(n))
                for mode in ("dnsbl-only", "all"):
                    conf = dict(dns_servers=px.addr, dns_timeout="5s",
                                dnsbl=bl, action_dnsbl="reject",
                                max_per_ip="1000")
                    if mode == "all":
                        # rdns "log": the bench PTRs are not confirmed,
                        # the lookups happen all the same
                        conf.update(action_rdns="log",
                                    action_dynamic="reject",
                                    action_helo="reject",
                                    action_sender_tld="reject",
                                    action_sender_mx="reject")
                    d = mm.Daemon(be.port, **conf)
                    try:
                        d.start()
                        # warm-up: the zones' self-tests
                        session_time(d, addr(0, 60), "w.bench-sender.com",
                                     "banner")
                        ts = []
                        for k in range(args.reps):
                            i = hash((delay, n, mode, k)) & 0xffff
                            t, code = session_time(
                                d, addr(i, 61 + (mode == "all")),
                                "s%d-%d.bench-sender.com" % (n, i),
                                "banner" if mode == "dnsbl-only" else "rcpt")
                            ts.append(t)
                        med = statistics.median(ts) * 1000
                        upto = ("banner" if mode == "dnsbl-only"
                                else "RCPT reply")
                        # all: + PTR and MX on the wire; the forward A of
                        # the (shared) PTR name is cached after warm-up,
                        # so the chain is PTR -> MX
                        lookups = (n if mode == "dnsbl-only" else n + 2)
                        chain = 1 if mode == "dnsbl-only" else 2
                        line = ("latency mode=%s D=%dms zones=%d lookups=%d "
                                "connect->%s median=%.0fms (chain %dxD=%d, "
                                "serial NxD=%d)" % (
                                    mode, delay, n, lookups, upto, med, chain,
                                    chain * delay, lookups * delay))
                        print(line)
                        sys.stdout.flush()
                        out.append(("latency", mode, delay, n, lookups, med,
                                    chain * delay, lookups * delay))
                    finally:
                        d.cleanup()


async def hammer(port, n_sessions, conc, base):
    """hammer - n_sessions connections (banner, QUIT) from distinct
    addresses, conc at a time."""
    sem = asyncio.Semaphore(conc)
    done = 0

    async def one(i):
        nonlocal done
        async with sem:
            try:
                r, w = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(addr(i, base), 0))
                await r.readline()
                w.write(b"QUIT\r\n")
                await w.drain()
                await r.read()
                w.close()
                done += 1
            except OSError:
                pass
    await asyncio.gather(*(one(i) for i in range(n_sessions)))
    return done


def rate(args, out):
    for n in args.rate_zones:
        with DnsServer(zones(n)) as dns, mm.Backend() as be:
            bl = " ".join("bl%d.%s" % (i, ORG) for i in range(n))
            d = mm.Daemon(be.port, dns_servers=dns.addr, dns_timeout="5s",
                          dnsbl=bl, action_dnsbl="reject",
                          action_rdns="log", max_connections="5000",
                          max_per_ip="1000")
            try:
                d.start()
                asyncio.run(hammer(d.port, 50, 10, 70))   # warm-up
                s0 = d.stats().get("dns", {})
                c0 = d.cpu_seconds()
                t0 = time.monotonic()
                ok = asyncio.run(hammer(d.port, args.sessions, args.conc,
                                        80))
                wall = time.monotonic() - t0
                s1 = d.stats().get("dns", {})
                cpu = d.cpu_seconds() - c0
                sent = s1.get("sent", 0) - s0.get("sent", 0)
                q = s1.get("queries", 0) - s0.get("queries", 0)
                fails = s1.get("tempfails", 0) - s0.get("tempfails", 0)
                line = ("rate zones=%d sessions=%d conc=%d wall=%.2fs "
                        "lookups_sent=%d (%.0f/s) queries=%d (%.0f/s) "
                        "tempfails=%d daemon_cpu=%.2fs" % (
                            n, ok, args.conc, wall, sent, sent / wall, q,
                            q / wall, fails, cpu))
                print(line)
                sys.stdout.flush()
                out.append(("rate", n, ok, wall, sent, sent / wall, fails,
                            cpu))
            finally:
                d.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="*", default=["latency", "rate"])
    ap.add_argument("--delays", type=int, nargs="+", default=[100, 300])
    ap.add_argument("--zones", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rate-zones", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--sessions", type=int, default=4000)
    ap.add_argument("--conc", type=int, default=200)
    args = ap.parse_args()
    out = []
    if "latency" in args.what:
        latency(args, out)
    if "rate" in args.what:
        rate(args, out)
    print("\n| benchmark | setting | result |\n|---|---|---|")
    for r in out:
        if r[0] == "latency":
            print("| latency (%s) | D=%d ms, %d zones, %d lookups | "
                  "median %.0f ms (chain %d ms; serial would be %d ms) |"
                  % (r[1], r[2], r[3], r[4], r[5], r[6], r[7]))
        else:
            print("| lookup rate | %d zones, %d sessions | %d lookups sent "
                  "in %.2f s = %.0f/s, %d tempfails, daemon CPU %.2f s |"
                  % (r[1], r[2], r[4], r[3], r[5], r[6], r[7]))


if __name__ == "__main__":
    main()
