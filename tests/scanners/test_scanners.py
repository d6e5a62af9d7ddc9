#!/usr/bin/python3
"""test_scanners.py - the scanner check against real clamd, spamd and
rspamd from Debian's packages, started here on loopback ports, and
against fake scanners that misbehave (refuse, stall, close mid-stream,
answer garbage, answer too late).

clamd: its own clamd.conf and a signature database written here (EICAR
and a test marker as .ndb body signatures; no freshclam).  spamd: the
rules Debian ships (/usr/share/spamassassin), --local, no network tests.
rspamd: its own LOCAL_CONFDIR (ports, actions, a multimap + force_actions
rule per test subject for "soft reject" and "add header"), no redis.
Each scanner starts once; they start in parallel while the fakes run.

Prints "ok - scanners:NAME" / "not ok - scanners:NAME # detail".
"""
import base64
import io
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

import mm  # noqa: E402

results = []
TMP = mm.mkdtemp("scanners-")
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!"
         b"$H+H*")
MARKER = b"MAILMOAT-TEST-MARKER-VIRUS!"
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
RCPT = "bob@example.com"
TIMEOUT = "3s"  # scanner_timeout of the fault daemons


def check(name, cond, detail=""):
    results.append(bool(cond))
    print("%s - scanners:%s%s" % ("ok" if cond else "not ok", name,
                                  "" if cond else " # " + str(detail)[:400]))
    sys.stdout.flush()


def strip_id(text):
    return mm.ID_RE.sub("", text)


# ------------------------------------------------------------ messages

def mail(subject, body, extra=""):
    return ("From: Alice Example <alice@sender.example>\r\n"
            "To: Bob <bob@example.com>\r\nSubject: %s\r\n"
            "Date: Sun, 06 Dec 2026 10:00:00 +0000\r\n"
            "Message-ID: <%d.scan@sender.example>\r\n%s\r\n%s"
            % (subject, time.monotonic_ns(), extra, body))


def attach(subject, name, data, note="See the attachment.\r\n"):
    b64 = base64.encodebytes(data).replace(b"\n", b"\r\n").decode()
    return mail(subject,
                "--b1\r\nContent-Type: text/plain\r\n\r\n%s\r\n"
                "--b1\r\nContent-Type: application/octet-stream; name=%s\r\n"
                "Content-Transfer-Encoding: base64\r\n"
                "Content-Disposition: attachment; filename=%s\r\n\r\n"
                "%s--b1--\r\n" % (note, name, name, b64),
                "MIME-Version: 1.0\r\nContent-Type: multipart/mixed; "
                "boundary=b1\r\n")


def zipped(name, data):
    f = io.BytesIO()
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, data)
    return f.getvalue()


BUSINESS = mail("Minutes of the planning meeting",
                "Hello Bob,\r\n\r\nthank you for joining the planning "
                "meeting on Thursday. As agreed, the budget review moves\r\n"
                "to the second week of January, and Carol will circulate "
                "the updated figures beforehand.\r\n\r\nBest regards,\r\n"
                "Alice\r\n")


# ------------------------------------------------------------ real scanners

def start_clamd(name="clamd", stream_max="40M", threads=4):
    d = os.path.join(TMP, name)
    os.makedirs(d)
    port = mm.free_port()
    with open(os.path.join(d, "mailmoat-test.ndb"), "w") as f:
        f.write("Eicar-Test-Signature:0:*:%s\n" % EICAR.hex())
        f.write("Mailmoat-Test-Marker:0:*:%s\n" % MARKER.hex())
    with open(os.path.join(d, "clamd.conf"), "w") as f:
        f.write("DatabaseDirectory %s\nTCPSocket %d\nTCPAddr 127.0.0.1\n"
                "Foreground yes\nUser root\nLogFile %s/clamd.log\n"
                "StreamMaxLength %s\nScanArchive yes\nScanMail yes\n"
                "MaxThreads %d\nSelfCheck 3600\n" % (d, port, d, stream_max, threads))
    p = subprocess.Popen(["clamd", "-c", os.path.join(d, "clamd.conf")],
                         stdout=open(os.path.join(d, "out"), "wb"),
                         stderr=subprocess.STDOUT)
    return p, port


