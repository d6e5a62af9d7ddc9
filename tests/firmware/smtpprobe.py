#!/usr/bin/python3
"""smtpprobe.py - print the SMTP greeting of HOST PORT without talking
first (the box enforces a greet pause), then QUIT.  Exit 1 on no answer."""
import socket
import sys

try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=7)
    f = s.makefile("rb")
    line = f.readline().decode("ascii", "replace").rstrip("\r\n")
    while line[3:4] == "-":
        line = f.readline().decode("ascii", "replace").rstrip("\r\n")
    if not line:
        sys.exit(1)
    s.sendall(b"QUIT\r\n")
    print(line)
except OSError:
    sys.exit(1)
