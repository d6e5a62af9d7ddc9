"""test_limits.py - connection caps, timeouts on every state, thousands of
concurrent sessions."""
import resource
import socket
import time

from base import MMTest, mm, message

TOO_MANY = "421 4.7.0 Too many connections, try again later"


class Caps(MMTest):
    conf = {"max_per_ip": "3", "max_connections": "8"}

    def setUp(self):
        super().setUp()
        # the previous test's sessions must be gone: the caps count them
        mm.wait_for(lambda: self.daemon.stats()["connections_active"] == 0,
                    "idle daemon")

    def test_per_ip_cap(self):
        held = [self.client(src="127.0.8.1") for _ in range(3)]
        for c in held:
            self.assertEqual(c.banner().code, 220)
        c = self.client(src="127.0.8.1")
        r = c.banner()
        self.assertEqual(r.code, 421, r)
        self.assertTrue(r.text.startswith(TOO_MANY), r)
        self.assertIsNotNone(r.id, "a tempfail without a session id")
        self.assertTrue(c.is_closed())
        # another address is not affected
        self.assertEqual(self.client(src="127.0.8.2").banner().code, 220)
        # a freed slot can be used again
        held[0].cmd("QUIT")
        mm.wait_for(lambda: self.daemon.stats()["connections_active"] <= 3,
                    "slot freed")
        self.assertEqual(self.client(src="127.0.8.1").banner().code, 220)

    def test_global_cap(self):
        held = []
        for i in range(8):
            c = self.client(src="127.0.9.%d" % (i + 1))
            self.assertEqual(c.banner().code, 220)
            held.append(c)
        c = self.client(src="127.0.9.100")
        r = c.banner()
        self.assertEqual(r.code, 421, r)
        self.assertTrue(r.text.startswith(TOO_MANY), r)
        for h in held:
            h.close()


class Timeouts(MMTest):
    conf = {"timeout_command": "2s", "timeout_data": "2s"}

    def expect_timeout(self, c):
        got = c.wait_closed(timeout=30)
        self.assertIn(b"421 4.4.2", got)
        self.assertRegex(got, rb"421 4\.4\.2 .* \[id=[0-9A-Z]{5}\]\r\n$")

    def test_silent_before_helo(self):
        c = self.client()
        c.banner()
        self.expect_timeout(c)

    def test_silent_after_mail(self):
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        self.expect_timeout(c)
        self.assertNothingDelivered()

    def test_silent_in_data(self):
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(b"Subject: stalled\r\n\r\npart\r\n")
        self.expect_timeout(c)
        self.assertNothingDelivered()

    def test_trickling_command_line(self):
        """One byte every 0.3 s of a line that never ends: the command
        deadline is per command, bytes do not extend it."""
        c = self.greeted()
        end = time.monotonic() + 30
        closed = False
        while time.monotonic() < end:
            try:
                c.send(b"N")
            except OSError:
                closed = True
                break
            _, closed = c.pending(wait=0.3)
            if closed:
                break
        self.assertTrue(closed, "a trickling client held its slot 30 s")


class Concurrency(MMTest):
    conf = {"max_connections": "6000", "max_per_ip": "6000"}
    N = 5000

    def test_thousands_of_sessions(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        # as many as the file descriptor limit allows (the daemon has the
        # same hard limit), up to N; "thousands" needs at least 2,000
        n = min(self.N, hard - 300)
        if n < 2000:
            self.skipTest("RLIMIT_NOFILE hard limit %d is too low" % hard)
        if soft < n + 200:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1000),
                                                        hard))
        socks = []
        try:
            for i in range(n):
                s = socket.create_connection(("127.0.0.1", self.daemon.port),
                                             timeout=20, source_address=(
                                                 "127.1.%d.%d" % (i // 250,
                                                                  i % 250 + 1),
                                                 0))
                socks.append(s)
            got = 0
            for s in socks:
                buf = b""
                while b"\r\n" not in buf:
                    d = s.recv(1024)
                    if not d:
                        break
                    buf += d
                self.assertTrue(buf.startswith(b"220 "), buf)
                s.sendall(b"EHLO client.example.net\r\n")
                got += 1
            for s in socks:
                buf = b""
                while not (b"\r\n250 " in buf or buf.startswith(b"250 ")):
                    d = s.recv(4096)
                    if not d:
                        break
                    buf += d
                self.assertIn(b"250", buf)
            st = self.daemon.stats()
            self.assertGreaterEqual(st["connections_active"], n)
            # the daemon still serves a real transaction meanwhile
            c = self.greeted(src="127.2.0.1")
            self.assertReply(c.transaction("a@sender.example",
                                           ["bob@example.com"], message()),
                             250)
            c.cmd("QUIT")
        finally:
            for s in socks:
                s.close()
        mm.wait_for(lambda: self.daemon.stats()["connections_active"] == 0,
                    "all sessions gone")


class Stress(MMTest):
    """STYLE.md 7: above the high-water mark of sessions (80 % of
    max_connections) the timeouts get short, so that idle sessions make room;
    logged on and off.  timeout_command stays at its default (5 min) here:
    a silent client is closed only because of stress mode."""
    conf = {"max_connections": "10", "max_per_ip": "10"}

    def test_short_timeouts_under_stress(self):
        held = []
        for i in range(9):
            c = self.client(src="127.0.40.%d" % (i + 1))
            self.assertEqual(c.banner().code, 220)
            held.append(c)
        mm.wait_for(lambda: "stress mode on" in self.daemon.log_text(),
                    "stress mode logged")
        # a session that came in under stress gets the short deadline
        # (sessions idle since before keep theirs in this design)
        got = held[-1].wait_closed(timeout=60)
        self.assertRegex(got, rb"421 4\.4\.2 .*\[id=[0-9A-Z]{5}\]\r\n$")
        for c in held:
            c.close()
        mm.wait_for(lambda: "stress mode off" in self.daemon.log_text(),
                    "stress mode off logged", timeout=60)
