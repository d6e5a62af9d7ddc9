"""test_relay.py - the relay to the internal server (the backend).

Connect at the first accepted recipient, replay EHLO/MAIL/RCPT, stream the
body holding back the dot, relay the backend's final reply as it is;
backend down/slow/4xx at every stage -> 4xx, never 250; a 250 means the
message is at the backend exactly once; client gone mid-DATA -> nothing."""
import time

from base import MMTest, mm, message, Daemon, Client, Backend


def drain(c):
    """drain - QUIT if the connection is still there."""
    try:
        c.send("QUIT\r\n")
        c.wait_closed()
    except (OSError, mm.HarnessError, mm.Closed):
        pass


def in_data(t, src, rcpt="bob@example.com"):
    """in_data - a session of test t from src, at the 354 of a message
    from a@sender.example to rcpt."""
    c = t.greeted(src=src)
    c.cmd("MAIL FROM:<a@sender.example>")
    t.assertReply(c.cmd("RCPT TO:<%s>" % rcpt), 250)
    t.assertEqual(c.cmd("DATA").code, 354)
    return c


class Relay(MMTest):
    conf = {"timeout_backend": "3s", "recipient_verify": "list"}

    def test_delivery_and_reply_relayed_verbatim(self):
        self.backend.set_mode(dot_reply="250 2.0.0 Ok: queued as BK7QX1 "
                              "by the office server")
        c = self.greeted()
        r = c.transaction("a@sender.example", ["bob@example.com"],
                          message(subject="verbatim"))
        self.assertEqual(r.text, "250 2.0.0 Ok: queued as BK7QX1 by the "
                         "office server")
        drain(c)
        (meta, content), = self.assertDelivered(1)
        self.assertEqual(meta["mail_from"], "a@sender.example")
        self.assertEqual(meta["rcpt_tos"], ["bob@example.com"])
        self.assertIn(b"Subject: verbatim", content)
        # a proxy leaves its trace in the header
        self.assertRegex(content.split(b"\r\n\r\n")[0],
                         rb"(?im)^Received: from client\.example\.net")

    def test_multiline_final_reply_relayed(self):
        self.backend.set_mode(dot_reply="250-2.0.0 first line\r\n"
                              "250 2.0.0 second line")
        c = self.greeted()
        r = c.transaction("a@sender.example", ["bob@example.com"], message())
        self.assertEqual(r.raw_lines, ["250-2.0.0 first line",
                                       "250 2.0.0 second line"])
        drain(c)

    def test_backend_5xx_at_dot_relayed(self):
        self.backend.set_mode(fail_stage="dot", fail_code="554 5.7.1 Content "
                              "rejected by the office server")
        c = self.greeted()
        r = c.transaction("a@sender.example", ["bob@example.com"], message())
        self.assertEqual(r.text, "554 5.7.1 Content rejected by the office "
                         "server")
        drain(c)
        self.assertEqual(self.backend.messages(), [])

    def test_no_backend_connection_before_first_accepted_rcpt(self):
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        self.assertEqual(c.cmd("RCPT TO:<x@elsewhere.test>").code, 550)
        self.assertEqual(c.cmd("RCPT TO:<nobody@example.com>").code, 550)
        c.cmd("NOOP")
        self.assertEqual(self.backend.connections(), [])
        self.assertEqual(c.cmd("RCPT TO:<bob@example.com>").code, 250)
        mm.wait_for(lambda: self.backend.events("rcpt"), "backend RCPT")
        self.assertEqual([e["arg"] for e in self.backend.events("rcpt")],
                         ["bob@example.com"])
        self.assertEqual(len(self.backend.events("mail")), 1)
        drain(c)

    def test_backend_quit_when_client_leaves(self):
        c = self.greeted()
        self.assertReply(c.transaction("a@sender.example",
                                       ["bob@example.com"], message()), 250)
        c.cmd("QUIT")
        self.backend.wait_closed()
        self.assertEqual(len(self.backend.events("quit")), 1)
        mm.wait_for(lambda: self.daemon.stats().get("backend_connections",
                                                    0) == 0,
                    "backend_connections back to 0")

    def test_two_messages_one_session_each_once(self):
        c = self.greeted()
        for i in range(2):
            r = c.transaction("a@sender.example", ["bob@example.com"],
                              message(subject="n%d" % i))
            self.assertReply(r, 250)
        # an abandoned third transaction
        c.cmd("MAIL FROM:<a@sender.example>")
        c.cmd("RCPT TO:<alice@example.com>")
        self.assertReply(c.cmd("RSET"), 250)
        drain(c)
        msgs = self.assertDelivered(2)
        self.assertIn(b"Subject: n0", msgs[0][1])
        self.assertIn(b"Subject: n1", msgs[1][1])

    def test_backend_refuses_rcpt_relayed_with_list(self):
        # recipient_verify = list: the backend's own 5xx is relayed as is
        self.backend.set_mode(refuse_rcpt="^alice@")
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        r = c.cmd("RCPT TO:<alice@example.com>")
        self.assertEqual(r.code, 550, r)
        self.assertIn("5.1.1", r.text)
        self.assertEqual(c.cmd("RCPT TO:<bob@example.com>").code, 250)
        r = c.cmd("DATA")
        self.assertEqual(r.code, 354)
        c.send(message().encode() + b".\r\n")
        self.assertReply(c.reply(), 250)
        drain(c)
        (meta, _), = self.assertDelivered(1)
        self.assertEqual(meta["rcpt_tos"], ["bob@example.com"])

    def test_client_disconnects_mid_data(self):
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(b"Subject: cut\r\n\r\n" + b"half of it\r\n" * 2000)
        mm.wait_for(lambda: b"half of it" in self.backend.all_raw(),
                    "body bytes streamed to the backend")
        c.close()
        self.assertNothingDelivered()
        raw = self.backend.all_raw()
        self.assertNotIn(b"\r\n.\r\n", raw.split(b"\r\nDATA\r\n", 1)[1])
        # and the daemon is fine
        c = self.greeted()
        self.assertReply(c.transaction("a@sender.example",
                                       ["bob@example.com"], message()), 250)
        drain(c)

    def test_body_streamed_before_end_of_data(self):
        """The body goes out as it arrives, only the dot is held back."""
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(b"Subject: stream\r\n\r\n" + b"streamed line\r\n" * 5000)
        mm.wait_for(lambda: self.backend.all_raw().count(b"streamed line")
                    >= 4000, "body at the backend before the dot")
        self.assertEqual(self.backend.events("dot"), [])
        c.send(b".\r\n")
        self.assertReply(c.reply(), 250)
        drain(c)
        self.assertDelivered(1)

    def test_check_failure_at_end_of_data_drops_backend(self):
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(b"Subject: bad\r\n\r\n" + b"good line\r\n" * 100 +
               b"bare\nline\r\n.\r\n")
        r = c.reply()
        self.assertReply(r, 550)
        self.assertTrue(r.text.startswith("550 5.6.0"), r)
        self.assertNothingDelivered()
        drain(c)


