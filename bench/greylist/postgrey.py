#!/usr/bin/python3
"""postgrey.py - Debian's postgrey on the same triplets as bench_greylist:
started with its own --dbdir on a free loopback port, fed every triplet
over the Postfix policy protocol (first attempts: the inserts), then the
same triplets again (lookups); prints requests/s, postgrey's RSS per
triplet and the size of its BerkeleyDB files.

  postgrey.py TRIPLETS_FILE [LIMIT]
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..",
                                "tests", "lib"))
from mm import free_port  # noqa: E402


def rss_kib(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main():
    path = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    trip = [l.split() for l in open(path)][:limit]
    d = tempfile.mkdtemp(prefix="postgrey-")
    os.chmod(d, 0o777)
    port = free_port()
    p = subprocess.Popen(["/usr/sbin/postgrey", "--inet=127.0.0.1:%d" % port,
                          "--dbdir=" + d, "--delay=300", "--user=nobody",
                          "--group=nogroup", "--pidfile=" + d + "/pid"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            s = socket.create_connection(("127.0.0.1", port))
            break
        except OSError:
            time.sleep(0.1)
    else:
        print("postgrey did not start")
        p.kill()
        return
    f = s.makefile("rwb")

    def ask(net, sender, rcpt):
        ip = net.split("/")[0][:-1] + "1"
        f.write(("request=smtpd_access_policy\nprotocol_state=RCPT\n"
                 "client_address=%s\nclient_name=unknown\nsender=%s\n"
                 "recipient=%s\n\n" % (ip, sender, rcpt)).encode())
        f.flush()
        a = f.readline()
        f.readline()
        return a

    r0 = rss_kib(p.pid)
    t0 = time.monotonic()
    for t in trip:
        ask(*t)
    ins = time.monotonic() - t0
    r1 = rss_kib(p.pid)
    t0 = time.monotonic()
    for t in trip:
        ask(*t)
    look = time.monotonic() - t0
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print("postgrey triplets %d" % len(trip))
    print("postgrey inserts_per_s %.0f lookups_per_s %.0f" %
          (len(trip) / ins, len(trip) / look))
    print("postgrey rss_growth_per_triplet_bytes %.1f (rss %d KiB)" %
          ((r1 - r0) * 1024.0 / len(trip), r1))
    print("postgrey dbdir_bytes %d (%.0f per triplet)" %
          (size, size / len(trip)))
    p.terminate()
    p.wait()
    subprocess.run(["rm", "-rf", d])


main()
