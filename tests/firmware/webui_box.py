#!/usr/bin/python3
"""webui_box.py - the web UI of the booted box (QEMU) in headless Chromium,
one step per call of the firmware suite (run.sh), which boots the box,
forwards its ports and checks the disk around these steps.

    webui_box.py STEP HTTP_PORT PASSWORD [ARGS...]

    dashboard SMTP_PORT   log in through the form, see the dashboard (the
                          box's version, the daemon running, the mail
                          server reachable), send a mail through the
                          box's proxy and see it counted there and in
                          /cgi-bin/metrics
    bad IMAGE             upload IMAGE on the firmware page: refused, the
                          form is back (run.sh checks nothing was written)
    good IMAGE            upload IMAGE: verified and flashed, the page says
                          the box restarts on it (run.sh waits for that)
    back VERSION [PREV]   after the reboot: log in again, the firmware page
                          shows VERSION running from slot B (committed) and
                          PREV in the other slot

Prints "ok - box-webui:..." / "not ok - box-webui:..." lines (the reason
follows as "#" lines); exit 1 if any failed.  Screenshots go to
build/screenshots/box-*.png.
"""
import os
import re
import smtplib
import sys
import tempfile
import traceback

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SHOTS = os.path.join(ROOT, "build", "screenshots")

failed = 0


def result(name, fn):
    global failed
    try:
        fn()
        print("ok - box-webui:%s" % name)
    except Exception:
        failed += 1
        print("not ok - box-webui:%s" % name)
        for line in traceback.format_exc().splitlines():
            print("#   " + line)
    sys.stdout.flush()


def check(cond, what):
    if not cond:
        raise AssertionError(what)


class Browser:
    def __init__(self, port):
        self.base = "http://127.0.0.1:%d" % port
        self.tmp = tempfile.mkdtemp(prefix="box-webui-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for a in ("--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-quic", "--no-first-run",
                  "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1200,900",
                  "--user-data-dir=" + os.path.join(self.tmp, "chrome")):
            opts.add_argument(a)
        self.drv = webdriver.Chrome(service=Service("/usr/bin/chromedriver"),
                                    options=opts)
        # a 34 MB image through QEMU's user network, verified on the box
        self.drv.set_page_load_timeout(300)

    def quit(self):
        try:
            self.drv.quit()
        except Exception:
            pass

    def get(self, path):
        self.drv.get(self.base + path)
        return self.drv.page_source

    def el(self, css):
        return self.drv.find_element(By.CSS_SELECTOR, css)

    def text(self):
        return self.drv.find_element(By.TAG_NAME, "body").text

    def submit(self, css):
        """submit - click, wait until the next page replaced this one."""
        old = self.drv.find_element(By.TAG_NAME, "html")

        def gone(d):
            try:
                old.is_enabled()
                return False
            except WebDriverException:
                return True
        self.el(css).click()
        WebDriverWait(self.drv, 300).until(gone)
        WebDriverWait(self.drv, 60).until(
            lambda d: d.execute_script("return document.readyState")
            == "complete")

    def login(self, pw):
        self.get("/cgi-bin/login")
        self.el("#user").clear()
        self.el("#user").send_keys("admin")
        self.el("#password").send_keys(pw)
        self.submit("#login")
        check(self.drv.current_url.endswith("/cgi-bin/dashboard"),
              "login did not reach the dashboard: %s %s" %
              (self.drv.current_url, self.text()[:200]))

    def shot(self, name):
        os.makedirs(SHOTS, exist_ok=True)
        try:
            h = self.drv.execute_script(
                "return document.documentElement.scrollHeight")
            self.drv.set_window_size(1200, min(max(int(h) + 40, 600), 6000))
        except Exception:
            pass
        self.drv.save_screenshot(os.path.join(SHOTS, "box-%s.png" % name))
        self.drv.set_window_size(1200, 900)

    def cell(self, table, key):
        return self.drv.find_element(
            By.XPATH, "//table[@id='%s']//tr[th='%s']/td" % (table, key)).text


