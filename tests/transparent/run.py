#!/usr/bin/python3
"""run.py - transparent interception in network namespaces.

Three namespaces per run (names carry our PID, removed at exit):
  internet  clients 203.0.113.10 (and .66, blocklisted), 2001:db8:1::10/::66
  box       the daemon, forwarding, the rules of rootfs/usr/sbin/mailmoat-intercept
            (the script the firmware's rcS runs)
  office    the internal server (office.py: aiosmtpd) on 192.0.2.25 and
            2001:db8:2::25 (port 25, and a plain TCP port 8080), plus
            192.0.2.99 / 2001:db8:2::99 which are not ours
Routed topology: internet -- box -- office; or (bridge cases) one L2
segment through a bridge in the box: internet/router side and office side.

Cases, each IPv4 and IPv6:
  redirect  the mail arrives; the office saw the box as the client
  tproxy    the mail arrives; the office saw 203.0.113.10 itself
  xclient   (redirect + backend_client_info = xclient) XCLIENT ADDR= the client
  proxy     (redirect + backend_client_info = proxy) PROXY v2 source = the client
  and per mode: a blocklisted client is refused and the office never sees a
  connection; port 8080 passes untouched (the office sees the client);
  port 25 to an address that is not ours is not intercepted; with rules
  that take every destination ("any"), the daemon refuses it itself
  (554, reason=transparent) and the office sees nothing.
  bridge    (bridge = ... , tproxy) the same in bridge mode.
  postfix   the office server is Debian's real Postfix (tests/lib/postfix.py,
            an instance of its own in the office namespace, delivering into
            a maildir), the box redirects with backend_client_info = none,
            xclient (smtpd_authorized_xclient_hosts = the box) and proxy
            (smtpd_upstream_proxy_protocol = haproxy: PROXY v2): its
            Received: header and its log name 203.0.113.10 (the box for none).
One "ok - NAME" / "not ok - NAME" line per case.
"""
import atexit
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
import postfix  # noqa: E402
HERE = os.path.join(TOP, "tests", "transparent")
DAEMON = os.path.join(TOP, "build", "host", "mailmoat")
INTERCEPT = os.path.join(TOP, "rootfs", "usr", "sbin", "mailmoat-intercept")
PY = "/usr/bin/python3"
PID = os.getpid()
NS = {k: "mm%s%d" % (k[0], PID) for k in ("internet", "box", "office")}
TMP = tempfile.mkdtemp(prefix="mm-transparent.")
GUARD = 30  # seconds: a hang is a failure, never a pass

CLIENT4, CLIENT6 = "203.0.113.10", "2001:db8:1::10"
BAD4, BAD6 = "203.0.113.66", "2001:db8:1::66"
SERVER4, SERVER6 = "192.0.2.25", "2001:db8:2::25"
OTHER4, OTHER6 = "192.0.2.99", "2001:db8:2::99"
BOXIN4, BOXIN6 = "192.0.2.1", "2001:db8:2::1"     # box, office side
LPORT = 2525

procs = []
failed = 0


def sh(*cmd, ns=None, check=True, quiet=False):
    full = (["ip", "netns", "exec", NS[ns]] if ns else []) + list(cmd)
    r = subprocess.run(full, capture_output=True, text=True, timeout=GUARD)
    if check and r.returncode != 0:
        raise RuntimeError("%s: %s%s" % (" ".join(full), r.stdout, r.stderr))
    return r


def cleanup():
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for n in NS.values():
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
    subprocess.run(["rm", "-rf", TMP])


atexit.register(cleanup)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(1))


def result(name, ok, why=""):
    global failed
    print("%s - %s" % ("ok" if ok else "not ok", name))
    if not ok:
        failed += 1
        for line in str(why).splitlines()[:30]:
            print("#   " + line)
    sys.stdout.flush()


def veth(a_ns, a_if, b_ns, b_if, tag):
    ta, tb = "t%sa%d" % (tag, PID), "t%sb%d" % (tag, PID)
    sh("ip", "link", "add", ta, "type", "veth", "peer", "name", tb)
    sh("ip", "link", "set", ta, "netns", NS[a_ns])
    sh("ip", "link", "set", tb, "netns", NS[b_ns])
    sh("ip", "link", "set", ta, "name", a_if, ns=a_ns)
    sh("ip", "link", "set", tb, "name", b_if, ns=b_ns)
    sh("ip", "link", "set", a_if, "up", ns=a_ns)
    sh("ip", "link", "set", b_if, "up", ns=b_ns)


