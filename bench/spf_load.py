#!/usr/bin/python3
"""spf_load.py - one good sender, many concurrent sessions, every check on.

The question of issue 7: with SPF evaluated in the threadpool (64 jobs, a
c-ares channel per evaluation) 1.5-1.8 % of the mails of 100 concurrent
sessions were tempfailed ("SPF checks are busy"), and every transaction
sent its own SPF TXT query.  This bench measures, for each daemon binary
given (e.g. the build before and after the change, in the same session),
at 100 and 1,000 concurrent sessions:

  - tempfails (the daemon's `tempfailed` counter and the client's count
    of 4xx replies, with their texts),
  - DNS queries sent per transaction once the sender has been seen
    (counted at the server, behind a DelayProxy with no delay, over the
    measured messages after a warm-up; includes every resolver the daemon
    has),
  - daemon CPU seconds per 1,000 messages.

Peers: nsd (tests/lib/dnsserver.py) with a world where the client
127.0.0.1 is mail.goodsender.net (PTR and A), goodsender.net has an MX
host at 198.18.20.1 and the SPF record "v=spf1 mx include:_spf... -all"
(the mx term does not match, the include's ip4 does: TXT, MX, A and TXT
lookups), one DNSBL zone; Postfix's smtp-sink as the backend; an asyncio
client here (smtp-source stops at the first failure; this one counts
them): one message per connection, EHLO mail.goodsender.net, MAIL FROM
bench@goodsender.net.  Every check on (reject), greet_pause 0.

Usage: bench/spf_load.py [--messages N] [--rounds R] [--conc 100,1000]
                         [--client asyncio|smtp-source] [--warm-pool]
                         [--peer] NAME=BUILD_DIR ...
  (BUILD_DIR holds mailmoat and mailmoatctl; default: after=build/host)
Prints one line per (round, build, concurrency) and a summary with the
ratios; --json FILE writes the rows.
"""
import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import mm  # noqa: E402
from dnsserver import DnsServer, DelayProxy  # noqa: E402

BL = "bl.bench-mm.org"
ZONES = {
    "127.in-addr.arpa": ["1.0.0 PTR mail.goodsender.net."],
    "goodsender.net": [
        "@ MX 10 mx.goodsender.net.",
        "mx A 198.18.20.1",
        "mail A 127.0.0.1",
        "@ TXT \"v=spf1 mx include:_spf.goodsender.net -all\"",
        "_spf TXT \"v=spf1 ip4:127.0.0.0/8 -all\"",
    ],
    BL: ["2.0.0.127 A 127.0.0.2"],
}


def conf(dns_addr):
    return {
        "greet_pause": "0",
        "max_connections": "20000",
        "max_per_ip": "20000",
        "max_backend_connections": "3000",
        "message_size_limit": "10M",
        "dnsbl": BL,
        "dns_servers": dns_addr,
        "dns_timeout": "5s",
        "action_dnsbl": "reject", "action_rdns": "reject",
        "action_dynamic": "reject", "action_helo": "reject",
        "action_sender_tld": "reject", "action_sender_mx": "reject",
        "action_spf": "reject", "action_pregreet": "off",
        "action_pipelining": "reject",
    }


BODY = ("From: bench@goodsender.net\r\nTo: bob@example.com\r\n"
        "Subject: bench\r\n\r\n" + "x" * 70 + "\r\n") * 1


async def session(port, res):
    """session - one connection, one message; the first non-2xx/354
    reply ends it and is counted by its class and text."""
    r, w = await asyncio.open_connection("127.0.0.1", port)

    async def reply():
        while True:
            line = await r.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return line.decode(errors="replace").strip()

    try:
        steps = [None, "EHLO mail.goodsender.net",
                 "MAIL FROM:<bench@goodsender.net>",
                 "RCPT TO:<bob@example.com>", "DATA", BODY + "."]
        for cmd in steps:
            if cmd is not None:
                w.write((cmd + "\r\n").encode())
            line = await reply()
            if line[0] not in "23":
                key = "tempfail" if line[0] == "4" else "reject"
                res[key] += 1
                t = mm.ID_RE.sub("", line)[:90]
                res["texts"][t] = res["texts"].get(t, 0) + 1
                break
        else:
            res["ok"] += 1
        w.write(b"QUIT\r\n")
        await w.drain()
    except (ConnectionError, OSError) as e:
        res["errors"] += 1
        res["texts"][repr(e)[:60]] = res["texts"].get(repr(e)[:60], 0) + 1
    finally:
        w.close()


