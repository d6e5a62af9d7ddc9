#!/usr/bin/python3
"""spfsuite.py - the RFC 7208 suite against the project's SPF path.

Usage: spfsuite.py DRIVER SUITE.yml XFAIL [MIN_PASS]

Serves each scenario's zonedata from a small authoritative DNS server on
127.0.0.1 (UDP and TCP, dnslib for the wire format), then feeds the
scenario's tests to DRIVER (tests/spf/spf_driver: spf_eval with the c-ares
DNS layer) and compares.  Conventions of the pyspf driver (testspf.py):
records written as SPF are served as TXT too unless the name has TXT
records (the copies go last); names not in zonedata are NXDOMAIN; a
TIMEOUT entry met before any record of the asked type, and names starting
with "error.", never get an answer; names starting with "delay." are
answered after DELAY_S (for the daemon's concurrency test); the default
explanation is
"DEFAULT".  UDP answers bigger than the client's buffer (512, or its EDNS
size) are truncated (TC), so TCP fallback is exercised too.

Prints "ok - spf:<scenario>/<test>", "not ok - ...", "ok - ... # xfail"
for expected failures listed in XFAIL, then a summary.  Exits 1 if fewer
than MIN_PASS tests pass (xfails do not count as passes) or any test not in
XFAIL fails.
"""
import re
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time

import yaml
from dnslib import CNAME, DNSRecord, MX, PTR, QTYPE, RCODE, RR, TXT, A, AAAA

ZONE = {}   # lower-case name without dot -> [(type, value)], in order


def load_zone(zonedata):
    """Turn a scenario's zonedata into ZONE/TIMEOUT."""
    ZONE.clear()
    for name, recs in (zonedata or {}).items():
        key = name.lower().rstrip('.')
        out = ZONE.setdefault(key, [])
        for r in recs or []:
            if r == 'TIMEOUT':
                out.append(('TIMEOUT', None))
                continue
            for typ, val in r.items():
                out.append((typ, val))
    # SPF records are also TXT records unless the name has its own TXT.
    for key, recs in ZONE.items():
        if not any(t == 'TXT' for t, _ in recs):
            recs.extend(('TXT', v) for t, v in list(recs) if t == 'SPF')


def txt_strings(val):
    """A zonedata TXT value as the list of character-strings (bytes)."""
    if isinstance(val, list):
        parts = [v.encode('utf-8') if isinstance(v, str) else bytes(v)
                 for v in val]
    else:
        parts = [str(val).encode('utf-8')]
    out = []
    for p in parts:    # >255 bytes: split into several strings
        if not p:
            out.append(b'')
        while p:
            out.append(p[:255])
            p = p[255:]
    return out


def make_rr(name, typ, val):
    """One dnslib RR, or None for types the suite cannot express."""
    if typ in ('TXT', 'SPF'):
        rd = TXT(txt_strings(val))
        rtype = QTYPE.TXT if typ == 'TXT' else 99
    elif typ == 'A':
        rd, rtype = A(val), QTYPE.A
    elif typ == 'AAAA':
        rd, rtype = AAAA(val), QTYPE.AAAA
    elif typ == 'MX':
        rd, rtype = MX(val[1], val[0]), QTYPE.MX
    elif typ == 'PTR':
        rd, rtype = PTR(val), QTYPE.PTR
    elif typ == 'CNAME':
        rd, rtype = CNAME(val), QTYPE.CNAME
    else:
        return None
    return RR(name, rtype, rdata=rd, ttl=60)


DELAY_S = 0.5


def answer(data):
    """Build the reply packet for a query, or None to time out."""
    try:
        req = DNSRecord.parse(data)
    except Exception:
        return None
    q = req.q
    # The raw labels: names with spaces or '%' must not be escaped.
    qname = '.'.join(l.decode('latin-1') for l in q.qname.label)
    key = qname.lower()
    reply = req.reply()
    reply.header.aa = 1
    seen = 0
    if key.startswith('delay.'):
        time.sleep(DELAY_S)
    while True:
        if key.startswith('error.'):
            return None
        recs = ZONE.get(key)
        if recs is None:
            if seen == 0:
                reply.header.rcode = RCODE.NXDOMAIN
            break
        cname = [v for t, v in recs if t == 'CNAME']
        if cname and q.qtype != QTYPE.CNAME:
            reply.add_answer(make_rr(q.qname if seen == 0 else qname,
                                     'CNAME', cname[0]))
            qname = cname[0].rstrip('.')
            key = qname.lower()
            seen += 1
            if seen > 8:
                break
            continue
        # As testspf.py: a TIMEOUT met before any record of the asked
        # type makes the query time out.
        found = False
        for t, v in recs:
            if t == 'TIMEOUT':
                if not found:
                    return None
                continue
            want = {'SPF': 99}.get(t, getattr(QTYPE, t, None))
            if v == 'NONE':     # placeholder: no record of this type
                continue
            if want == q.qtype:
                rr = make_rr(q.qname if seen == 0 else qname, t, v)
                if rr is not None:
                    reply.add_answer(rr)
                    found = True
        break
    return reply


