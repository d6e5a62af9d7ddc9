"""test_recipients.py - only local_domains, only known recipients, never an
open relay (percent hack, source routes, quoted '@', bang paths)."""
from base import MMTest, message


class Recipients(MMTest):

    def rcpt(self, addr, sender="a@sender.example"):
        c = self.greeted()
        self.assertReply(c.cmd("MAIL FROM:<%s>" % sender), 250)
        r = c.cmd("RCPT TO:%s" % addr)
        c.cmd("QUIT")
        return r

    def test_listed_recipient(self):
        self.assertReply(self.rcpt("<alice@example.com>"), 250)

    def test_domain_case_insensitive(self):
        self.assertReply(self.rcpt("<bob@EXAMPLE.Com>"), 250)

    def test_whole_domain_entry(self):
        self.assertReply(self.rcpt("<whoever@example.org>"), 250)

    def test_unknown_recipient(self):
        r = self.rcpt("<nobody@example.com>")
        self.assertReply(r, 550, "550 5.7.1 recipient <nobody@example.com> "
                         "unknown")
        d = self.daemon.wait_decision(id=r.id)
        self.assertEqual(d[-1]["action"], "reject")

    def test_relaying_denied(self):
        for addr in ("<victim@elsewhere.test>",
                     "<victim@example.com.evil.test>",
                     "<victim@sub.example.com>"):
            r = self.rcpt(addr)
            self.assertReply(r, 550, "550 5.7.1 Relaying denied")
            d = self.daemon.wait_decision(id=r.id)
            self.assertEqual(d[-1]["reason"], "relay")

    def test_relay_hacks_denied(self):
        for addr in ("<victim%elsewhere.test@example.com>",     # % hack
                     "<@example.com:victim@elsewhere.test>",    # route
                     "<@example.com,@example.org:victim@elsewhere.test>",
                     "<\"victim@elsewhere.test\"@example.com>",  # quoted @
                     "<elsewhere.test!victim@example.com>",     # bang path
                     ):
            r = self.rcpt(addr)
            self.assertReply(r, 550, "550 5.7.1 Relaying denied")
        self.assertEqual(self.backend.connections(), [])

    def test_relay_hack_on_known_local_part(self):
        # even a relay hack built on a real mailbox is refused
        r = self.rcpt("<bob%elsewhere.test@example.com>")
        self.assertReply(r, 550, "550 5.7.1 Relaying denied")

    def test_null_sender_one_recipient(self):
        c = self.greeted()
        self.assertReply(c.cmd("MAIL FROM:<>"), 250)
        self.assertReply(c.cmd("RCPT TO:<alice@example.com>"), 250)
        r = c.cmd("RCPT TO:<bob@example.com>")
        self.assertReply(r, 550)
        self.assertTrue(r.text.startswith("550 5.5.3"), r)
        self.assertEqual(c.cmd("DATA").code, 354)
        c.send(message(subject="bounce").encode() + b".\r\n")
        self.assertReply(c.reply(), 250)
        c.cmd("QUIT")
        (meta, _), = self.assertDelivered(1)
        self.assertIn(meta["mail_from"], ("", "<>"))     # aiosmtpd: "<>"
        self.assertEqual(meta["rcpt_tos"], ["alice@example.com"])

    def test_relay_denials_counted(self):
        before = self.daemon.stats()
        self.rcpt("<victim@elsewhere.test>")
        after = self.daemon.stats()
        self.assertEqual(after["rejected"], before["rejected"] + 1)
        self.assertEqual(after["reasons"].get("relay", 0),
                         before["reasons"].get("relay", 0) + 1)
