#!/usr/bin/python3
"""dnsserver.py - a REAL authoritative DNS server (Debian's nsd) for tests.

Use with /usr/bin/python3 (dnslib is Debian's, not pip's).

    import sys; sys.path.insert(0, "tests/lib")
    from dnsserver import DnsServer, DelayProxy, Blackhole

    zones = {
        "example.test": [
            "@      MX  10 mail.example.test.",
            "mail   A   127.0.0.10",
            "10.0.0.127.in-addr.arpa. PTR mail.example.test.",   # absolute names allowed
        ],
        "0.0.127.in-addr.arpa": ["10 PTR mail.example.test."],
    }
    with DnsServer(zones, servfail=["broken.test"]) as dns:
        dns.port            # UDP+TCP port on dns.host (127.0.0.1)
        dns.addr            # "127.0.0.1:PORT" (mailmoat's dns_servers syntax)
        dns.query("mail.example.test", "A")   # -> (rcode_name, [rdata text])
        dns.update(zones2)  # rewrite zone files and reload nsd (SIGHUP)

Zones are a dict: zone name -> list of record lines in zone-file syntax
relative to the zone ("@" = apex, relative names, default TTL 300).  A SOA
and an NS record are added unless the lines give their own.  A line may
start with "$TTL n".

Failure behaviour, all from real sockets, no fake answers:

  * SERVFAIL: every zone named in `servfail` is configured in nsd with a
    zone file that does not parse; nsd is authoritative for it but has no
    data, so it answers SERVFAIL for every name in it (checked in
    selftest()).
  * Timeout: Blackhole() is a UDP+TCP socket on 127.0.0.1 that reads
    queries and never answers.  Point a resolver at blackhole.addr.
  * Slow answers / per-name timeouts: DelayProxy(upstream, rules) is a
    UDP forwarder in front of nsd: each query is forwarded to nsd and the
    REAL answer is returned after the delay of the first matching rule
    (rules: [(name_suffix, delay_ms or None to drop)], default delay
    `default_ms`).  TCP (the retry after a truncated UDP answer) is
    passed through to nsd unchanged, without delays.

Every object is a context manager and also has start()/stop().
"""

import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import dnslib

NSD = "/usr/sbin/nsd"