def addr(ns, dev, *cidrs):
    for c in cidrs:
        extra = ["nodad"] if ":" in c else []
        sh("ip", "addr", "add", c, "dev", dev, *extra, ns=ns)


def topology(bridged):
    for n in NS.values():
        subprocess.run(["ip", "netns", "del", n], capture_output=True)
        sh("ip", "netns", "add", n)
    for k in NS:
        sh("ip", "link", "set", "lo", "up", ns=k)
    veth("internet", "eth0", "box", "eth0", "i")
    veth("office", "eth0", "box", "eth1", "o")
    addr("office", "eth0", SERVER4 + "/24", OTHER4 + "/24",
         SERVER6 + "/64", OTHER6 + "/64")
    if not bridged:
        addr("internet", "eth0", CLIENT4 + "/24", BAD4 + "/24",
             CLIENT6 + "/64", BAD6 + "/64")
        addr("box", "eth0", "203.0.113.1/24", "2001:db8:1::1/64")
        addr("box", "eth1", BOXIN4 + "/24", BOXIN6 + "/64")
        sh("ip", "route", "add", "default", "via", "203.0.113.1", ns="internet")
        sh("ip", "-6", "route", "add", "default", "via", "2001:db8:1::1", ns="internet")
        sh("ip", "route", "add", "default", "via", BOXIN4, ns="office")
        sh("ip", "-6", "route", "add", "default", "via", BOXIN6, ns="office")
    else:
        # One segment: the "internet" namespace plays the router, with
        # the clients behind it; the office's gateway is the router.
        addr("internet", "eth0", "192.0.2.254/24", "2001:db8:2::fe/64")
        addr("internet", "lo", CLIENT4 + "/32", BAD4 + "/32",
             CLIENT6 + "/128", BAD6 + "/128")
        sh("ip", "route", "add", "default", "via", "192.0.2.254", ns="office")
        sh("ip", "-6", "route", "add", "default", "via", "2001:db8:2::fe", ns="office")
        sh(INTERCEPT, "bridge", "eth0", "eth1", "br0", ns="box")
        # the box's own address on the bridge, and its route to the clients
        addr("box", "br0", "192.0.2.2/24", "2001:db8:2::2/64")
        sh("ip", "route", "add", "default", "via", "192.0.2.254", ns="box")
        sh("ip", "-6", "route", "add", "default", "via", "2001:db8:2::fe", ns="box")


def office_start(mode):
    log = os.path.join(TMP, "office-%s.log" % mode)
    open(log, "w").close()
    p = subprocess.Popen(["ip", "netns", "exec", NS["office"], PY,
                          os.path.join(HERE, "office.py"), log, mode, "25", "8080",
                          SERVER4, OTHER4, SERVER6, OTHER6],
                         stdout=subprocess.DEVNULL, stderr=open(log + ".err", "w"))
    procs.append(p)
    wait(lambda: any(e["ev"] == "ready" for e in events(log)), "office up", p)
    return p, log


def events(log):
    out = []
    with open(log) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def wait(cond, what, proc=None):
    end = time.monotonic() + GUARD
    while time.monotonic() < end:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("%s: process exited %s" % (what, proc.returncode))
        time.sleep(0.05)
    raise RuntimeError("timeout: " + what)


def daemon_start(mode, info, backend="original", extra="", user=None):
    d = os.path.join(TMP, "daemon-%s-%s%s" % (mode, info, "-" + user if user else ""))
    os.makedirs(os.path.join(d, "state"), exist_ok=True)
    with open(os.path.join(d, "recipients"), "w") as f:
        f.write("@example.com\n")
    with open(os.path.join(d, "block"), "w") as f:
        f.write("%s\n%s\n" % (BAD4, BAD6))
    conf = os.path.join(d, "mailmoat.conf")
    with open(conf, "w") as f:
        f.write("""listen = 0.0.0.0:%d [::]:%d
backend = %s
transparent = %s
backend_client_info = %s
hostname = box.test
local_domains = example.com
local_addresses = %s %s
recipients = recipients
blocklist = block
state_dir = state
control_socket = %s/ctl.sock
dns_servers = 127.0.0.1:9
dns_timeout = 200ms
greet_pause = 0
backend_reuse = 0
action_dnsbl = off
action_rdns = off
action_dynamic = off
action_helo = off
action_sender_tld = off
action_sender_mx = off
action_spf = off
action_greylist = off
action_dsn = off
action_scanner = off
%s""" % (LPORT, LPORT, backend, mode, info, SERVER4, SERVER6, d, extra))
    log = os.path.join(d, "daemon.log")
    env = dict(os.environ)
    if user:
        env["MAILMOAT_USER"] = user
        for dirpath, dirs, files in os.walk(TMP):
            os.chmod(dirpath, 0o777)
    p = subprocess.Popen(["ip", "netns", "exec", NS["box"], DAEMON, "-c", conf],
                         stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)
    procs.append(p)
    wait(lambda: "started" in open(log).read(), "daemon up", p)
    return p, log


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=GUARD)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def client(src, dst, port=25, rcpt="user@example.com"):
    r = sh(PY, os.path.join(HERE, "client.py"), src, dst, str(port), rcpt,
           ns="internet", check=False)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": r.stdout + r.stderr}