class BackendFailures(MMTest):
    """The backend answers 4xx, is slow, or drops at each stage."""
    conf = {"timeout_backend": "2s"}

    def attempt(self):
        c = self.greeted()
        replies = []
        for cmd in ("MAIL FROM:<a@sender.example>",
                    "RCPT TO:<bob@example.com>", "DATA"):
            try:
                r = c.cmd(cmd)
            except mm.Closed:
                return c, replies
            replies.append(r)
            if r.code >= 400:
                return c, replies
        c.send(message().encode() + b".\r\n")
        try:
            replies.append(c.reply())
        except mm.Closed:
            pass
        return c, replies

    def check_tempfail(self, **mode):
        self.backend.set_mode(**mode)
        c, replies = self.attempt()
        drain(c)
        self.assertTrue(replies, "no reply at all")
        last = replies[-1]
        self.assertTrue(400 <= last.code < 500, "%r: %r" % (mode, replies))
        self.assertNotEqual(last.code, 250)
        self.backend.wait_closed()
        self.assertEqual(self.backend.messages(), [], mode)
        return last

    def test_banner_421(self):
        self.check_tempfail(fail_stage="banner")

    def test_ehlo_4xx(self):
        self.check_tempfail(fail_stage="ehlo")

    def test_mail_4xx(self):
        self.check_tempfail(fail_stage="mail")

    def test_rcpt_4xx(self):
        r = self.check_tempfail(fail_stage="rcpt")
        self.assertEqual(r.code, 451, r)

    def test_data_4xx(self):
        self.check_tempfail(fail_stage="data")

    def test_dot_4xx_relayed(self):
        r = self.check_tempfail(fail_stage="dot")
        self.assertEqual(r.text, "451 4.3.0 Backend end-of-data tempfail")

    def test_slow_banner(self):
        self.check_tempfail(slow_stage="banner", slow_seconds=30)

    def test_slow_rcpt(self):
        self.check_tempfail(slow_stage="rcpt", slow_seconds=30)

    def test_slow_dot(self):
        self.check_tempfail(slow_stage="dot", slow_seconds=30)

    def test_drop_mid_data(self):
        self.check_tempfail(drop="mid-data")

    def test_drop_after_dot(self):
        r = self.check_tempfail(drop="after-dot")
        self.assertEqual(r.code, 451, r)

    def test_backend_down(self):
        d = Daemon(mm.free_port())      # nothing listens there
        d.start()
        try:
            c = Client(d.port)
            c.hello()
            self.assertEqual(c.cmd("MAIL FROM:<a@sender.example>").code, 250)
            r = c.cmd("RCPT TO:<bob@example.com>")
            self.assertEqual(r.code, 451, r)
            self.assertTrue(r.text.startswith("451 4.4.1"), r)
            self.assertIsNotNone(r.id)
            dec = d.wait_decision(id=r.id)
            self.assertEqual(dec[-1]["action"], "tempfail")
            st = d.stats()
            self.assertGreaterEqual(st["tempfailed"], 1)
            c.close()
        finally:
            d.cleanup()


