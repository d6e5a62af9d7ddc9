"""test_smuggling.py - bare CR / bare LF never end the data, and the
backend never sees two messages where the client sent one.

Cases from /work/shared/data/smtp-smuggling/eod-sequences.tsv.  The
backend runs in lenient mode (bare CR and bare LF count as line ends, like
the lax servers SMTP smuggling abuses), so any sequence the daemon passed
through raw would show up there as a second, smuggled message.  The same
cases also run against Postfix's smtp-sink."""
import os
import time

from base import MMTest, mm, message

TSV = "/work/shared/data/smtp-smuggling/eod-sequences.tsv"
HERE = os.path.dirname(os.path.abspath(__file__))
LOCAL_TSV = os.path.join(HERE, "eod-sequences.tsv")


def load_cases():
    path = TSV if os.path.exists(TSV) else LOCAL_TSV
    cases = []
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            cid, hexes, eod = line.rstrip("\n").split("\t")
            segs = [bytes.fromhex(s.replace(" ", "")) for s in
                    hexes.split("|")]
            cases.append((cid, segs, eod == "1"))
    return cases


CASES = load_cases()
SMUGGLED = (b"MAIL FROM:<smuggler@evil.test>\r\n"
            b"RCPT TO:<alice@example.com>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nsmuggled body\r\n")


def has_bare(seq):
    b = b"".join(seq)
    return any((b[i] == 13 and (i + 1 >= len(b) or b[i + 1] != 10)) or
               (b[i] == 10 and (i == 0 or b[i - 1] != 13))
               for i in range(len(b)))


