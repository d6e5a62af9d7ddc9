#!/usr/bin/python3
"""soak.py - mailmoat under a long, mixed attack (issue 7), from outside.

Not a test: a bench run by hand (bench/soak/run.sh).  It starts
build/host/mailmoat (tests/lib/mm.py's Daemon, generated config) in front
of Postfix's smtp-sink and, for DURATION seconds, runs at once:

  idle      N sessions (default 10,000): connect, read the banner, say
            nothing; when cut, reconnect.  Spread over many 127.10.x.y
            source addresses so max_per_ip does not bite.
  slowloris S clients (default 200), half in commands (a byte every few
            seconds of "EHLO ..." after the banner), half in DATA (a
            normal EHLO/MAIL/RCPT/DATA, then the body a byte every few
            seconds); each reconnects when cut.  One 127.20.x.y each.
  bursty    B clients (--bursty, default 0): DATA with 20 KiB at once (the
            body streams and keeps its backend connection), then a byte
            every few seconds.  One 127.21.x.y each.
  legit     steady real mail through smtplib (default 5 msg/s) from
            127.30.0.1, each with its own X-Soak-Seq header.

Every 10 s it samples the daemon's VmRSS, open fds and CPU seconds, the
load average and the client side's counters.  At the end: legitimate
mails sent / accepted by the daemon / found at the backend, tempfails and
errors, slowloris and idle cuts (how long after their last reply, with
which 421), RSS first/max/last, CPU seconds.  Raw JSON goes to
build/soak-results.json (or --json).

Only /usr/bin/python3 and Debian's standard library (asyncio).
"""
import argparse
import asyncio
import collections
import json
import os
import random
import resource
import shutil
import smtplib
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "lib"))
import mm  # noqa: E402

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def now():
    return time.monotonic()