class RecipientVerifyBackend(MMTest):
    conf = {"recipient_verify": "backend"}
    daemon_kw = {"recipients": None}

    def test_backend_decides(self):
        self.backend.set_mode(refuse_rcpt="^nobody@")
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        r = c.cmd("RCPT TO:<nobody@example.com>")
        self.assertReply(r, 550, "550 5.7.1 recipient <nobody@example.com> "
                         "unknown")
        r = c.cmd("RCPT TO:<anybody@example.com>")
        self.assertReply(r, 250)
        r = c.cmd("RCPT TO:<somebody@elsewhere.test>")
        self.assertReply(r, 550, "550 5.7.1 Relaying denied")
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(message().encode() + b".\r\n")
        self.assertReply(c.reply(), 250)
        drain(c)
        (meta, _), = self.assertDelivered(1)
        self.assertEqual(meta["rcpt_tos"], ["anybody@example.com"])


class RecipientVerifyBoth(MMTest):
    """recipient_verify = both: the list first, then the backend's word."""
    conf = {"recipient_verify": "both"}

    def test_list_and_backend(self):
        self.backend.set_mode(refuse_rcpt="^alice@")
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        # not in the list: refused without asking the backend
        r = c.cmd("RCPT TO:<nobody@example.com>")
        self.assertReply(r, 550, "550 5.7.1 recipient <nobody@example.com> "
                         "unknown")
        # in the list, refused by the backend
        r = c.cmd("RCPT TO:<alice@example.com>")
        self.assertReply(r, 550, "550 5.7.1 recipient <alice@example.com> "
                         "unknown")
        self.assertReply(c.cmd("RCPT TO:<bob@example.com>"), 250)
        drain(c)
        self.assertNotIn("nobody@example.com",
                         [e["arg"] for e in self.backend.events("rcpt")])


class BackendCap(MMTest):
    conf = {"max_backend_connections": "2"}

    def test_third_backend_session_gets_421(self):
        held = []
        for i in range(2):
            c = self.greeted(src="127.0.1.%d" % (i + 1))
            c.cmd("MAIL FROM:<a@sender.example>")
            self.assertReply(c.cmd("RCPT TO:<bob@example.com>"), 250)
            held.append(c)
        c = self.greeted(src="127.0.1.3")
        c.cmd("MAIL FROM:<a@sender.example>")
        r = c.cmd("RCPT TO:<bob@example.com>")
        self.assertReply(r, 421)
        self.assertTrue(r.text.startswith("421 4.3.2"), r)
        self.assertTrue(c.is_closed())
        self.assertEqual(len(self.backend.connections()), 2)
        # a held session still delivers; then a slot is free again
        h = held[0]
        self.assertEqual(h.cmd("DATA").code, 354)
        h.send(message().encode() + b".\r\n")
        self.assertReply(h.reply(), 250)
        drain(h)
        drain(held[1])
        self.backend.wait_closed()
        c = self.greeted(src="127.0.1.4")
        self.assertReply(c.transaction("a@sender.example",
                                       ["bob@example.com"], message()), 250)
        drain(c)
        self.assertEqual(len(self.backend.messages()), 2)


