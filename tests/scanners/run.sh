#!/bin/sh
# tests/scanners/run.sh - the scanner check (clamd, spamd, rspamd) against
# the real daemons from Debian's packages, started by the test on loopback
# ports with their own configs, and against fake scanners that fail in
# every way (tests/scanners/test_scanners.py).
set -u
cd "$(dirname "$0")/../.."
[ -x build/host/mailmoat ] || make -s all >/dev/null || { echo "not ok - scanners:build"; exit 1; }
exec /usr/bin/python3 tests/scanners/test_scanners.py
