#!/usr/bin/python3
"""runner.py - run the integration test modules, print ok/not ok lines.

    runner.py                  every tests/integ/test_*.py, in parallel
    runner.py test_relay ...   just those modules
    runner.py -k NAME          only tests whose name contains NAME

Each module runs in its own process (its own daemon, backend, ports and
temp dir), MM_JOBS at a time (default 3).  A test's line is
"ok - MODULE:TEST" or "not ok - MODULE:TEST", followed by the failure
as "#" commentary.
"""
import concurrent.futures
import os
import subprocess
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)


class TapResult(unittest.TestResult):
    """TapResult - one line per test as it finishes."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.start = {}

    def name(self, test):
        # setUpClass/tearDownClass errors come as an _ErrorHolder whose
        # description is "setUpClass (module.Class)"
        n = getattr(test, "_testMethodName", None)
        if n is None:
            d = getattr(test, "description", str(test))
            n = d.split(" ")[0] + ":" + d.split(".")[-1].rstrip(")")
        return "%s:%s" % (self.module, n)

    def startTest(self, test):
        super().startTest(test)
        self.start[test] = time.monotonic()

    def _took(self, test):
        if test not in self.start:
            return ""
        return " (%.1fs)" % (time.monotonic() - self.start[test])

    def addSuccess(self, test):
        super().addSuccess(test)
        print("ok - %s%s" % (self.name(test), self._took(test)), flush=True)

    def _bad(self, test, err, kind):
        print("not ok - %s%s" % (self.name(test), self._took(test)),
              flush=True)
        text = "".join(traceback.format_exception(*err))
        for line in text.rstrip().splitlines()[-25:]:
            print("#   " + line)
        sys.stdout.flush()

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._bad(test, err, "failure")

    def addError(self, test, err):
        super().addError(test, err)
        self._bad(test, err, "error")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        print("# skip %s: %s" % (self.name(test), reason), flush=True)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        print("ok - %s # expected failure" % self.name(test), flush=True)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        print("not ok - %s # unexpected success" % self.name(test),
              flush=True)


def run_module(name, pattern=None):
    """run_module - run one module in this process; exit status."""
    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = ["*%s*" % pattern]
    try:
        suite = loader.loadTestsFromName(name)
    except Exception:
        print("not ok - %s:load" % name)
        traceback.print_exc(file=sys.stdout)
        return 1
    result = TapResult(name)
    suite.run(result)
    return 0


def main(argv):
    pattern = None
    if "-k" in argv:
        i = argv.index("-k")
        pattern = argv[i + 1]
        del argv[i:i + 2]
    if argv and argv[0] == "--one":
        return run_module(argv[1], pattern)
    mods = argv or sorted(f[:-3] for f in os.listdir(HERE)
                          if f.startswith("test_") and f.endswith(".py"))
    jobs = int(os.environ.get("MM_JOBS", "3"))

    def one(m):
        cmd = [sys.executable, os.path.abspath(__file__), "--one", m]
        if pattern:
            cmd += ["-k", pattern]
        t = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True,
                           errors="replace")
        out = p.stdout
        if p.returncode != 0 and "not ok" not in out:
            out += "not ok - %s:run (exit %d)\n" % (m, p.returncode)
        if p.stderr.strip():
            out += "".join("# " + l + "\n"
                           for l in p.stderr.strip().splitlines()[-30:])
        return m, out, time.monotonic() - t

    rc = 0
    with concurrent.futures.ThreadPoolExecutor(jobs) as ex:
        for m, out, took in ex.map(one, mods):
            print("# module %s (%.1fs)" % (m, took))
            sys.stdout.write(out)
            sys.stdout.flush()
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
