"""postfix.py - Debian's Postfix as a second, unprivileged-by-config
instance for tests: its own config directory (postfix -c DIR), queue and
data directories under a temp dir, no chroot, no listening service, its
log in a file (postlogd), short retry timers.  It plays a real sending
MTA: mail submitted with its sendmail goes to one relay host (mailmoat)
from a bind address of the test's choosing, and Postfix retries by
itself when it is told 4xx.

    pf = PostfixMTA(relay_port, src="127.0.20.1").start()
    pf.sendmail("alice@far.test", ["bob@example.com"], text)
    mm.wait_for(pf.queue_empty, "the queue to drain")
    pf.log()            # its maillog
    pf.stop()

Needs root (postfix start) and the Debian users postfix / postdrop.
Only /usr/bin/python3 (with tests/lib on sys.path) runs this.
"""
import os
import shutil
import subprocess

import mm

# no chroot (column 5 "n"), no inet service: the instance only sends
MASTER_CF = """\
pickup    unix  n       -       n       1       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available():
    """available - (ok, why not): postfix installed and we are root."""
    if not shutil.which("postfix") or not os.path.exists("/usr/sbin/sendmail"):
        return False, "Debian's postfix is not installed"
    if os.geteuid() != 0:
        return False, "postfix start needs root"
    return True, ""


class PostfixMTA:
    """PostfixMTA - a sending Postfix relaying everything to
    [relay_host]:relay_port from bind address src."""

    def __init__(self, relay_port, src, relay_host="127.0.0.1",
                 hostname="mta.far.test", extra=None):
        self.tmp = mm.mkdtemp("postfix-")
        os.chmod(self.tmp, 0o755)     # the postfix user walks into it
        self.conf = os.path.join(self.tmp, "conf")
        self.queue = os.path.join(self.tmp, "queue")
        self.data = os.path.join(self.tmp, "data")
        self.maillog = os.path.join(self.tmp, "maillog")
        for d in (self.conf, self.queue, self.data):
            os.makedirs(d)
        shutil.chown(self.data, "postfix")
        main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue, "data_directory": self.data,
            "mail_owner": "postfix", "setgid_group": "postdrop",
            "myhostname": hostname, "mydomain": "far.test",
            "myorigin": "far.test", "mydestination": "",
            "inet_interfaces": "loopback-only", "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "[%s]:%d" % (relay_host, relay_port),
            "smtp_bind_address": src, "smtp_helo_name": hostname,
            "maillog_file": self.maillog,
            "maillog_file_prefixes": self.tmp,
            "alias_maps": "", "alias_database": "",
            "local_recipient_maps": "",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "notify_classes": "", "delay_warning_time": "0",
            # retry soon and often: the greylist delay of the test is a
            # second or two.  Not 1s: qmgr takes a deferred file whose
            # time stamp is up to 1s ahead at once, possibly while the
            # smtp agent still holds its lock ("skipped, still being
            # delivered"), and then parks it for 60s.
            "minimal_backoff_time": "2s", "maximal_backoff_time": "3s",
            "queue_run_delay": "1s",
            "smtp_connection_cache_on_demand": "no",
            "smtp_connect_timeout": "5s", "smtp_helo_timeout": "10s",
            "smtp_mail_timeout": "10s", "smtp_rcpt_timeout": "10s",
            "smtp_data_init_timeout": "10s",
            "smtp_data_xfer_timeout": "20s",
            "smtp_data_done_timeout": "20s", "smtp_quit_timeout": "5s",
            # a 4xx must not mark the relay host dead for long
            "smtp_destination_concurrency_failed_cohort_limit": "100",
            "smtp_skip_quit_response": "yes",
            "maximal_queue_lifetime": "1h", "bounce_queue_lifetime": "1h",
        }
        main.update(extra or {})
        with open(os.path.join(self.conf, "main.cf"), "w") as f:
            for k, v in main.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.conf, "master.cf"), "w") as f:
            f.write(MASTER_CF)

    def postfix(self, *args):
        return subprocess.run(["postfix", "-c", self.conf] + list(args),
                              capture_output=True, text=True,
                              timeout=mm.GUARD * 3)

    def running(self):
        return self.postfix("status").returncode == 0

    def start(self):
        p = self.postfix("start")
        if p.returncode != 0:
            self.cleanup()
            raise mm.HarnessError("postfix start: %s %s%s" % (
                p.stdout, p.stderr, self.log()[-2000:]))
        mm.wait_for(self.running, "postfix to run")
        mm._live.add(self)
        return self

    def _atexit(self):
        self.stop()

    def stop(self):
        if self.running():
            self.postfix("stop")
            mm.wait_for(lambda: not self.running(), "postfix to stop",
                        timeout=mm.GUARD * 3)
        self.cleanup()

    def cleanup(self):
        mm._live.discard(self)
        if os.environ.get("MM_KEEP"):
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sendmail(self, sender, rcpts, text):
        """sendmail - submit a message with the instance's sendmail
        (postdrop into its maildrop; pickup takes it)."""
        if isinstance(text, str):
            text = text.encode()
        p = subprocess.run(["/usr/sbin/sendmail", "-C", self.conf, "-i",
                            "-f", sender] + list(rcpts), input=text,
                           capture_output=True, timeout=mm.GUARD)
        if p.returncode != 0:
            raise mm.HarnessError("sendmail: rc=%d %r" % (p.returncode,
                                                          p.stderr))

    def queue_empty(self):
        p = subprocess.run(["postqueue", "-c", self.conf, "-p"],
                           capture_output=True, text=True, timeout=mm.GUARD)
        return "Mail queue is empty" in p.stdout

    def flush(self):
        """flush - postqueue -f: retry every deferred message now."""
        subprocess.run(["postqueue", "-c", self.conf, "-f"],
                       capture_output=True, timeout=mm.GUARD)

    def parked(self):
        """parked - qmgr found a queue file still locked by a delivery
        agent and parked it for 60s (a race of very short timers)."""
        return "skipped, still being delivered" in self.log()

    def log(self):
        try:
            with open(self.maillog, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def statuses(self, rcpt):
        """statuses - [(status, rest of line)] of the smtp client's
        delivery lines for rcpt, in order."""
        out = []
        for line in self.log().splitlines():
            if "postfix/smtp[" not in line or "to=<%s>" % rcpt not in line:
                continue
            i = line.find(" status=")
            if i < 0:
                continue
            st = line[i + 8:].split(" ", 1)
            out.append((st[0], st[1] if len(st) > 1 else ""))
        return out
