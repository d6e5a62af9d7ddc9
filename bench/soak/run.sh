#!/bin/sh
# run.sh - the soak bench (issue 7): by hand, not part of make test.
#   bench/soak/run.sh                  600 s: 10,000 idle sessions, 200
#                                      slowloris clients, 5 legit msg/s
#   SOAK_SECONDS=120 bench/soak/run.sh a shorter run
#   bench/soak/run.sh --idle 2000 ...  see bench/soak/soak.py --help
# Builds first (make -j2), needs Postfix's smtp-sink.  Results: printed,
# raw JSON in build/soak-results.json; bench/RESULTS.md ("Soak (issue 7)")
# holds the recorded figures.
cd "$(dirname "$0")/../.." || exit 1
make -j2 >/dev/null || { echo "soak: make failed" >&2; exit 1; }
# both sides need ~10,000 descriptors (the daemon raises its own soft
# limit to the hard one too)
ulimit -n "$(ulimit -Hn)"
exec /usr/bin/python3 bench/soak/soak.py "$@"