def send_mail(smtp_port, subject):
    """send_mail - the suite's passed triplet (client 10.0.2.2 as the box
    sees the host, alice@example.net -> bob@example.com)."""
    s = smtplib.SMTP("127.0.0.1", smtp_port, "client.example.net", 60)
    try:
        s.sendmail("alice@example.net", ["bob@example.com"],
                   "From: alice@example.net\r\nTo: bob@example.com\r\n"
                   "Subject: %s\r\n\r\nhello\r\n" % subject)
    finally:
        s.quit()


def step_dashboard(b, pw, smtp_port):
    def login_dashboard():
        b.login(pw)
        check(b.cell("box", "daemon") == "running", b.text()[:400])
        check(b.cell("box", "board") == "x86_64", b.cell("box", "board"))
        check("<svg" in b.drv.page_source, "no chart")
    result("log in through the form, the dashboard of the box",
           login_dashboard)

    def mail_counted():
        before = int(b.cell("counters", "accepted"))
        send_mail(int(smtp_port), "box-webui-dashboard")
        b.get("/cgi-bin/dashboard")
        now = int(b.cell("counters", "accepted"))
        check(now == before + 1, "accepted %d before, %d after" %
              (before, now))
        be = b.el("#backend td").text
        check("reachable (it answered" in be, be)
        b.shot("dashboard")
        b.get("/cgi-bin/metrics")
        check(re.search(r"^mailmoat_accepted_total %d$" % now, b.text(),
                        re.M), b.text()[:600])
        check(re.search(r"^mailmoat_backend_reachable 1$", b.text(), re.M),
              "backend not reachable in the metrics")
    result("a mail through the box's proxy is counted on the dashboard "
           "and in the metrics, the mail server reachable", mail_counted)


def upload(b, image):
    b.get("/cgi-bin/firmware")
    b.el("#image").send_keys(os.path.abspath(image))
    b.submit("#flash")


def step_bad(b, pw, image):
    def refused():
        b.login(pw)
        upload(b, image)
        err = b.el("#error").text
        check(err.startswith("refused:"), err)
        check(b.el("#image"), "no form after the refusal")
        b.shot("firmware-refused")
        print("# %s: %s" % (os.path.basename(image), err))
    result("upload of a bad image (%s) in the browser: refused" %
           os.path.basename(image), refused)


def step_good(b, pw, image):
    def flashed():
        b.login(pw)
        b.get("/cgi-bin/firmware")
        b.shot("firmware")
        upload(b, image)
        note = b.el("#notice").text
        check(note.startswith("flashed:"), note)
        check("restarts on it" in b.el("#progress").text, b.text()[:300])
        b.shot("firmware-flashed")
        print("# %s" % note)
    result("upload of a good signed image in the browser: verified, "
           "flashed, the box restarts", flashed)


def step_back(b, pw, version, previous=None):
    def back():
        b.login(pw)
        check(b.cell("box", "version") == version, b.cell("box", "version"))
        b.get("/cgi-bin/firmware")
        check(b.cell("slots", "running version") == version,
              b.cell("slots", "running version"))
        # committed by now (run.sh waited for it): no longer a trial
        check(b.cell("slots", "running slot") == "B",
              b.cell("slots", "running slot"))
        if previous:
            check(b.cell("slots", "other slot") == previous,
                  "other slot: %r" % b.cell("slots", "other slot"))
        b.shot("firmware-after-update")
    result("after the update the browser sees the box back on %s, slot B"
           % version, back)


def main():
    step, port, pw = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    args = sys.argv[4:]
    steps = {"dashboard": step_dashboard, "bad": step_bad,
             "good": step_good, "back": step_back}
    b = Browser(port)
    try:
        steps[step](b, pw, *args)
    finally:
        b.quit()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