def tcp(src, dst, port):
    r = sh(PY, os.path.join(HERE, "client.py"), "--tcp", src, dst, str(port),
           ns="internet", check=False)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": r.stdout + r.stderr}


def intercept(mode, *addrs):
    return sh(INTERCEPT, "start", mode, str(LPORT), *addrs, ns="box", check=False)


# What the office must have seen as the client, per case.
def want_seen(case, fam, bridged):
    client_ip = CLIENT4 if fam == 4 else CLIENT6
    box_ip = (("192.0.2.2", "2001:db8:2::2") if bridged else (BOXIN4, BOXIN6))[fam == 6]
    if case == "tproxy":
        return {"peer": client_ip}
    if case == "redirect":
        return {"peer": box_ip}
    if case == "xclient":
        return {"peer": box_ip, "xclient": client_ip if fam == 4 else "IPV6:" + client_ip}
    if case == "proxy":
        return {"peer": box_ip, "proxy_src": client_ip}


def run_mode(case, bridged=False):
    """One daemon + office + rules; the mail and guard cases, v4 and v6."""
    tmode = "tproxy" if case == "tproxy" else "redirect"
    info = case if case in ("xclient", "proxy") else "none"
    omode = case if case in ("xclient", "proxy") else "plain"
    tag = ("bridge " if bridged else "") + case
    office, olog = office_start(omode)
    dmn, dlog = daemon_start(tmode, info)
    r = intercept(tmode, SERVER4, SERVER6)
    result("%s: mailmoat-intercept start %s" % (tag, tmode), r.returncode == 0,
           r.stdout + r.stderr)
    try:
        for fam, src, bad, dst, other in ((4, CLIENT4, BAD4, SERVER4, OTHER4),
                                          (6, CLIENT6, BAD6, SERVER6, OTHER6)):
            n0 = len(events(olog))
            got = client(src, dst)
            new = [e for e in events(olog)[n0:] if e["ev"] == "msg"]
            want = want_seen(case, fam, bridged)
            ok = got.get("final") == 250 and len(new) == 1 and all(
                new[0].get(k) == v for k, v in want.items())
            result("%s v%d: mail from %s arrives, office saw %s" %
                   (tag, fam, src, want), ok,
                   "client %s\noffice %s\n%s" % (got, new, open(dlog).read()[-1500:]))
            if case in ("redirect", "tproxy"):
                ok = len(new) == 1 and new[0].get("local") == dst
                result("%s v%d: the office was reached at its own address %s" %
                       (tag, fam, dst), ok, "office %s" % new)

            n0 = len(events(olog))
            got = client(bad, dst)
            conns = [e for e in events(olog)[n0:] if e["ev"] in ("conn", "msg")]
            ok = got.get("banner") == 554 and not conns
            result("%s v%d: blocklisted %s refused, office never reached" %
                   (tag, fam, bad), ok, "client %s\noffice %s" % (got, conns))

            n0 = len(events(olog))
            got = tcp(src, dst, 8080)
            new = [e for e in events(olog)[n0:] if e["ev"] == "tcp"]
            ok = got.get("got") == "hello" and len(new) == 1 and new[0]["peer"] == src
            result("%s v%d: port 8080 passes untouched (office saw %s)" %
                   (tag, fam, src), ok, "client %s\noffice %s" % (got, new))

            n0 = len(events(olog))
            dl0 = len(open(dlog).read())
            got = client(src, other)
            if case == "proxy":
                # the office wants a PROXY header from everyone: a
                # direct client is dropped there, but it got there
                new = [e for e in events(olog)[n0:] if e["ev"] == "conn"]
                delivered = True
            else:
                new = [e for e in events(olog)[n0:] if e["ev"] == "msg"]
                delivered = got.get("final") == 250
            ok = (delivered and len(new) == 1 and
                  new[0]["peer"] == src and new[0]["local"] == other and
                  "client=" + src not in open(dlog).read()[dl0:])
            result("%s v%d: port 25 to %s (not ours) is not intercepted" %
                   (tag, fam, other), ok,
                   "client %s\noffice %s\n%s" % (got, new, open(dlog).read()[dl0:]))

        # Rules that take every destination: the daemon itself refuses.
        r = intercept(tmode, "any")
        result("%s: mailmoat-intercept start %s any" % (tag, tmode),
               r.returncode == 0, r.stdout + r.stderr)
        for fam, src, other in ((4, CLIENT4, OTHER4), (6, CLIENT6, OTHER6)):
            n0 = len(events(olog))
            dl0 = len(open(dlog).read())
            got = client(src, other)
            conns = [e for e in events(olog)[n0:] if e["ev"] in ("conn", "msg")]
            dl = open(dlog).read()[dl0:]
            ok = (got.get("banner") == 554 and not conns and
                  "reason=transparent" in dl)
            result("%s v%d: intercepted connection to %s (not ours) refused "
                   "by the daemon (reason=transparent)" % (tag, fam, other), ok,
                   "client %s\noffice %s\n%s" % (got, conns, dl))
        # The stats show the original destinations.
        ctl = os.path.join(TOP, "build", "host", "mailmoatctl")
        sock = os.path.join(TMP, "daemon-%s-%s" % (tmode, info), "ctl.sock")
        r = sh(ctl, "-S", sock, "stats", ns="box", check=False)
        try:
            t = json.loads(r.stdout)["transparent"]
        except (ValueError, KeyError) as e:
            t = {"error": "%s %s %s" % (e, r.stdout, r.stderr)}
        dst = t.get("dst", {})
        ok = (dst.get(SERVER4 + ":25", 0) >= 2 and
              dst.get("[%s]:25" % SERVER6, 0) >= 2 and
              dst.get(OTHER4 + ":25", 0) >= 1 and t.get("refused", 0) >= 2)
        result("%s: stats \"transparent\" counts sessions per original "
               "destination and the refusals" % tag, ok, json.dumps(t))
    finally:
        sh(INTERCEPT, "stop", ns="box", check=False)
        stop(dmn)
        stop(office)


