"""mm.py - harness for tests that run the real mailmoat daemon.

Everything here starts real processes on loopback and talks to them over
real sockets:

    Daemon(backend_port, **conf)  build/host/mailmoat with a generated
                                  config in its own temp dir; stderr log
                                  captured; stats() through mailmoatctl
    Backend()                     tests/integ/backend.py (aiosmtpd) with
                                  failure modes and a spool of what it took
    Sink()                        Postfix's smtp-sink, dumping each message
    Client(port, src=...)         a raw SMTP client: exact bytes, exact
                                  replies, client address of our choosing
    swaks(...)                    Debian's swaks as a client

Only /usr/bin/python3 runs this (Debian's aiosmtpd belongs to it).
Nothing here sleeps to make an assertion: waits poll a condition and give
up after a generous guard time.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MM_BUILD", os.path.join(ROOT, "build", "host"))
MAILMOAT = os.path.join(BUILD, "mailmoat")
MAILMOATCTL = os.path.join(BUILD, "mailmoatctl")
BACKEND_PY = os.path.join(ROOT, "tests", "integ", "backend.py")
PYTHON = "/usr/bin/python3"
SMTP_SINK = next((p for p in ("/usr/sbin/smtp-sink",
                              "/usr/lib/postfix/sbin/smtp-sink")
                  if os.path.exists(p)), None)
SMTP_SOURCE = next((p for p in ("/usr/sbin/smtp-source",
                                "/usr/lib/postfix/sbin/smtp-source")
                    if os.path.exists(p)), None)

HOSTNAME = "mx.mailmoat.test"
GUARD = 20.0            # seconds a wait may take before the test fails

# Temp dirs live under build/ (MM_TMPDIR overrides): /tmp is shared with
# other people's clean-ups on the build machine.
TMPBASE = os.environ.get("MM_TMPDIR") or os.path.join(ROOT, "build",
                                                       "integ-tmp")


def mkdtemp(prefix):
    os.makedirs(TMPBASE, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=TMPBASE)


ID_RE = re.compile(r" \[id=([0-9A-Z]{5})\]$")


class HarnessError(Exception):
    pass


# Whatever a test forgot to stop is stopped (and its temp dir removed) when
# the Python process exits, so no daemon or backend outlives its test run.
_live = set()


def _cleanup_all():
    for obj in list(_live):
        try:
            obj._atexit()
        except Exception:
            pass


import atexit  # noqa: E402
atexit.register(_cleanup_all)


def free_port(host="127.0.0.1"):
    """free_port - a TCP port nobody listens on right now."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _listening(port=None):
    """_listening - {port: set of socket inodes} of listening TCP sockets."""
    out = {}
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(f) as fh:
                next(fh)
                for line in fh:
                    p = line.split()
                    if p[3] == "0A":    # TCP_LISTEN
                        lp = int(p[1].rsplit(":", 1)[1], 16)
                        if port is None or lp == port:
                            out.setdefault(lp, set()).add(p[9])
        except OSError:
            pass
    return out


def _listening_ports():
    return set(_listening())


def _socket_inodes(pid):
    out = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                out.add(t[8:-1])
    except OSError:
        pass
    return out


def peer_socket_option(pid, sock, level, opt):
    """peer_socket_option - getsockopt on the process pid's end of the
    connected TCP socket sock (a copy of its descriptor, by pidfd_getfd:
    Linux 5.6+, root): what that process set on its socket."""
    import ctypes
    lport, rport = sock.getsockname()[1], sock.getpeername()[1]
    inode = None
    for f in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(f) as fh:
            next(fh)
            for line in fh:
                p = line.split()
                if (int(p[1].rsplit(":", 1)[1], 16) == rport and
                        int(p[2].rsplit(":", 1)[1], 16) == lport):
                    inode = p[9]
    if inode is None:
        raise HarnessError("no socket of %d for port %d" % (pid, lport))
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) != \
                    "socket:[%s]" % inode:
                continue
        except OSError:
            continue
        libc = ctypes.CDLL(None, use_errno=True)
        pidfd = os.pidfd_open(pid)
        try:
            mine = libc.syscall(438, pidfd, int(fd), 0)  # pidfd_getfd
            if mine < 0:
                raise HarnessError("pidfd_getfd: errno %d" %
                                   ctypes.get_errno())
        finally:
            os.close(pidfd)
        s = socket.socket(fileno=mine)
        try:
            return s.getsockopt(level, opt)
        finally:
            s.close()
    raise HarnessError("socket inode %s not among %d's fds" % (inode, pid))