class Smuggling(MMTest):

    def setUp(self):
        super().setUp()
        self.backend.set_mode(lenient_eol=True)

    def run_case(self, cid, segs, eod):
        c = self.greeted()
        self.assertReply(c.cmd("MAIL FROM:<a@sender.example>"), 250)
        self.assertReply(c.cmd("RCPT TO:<bob@example.com>"), 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        head = ("Subject: case %s\r\n\r\nfirst line\r\n" % cid).encode()
        if cid == "dot-crlf-at-start":
            c.send(segs[0])     # the very first line is the lone dot
        else:
            # the case's bytes sit in the middle of the body, as sent
            c.send(head)
            for s in segs[:-1]:
                c.send(s)
                time.sleep(0.05)    # separate reads, not an assertion
            c.send(segs[-1])
            if not eod:
                c.send(SMUGGLED)
                c.send(b"\r\n.\r\n")
        r = c.reply()
        extra, closed = c.pending(wait=0.3)
        c.send("QUIT\r\n")
        try:
            c.wait_closed()
        except mm.HarnessError:
            pass
        self.backend.wait_closed()
        msgs = self.backend.messages()
        # never a second message, never the smuggled one
        self.assertLessEqual(len(msgs), 1, msgs)
        for meta, content in msgs:
            self.assertNotEqual(meta["mail_from"], "smuggler@evil.test")
        self.assertEqual(len(self.backend.events("mail")), len(
            [e for e in self.backend.events("mail")
             if e["arg"] != "smuggler@evil.test"]),
            "the backend got the smuggled MAIL FROM as a command")
        # exactly one reply to the one end of data
        self.assertFalse(extra.strip(), "extra replies: %r" % extra)
        if has_bare(segs):
            self.assertReply(r, 550)
            self.assertTrue(r.text.startswith("550 5.6.0"), r)
            self.assertEqual(msgs, [])
            self.assertEqual(self.backend.events("dot"), [])
        elif b"\0" in b"".join(segs) and r.code == 550:
            # NUL is not text (RFC 5321 4.5.2); refusing it is fine too
            self.assertTrue(r.text.startswith("550 5.6.0"), r)
            self.assertEqual(msgs, [])
        else:
            self.assertReply(r, 250)
            self.assertEqual(len(msgs), 1)
            if not eod:
                # valid input that is no end of data: all one message
                self.assertIn(b"smuggled body", msgs[0][1])

    def test_canonical_output(self):
        """What reaches the backend is canonical: CRLF lines, dot-stuffed."""
        c = self.greeted()
        # as the client must send it: dot-stuffed (RFC 5321 4.5.2)
        body = ("Subject: dots\r\n\r\n..leading dot\r\n...two dots\r\n"
                "last\r\n").encode()
        r = c.transaction("a@sender.example", ["bob@example.com"], body)
        self.assertReply(r, 250)
        c.cmd("QUIT")
        self.backend.wait_closed()
        (meta, content), = self.backend.messages()
        self.assertIn(b"\r\n.leading dot\r\n..two dots\r\nlast\r\n", content)
        raw = self.backend.all_raw()
        data = raw.split(b"\r\nDATA\r\n", 1)[1]
        self.assertIn(b"\r\n..leading dot\r\n...two dots\r\nlast\r\n.\r\n",
                      data)
        # every line end in the whole backend stream is CRLF
        self.assertEqual(raw.count(b"\n"), raw.count(b"\r\n"))
        self.assertEqual(raw.count(b"\r"), raw.count(b"\r\n"))


def _make(cid, segs, eod):
    def t(self):
        self.run_case(cid, segs, eod)
    t.__doc__ = "eod case %s (%s)" % (cid, "ends data" if eod else
                                      "must not end data")
    return t


for _cid, _segs, _eod in CASES:
    setattr(Smuggling, "test_eod_" + _cid.replace("-", "_"),
            _make(_cid, _segs, _eod))


class SmugglingSink(MMTest):
    """Postfix's smtp-sink as the backend: one dump file per message."""
    backend_kind = "sink"

    def test_lf_dot_lf_is_one_refused_message(self):
        before = len(self.backend.messages())
        for cid in ("lf-dot-lf", "cr-dot-cr", "lf-dot-crlf", "crlf-dot-lf"):
            segs = [s for c, s, e in CASES if c == cid][0]
            c = self.greeted()
            c.cmd("MAIL FROM:<a@sender.example>")
            c.cmd("RCPT TO:<bob@example.com>")
            self.assertEqual(c.cmd("DATA").code, 354)
            c.send(b"Subject: x\r\n\r\nbody" + b"".join(segs) + SMUGGLED +
                   b"\r\n.\r\n")
            r = c.reply()
            self.assertEqual(r.code, 550, (cid, r))
            c.cmd("QUIT")
        self.assertEqual(len(self.backend.messages()), before)

    def test_clean_message_reaches_sink(self):
        before = len(self.backend.messages())
        c = self.greeted()
        r = c.transaction("a@sender.example", ["bob@example.com"], message())
        self.assertReply(r, 250)
        c.cmd("QUIT")
        mm.wait_for(lambda: len(self.backend.messages()) == before + 1,
                    "sink dump")


class HeaderInjection(MMTest):
    """What the client chose (HELO name, addresses) ends up in the header
    lines mailmoat puts in front of the message: they must stay well-formed
    header lines, never a way to inject lines or break the header."""

    def test_hostile_helo_in_received(self):
        for helo in (b"evil\x01\x7f.example.net", b"a\tb.example.net",
                     b"x" * 400 + b".example.net",
                     b"[127.0.0.1]", b"evil.example.net\x00X-Injected: yes"):
            c = self.client()
            c.banner()
            c.send(b"EHLO " + helo + b"\r\n")
            r = c.reply()
            if r.code != 250:
                self.assertGreaterEqual(r.code, 500, r)
                c.cmd("QUIT")
                continue
            r = c.transaction("a@sender.example", ["bob@example.com"],
                              message(subject="inject"))
            c.cmd("QUIT")
            if r.code != 250:
                continue
            self.backend.wait_closed()
            meta, content = self.backend.messages()[-1]
            head, _, _ = content.partition(b"From: sender@sender.example\r\n")
            for line in head.split(b"\r\n")[:-1]:
                self.assertTrue(
                    line[:1] in (b" ", b"\t") or
                    line.split(b":", 1)[0] in (b"Received",
                                               b"Authentication-Results"),
                    "bad header line %r (HELO %r)" % (line, helo))
                self.assertNotIn(b"\x00", line)
                self.assertLessEqual(len(line), 998, helo)
            self.assertNotIn(b"\r\nX-Injected:", head)


class ForgedAuthResults(MMTest):
    """RFC 8601 section 5: an Authentication-Results field that claims our
    authserv-id (the hostname) is removed before the internal server sees
    the message; one from another server, and the body, are left alone."""

    def test_forged_authentication_results_removed(self):
        forged = ("Authentication-Results: %s; spf=pass\r\n"
                  "\tsmtp.mailfrom=ceo@example.com\r\n"
                  "Authentication-Results: other.example; dkim=pass\r\n"
                  "authentication-results: %s (folded)\r\n iprev=pass\r\n"
                  % (mm.HOSTNAME, mm.HOSTNAME.upper()))
        body = "Authentication-Results: %s; in the body\r\n" % mm.HOSTNAME
        c = self.greeted()
        r = c.transaction("a@sender.example", ["bob@example.com"],
                          message(subject="forged", extra=forged, body=body))
        self.assertReply(r, 250)
        c.cmd("QUIT")
        mm.wait_for(lambda: len(self.backend.messages()) == 1, "delivery")
        content = self.backend.messages()[0][1]
        head, _, rest = content.partition(b"\r\n\r\n")
        self.assertNotIn(b"spf=pass", head)
        self.assertNotIn(b"smtp.mailfrom=ceo@example.com", head)
        self.assertNotIn(b"iprev=pass", head)
        self.assertIn(b"Authentication-Results: other.example; dkim=pass",
                      head)
        self.assertIn(body.encode(), rest)
