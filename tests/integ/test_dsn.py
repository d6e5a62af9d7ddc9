"""test_dsn.py - DSNs only for our own mail, and the backscatter block
(issue 12), with the real daemon and real clients (raw sockets, smtplib).

- every bounce of the sisimai set (/work/shared/data/dsn-bounces-sisimai,
  DSN_CORPUS overrides) twice: as it came (550 5.7.1, nothing delivered,
  the sending host blocked: 554 5.7.1 at connect naming the reason and
  until when) and with its returned Message-ID moved into one of our
  domains (250, delivered exactly once);
- hand cases: auto-reply, read receipt, a base64 returned part, a DSN
  split across many small TCP writes;
- the block: threshold, expiry, backscatter_scope = null-sender, del
  lifts it, the allowlist overrides it, action_dsn = log blocks nobody,
  stats backscatter_blocks.
"""
import base64
import os
import shutil
import smtplib
import time
import unittest

from base import MMTest, mm
from postfix import PostfixMTA

CORPUS = os.environ.get("DSN_CORPUS", "/work/shared/data/dsn-bounces-sisimai")
REFUSED = ("550 5.7.1 Delivery status notification refused: it does not "
           "refer to a message sent from here")
# the corpus' own Message-IDs use example.com/.org/.jp: ours is ours.test
OURS = {"local_domains": "ours.test", "action_dsn": "reject"}


def corpus():
    """corpus - [(file name, text, original Message-ID)]."""
    out = []
    with open(os.path.join(CORPUS, "manifest.tsv")) as f:
        next(f)
        for line in f:
            col = line.rstrip("\n").split("\t")
            with open(os.path.join(CORPUS, "eml", col[0]), "rb") as e:
                out.append((col[0], e.read().decode("utf-8", "replace"),
                            col[6]))
    return out


def moved(text, msgid):
    """moved - text with the returned Message-ID put in our domain."""
    if msgid.startswith("<") and "@" in msgid:
        new = msgid[:msgid.rindex("@")] + "@mail.ours.test>"
    else:
        new = msgid + "@ours.test"
    assert msgid in text, msgid
    return text.replace(msgid, new)