def proc_cpu_seconds(pid):
    """proc_cpu_seconds - utime + stime of a live process."""
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(cond, what, timeout=GUARD, step=0.02):
    """wait_for - poll cond() until true; HarnessError after timeout."""
    end = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > end:
            raise HarnessError("timed out waiting for " + what)
        time.sleep(step)


def wait_listen(port, proc=None, timeout=GUARD):
    """wait_listen - until something listens on port (without connecting,
    so no session is counted); fails early when proc died."""
    def up():
        if proc is not None and proc.poll() is not None:
            raise HarnessError("process exited with %s before listening"
                               % proc.returncode)
        inodes = _listening(port).get(port, set())
        if proc is None:
            return bool(inodes)
        # the socket must be this process's, not someone else's
        return bool(inodes & _socket_inodes(proc.pid))
    wait_for(up, "port %d to listen" % port, timeout)


def reply_id(text):
    """reply_id - the session id at the end of an error reply, or None."""
    m = ID_RE.search(text.rstrip("\r\n"))
    return m.group(1) if m else None


# ------------------------------------------------------------------ log

KV_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_kv(line):
    """parse_kv - the key=value pairs of a decision log line."""
    out = {}
    for k, v in KV_RE.findall(line):
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            v = re.sub(r'\\(.)', r'\1', v[1:-1])
        out[k] = v
    return out


# -------------------------------------------------------------- backend

class Backend:
    """Backend - tests/integ/backend.py on a free loopback port."""

    def __init__(self, tmp=None, host="127.0.0.1"):
        self._own_tmp = tmp is None
        self.tmp = tmp or mkdtemp("backend-")
        self.spool = os.path.join(self.tmp, "spool")
        os.makedirs(self.spool, exist_ok=True)
        self.host = host
        self.port = free_port(host)
        self.proc = None
        _live.add(self)

    def _atexit(self):
        self.stop()

    def start(self):
        self.out = open(os.path.join(self.tmp, "backend.log"), "ab")
        for attempt in range(3):
            self.proc = subprocess.Popen(
                [PYTHON, BACKEND_PY, "--host", self.host, "--port",
                 str(self.port), "--spool", self.spool],
                stdout=self.out, stderr=subprocess.STDOUT)
            try:
                wait_listen(self.port, self.proc)
                return self
            except HarnessError:
                if self.proc.poll() is None:
                    raise
                self.port = free_port(self.host)   # taken meanwhile
        raise HarnessError("backend could not listen")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        _live.discard(self)
        if self._own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    def set_mode(self, **mode):
        """set_mode - behaviour for the next connections (see backend.py)."""
        p = os.path.join(self.spool, "mode.json")
        with open(p + ".tmp", "w") as f:
            json.dump(mode, f)
        os.rename(p + ".tmp", p)

    def clear(self):
        """clear - forget recorded messages/events (mode is kept)."""
        # events.jsonl is held open (O_APPEND) by the backend: truncate it,
        # never unlink it, or later events would go to a deleted file
        ev = os.path.join(self.spool, "events.jsonl")
        if os.path.exists(ev):
            os.truncate(ev, 0)
        for n in os.listdir(self.spool):
            if n.startswith(("msg-", "conn-")):
                try:
                    os.unlink(os.path.join(self.spool, n))
                except OSError:
                    pass

    def messages(self):
        """messages - [(meta dict, content bytes)] of accepted messages."""
        out = []
        for n in sorted(os.listdir(self.spool)):
            if n.startswith("msg-") and n.endswith(".eml"):
                base = os.path.join(self.spool, n[:-4])
                with open(base + ".json") as f:
                    meta = json.load(f)
                with open(base + ".eml", "rb") as f:
                    out.append((meta, f.read()))
        return out

    def events(self, kind=None):
        try:
            with open(os.path.join(self.spool, "events.jsonl")) as f:
                evs = [json.loads(l) for l in f if l.strip()]
        except OSError:
            return []
        return [e for e in evs if kind is None or e["ev"] == kind]

    def connections(self):
        return sorted({e["conn"] for e in self.events("connect")})

    def raw(self, conn):
        """raw - every byte connection number conn sent the backend."""
        try:
            with open(os.path.join(self.spool, "conn-%d.raw" % conn),
                      "rb") as f:
                return f.read()
        except OSError:
            return b""

    def all_raw(self):
        return b"".join(self.raw(c) for c in self.connections())

    def wait_closed(self, conns=None):
        """wait_closed - until every (or the given) connection is lost, so
        that what the backend recorded is final."""
        def done():
            lost = {e["conn"] for e in self.events("lost")}
            want = set(conns if conns is not None else self.connections())
            return want <= lost
        wait_for(done, "backend connections to close")


