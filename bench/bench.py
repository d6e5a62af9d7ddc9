#!/usr/bin/python3
"""bench.py - mailmoat's benchmarks (issue #2), run by bench/run.sh.

  throughput   Postfix's smtp-source -> mailmoat -> smtp-sink versus
               smtp-source -> smtp-sink directly, in the same run, at 1, 10
               and 100 parallel sessions, 5 KB and 100 KB messages; the
               daemon's CPU seconds per 1,000 messages from /proc/PID/stat.
  memory       the daemon's VmRSS at rest and with 1,000 and 10,000 idle
               sessions open after EHLO.
  callgrind    instructions per message under valgrind --tool=callgrind
               (difference of two runs of different lengths, so start-up
               and shut-down cancel out).

Each measurement prints one line "name key=value ..." and the whole run
ends with a Markdown summary.  Nothing is timed against a threshold here:
the figures go into bench/RESULTS.md by hand.
"""
import argparse
import os
import resource
import socket
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import mm  # noqa: E402

BENCH_CONF = {
    "max_connections": "20000",
    "max_per_ip": "20000",
    "max_backend_connections": "200",
    "message_size_limit": "10M",
    "action_pregreet": "off",
    "action_pipelining": "reject",
}


def smtp_source(port, sessions, msgs, size_kb):
    """smtp_source - run Postfix's smtp-source; wall seconds.  It stops
    with an error at the first reply that is not the expected 2xx/354, so
    a clean exit means every message was accepted."""
    cmd = [mm.SMTP_SOURCE, "-s", str(sessions), "-m", str(msgs),
           "-l", str(size_kb * 1024), "-f", "bench@sender.example",
           "-t", "bob@example.com", "-M", "client.example.net",
           "127.0.0.1:%d" % port]
    t = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    took = time.monotonic() - t
    if p.returncode != 0:
        raise RuntimeError("smtp-source failed: %s %s" % (p.stdout,
                                                          p.stderr))
    return took, " ".join(cmd)


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def throughput(args, out):
    """throughput - per (size, sessions): args.repeat rounds of direct,
    through mailmoat, and direct to a sink that does not announce
    PIPELINING (mailmoat never does, so smtp-source cannot pipeline
    through it: this third figure separates that cost from the proxy's).
    Medians of the rounds; the daemon's CPU is summed over its rounds."""
    rows = []
    with mm.Sink(dump=False) as sink, \
            mm.Sink(dump=False, extra=["-p"]) as sink_np:
        d = mm.Daemon(sink.port, **BENCH_CONF)
        d.start()
        try:
            for size in (5, 100):
                for sessions in (1, 10, 100):
                    msgs = args.messages[size]
                    if sessions == 1:
                        msgs = max(msgs // 4, 50)
                    rates = {"direct": [], "mailmoat": [], "direct_nopipe": []}
                    cpu = 0.0
                    sink_cpu = {"direct": 0.0, "mailmoat": 0.0}
                    cmds = {}
                    for _ in range(args.repeat):
                        for target, port in (("direct", sink.port),
                                             ("mailmoat", d.port),
                                             ("direct_nopipe", sink_np.port)):
                            cpu0 = d.cpu_seconds()
                            s0 = mm.proc_cpu_seconds(sink.proc.pid)
                            took, cmds[target] = smtp_source(port, sessions,
                                                             msgs, size)
                            if target == "mailmoat":
                                cpu += d.cpu_seconds() - cpu0
                            if target in sink_cpu:
                                sink_cpu[target] += \
                                    mm.proc_cpu_seconds(sink.proc.pid) - s0
                            rates[target].append(msgs / took)
                    r = {k: median(v) for k, v in rates.items()}
                    # ratios of runs next to each other in time: the load
                    # of a shared machine drifts less within a round
                    paired = [m / dd for m, dd in zip(rates["mailmoat"],
                                                      rates["direct"])]
                    row = {
                        "size_kb": size, "sessions": sessions,
                        "messages": msgs, "rounds": args.repeat,
                        "direct_msgs_per_s": r["direct"],
                        "mailmoat_msgs_per_s": r["mailmoat"],
                        "direct_nopipe_msgs_per_s": r["direct_nopipe"],
                        "ratio": r["mailmoat"] / r["direct"],
                        "paired_ratio_median": median(paired),
                        "paired_ratios": paired,
                        "ratio_nopipe": r["mailmoat"] / r["direct_nopipe"],
                        "daemon_cpu_s_per_1000": cpu * 1000.0 /
                        (msgs * args.repeat),
                        "sink_cpu_s_per_1000": {
                            k: v * 1000.0 / (msgs * args.repeat)
                            for k, v in sink_cpu.items()},
                        "all_rates": rates, "cmds": cmds,
                    }
                    rows.append(row)
                    print("throughput size=%dKB sessions=%d messages=%d x%d "
                          "direct=%.0f/s mailmoat=%.0f/s direct_nopipe=%.0f/s "
                          "ratio=%.2f paired=%.2f [%s] ratio_nopipe=%.2f "
                          "cpu_per_1000=%.3fs (smtp-sink: %.3fs direct, "
                          "%.3fs behind mailmoat)" % (
                              size, sessions, msgs, args.repeat,
                              r["direct"], r["mailmoat"], r["direct_nopipe"],
                              row["ratio"], median(paired),
                              " ".join("%.2f" % x for x in paired),
                              row["ratio_nopipe"],
                              row["daemon_cpu_s_per_1000"],
                              row["sink_cpu_s_per_1000"]["direct"],
                              row["sink_cpu_s_per_1000"]["mailmoat"]),
                          flush=True)
        finally:
            d.cleanup()
    out["throughput"] = rows


def open_idle(port, n, first_ip=1):
    """open_idle - n sessions after EHLO, from 127.3.x.y; the sockets."""
    socks = []
    for i in range(n):
        j = i + first_ip
        s = socket.create_connection(
            ("127.0.0.1", port), timeout=30,
            source_address=("127.3.%d.%d" % (j // 250, j % 250 + 1), 0))
        socks.append(s)
    for s in socks:
        buf = b""
        while b"\r\n" not in buf:
            buf += s.recv(1024)
        s.sendall(b"EHLO client.example.net\r\n")
    for s in socks:
        buf = b""
        while b"\r\n250 " not in buf and not buf.startswith(b"250 "):
            d = s.recv(4096)
            if not d:
                raise RuntimeError("session closed: %r" % buf)
            buf += d
    return socks


def memory(args, out):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    res = {}
    with mm.Sink() as sink:
        d = mm.Daemon(sink.port, **BENCH_CONF)
        d.start()
        try:
            # at rest: after start and one delivered message (so lazily
            # initialised pieces are counted)
            smtp_source(d.port, 1, 1, 5)
            time.sleep(0.5)
            rest = d.proc_status("VmRSS")
            res["rest_kb"] = rest
            res["rest_anon_kb"] = d.proc_status("RssAnon")
            res["rest_file_kb"] = d.proc_status("RssFile")
            print("memory rest VmRSS=%d kB (RssAnon=%d kB RssFile=%d kB)" % (
                rest, res["rest_anon_kb"], res["rest_file_kb"]), flush=True)
            socks = []
            for n in (1000, 10000):
                socks += open_idle(d.port, n - len(socks), len(socks))
                time.sleep(0.5)
                rss = d.proc_status("VmRSS")
                anon = d.proc_status("RssAnon")
                st = d.stats()
                per = (rss - rest) * 1024.0 / n
                res["sessions_%d" % n] = {"rss_kb": rss, "anon_kb": anon,
                                          "per_session_bytes": per,
                                          "active": st["connections_active"]}
                print("memory sessions=%d active=%d VmRSS=%d kB "
                      "per_session=%.0f bytes" % (n, st["connections_active"],
                                                  rss, per), flush=True)
            for s in socks:
                s.close()
        finally:
            d.cleanup()
    out["memory"] = res


def callgrind_total(path):
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError("no summary in " + path)


def callgrind(args, out):
    """callgrind - instructions per message for 5 KB and 100 KB messages:
    two runs of different lengths, the difference divided by the
    difference in messages (start-up and shut-down cancel out)."""
    res = {}
    with mm.Sink(dump=False) as sink:
        for size in (5, 100):
            counts = {}
            for n in (args.cg_small, args.cg_large):
                outf = os.path.join(mm.mkdtemp("callgrind-"), "cg.out")
                d = mm.Daemon(sink.port, wrapper=[
                    "valgrind", "--tool=callgrind",
                    "--callgrind-out-file=" + outf, "--quiet"], **BENCH_CONF)
                d.start()
                try:
                    smtp_source(d.port, 1, n, size)
                finally:
                    rc = d.stop(120)
                    d.cleanup()
                counts[n] = callgrind_total(outf)
                os.unlink(outf)
                os.rmdir(os.path.dirname(outf))
                print("callgrind size=%dKB messages=%d Ir=%d (exit %s)" % (
                    size, n, counts[n], rc), flush=True)
            per = (counts[args.cg_large] - counts[args.cg_small]) / \
                (args.cg_large - args.cg_small)
            res["%dKB" % size] = {"Ir": counts, "Ir_per_message": per}
            print("callgrind size=%dKB Ir_per_message=%.0f (1 session)"
                  % (size, per), flush=True)
    out["callgrind"] = res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="*",
                    default=["throughput", "memory", "callgrind"])
    ap.add_argument("--msgs-5k", type=int, default=20000)
    ap.add_argument("--msgs-100k", type=int, default=4000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--cg-small", type=int, default=20)
    ap.add_argument("--cg-large", type=int, default=220)
    args = ap.parse_args()
    args.messages = {5: args.msgs_5k, 100: args.msgs_100k}
    out = {}
    for w in args.what:
        globals()[w](args, out)
    import json
    path = os.path.join(ROOT, "build", "bench-results.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("# raw results in", path)


if __name__ == "__main__":
    main()
