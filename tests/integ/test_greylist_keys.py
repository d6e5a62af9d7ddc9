"""test_greylist_keys.py - the client-network part of the greylisting
triplet with real peers (issue 8: "/64 grouping; the PTR-domain key"):

- Ipv6Grouping: in a network namespace this module makes for itself
  (unshare(CLONE_NEWNET): loopback up, a few ULA addresses on lo), the
  daemon, its backend, nsd and the clients all speak IPv6; a retry from
  another address of the same /64 passes, an address of another /64 is
  greylisted again; a pool host with a forward-confirmed ip6.arpa PTR
  is keyed by its registered domain (its other host, another /64,
  passes).
- PtrDomain: nsd serves PTR and A records; a client whose PTR is
  forward-confirmed is keyed by the registered domain of that name, so
  the retry of a mail pool from another IP in another /24 passes; a name
  of another domain, or a PTR that is not confirmed, is keyed by its /24.
"""
import ctypes
import errno
import os
import subprocess
import time
import unittest

from base import MMTest, mm

GREY = "451 4.7.1 Greylisting in action, please come back in a few minutes"
DELAY = 1
CLONE_NEWNET = 0x40000000


def wait_delay():
    # greylist_delay is on the daemon's whole-second clock: one more
    time.sleep(DELAY + 1.1)


