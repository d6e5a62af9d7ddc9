"""test_lists.py - allowlist / blocklist: IPv4/IPv6 addresses and nets,
sender addresses and domains, from files, reloadable, and at run time
through mailmoatctl."""
import socket

from base import MMTest, message, Client

BLOCK = """# test blocklist
127.0.2.9
127.0.3.0/24
spammer@spam.test
@spamdomain.test
"""
ALLOW = """127.0.4.4
"""


def has_ipv6():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Lists(MMTest):
    conf = {"greet_pause": "1s"}
    daemon_kw = {"blocklist": BLOCK, "allowlist": ALLOW}

    def assertBlocked(self, src):
        c = self.client(src=src)
        r = c.banner()
        self.assertReply(r, 554, "554 5.7.1 We don't accept mail from your IP")
        # RFC 5321 3.1: after a 554 greeting we answer (not accept) until QUIT
        r2 = c.cmd("EHLO client.example.net")
        self.assertGreaterEqual(r2.code, 500, r2)
        c.cmd("QUIT")
        return r

    def test_blocked_ip(self):
        r = self.assertBlocked("127.0.2.9")
        d = self.daemon.wait_decision(id=r.id)
        self.assertEqual(d[-1]["client"], "127.0.2.9")
        self.assertEqual(d[-1]["action"], "reject")

    def test_blocked_cidr(self):
        self.assertBlocked("127.0.3.200")

    def test_neighbour_not_blocked(self):
        c = self.client(src="127.0.2.10")
        self.assertEqual(c.banner().code, 220)

    def test_blocked_sender_address_and_domain(self):
        for sender in ("spammer@spam.test", "anyone@spamdomain.test",
                       "SPAMMER@SPAM.TEST"):
            c = self.greeted(src="127.0.2.20")
            r = c.cmd("MAIL FROM:<%s>" % sender)
            if r.code == 250:
                r = c.cmd("RCPT TO:<bob@example.com>")
            self.assertEqual(r.code // 100, 5, (sender, r))
            self.assertIsNotNone(r.id, r)
            c.cmd("QUIT")
        self.assertEqual(self.backend.messages(), [])

    def test_allowlisted_ip_exempt_from_checks(self):
        # pregreet would reject anyone else (greet_pause 1s)
        c = self.client(src="127.0.4.4")
        c.send("EHLO client.example.net\r\n")
        b = c.reply()
        self.assertEqual(b.code, 220, b)
        self.assertEqual(c.reply().code, 250)
        r = c.transaction("a@sender.example", ["bob@example.com"], message())
        self.assertReply(r, 250)
        c.cmd("QUIT")

    def test_not_allowlisted_pregreet_rejected(self):
        c = self.client(src="127.0.4.5")
        c.send("EHLO client.example.net\r\n")
        self.assertEqual(c.reply().code, 554)

    def test_ctl_block_add_del(self):
        src = "127.0.6.6"
        self.assertEqual(self.client(src=src).banner().code, 220)
        self.daemon.ctl("block", "add", src)
        self.assertBlocked(src)
        self.daemon.ctl("block", "del", src)
        self.assertEqual(self.client(src=src).banner().code, 220)
        p = self.daemon.ctl("block", "add", "not-an-address!", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(p.stderr.strip(), "no error message")

    def test_ctl_allow_add_del(self):
        src = "127.0.4.9"
        c = self.client(src=src)
        c.send("EHLO early.example.net\r\n")
        self.assertEqual(c.reply().code, 554)
        self.daemon.ctl("allow", "add", src)
        c = self.client(src=src)
        c.send("EHLO early.example.net\r\n")
        self.assertEqual(c.reply().code, 220)
        c.cmd("QUIT")
        self.daemon.ctl("allow", "del", src)
        c = self.client(src=src)
        c.send("EHLO early.example.net\r\n")
        self.assertEqual(c.reply().code, 554)

    def test_file_reload(self):
        src = "127.0.7.7"
        self.assertEqual(self.client(src=src).banner().code, 220)
        # a session open across the reload is not dropped
        held = self.greeted(src="127.0.7.8")
        self.daemon.write_file("blocklist", BLOCK + src + "\n")
        self.daemon.reload()
        self.assertBlocked(src)
        self.assertReply(held.transaction("a@sender.example",
                                          ["bob@example.com"], message()),
                         250)
        held.cmd("QUIT")
        self.daemon.write_file("blocklist", BLOCK)
        self.daemon.reload()
        self.assertEqual(self.client(src=src).banner().code, 220)


class ListsIPv6(MMTest):
    daemon_kw = {"blocklist": "::1/128\n", "ipv6": True}

    @classmethod
    def setUpClass(cls):
        if not has_ipv6():
            raise __import__("unittest").SkipTest("no IPv6 loopback")
        super().setUpClass()

    def test_ipv6_client_blocked_ipv4_not(self):
        c = Client(self.daemon.port, host="::1")
        self.addCleanup(c.close)
        r = c.banner()
        self.assertReply(r, 554, "554 5.7.1 We don't accept mail from your IP")
        d = self.daemon.wait_decision(id=r.id)
        self.assertEqual(d[-1]["client"], "::1")
        c4 = self.client()
        self.assertEqual(c4.banner().code, 220)


class SenderAllow(MMTest):
    """A sender address or @domain in the allowlist exempts that
    transaction from the MAIL-stage checks (here: sender_tld, which needs
    no DNS)."""
    conf = {"action_sender_tld": "reject"}
    daemon_kw = {"allowlist": "@trusted.invalidtld\nboss@other.invalidtld\n"}

    def test_sender_allowlist(self):
        c = self.greeted()
        r = c.cmd("MAIL FROM:<a@other.invalidtld>")
        self.assertReply(r, 550)
        self.assertIn("invalidtld", r.text)
        for sender in ("a@trusted.invalidtld", "boss@other.invalidtld"):
            r = c.transaction(sender, ["bob@example.com"], message())
            self.assertReply(r, 250)
        c.cmd("QUIT")
        self.assertDelivered(2)


class IPv6Delivery(MMTest):
    daemon_kw = {"ipv6": True}

    @classmethod
    def setUpClass(cls):
        if not has_ipv6():
            raise __import__("unittest").SkipTest("no IPv6 loopback")
        super().setUpClass()

    def test_ipv6_client_delivers(self):
        c = Client(self.daemon.port, host="::1")
        self.addCleanup(c.close)
        c.hello()
        r = c.transaction("a@sender.example", ["bob@example.com"], message())
        self.assertReply(r, 250)
        c.cmd("MAIL FROM:<a@sender.example>")
        r = c.cmd("RCPT TO:<x@elsewhere.test>")
        d = self.daemon.wait_decision(id=r.id)
        self.assertEqual(d[-1]["client"], "::1")
        c.cmd("QUIT")
        (meta, content), = self.assertDelivered(1)
        # the Received header names the IPv6 client
        self.assertRegex(content.split(b"\r\n\r\n")[0],
                         rb"(?i)Received: from [^\r]*\[(IPv6:)?::1\]")
