/*
 * fuzz_dsn.c - libFuzzer harness for the DSN scanner (dsn.c), with the
 * scanner itself as its oracle: how the message is cut into reads must
 * not change the verdict.
 *
 * Input layout: byte 0 = seed of the PRNG that cuts the rest into reads
 * (1..N bytes, N from the seed too); the rest is the message.  Checked:
 *   - no crash, no leak, no undefined behaviour (ASan/UBSan);
 *   - fed whole and fed in pieces, the result is the same: referenced,
 *     kind, capped, the number of ids and the id that matched;
 *   - bytes counts what was fed; a reference implies ids > 0.
 * Our domains are "ours.test" and the host "mx.ours.test".
 * Seeds: tests/fuzz/seeds/dsn/ (sisimai bounces and hand cases).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

static struct config cfg;

/* ours_cb - the domain rule. */
static bool
ours_cb(void *arg, const char *id, size_t n)
{
	return dsn_id_ours(&cfg, id, n);
}

/* run - scan data cut by seed (0: whole). */
static void
run(const uint8_t *data, size_t n, unsigned seed, struct dsn_result *r)
{
	struct dsn_scan *d = dsn_scan_new(ours_cb, NULL);
	unsigned max = seed % 2 ? 3 : 1 + seed * 17;
	size_t i = 0, k;

	while (i < n) {
		seed = seed * 1103515245u + 12345u;
		k = seed == 0 || max == 0 ? n : 1 + (seed >> 16) % max;
		if (k > n - i)
			k = n - i;
		dsn_scan_feed(d, (const char *)data + i, k);
		i += k;
	}
	dsn_scan_end(d, r);
	dsn_scan_free(d);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char *dom[] = {"ours.test", NULL};
	struct dsn_result a, b;

	cfg.hostname = "mx.ours.test";
	cfg.local_domains.v = dom;
	cfg.local_domains.n = 1;
	if (size < 1)
		return 0;
	run(data + 1, size - 1, 0, &a);
	run(data + 1, size - 1, data[0] | 1u << 8, &b);
	if (a.referenced != b.referenced || a.kind != b.kind ||
	    a.capped != b.capped || a.ids != b.ids ||
	    strcmp(a.ref, b.ref) != 0 || strcmp(a.first, b.first) != 0) {
		fprintf(stderr,
		        "pieces differ: ref %d/%d kind %d/%d capped %d/%d "
		        "ids %u/%u\n",
		        a.referenced, b.referenced, a.kind, b.kind, a.capped,
		        b.capped, a.ids, b.ids);
		abort();
	}
	if (a.bytes != size - 1 || (a.referenced && a.ids == 0))
		abort();
	return 0;
}
