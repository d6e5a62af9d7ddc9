"""test_robust.py - bad network input gets replies or a close, never a
crash: seeded random garbage at every stage of the dialogue, over real
sockets, then a normal delivery still works.  (The fuzzers in tests/fuzz
go deeper on the engine alone; this is the whole daemon.)"""
import random

from base import MMTest, mm, message

PIECES = [b"\r\n", b"\n", b"\r", b".", b"\r\n.\r\n", b"\x00", b"\xff\xfe",
          b"EHLO x.example.net", b"MAIL FROM:<a@b.example>",
          b"RCPT TO:<bob@example.com>", b"DATA", b"RSET", b"STARTTLS",
          b"QUIT", b"BDAT 10 LAST", b"<", b">", b"@", b"%", b"\"",
          b" " * 600, b"A" * 1100, b"\x16\x03\x01\x02\x00"]


class Garbage(MMTest):
    conf = {"timeout_command": "3s", "timeout_data": "3s"}

    def session(self, rnd, stage):
        c = self.client(src="127.0.60.%d" % rnd.randrange(1, 250))
        try:
            c.banner()
            if stage >= 1:
                c.cmd("EHLO client.example.net")
            if stage >= 2:
                c.cmd("MAIL FROM:<a@sender.example>")
                c.cmd("RCPT TO:<bob@example.com>")
            if stage >= 3:
                c.cmd("DATA")
            for _ in range(rnd.randrange(1, 12)):
                if rnd.random() < 0.5:
                    data = rnd.choice(PIECES)
                else:
                    data = bytes(rnd.randrange(256)
                                 for _ in range(rnd.randrange(1, 300)))
                c.send(data)
            c.pending(wait=0.05)
        except (mm.Closed, OSError, mm.HarnessError):
            pass
        finally:
            c.close()

    def test_random_garbage_every_stage(self):
        rnd = random.Random(20261122)
        for i in range(160):
            self.session(rnd, i % 4)
        self.assertTrue(self.daemon.alive())
        mm.wait_for(lambda: self.daemon.stats()["connections_active"] == 0,
                    "garbage sessions to end")
        c = self.greeted()
        self.assertReply(c.transaction("a@sender.example",
                                       ["bob@example.com"],
                                       message(subject="after-garbage")), 250)
        c.cmd("QUIT")
        self.backend.wait_closed()
        ours = [m for m in self.backend.messages()
                if b"Subject: after-garbage" in m[1]]
        self.assertEqual(len(ours), 1)