def src_addr(net, i):
    """src_addr - the i-th address of 127.NET.0.0/16 (skipping .0/.255)."""
    return "127.%d.%d.%d" % (net, 1 + i // 250, 1 + i % 250)


def proc_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def proc_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Stats:
    def __init__(self):
        self.c = collections.Counter()
        # kind -> list of (seconds since the last reply, reply line)
        self.cuts = collections.defaultdict(list)

    def cut(self, kind, secs, line):
        self.cuts[kind].append((round(secs, 2), line))


ST = Stats()


async def open_sock(loop, src, dst, sem):
    """open_sock - a non-blocking TCP socket from src connected to dst."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    except OSError:
        pass
    s.bind((src, 0))
    async with sem:
        try:
            await asyncio.wait_for(loop.sock_connect(s, dst), 30)
        except BaseException:
            s.close()
            raise
    return s


def reason_of(line):
    """reason_of - a short class of the daemon's last line."""
    if not line:
        return "closed without reply"
    if "Timeout" in line:
        return "421 timeout"
    if "Too many" in line:
        return "421 too many connections"
    return line[:40]


# ------------------------------------------------------------- idle

class IdleProto(asyncio.Protocol):
    def __init__(self, done):
        self.done = done
        self.buf = b""
        self.t_banner = None
        self.t0 = now()
        self.ours = False      # we closed it (end of the run)

    def connection_made(self, tr):
        self.tr = tr

    def data_received(self, data):
        self.buf += data
        if self.t_banner is None and b"\n" in self.buf:
            line = self.buf.split(b"\n", 1)[0]
            if line.startswith(b"220"):
                self.t_banner = now()
                ST.c["idle_banner"] += 1
                ST.c["idle_up"] += 1
                self.buf = self.buf.split(b"\n", 1)[1]
            else:
                ST.c["idle_refused"] += 1

    def connection_lost(self, exc):
        if self.t_banner is not None:
            ST.c["idle_up"] -= 1
        if self.t_banner is not None and not self.ours:
            last = self.buf.decode("latin-1").strip().splitlines()
            line = last[-1] if last else ""
            ST.c["idle_cut"] += 1
            ST.c["idle_cut: " + reason_of(line)] += 1
            ST.cut("idle", now() - self.t_banner, reason_of(line))
        if not self.done.done():
            self.done.set_result(None)


async def idle_client(loop, dst, src, sem, stop, delay):
    await asyncio.sleep(delay)
    while not stop.is_set():
        done = loop.create_future()
        try:
            s = await open_sock(loop, src, dst, sem)
            ST.c["idle_connects"] += 1
            tr, proto = await loop.create_connection(
                lambda: IdleProto(done), sock=s)
        except (OSError, asyncio.TimeoutError) as e:
            ST.c["idle_connect_error: %s" % type(e).__name__] += 1
            await asyncio.sleep(1 + random.random())
            continue
        stopw = asyncio.ensure_future(stop.wait())
        await asyncio.wait([done, stopw], return_when=asyncio.FIRST_COMPLETED)
        stopw.cancel()
        if not done.done():
            proto.ours = True
            tr.abort()
            return
        await asyncio.sleep(0.2 + random.random())


# -------------------------------------------------------- slowloris

async def read_reply(r, timeout=60):
    """read_reply - one whole SMTP reply; its last line ('' at EOF)."""
    while True:
        line = await asyncio.wait_for(r.readline(), timeout)
        if not line:
            return ""
        s = line.decode("latin-1").rstrip("\r\n")
        if len(s) < 4 or s[3] != "-":
            return s


async def slow_client(loop, dst, src, sem, stop, delay, mode, every):
    """slow_client - mode 'command', 'data' or 'bursty' (data that
    starts with 20 KiB at once, so that it streams and keeps its backend
    connection); a byte every `every` s."""
    await asyncio.sleep(delay)
    kind = "slow_" + mode
    while not stop.is_set():
        w = None
        try:
            s = await open_sock(loop, src, dst, sem)
            r, w = await asyncio.open_connection(sock=s)
            ST.c[kind + "_connects"] += 1
            line = await read_reply(r)
            if not line.startswith("220"):
                ST.c[kind + "_refused"] += 1
                raise ConnectionError(line)
            if mode in ("data", "bursty"):
                for cmd, want in ((b"EHLO slow.example.net\r\n", "250"),
                                  (b"MAIL FROM:<slow@slow.example.net>\r\n",
                                   "250"),
                                  (b"RCPT TO:<bob@example.com>\r\n", "250"),
                                  (b"DATA\r\n", "354")):
                    w.write(cmd)
                    line = await read_reply(r)
                    if not line.startswith(want):
                        ST.c[kind + "_setup_failed: " + line[:30]] += 1
                        raise ConnectionError(line)
                if mode == "bursty":
                    w.write(b"Subject: bursty\r\n\r\n" +
                            (b"b" * 78 + b"\r\n") * 256)
                    payload = (b"x" * 70 + b"\r\n") * 100
                else:
                    payload = (b"Subject: slow\r\nFrom: "
                               b"<slow@slow.example.net>\r\n\r\n" +
                               b"x" * 70 + b"\r\n") * 100
            else:
                payload = (b"EHLO slowloris-with-a-long-name.example.net\r\n"
                           * 100)
            t0 = now()
            ST.c[kind + "_up"] += 1
            try:
                cut_line = None
                rd = asyncio.ensure_future(r.readline())
                for i in range(len(payload)):
                    if stop.is_set():
                        break
                    w.write(payload[i:i + 1])
                    ST.c[kind + "_bytes"] += 1
                    done, _ = await asyncio.wait([rd], timeout=every)
                    if done:
                        ln = rd.result().decode("latin-1").rstrip("\r\n")
                        if not ln or ln.startswith("421") or \
                                ln[:1] in ("4", "5"):
                            cut_line = ln
                            break
                        # a reply to a completed slow command: go on
                        rd = asyncio.ensure_future(r.readline())
                        t0 = now()
                if not rd.done():
                    rd.cancel()
                if cut_line is not None:
                    ST.c[kind + "_cut"] += 1
                    ST.c[kind + "_cut: " + reason_of(cut_line)] += 1
                    ST.cut(kind, now() - t0, reason_of(cut_line))
                elif not stop.is_set():
                    ST.c[kind + "_payload_done"] += 1
            finally:
                ST.c[kind + "_up"] -= 1
        except (OSError, asyncio.TimeoutError, ConnectionError) as e:
            ST.c[kind + "_error: %s" % type(e).__name__] += 1
        finally:
            if w is not None:
                w.close()
        if not stop.is_set():
            await asyncio.sleep(0.5 + random.random())


# ------------------------------------------------------------ legit

class Legit:
    """Legit - smtplib from worker threads at a steady rate."""

    def __init__(self, port, rate, src):
        self.port, self.rate, self.src = port, rate, src
        self.lock = threading.Lock()
        self.c = collections.Counter()
        self.lat = []
        self.errors = collections.Counter()
        self.accepted = set()
        self.seq = 0

    def one(self, seq):
        msg = ("From: <sender@sender.example.net>\r\n"
               "To: <alice@example.com>\r\n"
               "Subject: soak %d\r\nX-Soak-Seq: %d\r\n\r\n"
               "A legitimate message in the soak.\r\n" % (seq, seq))
        t0 = now()
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=120,
                              local_hostname="legit.example.net",
                              source_address=(self.src, 0)) as c:
                c.sendmail("sender@sender.example.net",
                           ["alice@example.com"], msg)
            with self.lock:
                self.c["accepted"] += 1
                self.accepted.add(seq)
                self.lat.append(now() - t0)
        except smtplib.SMTPResponseException as e:
            with self.lock:
                self.c["tempfail" if 400 <= e.smtp_code < 500
                       else "rejected"] += 1
                self.errors["%d %s" % (e.smtp_code,
                                       e.smtp_error[:50])] += 1
        except smtplib.SMTPRecipientsRefused as e:
            with self.lock:
                code = list(e.recipients.values())[0][0]
                self.c["tempfail" if 400 <= code < 500 else "rejected"] += 1
                self.errors["rcpt %d" % code] += 1
        except Exception as e:
            with self.lock:
                self.c["error"] += 1
                self.errors[type(e).__name__ + ": " + str(e)[:50]] += 1

    def run(self, stop):
        from concurrent.futures import ThreadPoolExecutor
        t0 = now()
        with ThreadPoolExecutor(8) as ex:
            while not stop.is_set():
                due = t0 + self.seq / self.rate
                d = due - now()
                if d > 0:
                    stop.wait(d)
                    continue
                self.seq += 1
                with self.lock:
                    self.c["sent"] += 1
                ex.submit(self.one, self.seq)


