"""base.py - the TestCase every integration module builds on.

A class sets `conf` (config keys), `daemon_kw` (Daemon keyword args),
`backend` ("aiosmtpd", "sink" or None) and, for a DNS world, `zones` (served
by a real nsd, tests/lib/dnsserver.py, whose address becomes the daemon's
`dns_servers`); setUpClass starts them once per class, setUp resets the
backend's mode and spool.
"""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))

import mm  # noqa: E402
from mm import Client, Daemon, Backend, Sink, message  # noqa: F401,E402
from dnsserver import DnsServer  # noqa: E402


class MMTest(unittest.TestCase):
    conf = {}
    daemon_kw = {}
    backend_kind = "aiosmtpd"
    sink_extra = ()                 # smtp-sink options (backend_kind sink)
    zones = None
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.backend = None
        cls.daemon = None
        cls.dns = None
        try:
            if cls.zones is not None:
                cls.dns = DnsServer(cls.zones).start()
                cls.conf = dict(cls.conf, dns_servers=cls.dns.addr)
            if cls.backend_kind == "aiosmtpd":
                cls.backend = Backend().start()
            elif cls.backend_kind == "sink":
                cls.backend = Sink(extra=cls.sink_extra).start()
            port = cls.backend.port if cls.backend else None
            cls.daemon = Daemon(port, **dict(cls.daemon_kw, **cls.conf))
            cls.daemon.start()
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        bad = None
        if cls.daemon:
            # an invariant that broke (log_panic) fails the class even
            # when every reply looked right
            cls.daemon.stop()       # leak reports come at exit
            log = cls.daemon.log_text()
            bad = [l for l in log.splitlines() if ": PANIC " in l or
                   "ERROR: AddressSanitizer" in l or
                   "ERROR: LeakSanitizer" in l or "runtime error:" in l]
            cls.daemon.cleanup()
        if cls.backend:
            cls.backend.stop()
        if getattr(cls, "dns", None):
            cls.dns.stop()
        if bad:
            raise AssertionError("daemon panicked or a sanitizer fired:\n" +
                                 "\n".join(bad[:5]))

    def setUp(self):
        if isinstance(self.backend, Backend):
            # let the previous test's backend sessions end first, so their
            # last events do not land in this test's record
            try:
                self.backend.wait_closed()
            except mm.HarnessError:
                pass
            self.backend.set_mode()
            self.backend.clear()
        self.assertTrue(self.daemon.alive(), "daemon died earlier:\n" +
                        self.daemon.log_text()[-2000:])

    def tearDown(self):
        # a daemon that crashed during a test fails that test
        if self.daemon and not self.daemon.alive():
            self.fail("daemon exited (status %s); log tail:\n%s" % (
                self.daemon.proc.returncode,
                self.daemon.log_text()[-3000:]))

    # helpers
    def client(self, src=None, **kw):
        c = Client(self.daemon.port, src=src, **kw)
        self.addCleanup(c.close)
        return c

    def greeted(self, src=None, verb="EHLO"):
        c = self.client(src)
        c.hello(verb=verb)
        return c

    def assertReply(self, reply, code, text=None, with_id=None):
        """assertReply - code, optional exact text before the id, and for
        4xx/5xx the " [id=SID]" suffix (team convention)."""
        self.assertEqual(reply.code, code, reply)
        if with_id is None:
            with_id = code >= 400
        if with_id:
            self.assertIsNotNone(reply.id, "no [id=SID] in %r" % reply)
        if text is not None:
            body = mm.ID_RE.sub("", reply.text)
            self.assertEqual(body, text, reply)

    def assertStartsWith(self, reply, prefix):
        self.assertTrue(reply.text.startswith(prefix),
                        "%r does not start with %r" % (reply, prefix))

    def assertDelivered(self, n):
        """assertDelivered - the backend took exactly n messages."""
        b = self.backend
        if isinstance(b, Backend):
            b.wait_closed() if n == 0 else None
            got = b.messages()
        else:
            got = b.messages()
        self.assertEqual(len(got), n, "backend messages: %r" % (
            [m for m in got][:3],))
        return got

    def assertNothingDelivered(self):
        """Nothing delivered: no message and no end-of-data ever reached
        the backend (the dot was held back)."""
        b = self.backend
        mm.wait_for(lambda: all(
            e["conn"] in {x["conn"] for x in b.events("lost")}
            for e in b.events("connect")), "backend connections to end")
        self.assertEqual(b.messages(), [])
        self.assertEqual(b.events("dot"), [], "backend saw end of data")