class NetNs:
    """NetNs - move this process (its main thread, and so every child it
    starts) into a new, anonymous network namespace, and back.  Nothing
    is named: the namespace goes when its last process does."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.home = None

    def enter(self):
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        if self.libc.unshare(CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            os.close(self.home)
            self.home = None
            raise OSError(e, "unshare(CLONE_NEWNET): " + os.strerror(e))

    def ip(self, *args):
        subprocess.run(["ip"] + list(args), check=True,
                       capture_output=True, timeout=mm.GUARD)

    def leave(self):
        if self.home is None:
            return
        if self.libc.setns(self.home, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns back: " + os.strerror(e))
        os.close(self.home)
        self.home = None


NET_A = "fd6d:8:0:1"
NET_B = "fd6d:8:0:2"
ADDRS = [NET_A + "::a", NET_A + "::b", NET_A + ":ffff:ffff:ffff:fffe",
         NET_B + "::a"]
# two hosts of one pool in different /64s, forward-confirmed over
# ip6.arpa / AAAA
POOL6 = ["fd6d:8:0:5::25", "fd6d:8:0:6::25"]


def nibbles(addr):
    """nibbles - the ip6.arpa name of an IPv6 address."""
    import ipaddress
    return ipaddress.IPv6Address(addr).reverse_pointer


def zones6():
    z = {"pool6.test": ["mx1 AAAA %s" % POOL6[0], "mx2 AAAA %s" % POOL6[1]],
         "8.0.0.0.d.6.d.f.ip6.arpa": []}
    for i, a in enumerate(POOL6):
        z["8.0.0.0.d.6.d.f.ip6.arpa"].append(
            "%s. PTR mx%d.pool6.test." % (nibbles(a), i + 1))
    return z


class KeysBase(MMTest):
    conf = {"action_greylist": "tempfail", "greylist_delay": "%ds" % DELAY}

    def rcpt(self, src, sender, host="127.0.0.1"):
        c = Client6(self, src, host)
        c.hello()
        self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender).code, 250)
        r = c.cmd("RCPT TO:<bob@example.com>")
        c.cmd("QUIT")
        return r


def Client6(test, src, host):
    c = mm.Client(test.daemon.port, host=host, src=src)
    test.addCleanup(c.close)
    return c


class Ipv6Grouping(KeysBase):
    daemon_kw = {"ipv6": True}
    # rdns in log mode fills the confirmed PTR without refusing anyone
    conf = dict(KeysBase.conf, action_rdns="log", dns_timeout="3s")

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("a network namespace needs root")
        cls.ns = NetNs()
        try:
            cls.ns.enter()
        except OSError as e:
            if e.errno in (errno.EPERM, errno.ENOSYS, errno.EINVAL):
                raise unittest.SkipTest(str(e))
            raise
        try:
            cls.ns.ip("link", "set", "lo", "up")
            for a in ADDRS + POOL6:
                cls.ns.ip("-6", "addr", "add", a + "/128", "dev", "lo",
                          "nodad")
            cls.zones = zones6()    # nsd in the namespace too
            super().setUpClass()
        except Exception:
            cls.ns.leave()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.ns.leave()

    def test_ptr_domain_key_over_ipv6(self):
        r = self.rcpt(POOL6[0], "pool@sender.example", host="::1")
        self.assertReply(r, 451, GREY)
        d = self.daemon.decisions(id=r.id, reason="greylist")[-1]
        self.assertEqual(d["ptr"], "mx1.pool6.test", d)
        self.assertEqual(d["detail"], "new net=pool6.test", d)
        wait_delay()
        # the other host, another /64, same registered domain: passes
        r = self.rcpt(POOL6[1], "pool@sender.example", host="::1")
        self.assertEqual(r.code, 250, r)
        self.assertRegex(self.daemon.log_text(),
                         r'greylist: id=\S+ client=%s pass waited=\d+s '
                         r'triplet="pool6\.test pool@sender\.example '
                         r'bob@example\.com"' % POOL6[1].replace(".", r"\."))

    def test_same_64_passes_other_64_waits(self):
        r = self.rcpt(ADDRS[0], "six@sender.example", host="::1")
        self.assertReply(r, 451, GREY)
        d = self.daemon.decisions(id=r.id, reason="greylist")
        self.assertEqual(d[-1]["client"], ADDRS[0], d)
        self.assertIn("%s::/64 six@sender.example bob@example.com pending"
                      % NET_A, self.daemon.ctl("greylist", "list",
                                               "six@").stdout)
        wait_delay()
        # the retry comes from another address of the same /64: passes
        r = self.rcpt(ADDRS[1], "six@sender.example", host="::1")
        self.assertEqual(r.code, 250, r)
        # so does the last address of that /64
        r = self.rcpt(ADDRS[2], "six@sender.example", host="::1")
        self.assertEqual(r.code, 250, r)
        # the next /64 is another network: a new triplet
        r = self.rcpt(ADDRS[3], "six@sender.example", host="::1")
        self.assertReply(r, 451, GREY)
        self.assertEqual(self.daemon.decisions(id=r.id)[-1]["detail"],
                         "new net=%s::/64" % NET_B)
        listing = self.daemon.ctl("greylist", "list", "six@").stdout
        self.assertIn("%s::/64 six@sender.example bob@example.com passed"
                      % NET_A, listing)
        self.assertIn("%s::/64 six@sender.example bob@example.com pending"
                      % NET_B, listing)
        # IPv4 in the same namespace still works (the /24 key)
        r = self.rcpt("127.0.0.1", "six@sender.example")
        self.assertReply(r, 451, GREY)


# Two hosts of one sender's pool in different /24s, forward-confirmed;
# a host of another domain; a PTR whose name does not resolve back.
PTR_ZONES = {
    "senderco.test": ["out-1.mx A 127.0.31.5", "out-2.mx A 127.0.32.7",
                      "liar A 127.0.99.99"],
    "otherco.test": ["relay A 127.0.33.9"],
    "31.0.127.in-addr.arpa": ["5 PTR out-1.mx.senderco.test."],
    "32.0.127.in-addr.arpa": ["7 PTR out-2.mx.senderco.test."],
    "33.0.127.in-addr.arpa": ["9 PTR relay.otherco.test."],
    "34.0.127.in-addr.arpa": ["1 PTR liar.senderco.test."],
}


class PtrDomain(KeysBase):

    zones = PTR_ZONES
    # rdns in log mode: its lookups fill the confirmed PTR, nobody is
    # refused for lacking one
    conf = dict(KeysBase.conf, action_rdns="log", dns_timeout="3s")

    def test_pool_retry_from_another_24_passes(self):
        r = self.rcpt("127.0.31.5", "news@senderco.test")
        self.assertReply(r, 451, GREY)
        d = self.daemon.decisions(id=r.id, reason="greylist")
        self.assertEqual(d[-1]["ptr"], "out-1.mx.senderco.test", d)
        self.assertIn("senderco.test news@senderco.test bob@example.com "
                      "pending", self.daemon.ctl("greylist", "list",
                                                 "news@").stdout)
        wait_delay()
        # the pool retries from another host, another /24, same domain
        r = self.rcpt("127.0.32.7", "news@senderco.test")
        self.assertEqual(r.code, 250, r)
        self.assertRegex(self.daemon.log_text(),
                         r'greylist: id=\S+ client=127\.0\.32\.7 pass '
                         r'waited=\d+s '
                         r'triplet="senderco\.test news@senderco\.test '
                         r'bob@example\.com"')

    def test_other_domain_and_unconfirmed_ptr_use_the_24(self):
        r = self.rcpt("127.0.31.5", "promo@senderco.test")
        self.assertReply(r, 451, GREY)
        wait_delay()
        # another domain's host: its own network, greylisted
        r = self.rcpt("127.0.33.9", "promo@senderco.test")
        self.assertReply(r, 451, GREY)
        self.assertEqual(self.daemon.decisions(id=r.id)[-1]["detail"],
                         "new net=otherco.test")
        # a PTR in the sender's domain that does not resolve back to the
        # client is no key: the /24 stands for it
        r = self.rcpt("127.0.34.1", "promo@senderco.test")
        self.assertReply(r, 451, GREY)
        d = self.daemon.decisions(id=r.id)[-1]
        self.assertEqual(d["detail"], "new net=127.0.34.0/24")
        self.assertEqual(d["ptr"], "-", d)
        listing = self.daemon.ctl("greylist", "list", "promo@").stdout
        self.assertIn("otherco.test promo@senderco.test bob@example.com "
                      "pending", listing)
        self.assertIn("127.0.34.0/24 promo@senderco.test bob@example.com "
                      "pending", listing)
        self.assertIn("senderco.test promo@senderco.test bob@example.com "
                      "pending", listing)


if __name__ == "__main__":
    unittest.main()