# ------------------------------------------------------------- main

class Sink(mm.Sink):
    """Sink - mm.Sink with its output in a file, not /dev/null (on the
    shared build box /dev/null has been seen replaced by a plain file)."""

    def start(self):
        out = open(os.path.join(self.tmp, "sink.log"), "ab")
        for attempt in range(3):
            self.proc = mm.subprocess.Popen(
                [mm.SMTP_SINK, "-u", "root", "-h", "sink.example.com"] +
                self.dump_opt + self.extra +
                ["127.0.0.1:%d" % self.port, "1000"],
                stdout=out, stderr=out)
            try:
                mm.wait_listen(self.port, self.proc)
                return self
            except mm.HarnessError:
                if self.proc.poll() is None:
                    raise
                self.port = mm.free_port()
        raise mm.HarnessError("smtp-sink could not listen")


def sink_seqs(dump_dir):
    """sink_seqs - X-Soak-Seq values of the messages smtp-sink dumped."""
    seqs = set()
    for n in os.listdir(dump_dir):
        try:
            with open(os.path.join(dump_dir, n), "rb") as f:
                for line in f:
                    if line.startswith(b"X-Soak-Seq: "):
                        seqs.add(int(line.split()[1]))
                        break
        except (OSError, ValueError):
            pass
    return seqs


def summarize_cuts(lst):
    if not lst:
        return {"n": 0}
    secs = sorted(x[0] for x in lst)
    return {"n": len(lst), "min_s": secs[0],
            "median_s": statistics.median(secs), "max_s": secs[-1],
            "reasons": dict(collections.Counter(x[1] for x in lst))}