def free_port(host="127.0.0.1"):
    """free_port - a port free for both UDP and TCP on host (best effort)."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind((host, 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind((host, port))
        except OSError:
            t.close()
            continue
        u.close()
        t.close()
        return port
    raise RuntimeError("no free port")


def _absname(name):
    return name if name.endswith(".") else name + "."


def query(host, port, name, qtype="A", timeout=2.0):
    """query - one UDP query; returns (rcode name, [rdata text]) or raises
    socket.timeout."""
    q = dnslib.DNSRecord.question(name, qtype)
    q.header.rd = 0
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(q.pack(), (host, port))
        while True:
            data, _ = s.recvfrom(65535)
            r = dnslib.DNSRecord.parse(data)
            if r.header.id == q.header.id:
                break
    finally:
        s.close()
    rcode = dnslib.RCODE.get(r.header.rcode)
    qt = getattr(dnslib.QTYPE, qtype)
    return rcode, [str(rr.rdata) for rr in r.rr if rr.rtype == qt]


class DnsServer:
    """DnsServer - nsd on host:port serving zones (see module doc)."""

    def __init__(self, zones, servfail=(), host="127.0.0.1", port=None,
                 ttl=300):
        self.zones = dict(zones)
        self.servfail = list(servfail)
        self.host = host
        self.port = port or free_port(host)
        self.ttl = ttl
        self.dir = None
        self.proc = None
        self.serial = 1

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def _zone_text(self, zone, lines):
        z = _absname(zone)
        out = ["$ORIGIN %s" % z, "$TTL %d" % self.ttl]
        body = [l.strip() for l in lines if l.strip()]
        has_soa = any(" SOA " in " %s " % l.upper() for l in body)
        has_ns = any(" NS " in " %s " % l.upper() and
                     l.split()[0] in ("@", z) for l in body)
        if not has_soa:
            # minimum 60: negative answers carry a 60 s TTL
            out.append("@ SOA ns.%s hostmaster.%s %d 3600 600 86400 60"
                       % (z, z, self.serial))
        if not has_ns:
            out.append("@ NS ns.%s" % z)
            if not any(l.split()[0] in ("ns", "ns." + z) for l in body):
                out.append("ns A 127.0.0.1")
        out += body
        return "\n".join(out) + "\n"

    def _write(self):
        conf = [
            "server:",
            "  ip-address: %s@%d" % (self.host, self.port),
            "  port: %d" % self.port,
            '  username: ""',
            '  chroot: ""',
            "  zonesdir: %s" % self.dir,
            "  pidfile: %s/nsd.pid" % self.dir,
            "  xfrdfile: %s/xfrd.state" % self.dir,
            "  zonelistfile: %s/zone.list" % self.dir,
            "  logfile: %s/nsd.log" % self.dir,
            "  verbosity: 1",
            "  server-count: 1",
            "  do-ip6: no",
            "  tcp-count: 64",
            "  hide-version: yes",
            "  minimal-responses: yes",
            "  refuse-any: yes",
            # no response rate limiting: tests and benchmarks send bursts
            "  rrl-ratelimit: 0",
            "  rrl-whitelist-ratelimit: 0",
            "remote-control:",
            "  control-enable: no",
        ]
        for i, (zone, lines) in enumerate(sorted(self.zones.items())):
            fn = "z%d.zone" % i
            path = os.path.join(self.dir, fn)
            with open(path, "w") as f:
                f.write(self._zone_text(zone, lines))
            # nsd reloads a zone file whose mtime changed: make sure it
            # does even when two updates fall in the same second
            t = time.time() + self.serial
            os.utime(path, (t, t))
            conf += ["zone:", "  name: %s" % _absname(zone),
                     "  zonefile: %s" % fn]
        for i, zone in enumerate(self.servfail):
            fn = "broken%d.zone" % i
            with open(os.path.join(self.dir, fn), "w") as f:
                f.write("this is not a zone file (deliberately: SERVFAIL)\n")
            conf += ["zone:", "  name: %s" % _absname(zone),
                     "  zonefile: %s" % fn]
        with open(os.path.join(self.dir, "nsd.conf"), "w") as f:
            f.write("\n".join(conf) + "\n")

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="mm-nsd-")
        self._write()
        conf = os.path.join(self.dir, "nsd.conf")
        chk = subprocess.run(["/usr/sbin/nsd-checkconf", conf],
                             capture_output=True, text=True)
        if chk.returncode != 0:
            raise RuntimeError("nsd-checkconf: " + chk.stderr + chk.stdout)
        self.proc = subprocess.Popen([NSD, "-d", "-c", conf],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self):
        zone = sorted(self.zones)[0] if self.zones else None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nsd exited %d; log: %s" %
                                   (self.proc.returncode, self.log()))
            try:
                if zone is None:
                    return
                rc, ans = query(self.host, self.port, zone, "SOA", 0.3)
                if rc == "NOERROR" and ans:
                    return
            except (socket.timeout, ConnectionRefusedError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError("nsd not ready; log: " + self.log())

    def log(self):
        try:
            with open(os.path.join(self.dir, "nsd.log")) as f:
                return f.read()
        except OSError:
            return ""

    def update(self, zones):
        """update - replace the zones (same zone names) and reload; returns
        when nsd serves the new SOA serial of every zone.  nsd 4.6's reload
        child sometimes dies when the config has unloadable (SERVFAIL)
        zones ("Reload process failed, continuing with old database"):
        then nsd is restarted on the same port."""
        self.zones = dict(zones)
        self.serial += 1
        self._write()
        self.proc.send_signal(signal.SIGHUP)
        if self._wait_serial(5):
            return
        self._stop_proc()
        self.proc = subprocess.Popen(
            [NSD, "-d", "-c", os.path.join(self.dir, "nsd.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not self._wait_serial(20):
            raise RuntimeError("nsd did not load serial %d; log: ...%s"
                               % (self.serial, self.log()[-1500:]))

    def _wait_serial(self, timeout):
        """_wait_serial - every zone answers with the current serial."""
        deadline = time.monotonic() + timeout
        for zone in self.zones:
            while True:
                try:
                    rc, ans = query(self.host, self.port, zone, "SOA", 0.3)
                    if ans and ans[0].split()[2] == str(self.serial):
                        break
                except (socket.timeout, OSError):
                    pass
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
        return True

    def query(self, name, qtype="A"):
        return query(self.host, self.port, name, qtype)

    def selftest(self):
        """selftest - every servfail zone really answers SERVFAIL."""
        for z in self.servfail:
            rc, _ = self.query("x." + z, "A")
            if rc != "SERVFAIL":
                raise RuntimeError("zone %s answers %s, not SERVFAIL" %
                                   (z, rc))

    def _stop_proc(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def stop(self):
        self._stop_proc()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Blackhole:
    """Blackhole - UDP+TCP on host:port that reads and never answers."""

    def __init__(self, host="127.0.0.1", port=None):
        self.host = host
        self.port = port or free_port(host)
        self.count = 0
        self._stop = False

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def start(self):
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((self.host, self.port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((self.host, self.port))
        self.tcp.listen(16)
        self.conns = []
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        return self

    def _run(self):
        while not self._stop:
            r, _, _ = select.select([self.udp, self.tcp] + self.conns, [], [],
                                    0.2)
            for s in r:
                try:
                    if s is self.udp:
                        self.udp.recvfrom(65535)
                        self.count += 1
                    elif s is self.tcp:
                        c, _ = self.tcp.accept()
                        self.conns.append(c)
                    elif not s.recv(65535):
                        self.conns.remove(s)
                        s.close()
                except OSError:
                    pass

    def stop(self):
        self._stop = True
        self.t.join()
        for s in [self.udp, self.tcp] + self.conns:
            s.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class DelayProxy:
    """DelayProxy - UDP forwarder to a real server with per-name delays.

    rules: list of (suffix, delay_ms) matched against the query name (lower
    case, no trailing dot; "" matches everything); delay_ms None drops the
    query (a timeout).  A rule (suffix, delay_ms, qtypes, upstream) applies
    only to queries of those types ("A", "AAAA", ...) and, when upstream
    (host, port) is not None, sends them to that server instead (another
    real nsd: e.g. one where the zone is broken, for a SERVFAIL of one
    type only).  The answer is nsd's, untouched."""

    def __init__(self, upstream, rules=(), default_ms=0, host="127.0.0.1",
                 port=None):
        self.upstream = upstream  # (host, port)
        self.rules = list(rules)
        self.default_ms = default_ms
        self.host = host
        self.port = port or free_port(host)
        self.forwarded = 0
        self.dropped = 0
        self._stop = False
        self._lock = threading.Lock()
        self._pending = {}  # upstream id -> (client addr, original id, name)
        self._next = 1
        # (event, name, monotonic time): "q" query in, "a" answer out
        self.events = []

    @property
    def addr(self):
        return "%s:%d" % (self.host, self.port)

    def _delay_for(self, name, qtype=None):
        return self._route(name, qtype)[0]

    def _route(self, name, qtype):
        """_route - (delay_ms, upstream) for a query."""
        for rule in self.rules:
            suffix, ms = rule[0], rule[1]
            if len(rule) > 2 and qtype not in rule[2]:
                continue
            if suffix == "" or name == suffix or name.endswith("." + suffix):
                up = rule[3] if len(rule) > 3 and rule[3] else self.upstream
                return ms, up
        return self.default_ms, self.upstream

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.host, self.port))
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.bind((self.host, 0))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((self.host, self.port))
        self.tcp.listen(64)
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()
        self.tt = threading.Thread(target=self._run_tcp, daemon=True)
        self.tt.start()
        return self

    def _pipe(self, a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _run_tcp(self):
        while not self._stop:
            r, _, _ = select.select([self.tcp], [], [], 0.2)
            if not r:
                continue
            try:
                c, _ = self.tcp.accept()
                u = socket.create_connection(self.upstream, timeout=5)
                u.settimeout(None)
            except OSError:
                continue
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b),
                                 daemon=True).start()

    def _send_up(self, data, client, name="", upstream=None):
        with self._lock:
            uid = self._next
            self._next = (self._next % 65535) + 1
            self._pending[uid] = (client, data[:2], name)
        self.up.sendto(uid.to_bytes(2, "big") + data[2:],
                       upstream or self.upstream)

    def _run(self):
        while not self._stop:
            r, _, _ = select.select([self.sock, self.up], [], [], 0.2)
            for s in r:
                try:
                    data, src = s.recvfrom(65535)
                except OSError:
                    continue
                if len(data) < 12:
                    continue
                if s is self.sock:
                    try:
                        q = dnslib.DNSRecord.parse(data)
                        name = str(q.q.qname).rstrip(".").lower()
                        qtype = dnslib.QTYPE.get(q.q.qtype)
                    except Exception:
                        continue
                    ms, up = self._route(name, qtype)
                    self.events.append(("q", name, time.monotonic()))
                    if ms is None:
                        self.dropped += 1
                        continue
                    self.forwarded += 1
                    if ms:
                        threading.Timer(ms / 1000.0, self._send_up,
                                        (data, src, name, up)).start()
                    else:
                        self._send_up(data, src, name, up)
                else:
                    uid = int.from_bytes(data[:2], "big")
                    with self._lock:
                        ent = self._pending.pop(uid, None)
                    if ent:
                        client, oid, name = ent
                        self.events.append(("a", name, time.monotonic()))
                        self.sock.sendto(oid + data[2:], client)

    def stop(self):
        self._stop = True
        self.t.join()
        self.tt.join()
        self.sock.close()
        self.up.close()
        self.tcp.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    # Self-test: python3 tests/lib/dnsserver.py
    zones = {"example.test": ["@ MX 10 mail", "mail A 127.0.0.10",
                              "nomx A 127.0.0.11"]}
    with DnsServer(zones, servfail=["broken.test"]) as dns:
        print("nsd on", dns.addr)
        print(dns.query("mail.example.test", "A"))
        print(dns.query("example.test", "MX"))
        print(dns.query("nope.example.test", "A"))
        print(dns.query("x.broken.test", "A"))
        dns.selftest()
        with DelayProxy((dns.host, dns.port), [("slow.example.test", 300),
                                              ("drop.example.test", None)]
                        ) as px:
            t = time.monotonic()
            print(query(px.host, px.port, "mail.example.test"),
                  "%.0f ms" % ((time.monotonic() - t) * 1000))
            t = time.monotonic()
            print(query(px.host, px.port, "slow.example.test"),
                  "%.0f ms" % ((time.monotonic() - t) * 1000))
            try:
                query(px.host, px.port, "drop.example.test", timeout=0.5)
                print("drop answered?!")
            except socket.timeout:
                print("drop: timeout as intended")
        with Blackhole() as bh:
            try:
                query(bh.host, bh.port, "x.test", timeout=0.3)
            except socket.timeout:
                print("blackhole: timeout as intended, %d seen" % bh.count)
