#!/bin/sh
# run.sh - the integration suite: the real daemon against real peers
# (swaks, smtplib, smtp-source, openssl; aiosmtpd backend, smtp-sink).
# Prints "ok - NAME" / "not ok - NAME"; see tests/integ/README.md.
# MM_JOBS=N sets how many test modules run at once (default 3).
cd "$(dirname "$0")/../.." || exit 1
if [ ! -x build/host/mailmoat ] || [ ! -x build/host/mailmoatctl ]; then
	echo "not ok - integ:build (build/host/mailmoat or mailmoatctl missing: run make)"
	exit 1
fi
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# Run a snapshot of the binaries, so that a rebuild during the run (make
# in the same tree) cannot swap the daemon under a test.
if [ -z "${MM_BUILD:-}" ]; then
	snap=build/integ-tmp/bin.$$
	mkdir -p "$snap" &&
	cp build/host/mailmoat build/host/mailmoatctl "$snap/" || exit 1
	trap 'rm -rf "$snap"' EXIT INT TERM
	MM_BUILD=$(pwd)/$snap
	export MM_BUILD
fi
/usr/bin/python3 tests/integ/runner.py "$@"