async def amain(a, daemon, sink, out):
    loop = asyncio.get_running_loop()
    dst = ("127.0.0.1", daemon.port)
    sem = asyncio.Semaphore(a.connect_concurrency)
    stop = asyncio.Event()
    tstop = threading.Event()
    tasks = []
    ramp = a.ramp
    for i in range(a.idle):
        tasks.append(asyncio.ensure_future(idle_client(
            loop, dst, src_addr(10, i // a.per_ip), sem, stop,
            ramp * i / max(a.idle, 1))))
    for i in range(a.slow):
        mode = "command" if i % 2 == 0 else "data"
        tasks.append(asyncio.ensure_future(slow_client(
            loop, dst, src_addr(20, i), sem, stop, ramp * i / max(a.slow, 1),
            mode, a.slow_every)))
    for i in range(a.bursty):
        tasks.append(asyncio.ensure_future(slow_client(
            loop, dst, src_addr(21, i), sem, stop,
            ramp * i / max(a.bursty, 1), "bursty", a.slow_every)))
    legit = Legit(daemon.port, a.rate, "127.30.0.1")
    lt = threading.Thread(target=legit.run, args=(tstop,), daemon=True)
    lt.start()

    pid = daemon.pid
    cpu0 = mm.proc_cpu_seconds(pid)
    t_start = now()
    samples = []

    def sample(tag=""):
        s = {"t": round(now() - t_start, 1),
             "rss_kb": proc_rss_kb(pid), "fds": proc_fds(pid),
             "cpu_s": round(mm.proc_cpu_seconds(pid) - cpu0, 2),
             "load1": os.getloadavg()[0],
             "idle_up": ST.c["idle_up"],
             "slow_up": ST.c["slow_command_up"] + ST.c["slow_data_up"] +
                        ST.c["slow_bursty_up"],
             "legit_accepted": legit.c["accepted"]}
        if tag:
            s["tag"] = tag
        samples.append(s)
        print("soak: t=%(t)6.1fs rss=%(rss_kb)6d kB fds=%(fds)5d "
              "cpu=%(cpu_s)7.2fs load=%(load1).2f idle_up=%(idle_up)5d "
              "slow_up=%(slow_up)3d legit=%(legit_accepted)d" % s,
              flush=True)

    sample("start")
    end = t_start + a.duration
    while now() < end:
        await asyncio.sleep(min(10, max(0.1, end - now())))
        if daemon.proc.poll() is not None:
            print("soak: DAEMON EXITED rc=%s" % daemon.proc.returncode)
            break
        sample()
    # stop: legit mail first (let the in-flight ones finish), then clients
    tstop.set()
    await loop.run_in_executor(None, lt.join, 180)
    stop.set()
    await asyncio.wait(tasks, timeout=30)
    for t in tasks:
        t.cancel()
    await asyncio.sleep(10)
    sample("after clients left")
    cpu = round(mm.proc_cpu_seconds(pid) - cpu0, 2) \
        if daemon.proc.poll() is None else None

    try:
        stats = daemon.stats()
    except Exception as e:
        stats = {"error": str(e)}
    mm.wait_for(lambda: sink.established() == 0, "sink sessions to end", 60)
    at_sink = sink_seqs(sink.dump)
    under = [s for s in samples if "tag" not in s]
    rss = [s["rss_kb"] for s in under] or [samples[0]["rss_kb"]]
    res = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "duration_s": a.duration,
        "config": {"idle": a.idle, "slowloris": a.slow,
                   "slow_every_s": a.slow_every, "legit_rate": a.rate,
                   "timeout_command": a.timeout_command,
                   "timeout_data": a.timeout_data,
                   "max_connections": a.max_connections,
                   "max_per_ip": a.max_per_ip,
                   "max_backend_connections": a.max_backend},
        "legit": {"sent": legit.c["sent"], "accepted": legit.c["accepted"],
                  "tempfail": legit.c["tempfail"],
                  "rejected": legit.c["rejected"],
                  "error": legit.c["error"],
                  "errors": dict(legit.errors),
                  "at_backend": len(at_sink),
                  "accepted_not_at_backend":
                      len(legit.accepted - at_sink),
                  "latency_median_s": round(statistics.median(legit.lat), 3)
                  if legit.lat else None,
                  "latency_max_s": round(max(legit.lat), 3)
                  if legit.lat else None},
        "counters": dict(ST.c),
        "cuts": {k: summarize_cuts(v) for k, v in ST.cuts.items()},
        "rss_kb": {"idle_daemon": samples[0]["rss_kb"],
                   "first_under_load": rss[0], "max": max(rss),
                   "last_under_load": rss[-1],
                   "after_clients_left": samples[-1]["rss_kb"]},
        "fds_max": max(s["fds"] for s in samples),
        "daemon_cpu_s": cpu,
        "load1_min_max": [min(s["load1"] for s in samples),
                          max(s["load1"] for s in samples)],
        "daemon_alive": daemon.proc.poll() is None,
        "daemon_stats": stats,
        "samples": samples,
    }
    # the daemon's own view: decisions by reason/detail in its log
    reasons = collections.Counter()
    try:
        with open(daemon.log_path, "rb") as f:
            for line in f:
                if b" reason=" in line:
                    kv = mm.parse_kv(line.decode("latin-1"))
                    reasons["%s %s %s" % (kv.get("action", "?"),
                                          kv.get("reason", "?"),
                                          kv.get("detail", ""))] += 1
    except OSError:
        pass
    res["daemon_log_decisions"] = dict(reasons.most_common(20))
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=float,
                    default=float(os.environ.get("SOAK_SECONDS", 600)))
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--per-ip", type=int, default=20,
                    help="idle sessions per source address")
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--slow-every", type=float, default=3.0)
    ap.add_argument("--bursty", type=int, default=0,
                    help="clients that send 20 KiB of body at once (it "
                         "streams), then a byte every --slow-every s")
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--ramp", type=float, default=20.0,
                    help="seconds over which clients start")
    ap.add_argument("--connect-concurrency", type=int, default=256)
    ap.add_argument("--timeout-command", default="20s")
    ap.add_argument("--timeout-data", default="20s")
    ap.add_argument("--greet-pause", default="200ms")
    ap.add_argument("--max-connections", type=int, default=16000)
    ap.add_argument("--max-per-ip", type=int, default=100)
    ap.add_argument("--max-backend", type=int, default=400)
    ap.add_argument("--keep", metavar="DIR",
                    help="copy the daemon's and smtp-sink's logs into DIR")
    ap.add_argument("--json", default=os.path.join(ROOT, "build",
                                                   "soak-results.json"))
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    need = a.idle + a.slow + 200
    if hard < need:
        sys.exit("soak: RLIMIT_NOFILE hard limit %d < %d needed" % (hard,
                                                                    need))
    if not os.path.exists(mm.MAILMOAT):
        sys.exit("soak: no %s (run make)" % mm.MAILMOAT)

    with Sink() as sink:
        d = mm.Daemon(sink.port,
                      greet_pause=a.greet_pause,
                      timeout_command=a.timeout_command,
                      timeout_data=a.timeout_data,
                      max_connections=str(a.max_connections),
                      max_per_ip=str(a.max_per_ip),
                      max_backend_connections=str(a.max_backend),
                      dnsbl=None, state_flush="1m")
        with d:
            print("soak: daemon pid %d port %d, sink port %d, %ds, "
                  "load %.2f" % (d.pid, d.port, sink.port, a.duration,
                                 os.getloadavg()[0]), flush=True)
            res = asyncio.run(amain(a, d, sink, a.json))
            if a.keep:
                os.makedirs(a.keep, exist_ok=True)
                shutil.copy(d.log_path, a.keep)
                shutil.copy(os.path.join(sink.tmp, "sink.log"), a.keep)
    show = {k: v for k, v in res.items() if k not in ("samples",
                                                      "daemon_stats")}
    print(json.dumps(show, indent=1))
    print("soak: raw results in %s" % a.json)
    ok = (res["legit"]["sent"] == res["legit"]["accepted"] ==
          res["legit"]["at_backend"] and res["daemon_alive"])
    print("soak: %s" % ("all legitimate mail delivered" if ok else
                        "LEGITIMATE MAIL LOST OR DAEMON DIED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
