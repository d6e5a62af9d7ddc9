#!/bin/sh
# run.sh - the web UI end to end: BusyBox httpd serving build/host/cgi-bin
# with the real daemon on loopback, driven by Selenium in headless
# Chromium (test_webui.py).  Prints "ok - webui:NAME" / "not ok - ...";
# screenshots of every page go to build/screenshots/.
cd "$(dirname "$0")/../.." || exit 1
for b in build/host/mailmoat build/host/mailmoatctl build/host/cgi-bin/login; do
	[ -x "$b" ] || { echo "not ok - webui:build ($b missing: run make)"; exit 1; }
done
for t in busybox chromium chromedriver; do
	command -v "$t" >/dev/null || { echo "not ok - webui:tools ($t missing: tools/install-deps)"; exit 1; }
done
# The flash tool, built for the host (the firmware build makes the box's).
mkdir -p build/webui-tmp
cc -std=c11 -O2 -D_GNU_SOURCE -o build/webui-tmp/mailmoat-flash \
	firmware/tools/mailmoat-flash.c firmware/tools/fwimg.c -lmbedcrypto \
	|| { echo "not ok - webui:build (mailmoat-flash)"; exit 1; }
status=0
/usr/bin/python3 tests/webui/test_webui.py "$@" || status=1
tests/webui/flash_stream.sh || status=1
exit $status
