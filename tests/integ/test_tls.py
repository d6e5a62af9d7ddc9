"""test_tls.py - STARTTLS: offered when tls_cert/tls_key are set, key and
self-signed certificate generated when missing, TLS 1.2 (openssl
s_client, swaks --tls, Python's ssl), SMTP state reset after the handshake
(RFC 3207), no plaintext command injection (CVE-2011-0411 style)."""
import os
import ssl
import subprocess

from base import MMTest, mm, message


class StartTls(MMTest):

    @classmethod
    def setUpClass(cls):
        # the files do not exist yet: the daemon must make them
        cls.tlsdir = mm.mkdtemp("tls-")
        cls.conf = {"tls_cert": os.path.join(cls.tlsdir, "cert.pem"),
                    "tls_key": os.path.join(cls.tlsdir, "key.pem")}
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        import shutil
        shutil.rmtree(cls.tlsdir, ignore_errors=True)

    def tls_client(self):
        c = self.greeted()
        r = c.cmd("STARTTLS")
        self.assertEqual(r.code, 220, r)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(self.conf["tls_cert"])
        c.sock = ctx.wrap_socket(c.sock, server_hostname=mm.HOSTNAME)
        return c

    def test_key_and_cert_generated(self):
        cert, key = self.conf["tls_cert"], self.conf["tls_key"]
        self.assertTrue(os.path.exists(cert))
        self.assertTrue(os.path.exists(key))
        self.assertEqual(os.stat(key).st_mode & 0o077, 0, "key readable "
                         "by others")
        p = subprocess.run(["openssl", "x509", "-in", cert, "-noout",
                            "-subject"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(mm.HOSTNAME, p.stdout)

    def test_restart_keeps_key_and_cert(self):
        cert, key = self.conf["tls_cert"], self.conf["tls_key"]
        with open(cert, "rb") as f:
            c1 = f.read()
        with open(key, "rb") as f:
            k1 = f.read()
        self.assertEqual(self.daemon.stop(), 0)
        self.daemon.start()
        with open(cert, "rb") as f:
            self.assertEqual(f.read(), c1, "certificate regenerated")
        with open(key, "rb") as f:
            self.assertEqual(f.read(), k1, "key regenerated")
        c = self.tls_client()       # still verifies against the same cert
        self.assertReply(c.cmd("EHLO client.example.net"), 250)

    def test_offered(self):
        c = self.greeted()
        r = c.replies[-1]
        self.assertIn("STARTTLS", [l.split()[0].upper() for l in r.lines])

    def test_state_reset_after_handshake(self):
        c = self.tls_client()
        # verified against the generated self-signed certificate
        self.assertIn(c.sock.version(), ("TLSv1.2", "TLSv1.3"))
        r = c.cmd("MAIL FROM:<a@sender.example>")
        self.assertEqual(r.code, 503, r)       # EHLO needed again
        r = c.cmd("EHLO client.example.net")
        self.assertEqual(r.code, 250)
        self.assertNotIn("STARTTLS", [l.split()[0].upper() for l in r.lines])
        r = c.transaction("a@sender.example", ["bob@example.com"],
                          message(subject="over tls"))
        self.assertReply(r, 250)
        c.cmd("QUIT")
        (meta, content), = self.assertDelivered(1)
        self.assertIn(b"Subject: over tls", content)
        self.assertRegex(content.split(b"\r\n\r\n")[0],
                         rb"(?i)with ESMTPS")

    def test_plaintext_injection_discarded(self):
        c = self.greeted()
        c.send("STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n")
        r = c.reply()
        if r.code != 220:
            # refused as pipelining: fine, as long as nothing was injected
            self.assertEqual(r.code, 554, r)
            return
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            c.sock = ctx.wrap_socket(c.sock, server_hostname=mm.HOSTNAME)
        except (ssl.SSLError, OSError):
            return      # closed on the violation: nothing injected
        try:
            r = c.cmd("EHLO client.example.net")
        except (mm.Closed, ssl.SSLError, OSError):
            return
        # had the injected MAIL been executed, this would be a nested MAIL
        self.assertEqual(r.code, 250, r)
        r = c.cmd("MAIL FROM:<a@sender.example>")
        self.assertEqual(r.code, 250, r)

    def test_openssl_s_client_tls12(self):
        p = subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-tls1_2",
             "-connect", "127.0.0.1:%d" % self.daemon.port,
             "-CAfile", self.conf["tls_cert"], "-brief"],
            input="EHLO client.example.net\r\nQUIT\r\n",
            capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        self.assertRegex(out, r"Protocol version: TLSv1\.2", out)
        self.assertRegex(out, r"Verification: OK", out)

    def test_old_tls_refused(self):
        p = subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-tls1_1",
             "-cipher", "DEFAULT@SECLEVEL=0",
             "-connect", "127.0.0.1:%d" % self.daemon.port],
            input="QUIT\r\n", capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        self.assertNotRegex(out, r"Protocol\s*:\s*TLSv1(\.1)?\s*$", out)
        self.assertNotEqual(p.returncode, 0, out)

    def test_tls13_attempt_is_clean(self):
        """mbedTLS 2.28 has no usable TLS 1.3: a 1.3-only client fails the
        handshake (or gets 1.3 from a later build), the daemon carries on."""
        p = subprocess.run(
            ["openssl", "s_client", "-starttls", "smtp", "-tls1_3",
             "-connect", "127.0.0.1:%d" % self.daemon.port, "-brief"],
            input="QUIT\r\n", capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        if p.returncode == 0:
            self.assertRegex(out, r"Protocol version: TLSv1\.3", out)
        c = self.greeted()
        self.assertReply(c.cmd("NOOP"), 250)

    def test_swaks_tls(self):
        rc, out = mm.swaks(self.daemon.port, "--tls", "--to",
                           "alice@example.com", "--from", "a@sender.example",
                           "--header", "Subject: swaks tls")
        self.assertEqual(rc, 0, out)
        self.assertIn("TLS started", out)
        self.assertDelivered(1)

    def test_garbage_handshake_no_crash(self):
        c = self.greeted()
        self.assertEqual(c.cmd("STARTTLS").code, 220)
        c.send(b"\x16\x03\x01\x00\x05garbage-not-tls" * 20)
        try:
            c.wait_closed(timeout=30)
        except mm.HarnessError:
            pass
        c.close()
        self.assertTrue(self.daemon.alive())
        c = self.greeted()
        self.assertReply(c.cmd("NOOP"), 250)


class NoTls(MMTest):

    def test_not_offered_and_refused(self):
        c = self.greeted()
        exts = [l.split()[0].upper() for l in c.replies[-1].lines]
        self.assertNotIn("STARTTLS", exts)
        r = c.cmd("STARTTLS")
        self.assertGreaterEqual(r.code, 500, r)
        self.assertIsNotNone(r.id)
