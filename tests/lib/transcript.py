"""transcript.py - play a scripted SMTP dialogue (tests/transcripts/*.smtp)
against a live server and check every reply.

File format, one directive per line ('#' lines are comments):

    % key = value      config for the daemon that plays this file (only
                       at the top; the test runner honours these)
    > TEXT             send TEXT + CRLF
    >> TEXT            send TEXT as is, with \\r \\n \\t \\xNN \\\\ escapes
                       (no CRLF added)
    < PATTERN          read one reply; its LAST line must match PATTERN,
                       where * matches anything and {id} matches the
                       " [id=SID]" suffix of an error reply
    <- PATTERN         read one reply line-by-line: a continuation line of
                       a multi-line reply must match (use for 250-...)
    <closed            the server closes the connection (any bytes that
                       come first are allowed only if they are a reply
                       matched by a previous < line)
    = delivered N      the backend has exactly N messages (from this file)
    = connect SRC      (re)connect from client address SRC

Returns a list of problems (empty: the transcript passed).
"""
import re
import socket

ID = r" \[id=[0-9A-HJ-NP-Z]{5}\]"


def pattern_re(p):
    out = ""
    for part in re.split(r"(\*|\{id\})", p):
        if part == "*":
            out += ".*"
        elif part == "{id}":
            out += ID
        else:
            out += re.escape(part)
    return re.compile("^" + out + "$")


def unescape(s):
    return s.encode("latin-1").decode("unicode_escape").encode("latin-1")


def read_conf(path):
    conf = {}
    with open(path) as f:
        for line in f:
            if line.startswith("%"):
                k, v = line[1:].split("=", 1)
                conf[k.strip()] = v.strip()
    return conf


class Player:
    def __init__(self, port, host="127.0.0.1", timeout=20):
        self.port, self.host, self.timeout = port, host, timeout
        self.sock = None
        self.buf = b""

    def connect(self, src=None):
        if self.sock:
            self.sock.close()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        if src:
            self.sock.bind((src, 0))
        self.sock.connect((self.host, self.port))
        self.buf = b""

    def line(self):
        while b"\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError(self.buf)
            self.buf += d
        l, self.buf = self.buf.split(b"\r\n", 1)
        return l.decode("utf-8", "replace")

    def close(self):
        if self.sock:
            self.sock.close()
            self.sock = None


def play(path, port, delivered=None, host="127.0.0.1"):
    """play - run the transcript at path against host:port.  delivered()
    returns the number of messages the backend holds (for '= delivered')."""
    p = Player(port, host)
    problems = []
    connected = False
    with open(path) as f:
        lines = [l.rstrip("\n") for l in f]
    try:
        for no, raw in enumerate(lines, 1):
            if not raw.strip() or raw.startswith("#") or raw.startswith("%"):
                continue
            where = "%s:%d" % (path.rsplit("/", 1)[-1], no)
            if raw.startswith("= connect"):
                src = raw.split(None, 2)[2] if len(raw.split()) > 2 else None
                p.connect(src)
                connected = True
                continue
            if not connected:
                p.connect()
                connected = True
            if raw.startswith(">> "):
                p.sock.sendall(unescape(raw[3:]))
            elif raw == ">" or raw.startswith("> "):
                p.sock.sendall(raw[2:].encode("utf-8") + b"\r\n")
            elif raw.startswith("<- "):
                l = p.line()
                if not pattern_re(raw[3:]).match(l):
                    problems.append("%s: got %r, want %r" % (where, l,
                                                             raw[3:]))
                    break
            elif raw.startswith("< "):
                l = p.line()
                while len(l) > 3 and l[3] == "-":
                    l = p.line()
                if not pattern_re(raw[2:]).match(l):
                    problems.append("%s: got %r, want %r" % (where, l,
                                                             raw[2:]))
                    break
            elif raw.strip() == "<closed":
                try:
                    l = p.line()
                    problems.append("%s: got %r, want the connection closed"
                                    % (where, l))
                    break
                except (EOFError, ConnectionResetError):
                    pass
            elif raw.startswith("= delivered"):
                want = int(raw.split()[2])
                got = delivered() if delivered else None
                if got != want:
                    problems.append("%s: backend has %s messages, want %d"
                                    % (where, got, want))
            else:
                problems.append("%s: bad transcript line %r" % (where, raw))
                break
    except (EOFError, ConnectionResetError) as e:
        problems.append("%s: connection closed early (%r)" % (where, e))
    except socket.timeout:
        problems.append("%s: no reply in time" % where)
    finally:
        p.close()
    return problems
