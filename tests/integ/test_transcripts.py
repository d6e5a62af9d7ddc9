"""test_transcripts.py - play every tests/transcripts/*.smtp against the
real daemon (a daemon per distinct "% key = value" header set)."""
import os
import sys

from base import MMTest, Daemon

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import transcript  # noqa: E402

DIR = os.path.join(os.path.dirname(__file__), "..", "transcripts")


class Transcripts(MMTest):

    def play(self, name):
        path = os.path.join(DIR, name)
        conf = transcript.read_conf(path)
        d = self.daemon
        if conf:
            d = Daemon(self.backend.port, **conf)
            d.start()
            self.addCleanup(d.cleanup)

        def delivered():
            self.backend.wait_closed()
            return len(self.backend.messages())
        problems = transcript.play(path, d.port, delivered)
        self.assertEqual(problems, [], "\n".join(problems))


def _make(name):
    def t(self):
        self.play(name)
    return t


for _n in sorted(os.listdir(DIR)):
    if _n.endswith(".smtp"):
        setattr(Transcripts, "test_" + _n[:-5].replace("-", "_"), _make(_n))
