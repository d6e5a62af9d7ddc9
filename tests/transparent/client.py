#!/usr/bin/python3
"""client.py - one SMTP client in the "internet" namespace.

  client.py SRC DST PORT RCPT      prints one JSON line:
  {"banner": CODE, "banner_text": "...", "final": CODE, "text": "...",
   "error": null}
  client.py --tcp SRC DST PORT     plain TCP: {"got": "hello"}
"""
import json
import smtplib
import socket
import sys

if sys.argv[1] == "--tcp":
    src, dst, port = sys.argv[2], sys.argv[3], int(sys.argv[4])
    fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(20)
    s.bind((src, 0))
    try:
        s.connect((dst, port))
        print(json.dumps({"got": s.recv(100).decode().strip()}))
    except OSError as e:
        print(json.dumps({"got": None, "error": str(e)}))
    sys.exit(0)

src, dst, port, rcpt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
out = {"banner": None, "banner_text": "", "final": None, "text": "", "error": None}
try:
    c = smtplib.SMTP(timeout=30, source_address=(src, 0))
    code, msg = c.connect(dst, port)
    out["banner"] = code
    out["text"] = out["banner_text"] = msg.decode(errors="replace")
    if code == 220:
        c.ehlo("client.example.net")
        code, msg = c.mail("sender@example.net")
        if code == 250:
            code, msg = c.rcpt(rcpt)
        if code == 250:
            code, msg = c.data(b"Subject: netns test\r\nFrom: sender@example.net\r\n\r\nhello\r\n")
        out["final"] = code
        out["text"] = msg.decode(errors="replace")
        try:
            c.quit()
        except smtplib.SMTPException:
            pass
except (OSError, smtplib.SMTPException) as e:
    out["error"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(out))
