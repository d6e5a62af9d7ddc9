#!/bin/sh
# sources.sh - fetch the pinned Debian source packages into build/src.
#
#   firmware/sources.sh SRCDIR
#
# Reads firmware/sources.lock (package=version), runs `apt-get source` for
# each one that is not extracted yet, and adds a deb-src entry for the
# configured Debian mirror when the machine has none.  libspf2 is fetched
# by firmware/libspf2.sh (owned by the SPF work).  Idempotent.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$1
mkdir -p "$src"
cd "$src"

# has_debsrc - true when apt knows at least one deb-src entry
has_debsrc() {
	grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list \
		/etc/apt/sources.list.d/ 2>/dev/null
}

if ! has_debsrc; then
	echo "sources.sh: no deb-src entry, adding /etc/apt/sources.list.d/mailmoat-fw-src.list"
	uri=$(grep -rhoE 'https?://[^ ]*debian[^ ]*' /etc/apt/sources.list \
		/etc/apt/sources.list.d/ 2>/dev/null | grep -v security | head -1)
	echo "deb-src ${uri:-http://deb.debian.org/debian} bookworm main" \
		> /etc/apt/sources.list.d/mailmoat-fw-src.list
	apt-get update -q >/dev/null
fi

sed 's/#.*//' "$here/sources.lock" | while IFS== read -r pkg ver; do
	[ -n "$pkg" ] || continue
	stamp=".$pkg.stamp"
	[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$ver" ] && continue
	echo "sources.sh: apt-get source $pkg=$ver"
	apt-get source -q "$pkg=$ver" >"$pkg.log" 2>&1 || {
		cat "$pkg.log" >&2
		echo "sources.sh: apt-get source $pkg=$ver failed" >&2
		exit 1
	}
	echo "$ver" > "$stamp"
done
