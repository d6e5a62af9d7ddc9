#!/usr/bin/python3
"""postgrey.py - Debian's postgrey on the same triplets as bench_greylist.

Its BerkeleyDB is filled with every triplet of the file the way postgrey
keys them (postgrey-fill.pl: policy requests would take hours at 1M), then
postgrey is started on it (its own --dbdir, a free loopback port) and
asked over the Postfix policy protocol, from 32 connections at once (one
connection waits ~40 ms a request on postgrey's two small writes): a
sample of known triplets (lookups: postgrey updates their last-seen time
as mailmoat counts the attempt) and of new ones (first attempts).  Prints
requests/s, postgrey's RSS before/after and its database bytes per
triplet.

  postgrey.py TRIPLETS_FILE [SAMPLE]
"""
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..",
                                "tests", "lib"))
from mm import free_port  # noqa: E402

CONNS = 32


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def ask_all(port, trips):
    """ask_all - every triplet once, CONNS connections; seconds taken."""
    chunks = [trips[i::CONNS] for i in range(CONNS)]

    def worker(part):
        s = socket.create_connection(("127.0.0.1", port))
        f = s.makefile("rwb")
        for net, sender, rcpt in part:
            ip = net.split("/")[0][:-1] + "1"
            f.write(("request=smtpd_access_policy\nprotocol_state=RCPT\n"
                     "client_address=%s\nclient_name=unknown\nsender=%s\n"
                     "recipient=%s\n\n" % (ip, sender, rcpt)).encode())
            f.flush()
            while f.readline() not in (b"\n", b""):
                pass
        s.close()

    th = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    t0 = time.monotonic()
    for t in th:
        t.start()
    for t in th:
        t.join()
    return time.monotonic() - t0


def main():
    path = sys.argv[1]
    sample = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    trip = [l.split() for l in open(path, encoding="latin-1")]
    d = tempfile.mkdtemp(prefix="postgrey-")
    t0 = time.monotonic()
    subprocess.run(["/usr/bin/perl", os.path.join(os.path.dirname(__file__),
                    "postgrey-fill.pl"), d, path], check=True,
                   stdout=subprocess.DEVNULL)
    fill = time.monotonic() - t0
    shutil.chown(d, "nobody", "nogroup")
    for x in os.listdir(d):
        shutil.chown(os.path.join(d, x), "nobody", "nogroup")
    port = free_port()
    t0 = time.monotonic()
    p = subprocess.Popen(["/usr/sbin/postgrey", "--inet=127.0.0.1:%d" % port,
                          "--dbdir=" + d, "--delay=300", "--user=nobody",
                          "--group=nogroup", "--pidfile=" + d + "/pid"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        print("postgrey did not start")
        p.kill()
        return
    start = time.monotonic() - t0
    r0 = rss_kib(p.pid)
    random.seed(1)
    known = random.sample(trip, min(sample, len(trip)))
    new = [("10.255.%d.0/24" % (i % 256), "new%d@fresh.example" % i,
            "rcpt@local.test") for i in range(min(sample, 5000))]
    look = ask_all(port, known)
    ins = ask_all(port, new)
    r1 = rss_kib(p.pid)
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d)
               if x.startswith("postgrey.db"))
    print("postgrey triplets %d (db filled in %.1f s, start %.1f s)" %
          (len(trip), fill, start))
    print("postgrey lookups_per_s %.0f first_attempts_per_s %.0f "
          "(%d connections)" % (len(known) / look, len(new) / ins, CONNS))
    print("postgrey rss_kib %d before, %d after the requests "
          "(growth %.1f B per request)" %
          (r0, r1, (r1 - r0) * 1024.0 / (len(known) + len(new))))
    print("postgrey db_bytes %d (%.0f per triplet)" %
          (size, size / len(trip)))
    p.terminate()
    p.wait()
    # The fill keyed them as postgrey does: the known ones were found.
    out = subprocess.run(["/usr/bin/perl", "-MBerkeleyDB", "-e",
                          'my $e = BerkeleyDB::Env->new(-Home => $ARGV[0], '
                          '-Flags => DB_CREATE|DB_INIT_TXN|DB_INIT_MPOOL|'
                          'DB_INIT_LOG); my %h; tie %h, "BerkeleyDB::Btree",'
                          ' -Filename => "postgrey.db", -Env => $e; '
                          'print scalar(keys %h), "\\n";', d],
                         capture_output=True, text=True).stdout.strip()
    print("postgrey keys_after %s (want %d: the known ones were found)" %
          (out, len(trip) + len(new)))
    shutil.rmtree(d, ignore_errors=True)


main()