async def load(port, conc, msgs):
    res = {"ok": 0, "tempfail": 0, "reject": 0, "errors": 0, "texts": {}}
    sem = asyncio.Semaphore(conc)

    async def one_msg():
        async with sem:
            await session(port, res)
    await asyncio.gather(*(one_msg() for _ in range(msgs)))
    return res


def source(port, sessions, msgs):
    """source - msgs messages, one per connection, sessions at a time."""
    t = time.monotonic()
    res = asyncio.run(load(port, sessions, msgs))
    return time.monotonic() - t, res


def source_postfix(port, sessions, msgs):
    """source_postfix - the same load from Postfix's smtp-source (C, one
    message per connection, EHLO mail.goodsender.net, no pipelining:
    mailmoat does not offer it).  It stops at the first reply that is not
    the expected one, so a clean exit means every message was taken."""
    cmd = [mm.SMTP_SOURCE, "-s", str(sessions), "-m", str(msgs),
           "-l", str(len(BODY)), "-f", "bench@goodsender.net",
           "-t", "bob@example.com", "-M", "mail.goodsender.net",
           "127.0.0.1:%d" % port]
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    took = time.monotonic() - t
    res = {"ok": msgs if p.returncode == 0 else 0, "tempfail": 0,
           "reject": 0, "errors": 0 if p.returncode == 0 else 1,
           "texts": {} if p.returncode == 0 else
           {(p.stdout + p.stderr)[-90:]: 1}}
    return took, res


CLIENTS = {"asyncio": source, "smtp-source": source_postfix}


def one(name, build, dns, px, sink, conc, msgs, client="asyncio",
        warm_pool=False):
    mm.MAILMOAT = os.path.join(build, "mailmoat")
    mm.MAILMOATCTL = os.path.join(build, "mailmoatctl")
    d = mm.Daemon(sink.port, **conf(px.addr))
    try:
        d.start()
        # warm-up: the sender is seen once (its DNS is cached afterwards);
        # with --warm-pool also conc sessions at once, so that the measured
        # messages find the backend connections open and parked (filling
        # the pool costs a connect, a banner and an EHLO per connection,
        # and smtp-sink greets 1,000 new connections slowly)
        _, res = source(d.port, 1, 3)
        if res["ok"] != 3:
            raise RuntimeError("%s: warm-up failed: %s" % (name, res))
        if warm_pool and conc > 1:
            source(d.port, conc, conc)
        s0 = d.stats()
        q0 = px.forwarded
        c0 = d.cpu_seconds()
        wall, res = CLIENTS[client](d.port, conc, msgs)
        cpu = d.cpu_seconds() - c0
        q1 = px.forwarded
        s1 = d.stats()
        dns0, dns1 = s0.get("dns", {}), s1.get("dns", {})
        acc = s1["accepted"] - s0["accepted"]
        row = {
            "build": name, "concurrency": conc, "messages": msgs,
            "client": res, "accepted": acc,
            "tempfailed": s1["tempfailed"] - s0["tempfailed"],
            "rejected": s1["rejected"] - s0["rejected"],
            # at the server (UDP, through the proxy): every resolver of
            # the daemon counts, the old per-evaluation SPF channels too
            "dns_sent": q1 - q0,
            "dns_sent_dnsc": dns1.get("sent", 0) - dns0.get("sent", 0),
            "dns_queries": dns1.get("queries", 0) - dns0.get("queries", 0),
            "wall_s": wall, "cpu_s": cpu,
        }
        row["dns_sent_per_msg"] = row["dns_sent"] / max(acc, 1)
        row["cpu_s_per_1000"] = cpu * 1000.0 / max(acc, 1)
        row["msgs_per_s"] = acc / wall
        reasons = {k: v - s0.get("reasons", {}).get(k, 0)
                   for k, v in s1.get("reasons", {}).items()}
        row["reasons"] = {k: v for k, v in reasons.items() if v}
        return row
    finally:
        d.cleanup()


