"""test_smtp.py - the server side of SMTP, RFC 5321, through the daemon.

Raw client (exact bytes and replies), Python's smtplib and swaks."""
import smtplib
import socket

from base import MMTest, mm, message

H = mm.HOSTNAME


class SmtpEngine(MMTest):
    conf = {"message_size_limit": "200K"}

    def test_banner(self):
        c = self.client()
        b = c.banner()
        self.assertEqual(b.code, 220)
        self.assertEqual(b.text, "220 %s ESMTP mailmoat" % H)

    def test_replies_not_held_by_nagle(self):
        # every reply is a small write that must leave at once (a client
        # that pipelines would otherwise wait for a delayed ACK): the
        # session's socket has TCP_NODELAY, inherited from the listener
        c = self.client()
        c.banner()
        self.assertEqual(mm.peer_socket_option(
            self.daemon.pid, c.sock, socket.IPPROTO_TCP,
            socket.TCP_NODELAY), 1)

    def test_ehlo_extensions(self):
        c = self.client()
        c.banner()
        r = c.cmd("EHLO client.example.net")
        self.assertEqual(r.code, 250)
        self.assertTrue(r.raw_lines[0].startswith("250-" + H), r)
        self.assertTrue(r.raw_lines[-1].startswith("250 "), r)
        for l in r.raw_lines[:-1]:
            self.assertTrue(l.startswith("250-"), r)
        exts = [l.split()[0].upper() for l in r.lines[1:]]
        self.assertIn("8BITMIME", exts)
        self.assertIn("ENHANCEDSTATUSCODES", exts)
        self.assertIn("SIZE", exts)
        size = [l for l in r.lines if l.upper().startswith("SIZE")][0]
        self.assertEqual(size.split()[1], str(200 * 1024))
        self.assertNotIn("PIPELINING", exts)
        self.assertNotIn("CHUNKING", exts)
        self.assertNotIn("STARTTLS", exts)     # no tls_cert configured

    def test_helo(self):
        c = self.client()
        c.banner()
        r = c.cmd("HELO client.example.net")
        self.assertEqual(r.code, 250)
        self.assertIn(H, r.text)

    def test_noop_rset_help_quit(self):
        c = self.greeted()
        self.assertReply(c.cmd("NOOP"), 250)
        self.assertTrue(c.replies[-1].text.startswith("250 2.0.0"))
        self.assertReply(c.cmd("RSET"), 250)
        self.assertTrue(c.replies[-1].text.startswith("250 2.0.0"))
        h = c.cmd("HELP")
        self.assertEqual(h.code, 214, h)
        q = c.cmd("QUIT")
        self.assertEqual(q.code, 221, q)
        self.assertTrue(q.text.startswith("221 2.0.0"), q)
        self.assertTrue(c.is_closed())

    def test_vrfy_discloses_nothing(self):
        c = self.greeted()
        known = c.cmd("VRFY alice@example.com")
        unknown = c.cmd("VRFY nosuchuser@example.com")
        self.assertEqual(known.code, 252, known)
        self.assertEqual(known.text, unknown.text.replace(
            "nosuchuser", "alice"))
        self.assertNotIn("alice", known.text.lower())
        self.assertEqual(known.text, "252 2.5.2 Cannot VRFY user, but will "
                         "accept message and attempt delivery")

    def test_unknown_command_500(self):
        c = self.greeted()
        r = c.cmd("FROBNICATE now")
        self.assertReply(r, 500)
        self.assertTrue(r.text.startswith("500 5.5.2"), r)

    def test_not_implemented_502(self):
        c = self.greeted()
        for verb in ("EXPN staff", "TURN", "ETRN example.com"):
            r = c.cmd(verb)
            self.assertReply(r, 502)
            self.assertTrue(r.text.startswith("502 5.5.1"), r)

    def test_sequence_503(self):
        c = self.client()
        c.banner()
        r = c.cmd("MAIL FROM:<a@sender.example>")
        self.assertReply(r, 503)
        self.assertTrue(r.text.startswith("503 5.5.1"), r)
        c.cmd("EHLO client.example.net")
        self.assertReply(c.cmd("RCPT TO:<bob@example.com>"), 503)
        self.assertReply(c.cmd("DATA"), 503)
        self.assertReply(c.cmd("MAIL FROM:<a@sender.example>"), 250)
        self.assertReply(c.cmd("MAIL FROM:<a@sender.example>"), 503)
        r = c.cmd("DATA")       # MAIL but no RCPT
        self.assertIn(r.code, (503, 554), r)
        self.assertIsNotNone(r.id, r)

    def test_syntax_501(self):
        c = self.greeted()
        r = c.cmd("MAIL FROM:a@sender.example")
        self.assertReply(r, 501)
        r = c.cmd("MAIL FROM:<a@@sender.example>")
        self.assertReply(r, 501)
        self.assertTrue(r.text.startswith("501 5.1.7"), r)
        self.assertReply(c.cmd("MAIL FROM:<a@sender.example>"), 250)
        r = c.cmd("RCPT TO:<bob@@example.com>")
        self.assertReply(r, 501)
        self.assertTrue(r.text.startswith("501 5.1.3"), r)
        r = c.cmd("RCPT bob@example.com")
        self.assertReply(r, 501)

    def test_unknown_parameter_555_and_504(self):
        c = self.greeted()
        r = c.cmd("MAIL FROM:<a@sender.example> FROBNICATE=yes")
        self.assertReply(r, 555)
        self.assertTrue(r.text.startswith("555 5.5.4"), r)
        r = c.cmd("MAIL FROM:<a@sender.example> BODY=BINARYMIME")
        self.assertReply(r, 504)
        self.assertTrue(r.text.startswith("504 5.5.4"), r)

    def test_verbs_case_insensitive_and_space_after_colon(self):
        c = self.client()
        c.banner()
        self.assertReply(c.cmd("ehlo client.example.net"), 250)
        self.assertReply(c.cmd("mail from: <a@sender.example>"), 250)
        self.assertReply(c.cmd("rcpt to:<bob@example.com>"), 250)

    def test_enhanced_codes_everywhere(self):
        c = self.greeted()
        for cmd in ("NOOP", "RSET", "FOO", "MAIL FROM:<x@sender.example>",
                    "RCPT TO:<bob@example.com>", "RCPT TO:<x@other.test>"):
            r = c.cmd(cmd)
            self.assertRegex(r.text, r"^\d{3} [245]\.\d{1,3}\.\d{1,3} ", r)
            self.assertEqual(r.text[0], r.text[4], r)

    def test_command_line_512_limit(self):
        c = self.greeted()
        # exactly 512 octets including CRLF: allowed
        line = "NOOP " + "x" * (512 - 2 - 5)
        self.assertEqual(len(line) + 2, 512)
        self.assertReply(c.cmd(line), 250)
        r = c.cmd("NOOP " + "x" * (513 - 2 - 5))
        self.assertReply(r, 500)
        self.assertTrue(r.text.startswith("500 5.5.6"), r)
        # the session goes on
        self.assertReply(c.cmd("NOOP"), 250)

    def test_huge_line_without_crlf(self):
        c = self.greeted()
        c.send(b"NOOP " + b"y" * 100000 + b"\r\n")
        r = c.reply()
        self.assertReply(r, 500)
        self.assertReply(c.cmd("NOOP"), 250)

    def test_size_parameter_over_limit_552(self):
        c = self.greeted()
        r = c.cmd("MAIL FROM:<a@sender.example> SIZE=%d" % (300 * 1024))
        self.assertReply(r, 552)
        self.assertTrue(r.text.startswith("552 5.3.4"), r)
        self.assertReply(c.cmd("MAIL FROM:<a@sender.example> SIZE=1000"),
                         250)

    def test_message_over_limit_552_nothing_delivered(self):
        c = self.greeted()
        body = message(body=("x" * 76 + "\r\n") * 4000)   # ~300 KB
        r = c.transaction("a@sender.example", ["bob@example.com"], body)
        self.assertReply(r, 552)
        self.assertTrue(r.text.startswith("552 5.3.4"), r)
        c.cmd("QUIT")
        self.assertNothingDelivered()

    def test_text_line_1000_limit(self):
        c = self.greeted()
        ok = "a" * 998      # + CRLF = 1000 octets: allowed
        r = c.transaction("a@sender.example", ["bob@example.com"],
                          message(body=ok + "\r\n"))
        self.assertReply(r, 250)
        self.assertDelivered(1)
        self.backend.clear()
        r = c.transaction("a@sender.example", ["bob@example.com"],
                          message(body="b" * 999 + "\r\n"))
        self.assertReply(r, 550)
        self.assertTrue(r.text.startswith("550 5.6.0"), r)
        c.cmd("QUIT")
        self.assertNothingDelivered()

    def test_8bitmime(self):
        c = self.greeted()
        self.assertReply(c.cmd("MAIL FROM:<a@sender.example> BODY=8BITMIME"),
                         250)
        self.assertReply(c.cmd("RCPT TO:<bob@example.com>"), 250)
        self.assertEqual(c.cmd("DATA").code, 354)
        body = message(body="Gr\u00fc\u00dfe aus M\u00fcnchen\r\n").encode()
        c.send(body + b".\r\n")
        self.assertReply(c.reply(), 250)
        c.cmd("QUIT")
        (meta, content), = self.assertDelivered(1)
        self.assertIn("Gr\u00fc\u00dfe aus M\u00fcnchen\r\n".encode(),
                      content)

    def test_100_recipients(self):
        c = self.greeted()
        self.assertReply(c.cmd("MAIL FROM:<a@sender.example>"), 250)
        for i in range(100):
            r = c.cmd("RCPT TO:<user%d@example.org>" % i)
            self.assertReply(r, 250)
        r = c.cmd("RCPT TO:<user100@example.org>")
        self.assertReply(r, 452)
        self.assertTrue(r.text.startswith("452 4.5.3"), r)
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(message().encode() + b".\r\n")
        self.assertReply(c.reply(), 250)
        c.cmd("QUIT")
        (meta, _), = self.assertDelivered(1)
        self.assertEqual(len(meta["rcpt_tos"]), 100)

    def test_smtplib_delivery(self):
        s = smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=20,
                         local_hostname="client.example.net")
        s.ehlo()
        self.assertFalse(s.has_extn("pipelining"))
        self.assertTrue(s.has_extn("8bitmime"))
        refused = s.sendmail("a@sender.example",
                             ["alice@example.com", "bob@example.com"],
                             message(subject="smtplib").encode())
        self.assertEqual(refused, {})
        s.quit()
        (meta, content), = self.assertDelivered(1)
        self.assertEqual(meta["rcpt_tos"], ["alice@example.com",
                                            "bob@example.com"])
        self.assertEqual(meta["mail_from"], "a@sender.example")
        self.assertIn(b"Subject: smtplib", content)

    def test_helo_delivery(self):
        """Plain SMTP (HELO, no extensions) is relayed as well."""
        c = self.greeted(verb="HELO")
        r = c.transaction("a@sender.example", ["bob@example.com"],
                          message(subject="helo only"))
        self.assertReply(r, 250)
        c.cmd("QUIT")
        (meta, content), = self.assertDelivered(1)
        self.assertIn(b"Subject: helo only", content)

    def test_body_in_odd_chunks_arrives_exactly(self):
        """The streaming DATA scanner: a dot-stuffed body sent in 1..7
        byte writes reaches the backend byte for byte (canonical input
        stays as it is)."""
        import random
        rnd = random.Random(5321)
        lines = []
        for i in range(300):
            kind = rnd.randrange(5)
            if kind == 0:
                lines.append("." * rnd.randrange(1, 4) + "dots %d" % i)
            elif kind == 1:
                lines.append("")
            else:
                lines.append("line %d " % i + "x" * rnd.randrange(0, 120))
        wire = ("Subject: chunks\r\n\r\n" + "".join(
            ("." + l if l.startswith(".") else l) + "\r\n" for l in lines)
            ).encode()
        want = ("Subject: chunks\r\n\r\n" + "".join(
            l + "\r\n" for l in lines)).encode()
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        self.assertEqual(c.cmd("DATA").code, 354)
        i = 0
        while i < len(wire):
            n = rnd.randrange(1, 8)
            c.send(wire[i:i + n])
            i += n
        c.send(b".\r\n")
        self.assertReply(c.reply(), 250)
        c.cmd("QUIT")
        (meta, content), = self.assertDelivered(1)
        self.assertTrue(content.endswith(want), content[-300:])
        raw = self.backend.all_raw()
        self.assertIn(wire + b".\r\n", raw)

    def test_starttls_not_after_mail(self):
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        r = c.cmd("STARTTLS")
        self.assertGreaterEqual(r.code, 500, r)

    def test_swaks_delivery(self):
        rc, out = mm.swaks(self.daemon.port, "--to", "alice@example.com",
                           "--from", "a@sender.example",
                           "--header", "Subject: via swaks")
        self.assertEqual(rc, 0, out)
        self.assertDelivered(1)

    def test_error_reply_id_matches_log(self):
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        r = c.cmd("RCPT TO:<someone@elsewhere.test>")
        self.assertEqual(r.code, 550)
        d = self.daemon.wait_decision(id=r.id)
        self.assertEqual(d[-1]["action"], "reject")
        self.assertEqual(d[-1]["client"], "127.0.0.1")
        self.assertIn("elsewhere.test", d[-1].get("to", ""))

    def test_too_many_errors_closes(self):
        c = self.greeted()
        last = None
        for i in range(30):
            try:
                last = c.cmd("BOGUS%d" % i)
            except mm.Closed:
                break
            if last.code == 421:
                break
        else:
            self.fail("30 unknown commands and still open: %r" % last)
        self.assertTrue(c.is_closed())


