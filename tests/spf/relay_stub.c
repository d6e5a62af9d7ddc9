/*
 * relay_stub.c - what stats.c (linked for dns.c's stats section) needs from
 * relay.c, for the SPF driver and fuzzer built from a few sources: no relay
 * connections.
 */
#include "proxy.h"

unsigned relay_open_count;
