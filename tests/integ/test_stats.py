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