class Pregreet(MMTest):
    conf = {"greet_pause": "1s"}

    def test_patient_client_gets_banner(self):
        c = self.client()
        # nothing before the pause (1 s) is over; then the banner
        got, closed = c.pending(wait=0.5)
        self.assertEqual((got, closed), (b"", False))
        b = c.banner()
        self.assertEqual(b.text, "220 %s ESMTP mailmoat" % H)

    def test_early_talker_rejected(self):
        c = self.client()
        c.send("EHLO impatient.example.net\r\n")
        r = c.reply()
        self.assertReply(r, 554, "554 5.5.0 You talked before the greeting "
                         "(pregreet)")
        self.assertTrue(c.is_closed())
        d = self.daemon.wait_decision(id=r.id)
        self.assertEqual(d[-1]["reason"], "pregreet")
        self.assertEqual(d[-1]["action"], "reject")
        self.assertEqual(self.backend.connections(), [])


class PregreetLog(MMTest):
    """action_pregreet = log: decide, log, count, let through."""
    conf = {"greet_pause": "1s", "action_pregreet": "log"}

    def test_logged_and_let_through(self):
        before = self.daemon.stats()
        c = self.client()
        c.send("EHLO impatient.example.net\r\n")
        b = c.reply()
        self.assertEqual(b.code, 220, b)
        r = c.reply()
        self.assertEqual(r.code, 250, r)
        r = c.transaction("a@sender.example", ["bob@example.com"],
                          message())
        self.assertReply(r, 250)
        c.cmd("QUIT")
        self.assertDelivered(1)
        d = self.daemon.wait_decision(reason="pregreet")
        self.assertEqual(d[-1]["action"], "log")
        after = self.daemon.stats()
        self.assertEqual(after["logged"], before["logged"] + 1)
        self.assertEqual(after["rejected"], before["rejected"])


