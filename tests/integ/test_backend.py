"""test_backend.py - the test backend itself does what the relay tests
rely on (each failure mode really happens), checked with smtplib straight
against it, no daemon involved."""
import smtplib
import unittest

from base import mm, Backend, message


class BackendSelf(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.b = Backend().start()

    @classmethod
    def tearDownClass(cls):
        cls.b.stop()

    def setUp(self):
        self.b.set_mode()
        self.b.clear()

    def send(self):
        s = smtplib.SMTP("127.0.0.1", self.b.port, timeout=10)
        try:
            return s.sendmail("a@sender.example", ["bob@example.com"],
                              message().encode())
        finally:
            try:
                s.quit()
            except Exception:
                pass

    def test_accepts_and_records(self):
        self.assertEqual(self.send(), {})
        self.b.wait_closed()
        (meta, content), = self.b.messages()
        self.assertEqual(meta["rcpt_tos"], ["bob@example.com"])

    def test_failure_modes(self):
        for mode, exc in (({"fail_stage": "banner"}, smtplib.SMTPException),
                          ({"fail_stage": "mail"},
                           smtplib.SMTPSenderRefused),
                          ({"fail_stage": "rcpt"},
                           smtplib.SMTPRecipientsRefused),
                          ({"refuse_rcpt": "bob"},
                           smtplib.SMTPRecipientsRefused),
                          ({"fail_stage": "data"}, smtplib.SMTPDataError),
                          ({"fail_stage": "dot"}, smtplib.SMTPDataError),
                          ({"drop": "mid-data"}, smtplib.SMTPException),
                          ({"drop": "after-dot"}, smtplib.SMTPException)):
            self.b.set_mode(**mode)
            with self.assertRaises((exc, OSError), msg=mode):
                self.send()
            self.b.wait_closed()
            self.assertEqual(self.b.messages(), [], mode)

    def test_lenient_mode_is_smugglable(self):
        """Proof that the lenient backend would fall for smuggling: sent
        straight to it, "\\n.\\n" splits one DATA into two messages."""
        self.b.set_mode(lenient_eol=True)
        c = mm.Client(self.b.port)
        c.hello()
        c.cmd("MAIL FROM:<a@sender.example>")
        c.cmd("RCPT TO:<bob@example.com>")
        c.cmd("DATA")
        c.send(b"Subject: one\r\n\r\nbody\n.\nMAIL FROM:<evil@evil.test>\r\n"
               b"RCPT TO:<alice@example.com>\r\nDATA\r\nsmuggled\r\n.\r\n")
        c.reply()
        for _ in range(4):
            c.reply()
        c.cmd("QUIT")
        c.close()
        self.b.wait_closed()
        self.assertEqual(len(self.b.messages()), 2)
