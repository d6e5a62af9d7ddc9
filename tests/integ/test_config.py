"""test_config.py - --check-config, SIGHUP reload without dropping
sessions (and keeping the old config when the new one is bad), SIGTERM
drains gracefully."""
import re
import signal

from base import MMTest, mm, message, Daemon


class CheckConfig(MMTest):
    backend_kind = None

    @classmethod
    def setUpClass(cls):
        cls.backend = None
        cls.daemon = None      # each test makes its own config

    def setUp(self):
        pass

    def tearDown(self):
        pass

    def mk(self, **kw):
        d = Daemon(mm.free_port(), **kw)
        self.addCleanup(d.cleanup)
        return d

    def test_good_config_exits_0(self):
        d = self.mk()
        rc, out = d.check_config()
        self.assertEqual(rc, 0, out)

    def test_unknown_key(self):
        d = self.mk()
        d.write_conf("frobnicate = yes\n")
        n = len(open(d.conf_path).read().splitlines())
        rc, out = d.check_config()
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"(?m)^%s:%d: " % (re.escape(d.conf_path), n))
        self.assertIn("frobnicate", out)

    def test_bad_values(self):
        for key, val in (("greet_pause", "5x"), ("max_per_ip", "many"),
                         ("action_dnsbl", "explode"),
                         ("message_size_limit", "big"),
                         ("backend", "not an address")):
            d = self.mk(**{key: val})
            rc, out = d.check_config()
            self.assertEqual(rc, 1, (key, out))
            lines = open(d.conf_path).read().splitlines()
            n = [i + 1 for i, l in enumerate(lines)
                 if l.startswith(key + " =")][0]
            self.assertRegex(out, r"(?m)^%s:%d: " % (re.escape(d.conf_path),
                                                     n), key)

    def test_bad_list_file_line(self):
        d = self.mk(blocklist="127.0.0.5\nthis is not an entry\n")
        rc, out = d.check_config()
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, r"(?m)^%s:2: " % re.escape(d.path("blocklist")))

    def test_daemon_refuses_bad_config(self):
        d = self.mk(greet_pause="5x")
        d.start(wait=False)
        rc = d.proc.wait(20)
        self.assertNotEqual(rc, 0)
        self.assertIn(d.conf_path + ":", d.log_text())


class Reload(MMTest):

    def test_sighup_keeps_sessions_and_applies_new_config(self):
        held = self.greeted()
        self.assertReply(held.cmd("MAIL FROM:<a@sender.example>"), 250)
        self.assertReply(held.cmd("RCPT TO:<bob@example.com>"), 250)
        self.daemon.conf["hostname"] = "mx2.mailmoat.test"
        self.daemon.write_conf()
        self.daemon.reload()
        c = self.client()
        self.assertEqual(c.banner().text, "220 mx2.mailmoat.test ESMTP "
                         "mailmoat")
        c.cmd("QUIT")
        # the session opened before goes on and delivers
        self.assertEqual(held.cmd("DATA").code, 354)
        held.send(message(subject="across reload").encode() + b".\r\n")
        self.assertReply(held.reply(), 250)
        held.cmd("QUIT")
        self.assertEqual(len(self.backend.messages()), 1)
        self.daemon.conf["hostname"] = mm.HOSTNAME
        self.daemon.write_conf()
        self.daemon.reload()

    def test_recipients_file_reloaded(self):
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        self.assertEqual(c.cmd("RCPT TO:<carol@example.com>").code, 550)
        c.cmd("QUIT")
        self.daemon.write_file("recipients", mm.DEFAULT_RECIPIENTS +
                               "carol@example.com\n")
        self.daemon.reload()
        c = self.greeted()
        c.cmd("MAIL FROM:<a@sender.example>")
        self.assertReply(c.cmd("RCPT TO:<carol@example.com>"), 250)
        c.cmd("QUIT")
        self.daemon.write_file("recipients", mm.DEFAULT_RECIPIENTS)
        self.daemon.reload()

    def test_bad_config_on_reload_keeps_old(self):
        self.daemon.write_conf("this line is broken\n")
        n = len(self.daemon.log_text())
        self.daemon.signal(signal.SIGHUP)
        mm.wait_for(lambda: self.daemon.conf_path in
                    self.daemon.log_text()[n:], "reload error logged")
        self.assertTrue(self.daemon.alive())
        c = self.client()
        self.assertEqual(c.banner().text, "220 %s ESMTP mailmoat"
                         % mm.HOSTNAME)
        self.assertReply(c.cmd("EHLO client.example.net"), 250)
        c.cmd("QUIT")
        self.daemon.write_conf()
        self.daemon.reload()


class Drain(MMTest):

    def test_sigterm_drains(self):
        held = self.greeted()
        self.assertReply(held.cmd("MAIL FROM:<a@sender.example>"), 250)
        self.assertReply(held.cmd("RCPT TO:<bob@example.com>"), 250)
        self.assertEqual(held.cmd("DATA").code, 354)
        held.send(b"Subject: in flight\r\n\r\nfirst half\r\n")
        self.daemon.signal(signal.SIGTERM)
        # no new connections once draining
        mm.wait_for(lambda: self.daemon.port not in mm._listening_ports(),
                    "listener closed")
        # the transaction in flight completes and is delivered
        held.send(b"second half\r\n.\r\n")
        r = held.reply()
        self.assertReply(r, 250)
        try:
            held.cmd("QUIT")
        except mm.Closed:
            pass
        rc = self.daemon.proc.wait(40)
        self.assertEqual(rc, 0, self.daemon.log_text()[-2000:])
        (meta, content), = self.backend.messages()
        self.assertIn(b"first half\r\nsecond half\r\n", content)

    def tearDown(self):
        pass


class Persist(MMTest):
    """SPEC.md: SIGTERM drains and saves state; counters persist in
    state_dir (config comment of state_dir)."""

    def test_counters_survive_restart(self):
        c = self.greeted()
        self.assertReply(c.transaction("a@sender.example",
                                       ["bob@example.com"], message()), 250)
        c.cmd("MAIL FROM:<a@sender.example>")
        self.assertEqual(c.cmd("RCPT TO:<x@elsewhere.test>").code, 550)
        c.cmd("QUIT")
        before = mm.wait_for(lambda: (lambda s: s if s["accepted"] >= 1 and
                                      s["connections_active"] == 0 else
                                      None)(self.daemon.stats()),
                             "counted")
        self.assertEqual(self.daemon.stop(), 0)
        self.daemon.start()
        after = self.daemon.stats()
        self.assertGreaterEqual(after["accepted"], before["accepted"])
        self.assertGreaterEqual(after["rejected"], before["rejected"])