class Pipelining(MMTest):

    def test_pipelined_commands_rejected(self):
        c = self.greeted()
        c.send("MAIL FROM:<a@sender.example>\r\nRCPT TO:<bob@example.com>\r\n"
               "DATA\r\n")
        replies = []
        try:
            while True:
                replies.append(c.reply())
        except mm.Closed:
            pass
        last = replies[-1]
        self.assertReply(last, 554, "554 5.5.0 Pipelining is not allowed "
                         "here: wait for each reply")
        self.assertTrue(all(r.code != 354 for r in replies), replies)
        d = self.daemon.wait_decision(id=last.id)
        self.assertEqual(d[-1]["reason"], "pipelining")
        self.assertNothingDelivered()

    def test_ehlo_and_mail_in_one_write(self):
        c = self.client()
        c.banner()
        c.send("EHLO client.example.net\r\nMAIL FROM:<a@sender.example>\r\n")
        replies = []
        try:
            while True:
                replies.append(c.reply())
        except mm.Closed:
            pass
        self.assertEqual(replies[-1].code, 554, replies)
        self.assertIn("Pipelining", replies[-1].text)

    def test_message_after_dot_in_same_write(self):
        """The body's dot and the next command in one write: pipelining."""
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(message().encode() + b".\r\nMAIL FROM:<b@sender.example>\r\n")
        replies = []
        try:
            while True:
                replies.append(c.reply())
        except mm.Closed:
            pass
        self.assertTrue(replies, "no reply at all")
        self.assertEqual(replies[-1].code, 554, replies)
        # the first transaction's reply, if any, was never a lie: when it
        # says 250 the message is there exactly once, otherwise nothing.
        ok = [r for r in replies if r.code == 250]
        self.backend.wait_closed()
        self.assertEqual(len(self.backend.messages()), len(ok))
