"""postfix.py - Debian's Postfix as an unprivileged second instance.

    Instance(tmp, main, listeners, ns=None, master_opts=None)

An instance has its own config, queue and data dirs under tmp (postfix -c
DIR): main.cf is the dict main (on top of the dirs and a log file of its
own, tmp/maillog, written by postlogd), master.cf is Debian's with the
smtp service replaced by one smtpd per address:port of listeners (IPv6
as "[addr]:port"), -o options master_opts on them, and no submission /
smtps.  ns runs every postfix command (and so the master and its
listeners) inside that network namespace (ip netns exec).  Used by
tests/integ/test_dsn.py (a far MTA and an office server on loopback) and
tests/transparent (the office's real mail server behind the box).
Nothing here sleeps to make an assertion: waits poll, with a guard.
"""
import os
import re
import shutil
import subprocess
import time

GUARD = 30.0


def available():
    """available - Debian's postfix is installed and we are root."""
    return bool(shutil.which("postfix")) and os.geteuid() == 0


class Instance:
    def __init__(self, tmp, main, listeners, ns=None, master_opts=None):
        self.tmp = tmp
        self.ns = ns
        os.chmod(tmp, 0o755)          # the postfix user walks into it
        self.conf = os.path.join(tmp, "conf")
        q = os.path.join(tmp, "queue")
        d = os.path.join(tmp, "data")
        for x in (self.conf, q, d):
            os.makedirs(x, exist_ok=True)
        shutil.chown(d, "postfix")
        full = {
            "compatibility_level": "3.6",
            "queue_directory": q, "data_directory": d,
            "maillog_file": os.path.join(tmp, "maillog"),
            "maillog_file_prefixes": tmp,
            "alias_maps": "", "alias_database": "",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "notify_classes": "", "delay_warning_time": "0",
        }
        full.update(main)
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in full.items():
                f.write("%s = %s\n" % (k, v))
        opts = "".join(" -o %s=%s" % kv for kv in (master_opts or {}).items())
        svc = "".join("%s inet n - n - - smtpd%s\n" % (a, opts) for a in listeners)
        with open("/etc/postfix/master.cf") as f:
            master = f.read()
        master = re.sub(r"(?m)^smtp +inet .*\n", lambda m: svc, master)
        master = re.sub(r"(?m)^(submission|smtps) +inet .*$", "", master)
        if not re.search(r"(?m)^postlog ", master):
            master += "postlog unix-dgram n - n - 1 postlogd\n"
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(master)

    def _run(self, *cmd):
        full = (["ip", "netns", "exec", self.ns] if self.ns else []) + list(cmd)
        return subprocess.run(full, capture_output=True, text=True,
                              timeout=GUARD)

    def postfix(self, *args):
        return self._run("postfix", "-c", self.conf, *args)

    def start(self):
        """start - postfix start (its master binds the listeners before
        it returns: postfix-script runs master -w)."""
        p = self.postfix("start")
        if p.returncode != 0:
            raise RuntimeError("postfix start: %s %s" % (p.stdout, p.stderr))
        return self

    def stop(self, remove=True):
        self.postfix("stop")
        end = time.monotonic() + GUARD
        while self.postfix("status").returncode == 0:
            if time.monotonic() > end:
                self.postfix("abort")
                break
            time.sleep(0.05)
        if remove:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def queue_empty(self):
        p = self._run("postqueue", "-c", self.conf, "-p")
        return "Mail queue is empty" in p.stdout

    def log(self):
        try:
            with open(os.path.join(self.tmp, "maillog")) as f:
                return f.read()
        except OSError:
            return ""