class SlowData(MMTest):
    """Slow bodies do not hold the internal server's connections: a session
    whose body is still held (not yet streaming) gives its backend
    connection back when another session needs one, and replays MAIL and
    its recipients at the dot (issue 7).  The backend itself takes only
    three connections, as max_backend_connections says."""
    conf = {"max_backend_connections": "3"}

    def slow_clients(self, n, base):
        slow = []
        for i in range(n):
            c = self.greeted(src="127.0.%d.%d" % (base, i + 1))
            c.cmd("MAIL FROM:<a@sender.example>")
            self.assertReply(c.cmd("RCPT TO:<bob@example.com>"), 250)
            self.assertReply(c.cmd("RCPT TO:<alice@example.com>"), 250)
            self.assertEqual(c.cmd("DATA").code, 354)
            c.send(b"Subject: slow %d\r\n\r\nfirst part\r\n" % i)
            slow.append(c)
        return slow

    def finish(self, slow):
        for i, c in enumerate(slow):
            c.send(b"second part %d\r\n.\r\n" % i)
        for c in slow:
            self.assertReply(c.reply(), 250)
            drain(c)

    def test_slow_bodies_leave_room_for_a_normal_client(self):
        self.backend.set_mode(max_conns=3)
        slow = self.slow_clients(3, 31)
        c = self.greeted(src="127.0.31.100")
        self.assertReply(c.transaction("a@sender.example",
                                       ["bob@example.com"],
                                       message(subject="normal")), 250)
        drain(c)
        self.finish(slow)
        got = self.assertDelivered(4)
        bodies = sorted(m for _, m in got)
        for i in range(3):
            hit = [m for m in bodies if b"Subject: slow %d" % i in m]
            self.assertEqual(len(hit), 1)
            self.assertIn(b"first part\r\nsecond part %d\r\n" % i, hit[0])
        for meta, m in got:
            if b"Subject: slow" in m:
                self.assertEqual(meta["rcpt_tos"],
                                 ["bob@example.com", "alice@example.com"])
        self.assertEqual(self.backend.events("over-cap"), [])

    def test_more_slow_bodies_than_connections(self):
        self.backend.set_mode(max_conns=3)
        slow = self.slow_clients(6, 32)
        c = self.greeted(src="127.0.32.100")
        self.assertReply(c.transaction("a@sender.example",
                                       ["bob@example.com"],
                                       message(subject="normal")), 250)
        drain(c)
        self.finish(slow)
        self.assertDelivered(7)
        self.assertEqual(self.backend.events("over-cap"), [])
        self.assertGreaterEqual(self.daemon.stats()["backend_released"], 4)