class Sink:
    """Sink - Postfix's smtp-sink, one dump file per message."""

    def __init__(self, tmp=None, extra=(), dump=True):
        if SMTP_SINK is None:
            raise HarnessError("smtp-sink not installed (postfix)")
        self._own_tmp = tmp is None
        self.tmp = tmp or mkdtemp("sink-")
        self.dump = os.path.join(self.tmp, "dump")
        os.makedirs(self.dump, exist_ok=True)
        self.port = free_port()
        self.extra = list(extra)
        self.dump_opt = ["-d", self.dump + "/%M."] if dump else []
        self.proc = None
        _live.add(self)

    def _atexit(self):
        self.stop()

    def start(self):
        for attempt in range(3):
            self.proc = subprocess.Popen(
                [SMTP_SINK, "-u", "root", "-h", "sink.example.com"] +
                self.dump_opt + self.extra +
                ["127.0.0.1:%d" % self.port, "1000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_listen(self.port, self.proc)
                return self
            except HarnessError:
                if self.proc.poll() is None:
                    raise
                self.port = free_port()     # taken meanwhile
        raise HarnessError("smtp-sink could not listen")

    def established(self):
        """established - TCP connections to the sink still open (or closed
        by the daemon and not yet by the sink)."""
        n = 0
        for f in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                with open(f) as fh:
                    next(fh)
                    for line in fh:
                        p = line.split()
                        # 01 ESTABLISHED, 08 CLOSE_WAIT: the peer
                        # closed but the sink has not yet seen it (an
                        # aborted transaction's dump file still there)
                        if p[3] in ("01", "08") and int(
                                p[1].rsplit(":", 1)[1], 16) == self.port:
                            n += 1
            except OSError:
                pass
        return n

    def messages(self):
        """messages - the dumped messages, once no session is open: the
        sink creates a dump file when a transaction starts and removes it
        when the transaction is aborted, so only a quiet sink counts."""
        wait_for(lambda: self.established() == 0, "sink sessions to end")
        out = []
        for n in sorted(os.listdir(self.dump)):
            with open(os.path.join(self.dump, n), "rb") as f:
                out.append(f.read())
        return out

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        _live.discard(self)
        if self._own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


# --------------------------------------------------------------- daemon

DEFAULT_CONF = {
    "hostname": HOSTNAME,
    "local_domains": "example.com example.org",
    "greet_pause": "0",
    # each test connection waits its greet pause (tests that want the
    # pass cache set pass_cache_ttl)
    "pass_cache_ttl": "0",
    "message_size_limit": "1M",
    "max_connections": "1000",
    "max_per_ip": "10",
    # DNS checks are off unless a test is about them; the engine's own
    # checks keep their default action (reject).
    "action_dnsbl": "off",
    "action_rdns": "off",
    "action_dynamic": "off",
    "action_helo": "off",
    "action_sender_tld": "off",
    "action_sender_mx": "off",
    "action_spf": "off",
    "action_greylist": "off",
    "action_dsn": "off",
    "action_scanner": "off",
}

DEFAULT_RECIPIENTS = "alice@example.com\nbob@example.com\n@example.org\n"


class Daemon:
    """Daemon - the real build/host/mailmoat in a temp dir.

    conf: config keys (value None drops a default key).  Files:
      recipients / allowlist / blocklist: text of the list file, written
      into the temp dir and named in the config (recipients defaults to
      DEFAULT_RECIPIENTS; pass recipients=None for none).
    """

    def __init__(self, backend_port=None, recipients=DEFAULT_RECIPIENTS,
                 allowlist=None, blocklist=None, listen=None, env=None,
                 wrapper=(), ipv6=False, **conf):
        self.tmp = mkdtemp("daemon-")
        self.port = free_port()
        self.host = "127.0.0.1"
        self.sock = os.path.join(self.tmp, "ctl.sock")
        self.conf_path = os.path.join(self.tmp, "mailmoat.conf")
        self.log_path = os.path.join(self.tmp, "daemon.log")
        self.env = env
        # MM_WRAPPER="valgrind -q --error-exitcode=99 --leak-check=full"
        # runs every daemon of the suite under that command
        if not wrapper and os.environ.get("MM_WRAPPER"):
            import shlex
            wrapper = shlex.split(os.environ["MM_WRAPPER"])
        self.wrapper = list(wrapper)
        self.proc = None
        self.conf = dict(DEFAULT_CONF)
        if ipv6 and not listen:
            listen = "127.0.0.1:%d [::1]:%d" % (self.port, self.port)
        self.conf.update({
            "listen": listen or "127.0.0.1:%d" % self.port,
            "backend": "127.0.0.1:%d" % (backend_port or free_port()),
            "state_dir": os.path.join(self.tmp, "state"),
            "control_socket": self.sock,
            # a port where no DNS server listens: DNS checks are off
            "dns_servers": "127.0.0.1:%d" % free_port(),
        })
        os.makedirs(self.conf["state_dir"], exist_ok=True)
        for key, text in (("recipients", recipients),
                          ("allowlist", allowlist),
                          ("blocklist", blocklist)):
            if text is not None:
                self.conf[key] = self.write_file(key, text)
        self.conf.update(conf)
        self.write_conf()
        _live.add(self)

    def _atexit(self):
        self.stop()
        if not os.environ.get("MM_KEEP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    # files
    def path(self, name):
        return os.path.join(self.tmp, name)

    def write_file(self, name, text):
        p = self.path(name)
        with open(p + ".tmp", "w") as f:
            f.write(text)
        os.rename(p + ".tmp", p)
        return p

    def write_conf(self, extra_text=""):
        lines = ["# generated by tests/lib/mm.py"]
        for k, v in self.conf.items():
            if v is not None:
                lines.append("%s = %s" % (k, v))
        self.write_file("mailmoat.conf", "\n".join(lines) + "\n" +
                        extra_text)

    # process
    def start(self, wait=True):
        if not os.access(MAILMOAT, os.X_OK):
            raise HarnessError("no daemon: %s (run make)" % MAILMOAT)
        env = dict(os.environ)
        env.update(self.env or {})
        for attempt in range(3):
            self.logf = open(self.log_path, "ab")
            start = self.logf.tell()
            self.proc = subprocess.Popen(
                self.wrapper + [MAILMOAT, "-c", self.conf_path],
                stdout=self.logf, stderr=subprocess.STDOUT, env=env)
            if not wait:
                return self
            try:
                wait_listen(self.port, self.proc, timeout=60 if self.wrapper
                            else GUARD)
                return self
            except HarnessError:
                # another suite may have taken our free port meanwhile:
                # pick another one (only for the default listen address)
                if ("in use" not in self.log_text()[start:] or
                        self.conf["listen"] != "127.0.0.1:%d" % self.port):
                    raise
                self.port = free_port()
                self.conf["listen"] = "127.0.0.1:%d" % self.port
                self.write_conf()
        raise HarnessError("could not find a free port for the daemon")

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self):
        """reload - SIGHUP, then wait for the daemon to log it."""
        n = len(self.log_text())
        self.signal(signal.SIGHUP)
        wait_for(lambda: re.search(r"reload", self.log_text()[n:], re.I),
                 "the daemon to log its reload")

    def stop(self, timeout=30):
        """stop - SIGTERM and wait; returns the exit status."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                rc = "killed"
        return rc

    def cleanup(self):
        _live.discard(self)
        rc = self.stop()
        if self.wrapper and rc == 99:
            # the wrapper (valgrind --error-exitcode=99) found errors
            tail = self.log_text()[-6000:]
            if not os.environ.get("MM_KEEP"):
                shutil.rmtree(self.tmp, ignore_errors=True)
            raise HarnessError("daemon under %s reported errors:\n%s"
                               % (self.wrapper[0], tail))
        if os.environ.get("MM_KEEP"):
            sys.stderr.write("# kept %s\n" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.cleanup()

    def check_config(self):
        """check_config - (exit status, output) of --check-config."""
        p = subprocess.run([MAILMOAT, "-c", self.conf_path,
                            "--check-config"], capture_output=True,
                           text=True, timeout=GUARD)
        return p.returncode, p.stdout + p.stderr

    # observation
    def _log_barrier(self):
        """_log_barrier - one control-socket round trip, so the log holds
        every line of the loop turns before it: the daemon batches its
        stderr lines per turn of its loop (proxy/log.c), and a reply the
        test has read may come a few microseconds before its log line.
        Skipped for a daemon that is gone or stopped (SIGSTOP)."""
        if not self.alive() or not self.sock:
            return
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] in "TtZX":
                    return
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.settimeout(0.5)
                c.connect(self.sock)
                c.sendall(b"stats\n")
                while c.recv(65536):
                    pass
        except (OSError, IndexError):
            pass

    def log_text(self):
        self._log_barrier()
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def decisions(self, **match):
        """decisions - parsed decision log lines (those with id= and
        action=), filtered by key=value equality."""
        out = []
        for line in self.log_text().splitlines():
            if " id=" not in line and not line.startswith("id="):
                continue
            kv = parse_kv(line)
            if "action" not in kv or "id" not in kv:
                continue
            if all(kv.get(k) == v for k, v in match.items()):
                out.append(kv)
        return out

    def wait_decision(self, **match):
        return wait_for(lambda: self.decisions(**match),
                        "a log line with %r" % match)

    def ctl(self, *args, check=True):
        p = subprocess.run([MAILMOATCTL, "-S", self.sock] + list(args),
                           capture_output=True, text=True, timeout=GUARD)
        if check and p.returncode != 0:
            raise HarnessError("mailmoatctl %s: rc=%d %s" % (
                " ".join(args), p.returncode, p.stderr.strip()))
        return p

    def stats(self):
        return json.loads(self.ctl("stats").stdout)

    def proc_status(self, key):
        """proc_status - a /proc/PID/status value in kB (VmRSS...)."""
        with open("/proc/%d/status" % self.pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return None

    def cpu_seconds(self):
        return proc_cpu_seconds(self.pid)


# --------------------------------------------------------------- client

class Reply:
    """Reply - one SMTP reply: code, lines (text after the code), raw."""

    def __init__(self, lines):
        self.raw_lines = lines
        self.code = int(lines[-1][:3]) if lines else 0
        self.lines = [l[4:] for l in lines]

    @property
    def text(self):
        """the last line, code included, without CRLF"""
        return self.raw_lines[-1] if self.raw_lines else ""

    @property
    def full(self):
        return "\r\n".join(self.raw_lines)

    @property
    def id(self):
        return reply_id(self.text)

    def __repr__(self):
        return "<Reply %r>" % self.full


class Closed(Exception):
    pass


class Client:
    """Client - a raw SMTP client over a real TCP socket.

    src: client address (any 127.x.y.z; "::1" for IPv6).  Every read has
    a guard timeout; a read on a closed connection raises Closed."""

    def __init__(self, port, host="127.0.0.1", src=None, timeout=GUARD,
                 connect=True):
        self.port, self.host, self.src = port, host, src
        self.timeout = timeout
        self.buf = b""
        self.sock = None
        self.replies = []
        if connect:
            self.connect()

    def connect(self):
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(self.timeout)
        if self.src:
            self.sock.bind((self.src, 0))
        self.sock.connect((self.host, self.port))
        return self

    def close(self):
        if self.sock:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        self.sock.sendall(data)

    def _readline(self):
        while b"\n" not in self.buf:
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                d = b""
            except socket.timeout:
                raise HarnessError("no reply within %ss (buffer %r)"
                                   % (self.timeout, self.buf[:200]))
            if not d:
                raise Closed(self.buf)
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        """reply - read one (possibly multi-line) reply."""
        lines = []
        while True:
            line = self._readline()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                break
        r = Reply(lines)
        self.replies.append(r)
        return r

    def banner(self):
        return self.reply()

    def cmd(self, line):
        """cmd - send one command line (CRLF added), read its reply."""
        self.send(line + "\r\n")
        return self.reply()

    def pending(self, wait=0.0):
        """pending - bytes that arrived unasked (non-blocking peek)."""
        self.sock.settimeout(wait or 0.0001)
        try:
            d = self.sock.recv(65536)
            self.buf += d
            closed = d == b""
        except (socket.timeout, BlockingIOError):
            closed = False
        except ConnectionResetError:
            closed = True
        finally:
            self.sock.settimeout(self.timeout)
        return self.buf, closed

    def wait_closed(self, timeout=GUARD):
        """wait_closed - read until the server closes; returns what came."""
        self.sock.settimeout(timeout)
        got = self.buf
        self.buf = b""
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return got
                got += d
        except ConnectionResetError:
            return got
        except socket.timeout:
            raise HarnessError("server did not close within %ss" % timeout)
        finally:
            if self.sock:
                self.sock.settimeout(self.timeout)

    def is_closed(self):
        try:
            self.wait_closed(timeout=GUARD)
            return True
        except HarnessError:
            return False

    # conveniences
    def hello(self, name="client.example.net", verb="EHLO"):
        b = self.banner()
        if b.code != 220:
            raise HarnessError("banner: %r" % b)
        r = self.cmd("%s %s" % (verb, name))
        if r.code != 250:
            raise HarnessError("%s: %r" % (verb, r))
        return r

    def transaction(self, sender, rcpts, body, expect_data=354):
        """transaction - MAIL, RCPTs, DATA, body; returns the final reply
        (or the first reply that was not a 2xx/354)."""
        r = self.cmd("MAIL FROM:<%s>" % sender)
        if r.code != 250:
            return r
        ok = 0
        for rc in rcpts:
            r = self.cmd("RCPT TO:<%s>" % rc)
            ok += r.code == 250
        if not ok:
            return r
        r = self.cmd("DATA")
        if r.code != expect_data:
            return r
        if isinstance(body, str):
            body = body.encode()
        self.send(body + b".\r\n")
        return self.reply()


def message(subject="test", body="Hello.\r\n", extra=""):
    """message - a small RFC 5322 message with CRLF line ends, ending CRLF."""
    return ("From: sender@sender.example\r\nTo: bob@example.com\r\n"
            "Subject: %s\r\nMessage-ID: <%s.%d@sender.example>\r\n%s\r\n%s"
            % (subject, subject.replace(" ", "."), time.monotonic_ns(),
               extra, body))


# ---------------------------------------------------------------- swaks

def swaks(port, *args, host="127.0.0.1", timeout=60):
    """swaks - run Debian's swaks against host:port; (rc, transcript)."""
    cmd = ["swaks", "--server", "%s:%d" % (host, port), "--timeout", "20",
           "--helo", "client.example.net"] + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       errors="replace")
    return p.returncode, p.stdout + p.stderr


def swaks_replies(transcript):
    """swaks_replies - the server reply lines of a swaks transcript."""
    return [l[4:].strip() for l in transcript.splitlines()
            if l.startswith(("<-  ", "<** ", "<~  ", "<~* "))]