def wire(text):
    """wire - the message as DATA sends it: CRLF lines, dot-stuffed."""
    lines = text.replace("\r\n", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return "".join(("." + l if l.startswith(".") else l) + "\r\n"
                   for l in lines).encode("utf-8", "surrogateescape")


def auto_reply(ref):
    return ("From: bob@far.example\nTo: alice@ours.test\n"
            "Subject: Automatic reply: hello\nAuto-Submitted: auto-replied\n"
            "In-Reply-To: %s\nMessage-ID: <ar.%f@far.example>\n\n"
            "I am out of the office.\n" % (ref, time.time()))


def read_receipt(ref):
    return ("From: bob@far.example\nTo: alice@ours.test\nSubject: Read: hi\n"
            "MIME-Version: 1.0\nContent-Type: multipart/report;\n"
            " report-type=disposition-notification; boundary=\"RR\"\n\n"
            "--RR\nContent-Type: text/plain\n\nYour message was read.\n"
            "--RR\nContent-Type: message/disposition-notification\n\n"
            "Reporting-UA: far.example; Mailer\n"
            "Final-Recipient: rfc822;bob@far.example\n"
            "Original-Message-ID: %s\n"
            "Disposition: manual-action/MDN-sent-manually; displayed\n"
            "--RR--\n" % ref)


def b64_bounce(ref):
    inner = ("From: alice@ours.test\r\nTo: bob@far.example\r\n"
             "Message-ID: %s\r\nSubject: hi\r\n\r\nhello\r\n" % ref)
    enc = base64.encodebytes(inner.encode()).decode()
    return ("From: MAILER-DAEMON@far.example\nSubject: Undelivered Mail\n"
            "MIME-Version: 1.0\nContent-Type: multipart/report; "
            "report-type=delivery-status; boundary=B\n\n--B\n"
            "Content-Type: text/plain\n\nfailed\n--B\n"
            "Content-Type: message/delivery-status\n\nAction: failed\n"
            "Status: 5.1.1\n--B\nContent-Type: message/rfc822\n"
            "Content-Transfer-Encoding: base64\n\n%s--B--\n" % enc)


class DsnBase(MMTest):
    conf = dict(OURS)
    daemon_kw = {"recipients": "@ours.test\n"}
    probe_src = "127.12.0.1"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The session must feed the message to the check (the body tap of
        # issue 7).  A build without it scans nothing: stats dsn.scanned
        # stays 0 after a DSN, and then these tests cannot run.
        if cls.conf.get("action_dsn", "off") == "off":
            return
        c = mm.Client(cls.daemon.port, src=cls.probe_src)
        try:
            c.banner()
            c.cmd("EHLO probe.far.example")
            c.cmd("MAIL FROM:<>")
            c.cmd("RCPT TO:<postmaster@ours.test>")
            if c.cmd("DATA").code == 354:
                c.send(b"Subject: probe\r\n\r\nx\r\n.\r\n")
                c.reply()
        finally:
            c.close()
        scanned = cls.daemon.stats().get("dsn", {}).get("scanned", 0)
        cls.daemon.ctl("backscatter", "del", cls.probe_src, check=False)
        if scanned == 0:
            cls.tearDownClass()
            raise unittest.SkipTest("this build does not tap the body "
                                    "into the dsn check (issue 7)")

    def send(self, src, text, sender="", piece=0, rcpt="alice@ours.test"):
        """send - one message from src; the reply to the dot (or to the
        first refused command).  piece > 0: the data in writes of that
        many bytes."""
        c = self.client(src=src)
        r = c.banner()
        if r.code != 220:
            return r
        c.cmd("EHLO client.far.example")
        r = c.cmd("MAIL FROM:<%s>" % sender)
        if r.code != 250:
            return r
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        if r.code != 250:
            return r
        r = c.cmd("DATA")
        if r.code != 354:
            return r
        data = wire(text) + b".\r\n"
        if piece:
            for i in range(0, len(data), piece):
                c.send(data[i:i + piece])
                time.sleep(0.0005)
        else:
            c.send(data)
        r = c.reply()
        c.cmd("QUIT")
        return r

    def assertBlocked(self, src, key=None):
        c = self.client(src=src)
        r = c.banner()
        self.assertEqual(r.code, 554, r)
        self.assertStartsWith(r, "554 5.7.1 Blocked for sending backscatter")
        self.assertIn(key or src, r.text)
        self.assertRegex(r.text, r"until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
        self.assertIsNotNone(r.id, r)
        r2 = c.cmd("EHLO x.far.example")
        self.assertGreaterEqual(r2.code, 500, r2)
        return r

    def assertOpen(self, src):
        c = self.client(src=src)
        r = c.banner()
        self.assertEqual(r.code, 220, r)
        c.cmd("QUIT")


class Corpus(DsnBase):
    """Every sisimai bounce: as it came refused (and its sender blocked),
    its returned Message-ID moved to ours accepted and delivered once."""

    def test_corpus_as_it_came_refused_and_blocked(self):
        items = corpus()
        self.assertEqual(len(items), 20)
        for i, (name, text, _) in enumerate(items):
            src = "127.12.1.%d" % (i + 1)
            self.backend.clear()
            r = self.send(src, text)
            self.assertReply(r, 550, REFUSED)
            d = self.daemon.wait_decision(id=r.id)
            self.assertEqual(d[-1]["reason"], "dsn", name)
            self.assertNothingDelivered()
            self.assertBlocked(src)

    def test_corpus_moved_to_ours_accepted(self):
        for i, (name, text, msgid) in enumerate(corpus()):
            self.backend.clear()
            src = "127.12.2.%d" % (i + 1)
            r = self.send(src, moved(text, msgid))
            self.assertEqual(r.code, 250, "%s: %r" % (name, r))
            got = self.assertDelivered(1)
            self.assertIn(got[0][0]["mail_from"], ("", "<>"), name)
            self.assertIn(b"ours.test", got[0][1], name)
            self.assertOpen(src)


class HandCases(DsnBase):
    def test_auto_reply(self):
        r = self.send("127.12.3.1", auto_reply("<abc.1@ours.test>"))
        self.assertEqual(r.code, 250, r)
        self.assertDelivered(1)
        self.backend.clear()
        r = self.send("127.12.3.2", auto_reply("<abc.1@elsewhere.example>"))
        self.assertReply(r, 550, REFUSED)
        self.assertNothingDelivered()

    def test_read_receipt(self):
        r = self.send("127.12.3.3", read_receipt("<mdn.1@ours.test>"))
        self.assertEqual(r.code, 250, r)
        self.assertDelivered(1)
        self.backend.clear()
        r = self.send("127.12.3.4", read_receipt("<mdn.1@far.example>"))
        self.assertReply(r, 550, REFUSED)
        self.assertNothingDelivered()

    def test_base64_returned_part(self):
        r = self.send("127.12.3.5", b64_bounce("<b64.1@sub.ours.test>"))
        self.assertEqual(r.code, 250, r)
        self.assertDelivered(1)
        self.backend.clear()
        r = self.send("127.12.3.6", b64_bounce("<b64.1@ours.test.evil>"))
        self.assertReply(r, 550, REFUSED)
        self.assertNothingDelivered()

    def test_split_across_small_writes(self):
        text = corpus()[9][1]      # Postfix
        msgid = corpus()[9][2]
        r = self.send("127.12.3.7", moved(text, msgid), piece=7)
        self.assertEqual(r.code, 250, r)
        self.assertDelivered(1)
        self.backend.clear()
        r = self.send("127.12.3.8", text, piece=5)
        self.assertReply(r, 550, REFUSED)
        self.assertNothingDelivered()

    def test_not_a_dsn_is_not_scanned(self):
        r = self.send("127.12.3.9", auto_reply("<x@far.example>"),
                      sender="bob@far.example")
        self.assertEqual(r.code, 250, r)
        self.assertDelivered(1)

    def test_list_del_and_stats(self):
        src = "127.12.3.10"
        r = self.send(src, auto_reply("<nope@far.example>"))
        self.assertReply(r, 550, REFUSED)
        self.assertBlocked(src)
        listing = self.daemon.ctl("backscatter", "list").stdout
        self.assertRegex(listing, r"(?m)^127\.12\.3\.10 blocked until "
                         r"\S+ \S+ UTC refused 1$")
        self.assertGreaterEqual(self.daemon.stats()["backscatter_blocks"], 1)
        out = self.daemon.ctl("backscatter", "del", src).stdout
        self.assertIn("deleted", out)
        self.assertOpen(src)
        self.assertNotIn(src + " ", self.daemon.ctl("backscatter", "list").stdout)
        p = self.daemon.ctl("backscatter", "del", src, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("not in the backscatter table", p.stderr)


class Allowlisted(DsnBase):
    daemon_kw = {"allowlist": "127.12.4.1\n", "recipients": "@ours.test\n"}

    def test_allowlist_overrides(self):
        r = self.send("127.12.4.1", auto_reply("<x@far.example>"))
        self.assertEqual(r.code, 250, r)
        self.assertDelivered(1)
        self.assertOpen("127.12.4.1")
        self.assertNotIn("127.12.4.1", self.daemon.ctl("backscatter", "list").stdout)


class LogOnly(DsnBase):
    conf = dict(OURS, action_dsn="log")

    def test_log_counts_blocks_nobody(self):
        r = self.send("127.12.5.1", auto_reply("<x@far.example>"))
        self.assertEqual(r.code, 250, r)
        self.assertDelivered(1)
        self.assertOpen("127.12.5.1")
        mm.wait_for(lambda: self.daemon.decisions(reason="dsn",
                                                  action="log"),
                    "the log decision")
        self.assertEqual(self.daemon.stats()["backscatter_blocks"], 0)


class Threshold(DsnBase):
    conf = dict(OURS, backscatter_threshold="2")

    def test_blocked_after_threshold(self):
        src = "127.12.6.1"
        self.assertReply(self.send(src, auto_reply("<a@far.example>")), 550,
                         REFUSED)
        self.assertOpen(src)
        self.assertReply(self.send(src, auto_reply("<b@far.example>")), 550,
                         REFUSED)
        self.assertBlocked(src)


class Expiry(DsnBase):
    conf = dict(OURS, backscatter_block="2s")

    def test_block_expires(self):
        src = "127.12.7.1"
        self.assertReply(self.send(src, auto_reply("<a@far.example>")), 550,
                         REFUSED)
        self.assertBlocked(src)

        def opened():
            c = mm.Client(self.daemon.port, src=src)
            try:
                return c.banner().code == 220
            finally:
                c.close()
        mm.wait_for(opened, "the block to expire")


class NullSenderScope(DsnBase):
    conf = dict(OURS, backscatter_scope="null-sender")

    def test_only_dsns_refused(self):
        src = "127.12.8.1"
        self.assertReply(self.send(src, auto_reply("<a@far.example>")), 550,
                         REFUSED)
        # its real mail still passes
        r = self.send(src, "Subject: real mail\n\nhello\n",
                      sender="carol@far.example")
        self.assertEqual(r.code, 250, r)
        self.assertDelivered(1)
        # its DSNs, even ours, are refused at MAIL FROM:<>
        r = self.send(src, auto_reply("<a@ours.test>"))
        self.assertEqual(r.code, 554, r)
        self.assertStartsWith(r, "554 5.7.1 Blocked for sending backscatter")
        self.assertIn("until", r.text)


PTR_ZONES = {
    "bounce.test": ["mx A 127.12.10.1", "mx A 127.12.10.2",
                    "probe A 127.12.10.9"],
    "10.12.127.in-addr.arpa": ["1 PTR mx.bounce.test.",
                               "2 PTR mx.bounce.test.",
                               "9 PTR probe.bounce.test."],
}


class PtrDomain(DsnBase):
    """The block covers the registered domain of the client's forward-
    confirmed PTR too: a second address with the same PTR, or another host
    of that domain, is refused at connect."""
    probe_src = "127.12.10.9"
    zones = PTR_ZONES
    conf = dict(OURS, action_rdns="reject", dns_timeout="3s")

    def test_same_ptr_other_ip_blocked(self):
        for key in ("probe.bounce.test", "bounce.test"):    # the probe's
            self.daemon.ctl("backscatter", "del", key, check=False)
        self.assertOpen("127.12.10.2")
        r = self.send("127.12.10.1", auto_reply("<a@far.example>"))
        self.assertReply(r, 550, REFUSED)
        self.assertBlocked("127.12.10.1")
        self.assertBlocked("127.12.10.2", key="bounce.test")
        self.assertRegex(self.daemon.ctl("backscatter", "list").stdout,
                         r"(?m)^bounce\.test blocked until ")
        # the registered domain (public suffix list), not the host name:
        # another host of the same domain is covered too
        self.assertBlocked(self.probe_src, key="bounce.test")


def store_has(daemon, needle):
    """store_has - the daemon's flushed state (snapshot + journal) holds
    these bytes."""
    data = b""
    for name in ("store.snap", "store.jnl"):
        try:
            with open(os.path.join(daemon.conf["state_dir"], name), "rb") as f:
                data += f.read()
        except OSError:
            pass
    return needle in data


def restart(daemon, kill=False):
    """restart - SIGTERM (a clean exit flushes) or SIGKILL, then start."""
    if kill:
        daemon.proc.kill()
        daemon.proc.wait(mm.GUARD)
    else:
        daemon.stop()
    daemon.start()


def msgid_key(msgid):
    """msgid_key - msgids.c's store key of an id: FNV-1a 64 (domain in
    lower case), little-endian."""
    i = msgid.strip("<>")
    at = i.rfind("@")
    h = 14695981039346656037
    for n, ch in enumerate(i.encode()):
        if at >= 0 and n > at and 65 <= ch <= 90:
            ch += 32
        h = ((h ^ ch) * 1099511628211) & 0xffffffffffffffff
    return (h or 1).to_bytes(8, "little")


class Persist(DsnBase):
    """Blocks live in the state store: they survive SIGTERM, and SIGKILL
    once a flush (state_flush) has written them."""
    conf = dict(OURS, state_flush="1s")

    def test_block_survives_sigterm_and_sigkill(self):
        a, b = "127.12.12.1", "127.12.12.2"
        self.assertReply(self.send(a, auto_reply("<a@far.example>")), 550,
                         REFUSED)
        self.assertBlocked(a)
        restart(self.daemon)
        self.assertBlocked(a)
        self.assertReply(self.send(b, auto_reply("<b@far.example>")), 550,
                         REFUSED)
        mm.wait_for(lambda: store_has(self.daemon, b.encode()),
                    "a flush with the block of " + b)
        restart(self.daemon, kill=True)
        self.assertBlocked(b)
        self.assertBlocked(a)
        self.assertRegex(self.daemon.ctl("backscatter", "list").stdout,
                         r"(?m)^127\.12\.12\.2 blocked until ")
        # del after the restart lifts it for good
        self.daemon.ctl("backscatter", "del", a)
        restart(self.daemon)
        self.assertOpen(a)


class Outbound(DsnBase):
    """Outbound learning: the office server (127.12.11.1) sends through
    outbound_listen to the smarthost (aiosmtpd); with dsn_reference =
    sent only a bounce of an id that left this way is accepted."""

    @classmethod
    def setUpClass(cls):
        cls.smarthost = mm.Backend().start()
        cls.out_port = mm.free_port()
        cls.conf = dict(OURS, dsn_reference="sent", state_flush="1s",
                        outbound_listen="127.0.0.1:%d" % cls.out_port,
                        outbound_clients="127.12.11.1",
                        outbound_relay="127.0.0.1:%d" % cls.smarthost.port)
        try:
            super().setUpClass()
            mm.wait_listen(cls.out_port)
        except Exception:
            cls.smarthost.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.smarthost.stop()

    def test_outbound_learned(self):
        self.smarthost.clear()
        msgid = "<learned.%d@ours.test>" % os.getpid()
        s = smtplib.SMTP("127.0.0.1", self.out_port, timeout=mm.GUARD,
                         source_address=("127.12.11.1", 0))
        s.sendmail("alice@ours.test", ["bob@far.example"],
                   "From: alice@ours.test\r\nTo: bob@far.example\r\n"
                   "Subject: out\r\nMessage-ID: %s\r\n\r\nhi\r\n"
                   % msgid)
        s.quit()
        mm.wait_for(lambda: self.smarthost.messages(), "the smarthost")
        self.assertEqual(len(self.smarthost.messages()), 1)
        self.assertEqual(self.backend.messages(), [])
        # its bounce is accepted ...
        r = self.send("127.12.11.5", auto_reply(msgid))
        self.assertEqual(r.code, 250, r)
        self.assertDelivered(1)
        # ... a made-up id in our domain is not
        self.backend.clear()
        r = self.send("127.12.11.6",
                      auto_reply("<made.up.%d@ours.test>" % os.getpid()))
        self.assertReply(r, 550, REFUSED)
        self.assertNothingDelivered()
        self.assertGreaterEqual(
            self.daemon.stats()["outbound"]["learned"], 1)

    @unittest.skipUnless(shutil.which("postfix") and os.geteuid() == 0,
                         "needs Debian's postfix and root")
    def test_office_postfix_through_outbound(self):
        """The office server is a real Postfix relaying to outbound_listen:
        its mail reaches the smarthost once, and its bounce is ours."""
        self.smarthost.clear()
        peer = postfix_peer(self.out_port, "127.12.11.1", office=True).start()
        self.addCleanup(peer.stop)
        msgid = "<office.%d@ours.test>" % os.getpid()
        peer_send(peer, "alice@ours.test", "erin@far.example", msgid)
        mm.wait_for(lambda: self.smarthost.messages() and peer.queue_empty(),
                    "the smarthost to take it: " + peer.log()[-2000:])
        got = self.smarthost.messages()
        self.assertEqual(len(got), 1)
        self.assertIn(msgid.encode(), got[0][1])
        self.assertEqual(self.backend.messages(), [])
        r = self.send("127.12.11.8", auto_reply(msgid))
        self.assertEqual(r.code, 250, r)
        self.assertDelivered(1)

    def test_learned_ids_survive_sigkill(self):
        self.smarthost.clear()
        msgid = "<kept.%d@Ours.Test>" % os.getpid()
        s = smtplib.SMTP("127.0.0.1", self.out_port, timeout=mm.GUARD,
                         source_address=("127.12.11.1", 0))
        s.sendmail("alice@ours.test", ["carol@far.example"],
                   "From: alice@ours.test\r\nSubject: out\r\n"
                   "Message-ID: %s\r\n\r\nhi\r\n" % msgid)
        s.quit()
        mm.wait_for(lambda: store_has(self.daemon, msgid_key(msgid)),
                    "a flush with the recorded id")
        restart(self.daemon, kill=True)
        mm.wait_listen(self.out_port)
        r = self.send("127.12.11.7", auto_reply(msgid.lower()))
        self.assertEqual(r.code, 250, r)
        self.assertDelivered(1)

    def test_outbound_only_for_its_clients(self):
        c = mm.Client(self.out_port, src="127.12.11.2")
        self.addCleanup(c.close)
        r = c.banner()
        self.assertEqual(r.code, 554, r)
        self.assertStartsWith(r, "554 5.7.1 This port is only for our own "
                              "outgoing mail")


def postfix_peer(mm_port, src, office=False):
    """postfix_peer - Debian's Postfix as a second instance
    (tests/lib/postfix.py) relaying to mailmoat's mm_port from bind address
    src.  The far MTA takes mail for far.test and cannot deliver it (error
    transport), so it bounces it to the sender; the office server sends
    its mail out through outbound_listen."""
    if office:
        return PostfixMTA(mm_port, src, hostname="office.ours.test")
    return PostfixMTA(mm_port, src, extra={
        "transport_maps":
            "inline:{ {far.test=error:5.1.1 mailbox unavailable} }"})


def peer_send(peer, sender, rcpt, msgid):
    peer.sendmail(sender, [rcpt], (
        "From: %s\r\nTo: %s\r\nSubject: hello far\r\n"
        "Message-ID: %s\r\n\r\nhello\r\n" % (sender, rcpt, msgid)))


@unittest.skipUnless(shutil.which("postfix") and os.geteuid() == 0,
                     "needs Debian's postfix and root")
class RealPostfix(DsnBase):
    """A real MTA bounces through mailmoat: the bounce of our mail is
    accepted, the bounce of a forged-sender mail refused (and the MTA
    blocked)."""

    def test_postfix_bounces(self):
        src = "127.12.9.1"
        peer = postfix_peer(self.daemon.port, src).start()
        self.addCleanup(peer.stop)
        ours = "<pf.%d@ours.test>" % os.getpid()
        peer_send(peer, "alice@ours.test", "nobody@far.test", ours)
        mm.wait_for(lambda: self.backend.messages(),
                    "the bounce of our mail to be delivered: " + peer.log())
        got = self.assertDelivered(1)
        self.assertIn(got[0][0]["mail_from"], ("", "<>"))
        self.assertIn(ours.encode(), got[0][1])
        self.assertIn(b"delivery-status", got[0][1])
        d = self.daemon.decisions(client=src)
        self.assertFalse([x for x in d if x.get("reason") == "dsn"], d)
        # a forged sender of ours, Message-ID elsewhere: its bounce is
        # backscatter
        self.backend.clear()
        peer_send(peer, "alice@ours.test", "nobody@far.test",
                  "<forged.%d@spam.example>" % os.getpid())
        mm.wait_for(lambda: [x for x in self.daemon.decisions(client=src)
                             if x.get("reason") == "dsn"],
                    "the refusal of the forged bounce: " + peer.log())
        d = [x for x in self.daemon.decisions(client=src)
             if x.get("reason") == "dsn"]
        self.assertEqual(d[-1]["action"], "reject")
        self.assertEqual(self.backend.messages(), [])
        self.assertRegex(self.daemon.ctl("backscatter", "list").stdout,
                         r"(?m)^127\.12\.9\.1 blocked until ")
        self.assertBlocked(src)


if __name__ == "__main__":
    unittest.main()