class SlowDataReplay(MMTest):
    """A body whose connection was given back replays MAIL and RCPT at the
    dot on a new connection (no reuse here); when the server answers
    differently now, nothing is delivered and the client gets a 451."""
    conf = {"max_backend_connections": "1", "backend_reuse": "0"}

    def test_replay_refused_is_451_nothing_delivered(self):
        before = self.daemon.stats()["backend_released"]
        a = in_data(self, "127.0.33.1")
        a.send(b"Subject: replayed\r\n\r\nfirst\r\n")
        b = self.greeted(src="127.0.33.2")
        self.assertReply(b.transaction("a@sender.example",
                                       ["alice@example.com"],
                                       message(subject="took the slot")),
                         250)
        drain(b)
        self.assertEqual(self.daemon.stats()["backend_released"],
                         before + 1)
        self.backend.set_mode(refuse_rcpt="bob@")
        a.send(b"second\r\n.\r\n")
        r = a.reply()
        self.assertReply(r, 451)
        self.assertStartsWith(r, "451 4.3.0 The internal mail server "
                              "changed its answer")
        drain(a)
        got = self.assertDelivered(1)
        self.assertIn(b"Subject: took the slot", got[0][1])

    def test_idle_between_messages_gives_back(self):
        """A session that delivered and stays connected keeps its backend
        connection for its next message - until another session needs
        it: then it connects again at its next RCPT."""
        a = self.greeted(src="127.0.37.1")
        self.assertReply(a.transaction("a@sender.example",
                                       ["bob@example.com"],
                                       message(subject="a one")), 250)
        b = self.greeted(src="127.0.37.2")
        self.assertReply(b.transaction("a@sender.example",
                                       ["alice@example.com"],
                                       message(subject="b")), 250)
        drain(b)
        self.assertReply(a.transaction("a@sender.example",
                                       ["bob@example.com"],
                                       message(subject="a two")), 250)
        drain(a)
        self.assertDelivered(3)

    def test_replay_delivers_once(self):
        a = in_data(self, "127.0.34.1")
        a.send(b"Subject: replayed\r\n\r\nfirst\r\n")
        b = self.greeted(src="127.0.34.2")
        self.assertReply(b.transaction("a@sender.example",
                                       ["alice@example.com"],
                                       message(subject="took the slot")),
                         250)
        drain(b)
        a.send(b"second\r\n.\r\n")
        self.assertReply(a.reply(), 250)
        drain(a)
        got = self.assertDelivered(2)
        mine = [m for meta, m in got if b"Subject: replayed" in m]
        self.assertEqual(len(mine), 1)
        self.assertIn(b"\r\n\r\nfirst\r\nsecond\r\n", mine[0])
        # the replay: MAIL and RCPT a second time, one DATA, one dot
        rcpts = [e["arg"] for e in self.backend.events("rcpt")]
        self.assertEqual(rcpts.count("bob@example.com"), 2, rcpts)