def start_spamd():
    d = os.path.join(TMP, "spamd")
    os.makedirs(d)
    # spamd reads its rules as nobody: the temp dirs must be searchable
    os.chmod(TMP, 0o755)
    os.chmod(d, 0o755)
    port = mm.free_port()
    for n in os.listdir("/etc/spamassassin"):
        if n.endswith(".pre"):
            shutil.copy(os.path.join("/etc/spamassassin", n), d)
    with open(os.path.join(d, "local.cf"), "w") as f:
        f.write("use_bayes 0\nskip_rbl_checks 1\ndns_available no\n"
                "use_razor2 0\nuse_pyzor 0\n")
    p = subprocess.Popen(["spamd", "--local", "-L", "-x",
                          "--siteconfigpath=" + d,
                          "--listen=127.0.0.1:%d" % port, "-m", "3",
                          "-s", "stderr", "-u", "nobody",
                          "--pidfile", os.path.join(d, "pid")],
                         stdout=open(os.path.join(d, "out"), "wb"),
                         stderr=subprocess.STDOUT)
    return p, port


def start_rspamd():
    d = os.path.join(TMP, "rspamd")
    for sub in ("local.d", "override.d", "db", "run", "log"):
        os.makedirs(os.path.join(d, sub))
    port, cport = mm.free_port(), mm.free_port()

    def w(name, text):
        with open(os.path.join(d, name), "w") as f:
            f.write(text)
    w("override.d/worker-normal.inc",
      'bind_socket = "127.0.0.1:%d";\ncount = 1;\n' % port)
    w("override.d/worker-controller.inc",
      'bind_socket = "127.0.0.1:%d";\ncount = 1;\n' % cport)
    w("override.d/worker-proxy.inc", "enabled = false;\n")
    w("override.d/worker-fuzzy.inc", "enabled = false;\n")
    w("override.d/logging.inc", 'type = "console";\nlevel = "error";\n')
    w("local.d/options.inc", "dns { nameserver = [\"127.0.0.1:%d\"]; "
      "timeout = 0.2s; retransmits = 0; }\n" % mm.free_port())
    w("local.d/actions.conf", "reject = 15;\nadd_header = 6;\n"
      "greylist = 4;\n")
    w("soft.map", "/mm-soft-reject/i\n")
    w("addhdr.map", "/mm-add-header/i\n")
    w("local.d/multimap.conf",
      'MM_SOFT { type = "header"; header = "Subject"; regexp = true; '
      'map = "%s/soft.map"; score = 0.0; }\n'
      'MM_ADDHDR { type = "header"; header = "Subject"; regexp = true; '
      'map = "%s/addhdr.map"; score = 0.0; }\n' % (d, d))
    w("local.d/force_actions.conf",
      'rules {\n MM_SOFT_ACT { action = "soft reject"; '
      'expression = "MM_SOFT"; message = "Try again later"; }\n'
      ' MM_ADDHDR_ACT { action = "add header"; expression = "MM_ADDHDR"; }\n'
      '}\n')
    p = subprocess.Popen(["rspamd", "-f", "-u", "root", "-g", "root",
                          "-c", "/etc/rspamd/rspamd.conf",
                          "--var=LOCAL_CONFDIR=" + d,
                          "--var=DBDIR=%s/db" % d, "--var=RUNDIR=%s/run" % d,
                          "--var=LOGDIR=%s/log" % d],
                         stdout=open(os.path.join(d, "out"), "wb"),
                         stderr=subprocess.STDOUT)
    return p, port


def wait_port(port, proc, what, timeout=240):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return True
        except OSError:
            time.sleep(0.3)
    return False


# ------------------------------------------------------------ fake scanners