def udp_limit(data):
    """The client's UDP buffer: 512, or its EDNS payload size."""
    try:
        req = DNSRecord.parse(data)
        for rr in req.ar:
            if rr.rtype == QTYPE.OPT:
                return max(512, rr.rclass)
    except Exception:
        pass
    return 512


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        STATS['udp'] += 1
        reply = answer(data)
        if reply is None:
            return
        wire = reply.pack()
        if len(wire) > udp_limit(data):
            reply.rr = []
            reply.header.tc = 1
            STATS['truncated'] += 1
            wire = reply.pack()
        sock.sendto(wire, self.client_address)


STATS = {'udp': 0, 'tcp': 0, 'truncated': 0}


class TCPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        STATS['tcp'] += 1
        f = self.request
        while True:
            hdr = f.recv(2)
            if len(hdr) < 2:
                return
            (n,) = struct.unpack('!H', hdr)
            data = b''
            while len(data) < n:
                chunk = f.recv(n - len(data))
                if not chunk:
                    return
                data += chunk
            reply = answer(data)
            if reply is None:
                return
            wire = reply.pack()
            f.sendall(struct.pack('!H', len(wire)) + wire)


class UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True


class TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def start_dns():
    """UDP and TCP servers on the same free loopback port."""
    for _ in range(50):
        udp = UDPServer(('127.0.0.1', 0), UDPHandler)
        port = udp.server_address[1]
        try:
            tcp = TCPServer(('127.0.0.1', port), TCPHandler)
        except OSError:
            udp.server_close()
            continue
        for s in (udp, tcp):
            threading.Thread(target=s.serve_forever, daemon=True).start()
        return port
    raise SystemExit('spfsuite: no free port')


def load_xfail(path):
    """test-id -> reason, from lines "scenario/test<TAB or spaces>reason"."""
    out = {}
    try:
        for line in open(path):
            line = line.split('#', 1)[0].strip() if line.startswith('#') \
                else line.strip()
            if not line:
                continue
            tid, _, why = line.partition(' ')
            out[tid] = why.strip()
    except FileNotFoundError:
        pass
    return out


def slug(text):
    return re.sub(r'[^A-Za-z0-9]+', '-', text).strip('-').lower()


def main():
    driver, suite, xfail_path = sys.argv[1:4]
    min_pass = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    xfail = load_xfail(xfail_path)
    port = start_dns()
    servers = '127.0.0.1:%d' % port
    npass = nfail = nxfail = nxpass = 0
    for doc in yaml.safe_load_all(open(suite)):
        if not doc:
            continue
        scen = slug(doc['description'])
        load_zone(doc.get('zonedata'))
        tests = list(doc['tests'].items())
        lines = []
        for i, (name, t) in enumerate(tests):
            fields = [str(i), str(t['host']), str(t.get('helo') or ''),
                      str(t.get('mailfrom') or '')]
            lines.append('\t'.join(f.replace('\t', ' ') for f in fields))
        proc = subprocess.run([driver, servers, '600'],
                              input='\n'.join(lines) + '\n',
                              capture_output=True, text=True, timeout=600)
        got = {}
        for line in proc.stdout.splitlines():
            parts = line.split('\t')
            while len(parts) < 4:
                parts.append('')
            got[int(parts[0])] = parts[1:]
        if proc.returncode != 0:
            print('# driver exited %d: %s' % (proc.returncode,
                                             proc.stderr.strip()[-300:]))
        for i, (name, t) in enumerate(tests):
            tid = 'spf:%s/%s' % (scen, name)
            want = t['result']
            want = want if isinstance(want, list) else [want]
            res, exp, why = got.get(i, ['(no answer)', '', ''])
            ok = res in want
            wexp = t.get('explanation')
            if ok and res == 'fail' and wexp is not None and exp != wexp:
                ok = False
            detail = 'want %s, got %s' % ('|'.join(want), res)
            if wexp is not None:
                detail += ', exp want %r got %r' % (wexp, exp)
            if why:
                detail += ' (%s)' % why
            key = '%s/%s' % (scen, name)
            if ok:
                npass += 1
                if key in xfail:
                    nxpass += 1
                    print('ok - %s # xpass: remove from xfail' % tid)
                else:
                    print('ok - %s' % tid)
            elif key in xfail:
                nxfail += 1
                print('ok - %s # xfail: %s (%s)' % (tid, xfail[key], detail))
            else:
                nfail += 1
                print('not ok - %s # %s' % (tid, detail))
    total = npass + nfail + nxfail
    print('# spf rfc7208: %d/%d pass (%.1f%%), %d expected failures, '
          '%d unexpected failures%s' % (
              npass, total, 100.0 * npass / max(total, 1), nxfail, nfail,
              ', %d xpass' % nxpass if nxpass else ''))
    if npass < min_pass:
        print('# spf rfc7208: below the required %d' % min_pass)
        return 1
    return 0 if nfail == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