class SlowStream:
    """A client that sends SESS_STREAM_AT bytes fast (its body streams and
    keeps the backend connection) and then trickles: unhindered while
    connections are free, but once a session finds none, every streaming
    body must keep up 500 bytes a second per timeout_data window or is cut
    with a 421 (nothing delivered).  The session that found none waits in
    the queue for the connection (at most timeout_backend, then 451), so
    it gets it before the trickler can come back for it.  A fast body is
    not cut."""
    conf = {"max_backend_connections": "1", "timeout_data": "3s",
            "timeout_backend": "5s", "backend_reuse": "0"}
    head = b"Subject: %s\r\n\r\n" + b"".join(
        b"line %05d of a body that streams\r\n" % i for i in range(600))
    slow = b"slow slow slow\r\n"                 # 64 bytes a second
    fast = (b"y" * 78 + b"\r\n") * 50           # 16 kB a second

    def streaming(self, src, subject):
        c = in_data(self, src)
        c.send(self.head % subject)
        mm.wait_for(lambda: b"line 00500" in self.backend.all_raw(),
                    "the body streaming")
        return c

    def trickle(self, c, seconds, chunk):
        """Send chunk every 0.25 s for seconds; the reply if one came."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            buf, closed = c.pending()
            if buf or closed:
                return c.reply()
            try:
                c.send(chunk)
            except OSError:
                return c.reply()
            time.sleep(0.25)
        return None

    def waiting(self, src):
        """A session whose RCPT finds no free connection: it waits."""
        b = self.greeted(src=src)
        b.cmd("MAIL FROM:<a@sender.example>")
        b.send(b"RCPT TO:<alice@example.com>\r\n")
        buf, closed = b.pending(0.5)
        self.assertEqual((buf, closed), (b"", False), "no wait: a reply")
        return b

    def finish(self, b, subject):
        self.assertReply(b.reply(), 250)          # its RCPT
        self.assertEqual(b.cmd("DATA").code, 354)
        b.send(message(subject=subject).encode() + b".\r\n")
        self.assertReply(b.reply(), 250)
        drain(b)


class SlowStreamWhileShort(SlowStream, MMTest):
    """... cut once a session finds no connection, which then gets it; a
    fast one is not cut, and the waiting session gets a 451 after
    timeout_backend."""

    def test_trickle_cut_once_a_session_finds_no_connection(self):
        a = self.streaming("127.0.40.1", b"trickler")
        self.assertIsNone(self.trickle(a, 1, self.slow))
        b = self.waiting("127.0.40.2")
        r = self.trickle(a, 8, self.slow)
        self.assertIsNotNone(r, "the trickler was not cut")
        self.assertReply(r, 421)
        self.assertStartsWith(r, "421 4.4.2 Timeout")
        drain(a)
        self.finish(b, "after")
        got = self.assertDelivered(1)
        self.assertIn(b"Subject: after", got[0][1])
        self.assertIn("reason=timeout detail=data", self.daemon.log_text())

    def test_fast_stream_not_cut_while_short(self):
        a = self.streaming("127.0.41.1", b"fast")
        b = self.waiting("127.0.41.2")
        # longer than timeout_backend, and than two timeout_data windows
        self.assertIsNone(self.trickle(a, 7, self.fast))
        r = b.reply()
        self.assertReply(r, 451)
        self.assertStartsWith(r, "451 4.3.2 Too many sessions")
        a.send(b".\r\n")
        self.assertReply(a.reply(), 250)
        drain(a)
        self.assertReply(b.cmd("RCPT TO:<alice@example.com>"), 250)
        self.assertEqual(b.cmd("DATA").code, 354)
        b.send(message(subject="second").encode() + b".\r\n")
        self.assertReply(b.reply(), 250)
        drain(b)
        got = self.assertDelivered(2)
        self.assertEqual(sorted(b"Subject: fast" in m for _, m in got),
                         [False, True])


class SlowStreamWhileFree(SlowStream, MMTest):
    """... and while no session lacks a connection, the same trickle
    streams on (its own daemon: the rule lasts 30 s after a shortage)."""

    def test_trickle_unhindered_while_connections_are_free(self):
        a = self.streaming("127.0.39.1", b"free")
        # far under 500 bytes a second, far over timeout_data's floor
        self.assertIsNone(self.trickle(a, 4.5, self.slow))
        a.send(b".\r\n")
        self.assertReply(a.reply(), 250)
        drain(a)
        self.assertDelivered(1)


class HeldBodyServerTimeout(MMTest):
    """The internal server's own idle timeout (smtp-sink -t 1) closes the
    connection of a session whose body is still held: the dot replays the
    transaction on a new connection, and the server counts as up - it
    closed an idle connection, it did not fail one (the soak's 18
    "failures" at smtp-sink's 100 s default)."""
    backend_kind = "sink"
    sink_extra = ("-t", "1")

    def test_held_body_outlives_the_server_timeout(self):
        c = in_data(self, "127.0.38.1")
        c.send(b"Subject: outlived\r\n\r\nfirst\r\n")
        mm.wait_for(lambda: "backend connection lost while the body is "
                    "held" in self.daemon.log_text(),
                    "the server closing the idle connection")
        c.send(b"second\r\n.\r\n")
        self.assertReply(c.reply(), 250)
        drain(c)
        mm.wait_for(lambda: [m for m in self.backend.messages()
                             if b"Subject: outlived" in m],
                    "sink dump")
        got = [m for m in self.backend.messages()
               if b"Subject: outlived" in m]
        self.assertEqual(len(got), 1)
        self.assertIn(b"\n\nfirst\nsecond\n", got[0])  # the dump has LF
        st = self.daemon.stats()["backend"]
        self.assertEqual((st["status"], st["failures"]), ("up", 0), st)
        self.assertNotIn("backend: down", self.daemon.log_text())


class HeldAndStreaming:
    """A held body whose connection went to a session that now streams its
    own (committed: it cannot give it back)."""
    big = b"".join(b"line %05d of a body that streams\r\n" % i
                   for i in range(800))    # > 16 KiB: it streams

    def held_then_streaming(self, base):
        a = in_data(self, "127.0.%d.1" % base)
        a.send(b"Subject: held\r\n\r\nfirst\r\n")
        b = in_data(self, "127.0.%d.2" % base, "alice@example.com")
        b.send(b"Subject: streaming\r\n\r\n" + self.big)
        mm.wait_for(lambda: b"line 00500" in self.backend.all_raw(),
                    "the big body streaming")
        return a, b


class SlowDataWait(HeldAndStreaming, MMTest):
    """After the dot, a released body waits for a slot that no one can give
    back now, and gets it when that session is done."""
    conf = {"max_backend_connections": "1"}

    def test_waits_for_the_streaming_session(self):
        a, b = self.held_then_streaming(35)
        a.send(b"second\r\n.\r\n")     # waits for b's connection
        b.send(b".\r\n")
        self.assertReply(b.reply(), 250)
        drain(b)                            # parks: a takes it
        self.assertReply(a.reply(), 250)
        drain(a)
        got = self.assertDelivered(2)
        self.assertEqual(len([m for _, m in got
                              if b"first\r\nsecond\r\n" in m]), 1)


class SlowDataWaitTimeout(HeldAndStreaming, MMTest):
    """... and a 451 after timeout_backend when it does not come."""
    conf = {"max_backend_connections": "1", "timeout_backend": "1s"}

    def test_no_slot_within_timeout_backend_is_451(self):
        a, b = self.held_then_streaming(36)
        a.send(b"second\r\n.\r\n")
        r = a.reply()
        self.assertReply(r, 451)
        self.assertStartsWith(r, "451 4.3.2 Too many sessions to the "
                              "internal mail server")
        b.send(b".\r\n")
        self.assertReply(b.reply(), 250)
        drain(b)
        drain(a)
        got = self.assertDelivered(1)
        self.assertIn(b"Subject: streaming", got[0][1])


class SinkBackend(MMTest):
    """Postfix's smtp-sink behind the daemon, swaks and smtplib in front."""
    backend_kind = "sink"

    def test_swaks_through_to_sink(self):
        before = len(self.backend.messages())
        rc, out = mm.swaks(self.daemon.port, "--to", "bob@example.com",
                           "--from", "a@sender.example",
                           "--header", "Subject: to the sink")
        self.assertEqual(rc, 0, out)
        mm.wait_for(lambda: len(self.backend.messages()) == before + 1,
                    "sink dump")
        self.assertEqual(len([m for m in self.backend.messages()
                              if b"Subject: to the sink" in m]), 1)

    def test_many_messages_each_once(self):
        import smtplib
        s = smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=20,
                         local_hostname="client.example.net")
        before = len(self.backend.messages())
        for i in range(20):
            s.sendmail("a@sender.example", ["bob@example.com"],
                       message(subject="seq-%d" % i).encode())
        s.quit()
        mm.wait_for(lambda: len(self.backend.messages()) == before + 20,
                    "20 sink dumps")
        subjects = sorted(m for msg in self.backend.messages()
                          for m in msg.split(b"\n") if m.startswith(
                              b"Subject: seq-"))
        self.assertEqual(len(subjects), 20)
        self.assertEqual(len(set(subjects)), 20)


