"""test_greylist.py - greylisting end to end (SPEC.md RCPT row, issue 8):
the cycle with a short delay, /24 grouping, sender normalisation, the
allowlist, mailmoatctl greylist list|del|flush, stats keys, the state
across SIGTERM and SIGKILL after a flush, action_greylist = log,
auto-allow, renewal and expiry (greylist_lifetime), greylist_window.
IPv6 /64 and the PTR-domain key: test_greylist_keys; a real Postfix as
the client: test_greylist_postfix."""
import os
import re
import signal
import time
import unittest

from base import MMTest, mm, message

GREY = "451 4.7.1 Greylisting in action, please come back in a few minutes"
# The daemon's greylist clock counts whole seconds: with a delay of 2s a
# retry less than a second after the first attempt is always too early
# (with 1s it passed when the two straddled a second boundary).
DELAY = 2


class Greylist(MMTest):
    conf = {"action_greylist": "reject", "greylist_delay": "%ds" % DELAY,
            "state_flush": "1s"}
    daemon_kw = {"allowlist": "127.0.9.9\n"}

    def rcpt(self, src, sender, rcpt="bob@example.com"):
        c = self.greeted(src=src)
        self.assertEqual(c.cmd("MAIL FROM:<%s>" % sender).code, 250)
        r = c.cmd("RCPT TO:<%s>" % rcpt)
        return c, r

    def wait_delay(self):
        # the delay is on the daemon's clock: whole seconds, so one more
        time.sleep(DELAY + 1.1)

    def test_cycle_and_waited(self):
        c, r = self.rcpt("127.0.2.1", "cycle@sender.example")
        self.assertReply(r, 451, GREY)
        c.cmd("QUIT")
        c, r = self.rcpt("127.0.2.1", "cycle@sender.example")
        self.assertReply(r, 451, GREY)       # too early
        c.cmd("QUIT")
        self.wait_delay()
        c = self.greeted(src="127.0.2.1")
        self.assertReply(c.transaction("cycle@sender.example",
                                       ["bob@example.com"], message()), 250)
        self.assertDelivered(1)
        self.assertIn("waited=", self.daemon.log_text())
        # passed: at once next time
        c2 = self.greeted(src="127.0.2.1")
        self.assertReply(c2.transaction("cycle@sender.example",
                                        ["bob@example.com"], message()), 250)

    def test_network_grouping(self):
        c, r = self.rcpt("127.0.3.1", "net@sender.example")
        self.assertReply(r, 451, GREY)
        self.wait_delay()
        # another address of the same /24 retries: passes
        c, r = self.rcpt("127.0.3.77", "net@sender.example")
        self.assertEqual(r.code, 250, r)
        # another /24: a new triplet
        c, r = self.rcpt("127.0.4.1", "net@sender.example")
        self.assertReply(r, 451, GREY)

    def test_sender_normalisation(self):
        c, r = self.rcpt("127.0.5.1", "prvs=1234abcdef=norm@sender.example")
        self.assertReply(r, 451, GREY)
        self.wait_delay()
        c, r = self.rcpt("127.0.5.1", "Norm+list@Sender.Example")
        self.assertEqual(r.code, 250, r)

    @unittest.expectedFailure
    def test_known_triplet_logs_its_own_wait(self):
        """A triplet that passed days ago must not log "waited=" as the
        time since its first attempt on every later mail (an admin reads
        it as this mail's delay).  Known bug in proxy/greylist.c
        (greylist_lookup: *waited = now - first for a passed triplet),
        owned by the 'gl' helper: remove expectedFailure with the fix."""
        src, snd = "127.0.17.1", "known@sender.example"
        c, r = self.rcpt(src, snd)
        self.assertReply(r, 451, GREY)
        self.wait_delay()
        c, r = self.rcpt(src, snd)
        self.assertEqual(r.code, 250, r)
        time.sleep(2.1)
        c, r = self.rcpt(src, snd)
        self.assertEqual(r.code, 250, r)
        waits = [int(w) for w in re.findall(
            r"greylist: id=\S+ client=127\.0\.17\.1 pass waited=(\d+)s",
            self.daemon.log_text())]
        self.assertEqual(len(waits), 2, waits)
        self.assertLessEqual(waits[1], waits[0], waits)

    def test_pass_line_escapes_the_sender(self):
        # a quoted local part with a quote, a space and '=' in it: the
        # pass line still parses as key=value pairs
        snd = '"odd \\" x=y"@sender.example'
        c, r = self.rcpt("127.0.10.1", snd)
        self.assertReply(r, 451, GREY)
        self.wait_delay()
        c, r = self.rcpt("127.0.10.1", snd)
        self.assertEqual(r.code, 250, r)
        lines = [l for l in self.daemon.log_text().splitlines()
                 if "greylist: " in l and "client=127.0.10.1 " in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].endswith(
            ' triplet="127.0.10.0/24 odd \\x22 x=y@sender.example '
            'bob@example.com"'), lines[0])
        kv = mm.parse_kv(lines[0])
        self.assertTrue(kv["triplet"].endswith(" bob@example.com"), kv)
        self.assertEqual(kv["client"], "127.0.10.1")

    def test_allowlisted_client_skips(self):
        c, r = self.rcpt("127.0.9.9", "allow@sender.example")
        self.assertEqual(r.code, 250, r)

    def test_ctl_list_del_flush_and_stats(self):
        c, r = self.rcpt("127.0.6.1", "ctl@sender.example")
        self.assertReply(r, 451, GREY)
        out = self.daemon.ctl("greylist", "list", "ctl@").stdout
        self.assertIn("127.0.6.0/24 ctl@sender.example bob@example.com "
                      "pending", out)
        st = self.daemon.stats()
        for k in ("greylist_entries", "greylist_pending", "greylist_passed",
                  "auto_allowed"):
            self.assertIn(k, st)
        self.assertGreaterEqual(st["greylist_pending"], 1)
        p = self.daemon.ctl("greylist", "del", "127.0.6.0/24",
                            "ctl@sender.example", "bob@example.com")
        self.assertIn("deleted", p.stdout)
        self.assertNotIn("ctl@", self.daemon.ctl("greylist", "list").stdout)
        p = self.daemon.ctl("greylist", "del", "nope", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.daemon.ctl("greylist", "flush")
        self.assertEqual(self.daemon.stats()["greylist_entries"], 0)


class GreylistPersist(MMTest):
    conf = {"action_greylist": "reject", "greylist_delay": "%ds" % DELAY,
            "state_flush": "1s"}

    def passed_triplet(self, src, sender):
        c = self.greeted(src=src)
        c.cmd("MAIL FROM:<%s>" % sender)
        self.assertReply(c.cmd("RCPT TO:<bob@example.com>"), 451, GREY)
        c.cmd("QUIT")
        time.sleep(DELAY + 1.1)
        c = self.greeted(src=src)
        c.cmd("MAIL FROM:<%s>" % sender)
        self.assertEqual(c.cmd("RCPT TO:<bob@example.com>").code, 250)
        c.cmd("QUIT")

    def still_passes(self, src, sender):
        c = self.greeted(src=src)
        c.cmd("MAIL FROM:<%s>" % sender)
        self.assertEqual(c.cmd("RCPT TO:<bob@example.com>").code, 250)
        c.cmd("QUIT")

    def test_sigterm_keeps_state(self):
        self.passed_triplet("127.0.7.1", "term@sender.example")
        self.assertEqual(self.daemon.stop(), 0)
        self.daemon.start()
        self.still_passes("127.0.7.1", "term@sender.example")

    def test_sigkill_after_flush_keeps_state(self):
        self.passed_triplet("127.0.8.1", "kill@sender.example")
        jnl = os.path.join(self.daemon.conf["state_dir"], "store.jnl")
        before = os.path.getsize(jnl) if os.path.exists(jnl) else 0
        # the next flush (state_flush = 1s) writes the pass
        mm.wait_for(lambda: os.path.exists(jnl) and
                    os.path.getsize(jnl) > before, "a flush")
        time.sleep(1.5)
        self.daemon.proc.send_signal(signal.SIGKILL)
        self.daemon.proc.wait()
        self.daemon.start()
        self.still_passes("127.0.8.1", "kill@sender.example")


class PassCache(MMTest):
    """pass_cache_ttl: a client that waited out the greet pause gets its
    banner at once next time; another client still waits."""
    conf = {"greet_pause": "4s", "pass_cache_ttl": "1d"}

    def test_second_connection_greeted_at_once(self):
        c = self.client(src="127.0.11.1")
        self.assertEqual(c.banner().code, 220)   # after the pause
        c.cmd("QUIT")
        c2 = self.client(src="127.0.11.1")
        self.assertTrue(c2.pending(wait=2.0)[0], "no banner within 2s")
        self.assertEqual(c2.banner().code, 220)
        c3 = self.client(src="127.0.11.2")
        self.assertFalse(c3.pending(wait=1.0)[0], "unknown client not paused")


class LogOnly(MMTest):
    """action_greylist = log: every mail goes through at once, and the log
    and the decision history say what greylisting would have done - the
    triplet is recorded as if it had been refused, so a later attempt is
    judged as a retry (too early, or passed with waited=)."""
    # long enough that the quick second attempt is always too early
    LDELAY = 5
    conf = {"action_greylist": "log", "greylist_delay": "%ds" % LDELAY}

    def send(self, src, sender):
        c = self.greeted(src=src)
        r = c.transaction(sender, ["bob@example.com"], message())
        c.cmd("QUIT")
        return r

    def grey_log(self, src):
        return self.daemon.decisions(client=src, reason="greylist")

    def test_log_records_would_be_decisions(self):
        src, snd = "127.0.12.1", "logged@sender.example"
        self.assertEqual(self.send(src, snd).code, 250)
        d = self.grey_log(src)
        self.assertEqual([(x["action"], x["detail"]) for x in d],
                         [("log", "new net=127.0.12.0/24")], d)
        # in the decision history too
        hist = self.daemon.ctl("decisions").stdout
        self.assertRegex(hist, r"(?m)^.* id=%s client=127\.0\.12\.1 .*"
                         r'action=log reason=greylist '
                         r'detail="new net=127\.0\.12\.0/24"$' % d[0]["id"])
        # the would-be state: the triplet waits
        self.assertIn("127.0.12.0/24 logged@sender.example bob@example.com "
                      "pending", self.daemon.ctl("greylist", "list").stdout)
        # at once again: it would have been too early
        self.assertEqual(self.send(src, snd).code, 250)
        d = self.grey_log(src)
        self.assertEqual(len(d), 2, d)
        self.assertEqual(d[1]["action"], "log", d)
        self.assertRegex(d[1]["detail"], r"^too early: waited=\d+s of %ds "
                         r"net=127\.0\.12\.0/24$" % self.LDELAY)
        # after the delay: it would have passed; no greylist decision
        self.wait_delay()
        self.assertEqual(self.send(src, snd).code, 250)
        self.assertEqual(len(self.grey_log(src)), 2, self.grey_log(src))
        self.assertRegex(self.daemon.log_text(),
                         r'greylist: id=\S+ client=127\.0\.12\.1 pass '
                         r'waited=\d+s triplet="127\.0\.12\.0/24 '
                         r'logged@sender\.example bob@example\.com"')
        self.assertIn("127.0.12.0/24 logged@sender.example bob@example.com "
                      "passed", self.daemon.ctl("greylist", "list").stdout)
        self.assertDelivered(3)

    def wait_delay(self):
        time.sleep(self.LDELAY + 1.1)


class AutoAllow(MMTest):
    """greylist_auto_allow: after that many deliveries a client network
    skips greylisting (a new triplet passes at once, logged as
    auto_allowed); another network still waits."""
    conf = {"action_greylist": "tempfail", "greylist_delay": "%ds" % DELAY,
            "greylist_auto_allow": "2"}

    def send(self, src, sender):
        c = self.greeted(src=src)
        r = c.transaction(sender, ["bob@example.com"], message())
        c.cmd("QUIT")
        return r

    def test_network_auto_allowed_after_deliveries(self):
        src = "127.0.13.1"
        self.assertReply(self.send(src, "first@sender.example"), 451, GREY)
        time.sleep(DELAY + 1.1)
        self.assertEqual(self.send(src, "first@sender.example").code, 250)
        self.assertEqual(self.daemon.stats()["auto_allowed"], 0)
        self.assertEqual(self.send(src, "first@sender.example").code, 250)
        self.assertIn("greylist: 127.0.13.0/24 auto-allowed after 2 "
                      "deliveries", self.daemon.log_text())
        self.assertEqual(self.daemon.stats()["auto_allowed"], 1)
        # a new triplet of that network: at once, and the log says why
        self.assertEqual(self.send("127.0.13.50", "new@other.example").code,
                         250)
        self.assertRegex(self.daemon.log_text(),
                         r'greylist: id=\S+ client=127\.0\.13\.50 pass '
                         r'auto_allowed triplet="127\.0\.13\.0/24 '
                         r'new@other\.example bob@example\.com"')
        self.assertEqual(self.daemon.decisions(client="127.0.13.50",
                                               reason="greylist"), [])
        # another network: greylisted
        self.assertReply(self.send("127.0.14.1", "new@other.example"), 451,
                         GREY)
        self.assertDelivered(3)


def listed(daemon, pattern):
    """listed - the greylist list lines holding pattern."""
    return [l for l in daemon.ctl("greylist", "list", pattern)
            .stdout.splitlines() if pattern in l]


class Lifetime(MMTest):
    """greylist_lifetime: each delivery renews a passed triplet (it keeps
    passing well past one lifetime while mail flows); once mail stops it
    expires and the next attempt is a new triplet."""
    LIFE = 6
    conf = {"action_greylist": "tempfail", "greylist_delay": "%ds" % DELAY,
            "greylist_lifetime": "%ds" % LIFE, "greylist_auto_allow": "0"}

    def send(self, src, sender):
        c = self.greeted(src=src)
        r = c.transaction(sender, ["bob@example.com"], message())
        c.cmd("QUIT")
        return r

    def test_renewed_by_deliveries_then_expires(self):
        src, snd = "127.0.15.1", "life@sender.example"
        self.assertReply(self.send(src, snd), 451, GREY)
        time.sleep(DELAY + 1.1)
        self.assertEqual(self.send(src, snd).code, 250)
        # a delivery a second for more than a lifetime and a half: each
        # renews the triplet, so each passes
        n = 1
        start = time.monotonic()
        while time.monotonic() - start < self.LIFE * 1.5:
            time.sleep(1)
            r = self.send(src, snd)
            self.assertEqual(r.code, 250, "delivery %d, %.1fs after the "
                             "pass: %r" % (n + 1, time.monotonic() - start,
                                           r))
            n += 1
        self.assertRegex("\n".join(listed(self.daemon, "life@")),
                         r"127\.0\.15\.0/24 life@sender\.example "
                         r"bob@example\.com passed age=\d+s deliveries=%d"
                         % n)
        self.assertDelivered(n)
        # mail stops: the triplet expires one lifetime after the last
        mm.wait_for(lambda: not listed(self.daemon, "life@"),
                    "the passed triplet to expire", timeout=self.LIFE * 10)
        r = self.send(src, snd)
        self.assertReply(r, 451, GREY)
        self.assertEqual(self.daemon.decisions(id=r.id)[-1]["detail"],
                         "new net=127.0.15.0/24")


class Window(MMTest):
    """greylist_window: a first attempt whose retry comes after the window
    is forgotten; that retry starts over as a new triplet."""
    conf = {"action_greylist": "tempfail", "greylist_delay": "%ds" % DELAY,
            "greylist_window": "2s"}

    def test_retry_after_window_starts_over(self):
        src, snd = "127.0.16.1", "late@sender.example"
        c = self.greeted(src=src)
        c.cmd("MAIL FROM:<%s>" % snd)
        self.assertReply(c.cmd("RCPT TO:<bob@example.com>"), 451, GREY)
        c.cmd("QUIT")
        self.assertTrue(listed(self.daemon, "late@"))
        mm.wait_for(lambda: not listed(self.daemon, "late@"),
                    "the pending triplet to expire", timeout=60)
        c = self.greeted(src=src)
        c.cmd("MAIL FROM:<%s>" % snd)
        r = c.cmd("RCPT TO:<bob@example.com>")
        self.assertReply(r, 451, GREY)
        self.assertEqual(self.daemon.decisions(id=r.id)[-1]["detail"],
                         "new net=127.0.16.0/24")