class Fake:
    """Fake - a scanner on a free loopback port that misbehaves: mode
    stall (accepts, reads, never answers), close (reads a little, closes),
    garbage (reads the request, answers nonsense), late (reads it all,
    answers a correct "stream: OK" after scanner_timeout)."""

    def __init__(self, mode, late=None, host="127.0.0.1"):
        self.mode, self.late = mode, late
        self.srv = socket.socket(socket.AF_INET6 if ":" in host
                                 else socket.AF_INET)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((host, 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.conns = 0
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            c, _ = self.srv.accept()
            self.conns += 1
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def read_request(self, c):
        """until clamd's zero-length chunk (or EOF)"""
        data = b""
        while not data.endswith(b"\0\0\0\0") or len(data) < 14:
            d = c.recv(65536)
            if not d:
                break
            data += d
        return data

    def one(self, c):
        try:
            if self.mode == "stall":
                while c.recv(65536):
                    pass
            elif self.mode == "close":
                c.recv(20)
                c.close()
                return
            elif self.mode == "garbage":
                self.read_request(c)
                c.sendall(b"\x00\xffHELLO? I am not clamd\r\n\0")
            elif self.mode == "ok":
                self.read_request(c)
                c.sendall(b"stream: OK\0")
            elif self.mode == "late":
                self.read_request(c)
                time.sleep(self.late)
                c.sendall(b"stream: OK\0")
            time.sleep(1)
        except OSError:
            pass
        finally:
            c.close()


# ------------------------------------------------------------ the daemon

def daemon(backend, scanner, **conf):
    conf.setdefault("message_size_limit", "25M")
    conf.setdefault("action_scanner", "reject")
    d = mm.Daemon(backend_port=backend.port, scanner=scanner, **conf)
    d.start()
    return d


BAD_LOG = []


def stop(d):
    """stop - stop the daemon; keep any PANIC or sanitizer report of its
    log (an ASan build: MM_BUILD=build/asan)"""
    d.stop()
    BAD_LOG.extend(l for l in d.log_text().splitlines()
                   if ": PANIC " in l or "ERROR: AddressSanitizer" in l or
                   "ERROR: LeakSanitizer" in l or "runtime error:" in l)


def send(d, body, sender="alice@sender.example"):
    with mm.Client(d.port, timeout=60) as c:
        c.banner()
        c.cmd("EHLO client.sender.example")
        r = c.transaction(sender, [RCPT], body)
        try:
            c.cmd("QUIT")
        except (mm.Closed, OSError):
            pass
        return r


def delivered(backend):
    backend.wait_closed()
    return backend.messages()


def expect_refused(name, d, backend, body, code, text_start):
    backend.clear()
    r = send(d, body)
    got = strip_id(r.text)
    msgs = delivered(backend)
    check(name, r.code == code and got.startswith(text_start) and not msgs,
          "reply %r, %d delivered" % (got, len(msgs)))
    return r


def expect_delivered(name, d, backend, body, must=()):
    backend.clear()
    r = send(d, body)
    msgs = delivered(backend)
    ok = r.code == 250 and len(msgs) == 1
    head = msgs[0][1].split(b"\r\n\r\n", 1)[0] if msgs else b""
    missing = [m for m in must if m.encode() not in head]
    check(name, ok and not missing, "reply %r, %d delivered, missing %r, "
          "head %r" % (r.text, len(msgs), missing, head[-600:]))
    return msgs


def faults(backend):
    """the fault cases with fake scanners, while the real ones start"""
    refused_port = mm.free_port()
    fakes = {"stall": Fake("stall"), "close": Fake("close"),
             "garbage": Fake("garbage"), "late": Fake("late", late=4.5)}
    cases = [("not running", "clamd:127.0.0.1:%d" % refused_port)]
    cases += [(m, "clamd:127.0.0.1:%d" % f.port) for m, f in fakes.items()]
    cases += [("spamd garbage", "spamd:127.0.0.1:%d" % fakes["garbage"].port),
              ("rspamd stalled",
               "rspamd:127.0.0.1:%d" % fakes["stall"].port)]
    for what, scanner in cases:
        d = daemon(backend, scanner, scanner_timeout=TIMEOUT)
        try:
            r = expect_refused("fault: %s: 451, nothing delivered" % what,
                               d, backend, mail("fault", "Hello.\r\n"), 451,
                               "451 4.7.1 Content scanner")
            st = d.stats()
            sc = st.get("scanners", {}).get(scanner.split(" ")[0], {})
            check("fault: %s: daemon lives, counted" % what,
                  d.alive() and sc.get("faults", 0) >= 1 and
                  st["reasons"].get("scanner", 0) >= 1,
                  "alive %s, stats %r" % (d.alive(), sc))
            line = d.wait_decision(id=r.id)[-1]
            check("fault: %s: logged" % what,
                  line.get("reason") == "scanner" and
                  "fault" in line.get("detail", ""), line)
        finally:
            stop(d)
    # a big message to a clamd that stalls: the queue bound, not memory
    d = daemon(backend, "clamd:127.0.0.1:%d" % fakes["stall"].port,
               scanner_timeout=TIMEOUT)
    try:
        expect_refused("fault: stalled clamd, 20 MB streamed: 451",
                       d, backend, attach("big", "big.bin",
                                          os.urandom(15 << 20)), 451,
                       "451 4.7.1 Content scanner")
        check("fault: stalled clamd, 20 MB: daemon lives", d.alive())
    finally:
        stop(d)
    # IPv6: a clamd-speaking fake on [::1] that says OK
    six = Fake("ok", host="::1")
    d = daemon(backend, "clamd:[::1]:%d" % six.port)
    try:
        expect_delivered("clamd over IPv6 ([::1]:port): delivered", d,
                         backend, mail("six", "Hello.\r\n"))
        check("clamd over IPv6: one connection per message",
              six.conns == 1, six.conns)
    finally:
        stop(d)
    # the client goes away while clamd streams / while it thinks
    for what, f in (("before the dot", fakes["stall"]),
                    ("after the dot", fakes["late"])):
        d = daemon(backend, "clamd:127.0.0.1:%d" % f.port,
                   scanner_timeout=TIMEOUT)
        try:
            backend.clear()
            c = mm.Client(d.port)
            c.banner()
            c.cmd("EHLO client.sender.example")
            c.cmd("MAIL FROM:<alice@sender.example>")
            c.cmd("RCPT TO:<%s>" % RCPT)
            c.cmd("DATA")
            c.send(mail("gone", "Hello.\r\n" * 1000))
            if what == "after the dot":
                c.send(".\r\n")
                time.sleep(0.5)
            c.close()
            time.sleep(4)
            r = send(d, mail("after", "Hello.\r\n"))
            check("client gone %s: daemon lives, nothing delivered" % what,
                  d.alive() and r.code == 451 and
                  len(delivered(backend)) == 0,
                  "alive %s reply %r" % (d.alive(), r.text))
        finally:
            stop(d)
    # scanner_fail = accept: delivered unscanned
    d = daemon(backend, "clamd:127.0.0.1:%d" % refused_port,
               scanner_timeout=TIMEOUT, scanner_fail="accept")
    try:
        expect_delivered("fault: scanner_fail = accept delivers", d,
                         backend, mail("accept", "Hello.\r\n"))
    finally:
        stop(d)


def clamd_tests(backend, port):
    d = daemon(backend, "clamd:127.0.0.1:%d" % port,
               message_size_limit="40M")
    try:
        r = expect_refused("clamd: EICAR plain in the body", d, backend,
                           mail("eicar", EICAR.decode() + "\r\n"), 554,
                           "554 5.7.1 Virus found: Eicar-Test-Signature")
        line = d.wait_decision(id=r.id)[-1]
        check("clamd: log line reason=scanner detail=clamd=NAME",
              line.get("reason") == "scanner" and
              line.get("detail", "").startswith(
                  "clamd=Eicar-Test-Signature"), line)
        expect_refused("clamd: EICAR as base64 attachment", d, backend,
                       attach("eicar", "eicar.com", EICAR), 554,
                       "554 5.7.1 Virus found: Eicar-Test-Signature")
        expect_refused("clamd: EICAR zipped", d, backend,
                       attach("eicar", "eicar.zip",
                              zipped("eicar.com", EICAR)), 554,
                       "554 5.7.1 Virus found: Eicar-Test-Signature")
        expect_refused("clamd: test marker", d, backend,
                       attach("marker", "m.txt", MARKER * 3), 554,
                       "554 5.7.1 Virus found: Mailmoat-Test-Marker")
        msgs = expect_delivered("clamd: clean mail delivered once", d,
                                backend, BUSINESS)
        big = os.urandom(20 << 20)
        msgs = expect_delivered("clamd: 20 MB clean attachment delivered",
                                d, backend, attach("big", "big.bin", big))
        check("clamd: 20 MB attachment arrives intact",
              msgs and base64.b64encode(big)[:1000].decode() in
              msgs[0][1][:200000].decode("ascii", "replace").replace(
                  "\r\n", ""), "")
        st = d.stats()["scanners"]["clamd:127.0.0.1:%d" % port]
        check("clamd: stats", st["status"] == "up" and st["found"] >= 4 and
              st["clean"] >= 2 and st["faults"] == 0, st)
        check("clamd: daemon alive", d.alive())
    finally:
        stop(d)


def limit_tests(backend, port):
    """clamd with StreamMaxLength 1M: the first larger message is a fault
    (451) and the limit is logged; later ones are scanned up to it."""
    name = "clamd:127.0.0.1:%d" % port
    d = daemon(backend, name)
    try:
        filler = ("y" * 70 + "\r\n") * 40000  # 2.8 MB
        expect_refused("clamd limit: first message over StreamMaxLength: 451",
                       d, backend, mail("big", filler), 451,
                       "451 4.7.1 Content scanner clamd unavailable")
        check("clamd limit: the limit is logged",
              "StreamMaxLength is at most" in d.log_text(),
              d.log_text()[-500:])
        try:
            mm.wait_for(lambda: "(measured" in d.log_text(),
                        "the StreamMaxLength probe")
        except mm.HarnessError:
            pass
        st = d.stats()["scanners"][name]
        check("clamd limit: measured StreamMaxLength (1M) in stats",
              (1 << 20) - (64 << 10) <= st["stream_max"] <= 1 << 20, st)
        expect_delivered("clamd limit: then scanned up to the limit, "
                         "delivered whole", d, backend, mail("big", filler))
        msgs = backend.messages()
        check("clamd limit: the whole message arrives",
              msgs and len(msgs[0][1]) > len(filler), "")
        expect_refused("clamd limit: EICAR in the first part still found",
                       d, backend, attach("eicar", "e.com", EICAR,
                                          note=filler[:200000]), 554,
                       "554 5.7.1 Virus found")
    finally:
        stop(d)


def spamd_tests(backend, port):
    name = "spamd:127.0.0.1:%d" % port
    d = daemon(backend, name)
    try:
        r = expect_refused("spamd: GTUBE refused with its score", d, backend,
                           mail("gtube", GTUBE.decode() + "\r\n"), 554,
                           "554 5.7.1 Message looks like spam (score 10")
        check("spamd: the reply says score/required",
              "/required 5.0)" in r.text, r.text)
        line = d.wait_decision(id=r.id)[-1]
        check("spamd: logged", line.get("detail", "").startswith(
            "spamd=spam score=10"), line)
        expect_delivered("spamd: business mail passes with X-Spam-Status: No",
                         d, backend, BUSINESS,
                         must=("X-Spam-Status: No, score=",
                               "X-Spam-Score: "))
        check("spamd: stats", d.stats()["scanners"][name]["scans"] >= 2)
    finally:
        stop(d)
    # over scanner_max_size: spamd is skipped, the mail goes through
    d = daemon(backend, name, scanner_max_size="1K")
    try:
        msgs = expect_delivered("spamd: over scanner_max_size skips spamd",
                                d, backend,
                                mail("gtube", GTUBE.decode() + "\r\n" +
                                     ("x" * 70 + "\r\n") * 30))
        check("spamd: skipped mail has no X-Spam-Status",
              msgs and b"X-Spam-Status" not in msgs[0][1], "")
    finally:
        stop(d)
    # clamd and spamd together: both see the message
    return d


def rspamd_tests(backend, port):
    name = "rspamd:127.0.0.1:%d" % port
    d = daemon(backend, name)
    try:
        r = expect_refused("rspamd: GTUBE refused", d, backend,
                           mail("gtube", GTUBE.decode() + "\r\n"), 554,
                           "554 5.7.1 Message looks like spam")
        line = d.wait_decision(id=r.id)[-1]
        check("rspamd: logged", line.get("detail", "").startswith(
            "rspamd=reject"), line)
        expect_delivered("rspamd: add header action adds the header", d,
                         backend, mail("mm-add-header", "Hello.\r\n"),
                         must=("X-Spam: Yes",))
        expect_refused("rspamd: soft reject gives 451", d, backend,
                       mail("mm-soft-reject", "Hello.\r\n"), 451,
                       "451 4.7.1 Message deferred")
        expect_delivered("rspamd: no action delivers", d, backend, BUSINESS)
        check("rspamd: stats", d.stats()["scanners"][name]["scans"] >= 4)
    finally:
        stop(d)


def all_three(backend, cport, sport, rport):
    sc = "clamd:127.0.0.1:%d spamd:127.0.0.1:%d rspamd:127.0.0.1:%d" % (
        cport, sport, rport)
    d = daemon(backend, sc)
    try:
        expect_refused("all three: EICAR refused by clamd", d, backend,
                       attach("eicar", "eicar.com", EICAR), 554,
                       "554 5.7.1 Virus found")
        expect_delivered("all three: business mail with spamd's headers",
                         d, backend, BUSINESS, must=("X-Spam-Status: No",))
    finally:
        stop(d)


def main():
    for prog in ("clamd", "spamd", "rspamd"):
        if not shutil.which(prog):
            check("setup: %s installed" % prog, False, "not in PATH")
            return 1
    if not os.path.isdir("/usr/share/spamassassin"):
        check("setup: spamassassin rules", False, "/usr/share/spamassassin")
    procs = []
    try:
        clamd, cport = start_clamd()
        spamd, sport = start_spamd()
        rspamd, rport = start_rspamd()
        clamd2, c2port = start_clamd("clamd-1m", "1M")
        procs = [clamd, spamd, rspamd, clamd2]
        backend = mm.Backend().start()
        t0 = time.monotonic()
        faults(backend)
        print("# faults: %.1fs" % (time.monotonic() - t0))
        up = {}
        for what, p, port in (("clamd", clamd, cport), ("spamd", spamd, sport),
                              ("rspamd", rspamd, rport)):
            up[what] = wait_port(port, p, what)
            check("setup: %s started" % what, up[what],
                  "see %s/%s/out" % (TMP, what))
        if up["clamd"]:
            clamd_tests(backend, cport)
        if wait_port(c2port, clamd2, "clamd-1m"):
            limit_tests(backend, c2port)
        else:
            check("setup: clamd (StreamMaxLength 1M) started", False)
        if up["spamd"]:
            spamd_tests(backend, sport)
        if up["rspamd"]:
            rspamd_tests(backend, rport)
        if all(up.values()):
            all_three(backend, cport, sport, rport)
        for what, p in (("clamd", clamd), ("spamd", spamd),
                        ("rspamd", rspamd)):
            check("%s: still running at the end" % what, p.poll() is None)
        check("daemon logs: no PANIC, no sanitizer report", not BAD_LOG,
              BAD_LOG[:3])
        print("# total: %.1fs" % (time.monotonic() - t0))
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        if not os.environ.get("MM_KEEP"):
            shutil.rmtree(TMP, ignore_errors=True)
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