class SmtpSource(MMTest):
    """Postfix's smtp-source as the client: 10 parallel sessions, 300
    messages, each recipient numbered (-N): every one at the backend exactly
    once."""

    def test_smtp_source_each_once(self):
        if mm.SMTP_SOURCE is None:
            self.skipTest("smtp-source not installed")
        import subprocess
        p = subprocess.run([mm.SMTP_SOURCE, "-s", "10", "-m", "300", "-N",
                            "-l", "3000", "-f", "src@sender.example",
                            "-t", "user@example.org", "-M",
                            "client.example.net",
                            "127.0.0.1:%d" % self.daemon.port],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.backend.wait_closed()
        msgs = self.backend.messages()
        rcpts = [r for meta, _ in msgs for r in meta["rcpt_tos"]]
        self.assertEqual(len(msgs), 300)
        self.assertEqual(len(set(rcpts)), 300, sorted(rcpts)[:5])
        st = self.daemon.stats()
        self.assertGreaterEqual(st["accepted"], 300)


class Chaos(MMTest):
    """The invariant behind every backend failure mode at once: with
    sessions in parallel and the backend's behaviour changing from one
    connection to the next, a message the client got 250 for is at the
    backend exactly once, and any other message is not there at all.
    The failure modes apply per backend connection, so this class turns
    connection reuse off: every client session meets a fresh mode."""
    conf = {"timeout_backend": "2s", "backend_reuse": "0"}
    expect_failures = True
    MODES = [{}, {}, {}, {"fail_stage": "banner"}, {"fail_stage": "ehlo"},
             {"fail_stage": "mail"}, {"fail_stage": "rcpt"},
             {"fail_stage": "data"}, {"fail_stage": "dot"},
             {"drop": "mid-data"}, {"drop": "after-dot"},
             {"slow_stage": "dot", "slow_seconds": 5},
             {"slow_stage": "mail", "slow_seconds": 5},
             {"dot_reply": "250-2.0.0 multi\r\n250 2.0.0 line"}]

    def test_250_means_exactly_once(self):
        import random
        import threading
        rnd = random.Random(2)
        results = []
        lock = threading.Lock()

        def worker(w):
            for i in range(10):
                with lock:
                    self.backend.set_mode(**rnd.choice(self.MODES))
                c = Client(self.daemon.port, src="127.0.30.%d" % (w + 1))
                try:
                    c.hello()
                    for j in range(2):
                        subj = "chaos-%d-%d-%d" % (w, i, j)
                        try:
                            r = c.transaction("a@sender.example",
                                              ["bob@example.com"],
                                              message(subject=subj))
                            code = r.code
                        except (mm.Closed, OSError):
                            code = None
                        with lock:
                            results.append((subj, code))
                        if code is None or code == 421:
                            break
                    try:
                        c.cmd("QUIT")
                    except (mm.Closed, OSError):
                        pass
                except (mm.Closed, OSError, mm.HarnessError):
                    pass
                finally:
                    c.close()

        threads = [threading.Thread(target=worker, args=(w,))
                   for w in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        self.backend.wait_closed()
        got = {}
        for meta, content in self.backend.messages():
            for line in content.split(b"\r\n"):
                if line.startswith(b"Subject: chaos-"):
                    s = line[9:].decode()
                    got[s] = got.get(s, 0) + 1
        self.assertTrue(any(c == 250 for _, c in results), results)
        if self.expect_failures:
            self.assertTrue(any(c != 250 for _, c in results), results)
        for subj, code in results:
            want = 1 if code == 250 else 0
            self.assertEqual(got.get(subj, 0), want,
                             "%s: client got %s, backend has %d" % (
                                 subj, code, got.get(subj, 0)))
        self.assertEqual(sum(got.values()),
                         len([1 for _, c in results if c == 250]))


class ChaosWithReuse(Chaos):
    """The same invariant with backend connections reused across client
    sessions (backend_reuse, the default): a parked connection may carry
    any session's message, and still each 250 is exactly one delivery."""
    conf = {"timeout_backend": "2s", "backend_reuse": "2s"}
    expect_failures = False

    test_250_means_exactly_once = None  # runs under its own name below

    def test_250_means_exactly_once_with_reuse(self):
        Chaos.test_250_means_exactly_once(self)


class BackendHealth(MMTest):
    """`stats` says whether the internal mail server is reachable: from
    what the sessions' connections saw (backend.c), down with the reason
    and up again once it answers."""

    def attempt(self, d):
        c = Client(d.port)
        c.hello()
        c.cmd("MAIL FROM:<a@sender.example>")
        r = c.cmd("RCPT TO:<bob@example.com>")
        c.close()
        return r

    def test_down_then_up(self):
        b = Backend()                   # its port, nothing listening yet
        d = Daemon(b.port)
        d.start()
        try:
            st = d.stats()["backend"]
            self.assertEqual((st["status"], st["reachable"]),
                             ("unknown", None), st)
            self.assertEqual(self.attempt(d).code, 451)
            st = d.stats()["backend"]
            self.assertEqual((st["status"], st["reachable"]),
                             ("down", False), st)
            self.assertEqual(st["last_error"],
                             "connect: connection refused", st)
            self.assertGreaterEqual(st["failures"], 1)
            self.assertGreater(st["last_failure"], 0)
            self.assertEqual(st["last_ok"], 0)
            self.assertIn("backend: down: connect: connection refused",
                          d.log_text())
            b.start()
            self.assertEqual(self.attempt(d).code, 250)
            st = d.stats()["backend"]
            self.assertEqual((st["status"], st["reachable"]),
                             ("up", True), st)
            self.assertGreaterEqual(st["last_ok"], st["last_failure"])
            self.assertIn("backend: up again", d.log_text())
        finally:
            d.cleanup()
            b.stop()
