"""test_allchecks.py - the whole chain with every DNS check on, against a
real authoritative DNS server (nsd, tests/lib/dnsserver.py): a good sender
passes with everything on; no exemption for loopback clients (a 127.x
client without PTR is refused); action = log lets through and counts."""
from base import MMTest, message


ZONES = {
    "goodsender.net": [
        # the MX host must be reachable (not loopback): 198.18/15 is the
        # benchmarking range, never connected to
        "@     MX 10 mx.goodsender.net.",
        "@     TXT \"v=spf1 ip4:127.0.20.0/24 -all\"",
        "mail  A  127.0.20.1",
        "mx    A  198.18.20.1",
    ],
    "mailmoat-bl.net": [
        "2.0.0.127 A 127.0.0.2",          # RFC 5782 test entry
        "3.23.0.127 A 127.0.0.2",         # a listed client
        "3.23.0.127 TXT \"listed for testing\"",
    ],
    "t-dialin.net": [
        "p7F001605.dip A 127.0.22.5",
    ],
    "0.127.in-addr.arpa": [
        "1.20  PTR mail.goodsender.net.",
        "5.22  PTR p7F001605.dip.t-dialin.net.",
        "3.23  PTR mail.goodsender.net.",
    ],
}

ALL_ON = {
    "greet_pause": "0",
    "dnsbl": "mailmoat-bl.net",
    "action_dnsbl": "reject", "action_rdns": "reject",
    "action_dynamic": "reject", "action_helo": "reject",
    "action_sender_tld": "reject", "action_sender_mx": "reject",
    "action_spf": "reject",
    "dns_timeout": "3s",
}


class AllChecks(MMTest):
    conf = ALL_ON

    zones = ZONES
    conf = ALL_ON

    def test_good_sender_passes_everything(self):
        c = self.client(src="127.0.20.1")
        self.assertEqual(c.banner().code, 220)
        self.assertReply(c.cmd("EHLO mail.goodsender.net"), 250)
        r = c.transaction("someone@goodsender.net", ["bob@example.com"],
                          message())
        self.assertReply(r, 250)
        c.cmd("QUIT")
        (meta, content), = self.assertDelivered(1)
        self.assertEqual(meta["mail_from"], "someone@goodsender.net")

    def test_loopback_without_ptr_refused(self):
        c = self.client(src="127.0.21.1")
        r = c.banner()
        self.assertReply(r, 550, "550 5.7.1 Your IP address does not resolve "
                         "to a hostname - no proper reverse mapping exists")
        d = self.daemon.wait_decision(id=r.id)
        self.assertEqual(d[-1]["reason"], "rdns")
        self.assertEqual(d[-1]["client"], "127.0.21.1")

    def test_dynamic_host_refused(self):
        c = self.client(src="127.0.22.5")
        r = c.banner()
        self.assertReply(r, 550, "550 5.7.1 You are a dynamic host - please "
                         "use your providers mailserver to send emails")

    def test_dnsbl_listed_refused(self):
        c = self.client(src="127.0.23.3")
        r = c.banner()
        self.assertReply(r, 554, "554 5.7.1 We don't accept mail from your "
                         "IP (listed at mailmoat-bl.net)")


class LogOnly(MMTest):
    """action_rdns = log: the PTR-less client is let through, counted."""

    zones = ZONES
    conf = {"action_rdns": "log"}

    def test_logged_not_rejected(self):
        before = self.daemon.stats()
        c = self.client(src="127.0.21.2")
        self.assertEqual(c.banner().code, 220)
        c.cmd("EHLO client.example.net")
        self.assertReply(c.transaction("a@sender.example",
                                       ["bob@example.com"], message()), 250)
        c.cmd("QUIT")
        self.assertDelivered(1)
        d = self.daemon.wait_decision(reason="rdns")
        self.assertEqual(d[-1]["action"], "log")
        self.assertEqual(d[-1]["client"], "127.0.21.2")
        after = self.daemon.stats()
        self.assertEqual(after["logged"], before["logged"] + 1)
        self.assertEqual(after["rejected"], before["rejected"])
