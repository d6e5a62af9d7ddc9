/*
 * stats_stub.c - what dns.c needs from stats.c, for the SPF driver and
 * fuzzers built from a few sources (tests/spf/run.sh,
 * bench/fuzz-campaign.sh): the driver has no `mailmoatctl stats`, so
 * dns.c's section is not kept.  (stats.c itself would pull in the store,
 * the relay and more.)
 */
#include "proxy.h"

void
stats_add_section(const char *name, void (*fn)(struct buf *b))
{
}
