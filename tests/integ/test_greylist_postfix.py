"""test_greylist_postfix.py - a real MTA as the greylisted client (issue 8
Tests): Debian's Postfix as a second instance (tests/lib/postfix.py: its
own config directory, queue and data dirs, no chroot, retry timers of a
second or two) submits a message, mailmoat answers its RCPT with the
greylisting 451, Postfix defers and retries by itself, and the message
arrives at the backend exactly once.  A second message of the same
triplet then passes at its first attempt."""
import os
import re
import sys
import time
import unittest

from base import MMTest, mm

import postfix

GREY = "451 4.7.1 Greylisting in action, please come back in a few minutes"
DELAY = 2
# Postfix retries every second or two; greylist_delay is 2s: a few
# retries at most.  The limit only stops a broken run.
LIMIT = 120.0

OK, WHY = postfix.available()


def text(msgid, subject):
    return ("From: alice@far.test\nTo: bob@example.com\nSubject: %s\n"
            "Message-ID: %s\n\nhello from a real MTA\n" % (subject, msgid))


@unittest.skipUnless(OK, WHY)
class RealPostfix(MMTest):
    conf = {"action_greylist": "tempfail",
            "greylist_delay": "%ds" % DELAY, "state_flush": "1s"}
    src = "127.0.21.1"

    def setUp(self):
        super().setUp()
        self.pf = postfix.PostfixMTA(self.daemon.port, self.src).start()
        self.addCleanup(self.pf.stop)

    def delivered(self, n):
        """delivered - Postfix's queue is empty and the backend holds n
        messages (polled: Postfix retries on its own timers)."""
        kicked = []

        def done():
            if self.pf.parked() and not kicked:
                # Postfix's own race at 1-2 s timers (tests/lib/postfix.py)
                # parked the message for 60 s: ask for the retry now
                sys.stderr.write("# postfix parked a message (qmgr: still "
                                 "being delivered): postqueue -f\n")
                self.pf.flush()
                kicked.append(1)
            return (self.pf.queue_empty() and
                    len(self.backend.messages()) >= n)
        try:
            mm.wait_for(done, "postfix to deliver through mailmoat",
                        timeout=LIMIT, step=0.2)
        except mm.HarnessError as e:
            raise AssertionError("%s; backend has %d; maillog:\n%s" % (
                e, len(self.backend.messages()), self.pf.log()[-4000:]))
        self.backend.wait_closed()
        return self.backend.messages()

    def test_greylisted_retried_delivered_once(self):
        rcpt = "bob@example.com"
        msgid = "<pf-grey.%d@far.test>" % os.getpid()
        self.pf.sendmail("alice@far.test", [rcpt], text(msgid, "grey 1"))
        got = self.delivered(1)

        # the backend: exactly one copy, the one Postfix sent
        self.assertEqual(len(got), 1, [m[0] for m in got])
        self.assertIn(msgid.encode(), got[0][1])
        self.assertEqual(got[0][0]["rcpt_tos"], [rcpt], got[0][0])

        # Postfix: deferred with our 451 at least once, then sent once
        st = self.pf.statuses(rcpt)
        deferred = [r for s, r in st if s == "deferred"]
        sent = [r for s, r in st if s == "sent"]
        self.assertTrue(deferred, "no deferral in the maillog:\n" +
                        self.pf.log())
        for r in deferred:
            self.assertIn("said: " + GREY, r)
            self.assertIn("in reply to RCPT TO command", r)
        self.assertEqual(len(sent), 1, st)
        self.assertEqual([s for s, r in st][-1], "sent", st)

        # mailmoat: a greylist tempfail for each deferral, then a pass
        # that names the wait (at least greylist_delay)
        grey = self.daemon.decisions(client=self.src, reason="greylist",
                                     **{"from": "<alice@far.test>"})
        self.assertEqual(len(grey), len(deferred), grey)
        for d in grey:
            self.assertEqual(d["action"], "tempfail", d)
            self.assertEqual(d["to"], "<%s>" % rcpt, d)
        self.assertEqual(grey[0]["detail"], "new net=127.0.21.0/24", grey)
        for d in grey[1:]:
            self.assertRegex(d["detail"], r"^too early: waited=\d+s of %ds "
                             r"net=127\.0\.21\.0/24$" % DELAY)
        passes = re.findall(r"greylist: id=\S+ client=127\.0\.21\.1 pass "
                            r"waited=(\d+)s "
                            r"triplet=\"127\.0\.21\.0/24 alice@far\.test "
                            r"bob@example\.com\"", self.daemon.log_text())
        self.assertEqual(len(passes), 1, self.daemon.log_text()[-3000:])
        self.assertGreaterEqual(int(passes[0]), DELAY)
        acc = self.daemon.decisions(client=self.src, action="accept",
                                    **{"from": "<alice@far.test>"})
        self.assertEqual(len(acc), 1, acc)

        # the triplet passed: the next message goes through at once
        self.backend.clear()
        msgid2 = "<pf-grey2.%d@far.test>" % os.getpid()
        self.pf.sendmail("alice@far.test", [rcpt], text(msgid2, "grey 2"))
        got = self.delivered(1)
        self.assertEqual(len(got), 1)
        self.assertIn(msgid2.encode(), got[0][1])
        st2 = self.pf.statuses(rcpt)
        self.assertEqual([s for s, r in st2[len(st):]], ["sent"], st2)
        self.assertEqual(len(self.daemon.decisions(
            client=self.src, reason="greylist",
            **{"from": "<alice@far.test>"})), len(grey))

    def test_one_recipient_greylisted_the_other_delivered(self):
        """Greylisting is per recipient: a message for a passed triplet
        and a new one is taken for the first at once (Postfix delivers
        it) and deferred for the second, which arrives by itself later;
        each recipient gets exactly one copy."""
        snd, old, new = "carol@far.test", "alice@example.com", \
            "bob@example.com"
        # the triplet for alice passed already (same /24, another host)
        c = self.greeted(src="127.0.21.9")
        c.cmd("MAIL FROM:<%s>" % snd)
        self.assertEqual(c.cmd("RCPT TO:<%s>" % old).code, 451)
        c.cmd("QUIT")
        time.sleep(DELAY + 1.1)
        c = self.greeted(src="127.0.21.9")
        c.cmd("MAIL FROM:<%s>" % snd)
        self.assertEqual(c.cmd("RCPT TO:<%s>" % old).code, 250)
        c.cmd("QUIT")
        c.close()

        msgid = "<pf-mixed.%d@far.test>" % os.getpid()
        self.pf.sendmail(snd, [old, new], text(msgid, "mixed"))
        got = self.delivered(2)
        self.assertEqual(sorted(m[0]["rcpt_tos"][0] for m in got),
                         [old, new], [m[0] for m in got])
        self.assertEqual([len(m[0]["rcpt_tos"]) for m in got], [1, 1])
        for m in got:
            self.assertIn(msgid.encode(), m[1])
        # alice's copy went first, with bob refused in the same session
        self.assertEqual(got[0][0]["rcpt_tos"], [old])
        self.assertEqual([s for s, r in self.pf.statuses(old)], ["sent"])
        st = [s for s, r in self.pf.statuses(new)]
        self.assertIn("deferred", st)
        self.assertEqual(st.count("sent"), 1, st)
        self.assertEqual(st[-1], "sent", st)
        grey = self.daemon.decisions(client=self.src, reason="greylist",
                                     **{"from": "<%s>" % snd})
        self.assertEqual({d["to"] for d in grey}, {"<%s>" % new}, grey)
        self.assertEqual(len(grey), st.count("deferred"), grey)


if __name__ == "__main__":
    unittest.main()
