#!/bin/bash
# transparent/run.sh - transparent interception in network namespaces
# (run.py: redirect, tproxy, xclient, proxy, bridge, and xclient / proxy
# into Debian's real Postfix; v4 and v6).
#   tests/transparent/run.sh [redirect|tproxy|xclient|proxy|bridge|postfix ...]
cd "$(dirname "$0")/../.." || exit 1
exec /usr/bin/python3 tests/transparent/run.py "$@"
