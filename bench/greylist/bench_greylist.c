/*
 * bench_greylist.c - the greylist on the store at N triplets: RAM per
 * triplet (RSS growth while inserting), lookups per second (random known
 * triplets, greylist_lookup), the load time of the state from flash,
 * bytes written per 1,000 new triplets (a flush after each 1,000), the
 * time a whole-state snapshot holds the loop (store_flush() returning:
 * the copy of the slots) and its total time in the thread pool.
 *
 *   bench_greylist N DIR [TRIPLETS_FILE]
 * With TRIPLETS_FILE, the triplets (one "NET SENDER RCPT" a line) are also
 * written there for the postgrey side (bench/greylist/postgrey.py).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"

/* rss_kib - resident set of this process. */
static long
rss_kib(void)
{
	long pages = 0, rss = 0;
	FILE *f = fopen("/proc/self/statm", "r");

	if (f != NULL) {
		if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
			rss = 0;
		fclose(f);
	}
	return rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* cpu_s - CPU seconds of this process (the box is shared: wall time
 * includes waiting for a core). */
static double
cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* now_s - monotonic seconds. */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* triplet - the i-th bench triplet (a realistic mix: /24 nets, senders
 * of many domains, a few local recipients). */
static void
triplet(unsigned i, char *out, size_t n)
{
	snprintf(out, n,
	         "%u.%u.%u.0/24 user%c%u@sender%u.example rcpt%u@local.test",
	         10 + (i % 200), (i / 200) % 256, (i / 51200) % 256,
	         'a' + i % 26, i, i % 5000, i % 50);
}

static int snap_done;

/* snap_cb - the snapshot is on flash. */
static void
snap_cb(int rc, void *arg)
{
	(void)arg;
	snap_done = rc == 0 ? 1 : -1;
}

/* main - the figures. */
int
main(int argc, char **argv)
{
	struct config cfg = {0};
	struct store_counters c0, c1;
	unsigned n = argc > 1 ? (unsigned)atoi(argv[1]) : 100000, w;
	char t[256];
	double t0, dt, c;
	long r0, r1;
	uint64_t sum = 0;
	FILE *tf = argc > 3 ? fopen(argv[3], "w") : NULL;

	if (argc < 3) {
		fprintf(stderr, "usage: bench_greylist N DIR [TRIPLETS]\n");
		return 2;
	}
	cfg.state_dir = argv[2];
	cfg.greylist_delay_s = 300;
	cfg.greylist_window_s = 2 * 86400;
	cfg.greylist_lifetime_s = 10 * 86400;
	cfg.greylist_auto_allow = 0;
	log_open(false, false);
	store_open(uv_default_loop(), &cfg, NULL, 0);
	greylist_open();
	greylist_set_capacity(n); /* a box sized for n triplets */
	r0 = rss_kib();
	store_counters_get(&c0);
	for (unsigned i = 0; i < n; i++) {
		triplet(i, t, sizeof(t));
		if (tf != NULL)
			fprintf(tf, "%s\n", t);
		greylist_record(&cfg, t);
		if (i % 1000 == 999)
			store_flush_now();
	}
	store_flush_now();
	store_counters_get(&c1);
	r1 = rss_kib();
	printf("triplets %u\n", n);
	printf("rss_per_triplet_bytes %.1f\n", (r1 - r0) * 1024.0 / n);
	printf("bytes_written_per_1000_new %.0f\n",
	       (double)(c1.bytes_written - c0.bytes_written) * 1000.0 / n);
	printf("snapshots_during_insert %llu\n",
	       (unsigned long long)(c1.snapshots - c0.snapshots));
	t0 = now_s();
	for (unsigned k = 0; k < 2000000; k++) {
		unsigned i = (unsigned)((k * 2654435761u) % n);

		triplet(i, t, sizeof(t));
		sum += greylist_lookup(&cfg, t, &w);
	}
	dt = now_s() - t0;
	printf("lookups_per_s %.0f (text formatting included)\n", 2000000 / dt);
	t0 = now_s();
	for (unsigned k = 0; k < 2000000; k++) {
		unsigned i = (unsigned)((k * 2654435761u) % n);

		triplet(i, t, sizeof(t));
		sum += t[3];
	}
	dt = now_s() - t0;
	printf("formatting_only_per_s %.0f\n", 2000000 / dt);
	{
		/* greylist_lookup alone: 65,536 random known triplets
		 * formatted beforehand, asked in turn. */
		enum { NPRE = 65536 };
		char(*pre)[96] = malloc(NPRE * sizeof(*pre));

		for (unsigned k = 0; k < NPRE; k++)
			triplet((unsigned)(((k + 7) * 2654435761u) % n), pre[k],
			        sizeof(pre[k]));
		t0 = now_s();
		c = cpu_s();
		for (unsigned k = 0; k < 2000000; k++)
			sum += greylist_lookup(&cfg, pre[k % NPRE], &w);
		dt = now_s() - t0;
		printf("lookups_only_per_s %.0f (texts formatted before; "
		       "per CPU second %.0f)\n",
		       2000000 / dt, 2000000 / (cpu_s() - c));
		free(pre);
	}
	store_compact();
	snap_done = 0;
	t0 = now_s();
	store_flush(snap_cb, NULL);
	dt = now_s() - t0;
	while (!snap_done)
		uv_run(uv_default_loop(), UV_RUN_ONCE);
	store_counters_get(&c1);
	printf("snapshot_loop_s %.4f (store_flush %.4f + the copy %.4f) "
	       "snapshot_total_s %.3f\n",
	       dt + c1.serialise_us / 1e6, dt, c1.serialise_us / 1e6,
	       now_s() - t0);
	store_close();
	t0 = now_s();
	c = cpu_s();
	store_open(uv_default_loop(), &cfg, NULL, 0);
	greylist_open();
	dt = now_s() - t0;
	printf("load_s %.3f (cpu %.3f)\n", dt, cpu_s() - c);
	store_counters_get(&c0);
	printf("journal_bytes %llu live_bytes %llu\n",
	       (unsigned long long)c0.jnl_bytes,
	       (unsigned long long)c0.live_bytes);
	t0 = now_s();
	store_close(); /* the compaction the load asked for, or a burst */
	printf("close_flush_s %.3f\n", now_s() - t0);
	if (tf != NULL)
		fclose(tf);
	return sum == 0 ? 1 : 0;
}