def run_unprivileged():
    """tproxy with the daemon as MAILMOAT_USER=nobody: it keeps
    CAP_NET_ADMIN, so the office still sees the client itself."""
    office, olog = office_start("plain")
    dmn, dlog = daemon_start("tproxy", "none", user="nobody")
    intercept("tproxy", SERVER4, SERVER6)
    try:
        for fam, src, dst in ((4, CLIENT4, SERVER4), (6, CLIENT6, SERVER6)):
            n0 = len(events(olog))
            got = client(src, dst)
            new = [e for e in events(olog)[n0:] if e["ev"] == "msg"]
            log = open(dlog).read()
            ok = (got.get("final") == 250 and len(new) == 1 and
                  new[0]["peer"] == src and "running as user nobody" in log)
            result("tproxy as MAILMOAT_USER=nobody v%d: office saw %s" % (fam, src),
                   ok, "client %s\noffice %s\n%s" % (got, new, log[-1500:]))
    finally:
        sh(INTERCEPT, "stop", ns="box", check=False)
        stop(dmn)
        stop(office)


def run_postfix(info):
    """The office server is Debian's real Postfix (an instance of its own
    in the office namespace, tests/lib/postfix.py) delivering example.com
    into a maildir; the box redirects with backend_client_info = INFO.
    Postfix must record the real client 203.0.113.10 / 2001:db8:1::10 in
    its Received: header and its log for xclient (it lets the box's
    address send XCLIENT: smtpd_authorized_xclient_hosts) and proxy (its
    smtpd_upstream_proxy_protocol = haproxy, PROXY v2 since Postfix 3.5);
    with none it records the box."""
    tag = "postfix %s" % info
    pdir = os.path.join(TMP, "postfix-" + info)
    vmail = os.path.join(pdir, "vmail")
    os.makedirs(vmail)
    os.chmod(TMP, 0o755)
    shutil.chown(vmail, "nobody", "nogroup")
    main = {
        "myhostname": "office.example.com", "mydomain": "example.com",
        "myorigin": "example.com", "mydestination": "",
        "inet_interfaces": "all", "inet_protocols": "all",
        "mynetworks": "127.0.0.0/8",
        "smtpd_peername_lookup": "no",
        "virtual_mailbox_domains": "example.com",
        "virtual_mailbox_base": vmail,
        "virtual_mailbox_maps": "inline:{ user@example.com=user/ }",
        "virtual_uid_maps": "static:65534", "virtual_gid_maps": "static:65534",
        "local_recipient_maps": "",
    }
    opts = {}
    if info == "xclient":
        main["smtpd_authorized_xclient_hosts"] = "%s, [%s]" % (BOXIN4, BOXIN6)
    elif info == "proxy":
        opts["smtpd_upstream_proxy_protocol"] = "haproxy"
    pf = postfix.Instance(pdir, main, ["%s:25" % SERVER4, "[%s]:25" % SERVER6],
                          ns=NS["office"], master_opts=opts)
    pf.start()
    dmn, dlog = daemon_start("redirect", info)
    r = intercept("redirect", SERVER4, SERVER6)
    result("%s: mailmoat-intercept start redirect" % tag, r.returncode == 0,
           r.stdout + r.stderr)
    try:
        for fam, src, box in ((4, CLIENT4, BOXIN4), (6, CLIENT6, BOXIN6)):
            dst = SERVER4 if fam == 4 else SERVER6
            lit = ("[%s]" if fam == 4 else "[IPv6:%s]")
            seen = src if info != "none" else box
            before = set(glob.glob(os.path.join(vmail, "user", "new", "*")))
            got = client(src, dst)
            mails = []
            if got.get("final") == 250:
                try:
                    wait(lambda: set(glob.glob(os.path.join(
                        vmail, "user", "new", "*"))) - before,
                        "postfix to deliver")
                except RuntimeError:
                    pass
                for fn in set(glob.glob(os.path.join(vmail, "user", "new", "*"))) - before:
                    with open(fn) as f:
                        mails.append(f.read())
            rcv = [ln for m in mails for ln in
                   m.replace("\n\t", " ").replace("\n    ", " ").splitlines()
                   if ln.startswith("Received:") and "by office.example.com" in ln]
            ok = (len(mails) == 1 and len(rcv) == 1 and
                  (lit % seen) in rcv[0] and (lit % (box if seen == src else src)) not in rcv[0])
            result("%s v%d: mail from %s delivered by Postfix, its Received: "
                   "header names %s" % (tag, fam, src, seen), ok,
                   "client %s\nreceived %s\n%s\n%s" %
                   (got, rcv, pf.log()[-2000:], open(dlog).read()[-800:]))
            ok = re.search(r"(?m)smtpd\[\d+\]: [0-9A-F]+: client=[^\[]*%s$" %
                           re.escape("[%s]" % seen), pf.log()) is not None
            result("%s v%d: Postfix logged client=[%s]" % (tag, fam, seen), ok,
                   pf.log()[-2000:])
    finally:
        sh(INTERCEPT, "stop", ns="box", check=False)
        stop(dmn)
        pf.stop(remove=False)


def main():
    if os.geteuid() != 0:
        print("not ok - transparent: needs root (network namespaces)")
        return 1
    if not os.access(DAEMON, os.X_OK):
        print("not ok - transparent: %s not built" % DAEMON)
        return 1
    only = sys.argv[1:]
    topology(bridged=False)
    for case in ("redirect", "tproxy", "xclient", "proxy"):
        if only and case not in only:
            continue
        try:
            run_mode(case)
        except Exception as e:  # a broken setup is a failure, named
            result("%s: setup" % case, False, e)
    if not only or "tproxy" in only:
        try:
            run_unprivileged()
        except Exception as e:
            result("tproxy as MAILMOAT_USER=nobody: setup", False, e)
    for info in ("none", "xclient", "proxy"):
        if only and "postfix" not in only and "postfix-" + info not in only:
            continue
        if not postfix.available()[0]:
            result("postfix %s: Debian's postfix installed" % info, False)
            continue
        try:
            run_postfix(info)
        except Exception as e:
            result("postfix %s: setup" % info, False, e)
    if not only or "bridge" in only:
        try:
            topology(bridged=True)
            run_mode("tproxy", bridged=True)
        except Exception as e:
            result("bridge tproxy: setup", False, e)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
