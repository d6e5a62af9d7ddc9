#!/usr/bin/python3
"""bench_scanners.py - what clamd costs (issue 9): mailmoat with
`scanner = clamd:...` against the same daemon without a scanner, in the
same run, both in front of Postfix's smtp-sink.

  latency      time from the client's final "." to the 250, median and
               90th percentile of N sequential messages on one session
               (5 KB and 1 MB messages)
  throughput   Postfix's smtp-source at 1, 10 and 100 parallel sessions,
               5 KB and 1 MB messages: messages/s and the daemon's CPU
               seconds per 1,000 messages (/proc/PID/stat)

clamd is the real one from Debian (tests/scanners' config and a small
signature database written by the run; the figures are the proxy's cost
and clamd's speed on this database, not those of a full ClamAV database).
Prints one line per figure and a Markdown table at the end.
"""
import argparse
import os
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
sys.path.insert(0, os.path.join(ROOT, "tests", "scanners"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import mm  # noqa: E402
import test_scanners as ts  # noqa: E402
from bench import smtp_source, median, BENCH_CONF  # noqa: E402


def latency(d, size, n):
    body = ("x" * 78 + "\r\n") * (size // 80)
    msg = ts.mail("latency", body).encode()
    out = []
    with mm.Client(d.port, timeout=120) as c:
        c.banner()
        c.cmd("EHLO client.sender.example")
        for _ in range(n):
            c.cmd("MAIL FROM:<alice@sender.example>")
            c.cmd("RCPT TO:<bob@example.com>")
            c.cmd("DATA")
            c.send(msg)
            t = time.monotonic()
            c.send(b".\r\n")
            r = c.reply()
            out.append(time.monotonic() - t)
            if r.code != 250:
                raise RuntimeError("latency: %r" % r.text)
        c.cmd("QUIT")
    out.sort()
    return median(out) * 1000, out[int(len(out) * 0.9)] * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--msgs-5k", type=int, default=2000)
    ap.add_argument("--msgs-1m", type=int, default=200)
    ap.add_argument("--latency-n", type=int, default=40)
    args = ap.parse_args()
    clamd, cport = ts.start_clamd(threads=12)
    rows, lat = [], []
    try:
        if not ts.wait_port(cport, clamd, "clamd"):
            sys.exit("clamd did not start")
        with mm.Sink(dump=False) as sink:
            conf = dict(BENCH_CONF, message_size_limit="10M")
            plain = mm.Daemon(sink.port, **conf).start()
            scan = mm.Daemon(sink.port, scanner="clamd:127.0.0.1:%d" % cport,
                             action_scanner="reject", **conf).start()
            try:
                for size_kb in (5, 1024):
                    for name, d in (("none", plain), ("clamd", scan)):
                        m, p90 = latency(d, size_kb * 1024, args.latency_n)
                        lat.append((size_kb, name, m, p90))
                        print("latency size=%dKB scanner=%s median=%.1fms "
                              "p90=%.1fms" % (size_kb, name, m, p90),
                              flush=True)
                for size_kb in (5, 1024):
                    for sessions in (1, 10, 100):
                        n = args.msgs_5k if size_kb == 5 else args.msgs_1m
                        if sessions == 1:
                            n = max(n // 4, 20)
                        row = {"size": size_kb, "sessions": sessions, "n": n}
                        for name, d in (("none", plain), ("clamd", scan)):
                            cpu0 = d.cpu_seconds()
                            took, _ = smtp_source(d.port, sessions, n,
                                                  size_kb)
                            row[name] = n / took
                            row[name + "_cpu"] = ((d.cpu_seconds() - cpu0) *
                                                  1000.0 / n)
                        rows.append(row)
                        print("throughput size=%dKB sessions=%d n=%d "
                              "none=%.1f/s clamd=%.1f/s cpu_per_1000 "
                              "none=%.2fs clamd=%.2fs" % (
                                  size_kb, sessions, n, row["none"],
                                  row["clamd"], row["none_cpu"],
                                  row["clamd_cpu"]), flush=True)
                sc = scan.stats()["scanners"]
                print("clamd stats: %r" % sc)
            finally:
                plain.cleanup()
                scan.cleanup()
    finally:
        clamd.terminate()
        clamd.wait(15)
    print("\n| size | sessions | msgs | no scanner msg/s | clamd msg/s | "
          "ratio | CPU s/1000 none | CPU s/1000 clamd |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d | %d | %.1f | %.1f | %.2f | %.2f | %.2f |" % (
            "5 KB" if r["size"] == 5 else "1 MB", r["sessions"], r["n"],
            r["none"], r["clamd"], r["clamd"] / r["none"], r["none_cpu"],
            r["clamd_cpu"]))
    print("\n| size | scanner | dot->250 median | p90 |\n|---|---|---|---|")
    for size_kb, name, m, p90 in lat:
        print("| %s | %s | %.1f ms | %.1f ms |" % (
            "5 KB" if size_kb == 5 else "1 MB", name, m, p90))


if __name__ == "__main__":
    main()