def peer(sink, conc, msgs, client):
    """peer - the same client straight to smtp-sink (Postfix's
    single-process, event-driven test server: the same SMTP dialogue with
    no checks and no second hop): its CPU per 1,000 messages is what the
    kernel and the dialogue alone cost here, measured in the same run."""
    c0 = mm.proc_cpu_seconds(sink.proc.pid)
    wall, res = CLIENTS[client](sink.port, conc, msgs)
    cpu = mm.proc_cpu_seconds(sink.proc.pid) - c0
    return {"build": "smtp-sink", "concurrency": conc, "messages": msgs,
            "client": res, "accepted": res["ok"], "tempfailed": 0,
            "rejected": 0, "dns_sent": 0, "dns_sent_per_msg": 0.0,
            "wall_s": wall, "cpu_s": cpu,
            "cpu_s_per_1000": cpu * 1000.0 / max(res["ok"], 1),
            "msgs_per_s": res["ok"] / wall}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--conc", default="100,1000")
    ap.add_argument("--json")
    ap.add_argument("--client", choices=sorted(CLIENTS), default="asyncio",
                    help="the load: this script's asyncio client (default) "
                    "or Postfix's smtp-source")
    ap.add_argument("--warm-pool", action="store_true",
                    help="before measuring, conc sessions at once (the "
                    "backend connections open and parked)")
    ap.add_argument("--peer", action="store_true",
                    help="also the client straight to smtp-sink (its CPU)")
    ap.add_argument("builds", nargs="*")
    args = ap.parse_args()
    builds = [b.split("=", 1) for b in args.builds] or \
        [("after", os.path.join(ROOT, "build", "host"))]
    concs = [int(x) for x in args.conc.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))
    rows = []
    with DnsServer(ZONES) as dns, \
            DelayProxy((dns.host, dns.port)) as px, \
            mm.Sink(dump=False) as sink:
        for r in range(args.rounds):
            for conc in concs:
                runs = list(builds) + ([("smtp-sink", None)]
                                       if args.peer else [])
                for name, build in runs:
                    if build is None:
                        row = peer(sink, conc, args.messages, args.client)
                    else:
                        row = one(name, build, dns, px, sink, conc,
                                  args.messages, args.client,
                                  args.warm_pool)
                        row["warm_pool"] = args.warm_pool
                    row["client_program"] = args.client
                    row["round"] = r
                    rows.append(row)
                    print("round=%d build=%s conc=%d msgs=%d accepted=%d "
                          "tempfailed=%d rejected=%d client=%s "
                          "dns_sent/msg=%.4f cpu/1000=%.3fs %.0f msg/s" % (
                              r, name, conc, args.messages, row["accepted"],
                              row["tempfailed"], row["rejected"],
                              json.dumps(row["client"]),
                              row["dns_sent_per_msg"],
                              row["cpu_s_per_1000"], row["msgs_per_s"]),
                          flush=True)
    names = [b[0] for b in builds] + (["smtp-sink"] if args.peer else [])
    for conc in concs:
        med = {}
        for n in names:
            v = sorted(x["cpu_s_per_1000"] for x in rows
                       if x["build"] == n and x["concurrency"] == conc)
            med[n] = v[len(v) // 2]
            print("summary conc=%d build=%s cpu/1000 median=%.3fs min=%.3fs "
                  "mean=%.3fs (%d rounds)" % (conc, n, med[n], v[0],
                                              sum(v) / len(v), len(v)))
        if len(builds) == 2:
            a, b = builds[0][0], builds[1][0]
            print("summary conc=%d median ratio %s/%s=%.2f" % (
                conc, b, a, med[b] / med[a]))
        if args.peer:
            for n, _ in builds:
                print("summary conc=%d median ratio %s/smtp-sink=%.2f" % (
                    conc, n, med[n] / med["smtp-sink"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
