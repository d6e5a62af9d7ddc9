"""test_stats.py - visibility: one key=value log line per decision with the
session id that the reply carries, counters by reason, mailmoatctl stats
JSON as SPEC.md 2 says."""
import json
import subprocess

from base import MMTest, mm, message


class Stats(MMTest):

    def test_stats_json_keys(self):
        p = self.daemon.ctl("stats")
        st = json.loads(p.stdout)
        for k in ("connections_total", "connections_active", "accepted",
                  "tempfailed", "rejected", "reasons", "greylist_entries"):
            self.assertIn(k, st)
        self.assertIsInstance(st["reasons"], dict)

    def test_counters_move(self):
        b = self.daemon.stats()
        c = self.greeted()
        self.assertReply(c.transaction("a@sender.example",
                                       ["bob@example.com"], message()), 250)
        c.cmd("MAIL FROM:<a@sender.example>")
        r = c.cmd("RCPT TO:<x@elsewhere.test>")
        self.assertEqual(r.code, 550)
        r2 = c.cmd("RCPT TO:<nobody@example.com>")
        self.assertEqual(r2.code, 550)
        active = self.daemon.stats()["connections_active"]
        self.assertGreaterEqual(active, 1)
        c.cmd("QUIT")
        self.assertTrue(c.is_closed())
        a = mm.wait_for(lambda: (lambda s: s if s["connections_active"] ==
                                 b["connections_active"] else None)(
                                     self.daemon.stats()), "session counted")
        self.assertEqual(a["connections_total"], b["connections_total"] + 1)
        self.assertEqual(a["accepted"], b["accepted"] + 1)
        self.assertEqual(a["rejected"], b["rejected"] + 2)
        self.assertEqual(a["reasons"].get("relay", 0),
                         b["reasons"].get("relay", 0) + 1)
        self.assertEqual(sum(a["reasons"].values()),
                         sum(b["reasons"].values()) + 2)

    def test_log_line_per_decision(self):
        c = self.greeted(src="127.0.11.1")
        c.cmd("MAIL FROM:<a@sender.example>")
        r = c.cmd("RCPT TO:<nobody@example.com>")
        c.cmd("QUIT")
        lines = self.daemon.wait_decision(id=r.id)
        self.assertEqual(len(lines), 1, lines)
        d = lines[0]
        for k in ("id", "client", "ptr", "helo", "from", "to", "action",
                  "reason", "detail"):
            self.assertIn(k, d)
        self.assertEqual(d["client"], "127.0.11.1")
        self.assertEqual(d["helo"], "client.example.net")
        self.assertIn("a@sender.example", d["from"])
        self.assertIn("nobody@example.com", d["to"])
        self.assertEqual(d["action"], "reject")

    def test_ids_unique_and_well_formed(self):
        ids = set()
        for i in range(20):
            c = self.greeted()
            r = c.cmd("BOGUS")
            self.assertRegex(r.id or "", r"^[0-9A-HJ-NP-Z]{5}$")
            ids.add(r.id)
            c.cmd("QUIT")
        self.assertEqual(len(ids), 20)

    def test_client_values_escaped_in_log(self):
        c = self.greeted()
        c.cmd("MAIL FROM:<\"evil action=accept\"@sender.example>")
        r = c.cmd("RCPT TO:<x@elsewhere.test>")
        c.cmd("QUIT")
        d = self.daemon.wait_decision(id=r.id)
        self.assertEqual(d[-1]["action"], "reject")

    def test_mailmoatctl_bad_socket(self):
        p = subprocess.run([mm.MAILMOATCTL, "-S", self.daemon.path("nope"),
                            "stats"], capture_output=True, text=True,
                           timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(p.stderr.strip())


class ReasonCounters(MMTest):
    """Counters by reason: each decision's log line names a reason, and
    exactly that reason's counter (and rejected/tempfailed) moves by one."""
    conf = {"max_per_ip": "2", "message_size_limit": "20K"}
    daemon_kw = {"blocklist": "127.0.50.9\n"}

    def decide(self, scenario):
        before = self.daemon.stats()
        r = scenario()
        self.assertIsNotNone(r.id, r)
        d = self.daemon.wait_decision(id=r.id)[-1]
        reason = d["reason"]
        after = mm.wait_for(lambda: (lambda s: s if sum(
            s["reasons"].values()) > sum(before["reasons"].values())
            else None)(self.daemon.stats()), "the counter to move")
        self.assertEqual(after["reasons"].get(reason, 0),
                         before["reasons"].get(reason, 0) + 1,
                         (reason, before["reasons"], after["reasons"]))
        kind = "rejected" if r.code >= 500 else "tempfailed"
        self.assertEqual(after[kind], before[kind] + 1, (reason, r))
        return reason

    def test_each_decision_counted_once(self):
        reasons = []

        def relay():
            c = self.greeted()
            c.cmd("MAIL FROM:<a@sender.example>")
            r = c.cmd("RCPT TO:<x@elsewhere.test>")
            c.cmd("QUIT")
            return r

        def unknown():
            c = self.greeted()
            c.cmd("MAIL FROM:<a@sender.example>")
            r = c.cmd("RCPT TO:<nobody@example.com>")
            c.cmd("QUIT")
            return r

        def too_big():
            c = self.greeted()
            r = c.transaction("a@sender.example", ["bob@example.com"],
                              message(body=("z" * 70 + "\r\n") * 600))
            c.cmd("QUIT")
            return r

        def bare_lf():
            c = self.greeted()
            r = c.transaction("a@sender.example", ["bob@example.com"],
                              b"Subject: x\r\n\r\nbare\nlf\r\n")
            c.cmd("QUIT")
            return r

        def pipelining():
            c = self.greeted()
            c.send("MAIL FROM:<a@sender.example>\r\nRCPT TO:<bob@example."
                   "com>\r\n")
            r = None
            try:
                while True:
                    r = c.reply()
            except mm.Closed:
                pass
            return r

        def blocked():
            c = self.client(src="127.0.50.9")
            r = c.banner()
            c.cmd("QUIT")
            return r

        def per_ip():
            a = self.client(src="127.0.50.20")
            b = self.client(src="127.0.50.20")
            a.banner()
            b.banner()
            c = self.client(src="127.0.50.20")
            r = c.banner()
            for x in (a, b, c):
                x.close()
            return r

        for sc in (relay, unknown, too_big, bare_lf, pipelining, blocked,
                   per_ip):
            reasons.append(self.decide(sc))
        # distinct decisions, distinct reasons (no catch-all)
        self.assertEqual(len(set(reasons)), len(reasons), reasons)
