/*
 * test_store_crash.c - crash consistency of the store.
 *
 * A forked writer puts records in batches (new keys, overwrites of a hot
 * set that makes the journal compact into snapshots now and then, dels),
 * flushes after each batch and reports the batch on a pipe once the flush
 * returned.  The parent SIGKILLs it at a random moment, loads the store
 * as a restarted daemon would and checks that every batch reported before
 * the cut is there (puts, overwrites and dels).  This repeats on the same
 * state_dir (MM_CRASH_ROUNDS times, default 300), so the next writer
 * appends after a torn tail as a restarted daemon does.  Then the files
 * are truncated and corrupted at random offsets: every load must succeed
 * and what it loaded must persist through the next flush.  Every record
 * also goes to a compact index (store_index "crashix", key i + 1; hot
 * keys 2^40 + h), checked the same way: its journal records and block
 * snapshots take the same cuts.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"
#include "t.h"

#define BATCH 10
#define HOT 1000
#define MAXKEYS 2000000

static char dir[] = "/tmp/test_store_crash.XXXXXX";
static struct config cfg;
static unsigned char *state; /* per key: 0 unknown, 1 committed, 2 deleted */

/* path_of - dir/name. */
static const char *
path_of(const char *name)
{
	static char p[128];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

/* kname - the key of record i. */
static size_t
kname(char *out, const char *prefix, unsigned i)
{
	return (size_t)snprintf(out, 32, "%s%u", prefix, i);
}

/* writer - the child: batches from base on until killed.  Batch b puts
 * keys base+b*BATCH..+BATCH-1 (value = key number), sets every hot key to
 * b, deletes key i-5 for each new i divisible by 7 (within this run). */
static void
writer(int fd, unsigned base)
{
	struct store_table *t;
	struct store_index *x;
	char k[32];

	if (store_open(uv_default_loop(), &cfg, NULL, 0) < 0)
		_exit(3);
	t = store_table("crash", 4);
	x = store_index("crashix", 4, 0);
	for (uint32_t b = 0;; b++) {
		for (unsigned j = 0; j < BATCH; j++) {
			uint32_t i = base + b * BATCH + j;

			store_put(t, k, kname(k, "k", i), &i, 0);
			store_iput(x, i + 1, &i, 0);
			if (i % 7 == 0 && i >= base + 5) {
				store_del(t, k, kname(k, "k", i - 5));
				store_idel(x, i - 5 + 1);
			}
		}
		for (unsigned h = 0; h < HOT; h++) {
			store_put(t, k, kname(k, "hot", h), &b, 0);
			store_iput(x, (1ull << 40) + h, &b, 0);
		}
		if (store_flush_now() < 0)
			_exit(4);
		if (write(fd, &b, sizeof(b)) != sizeof(b))
			_exit(5);
	}
}

/* verify - load and compare with what was committed; returns the number
 * of mismatches (and reports the first). */
static unsigned
verify(unsigned top, int64_t hot_min, unsigned next)
{
	struct store_table *t;
	struct store_index *x;
	unsigned bad = 0, seen = 0, seen_x = 0;
	char k[32];

	if (store_open(uv_default_loop(), &cfg, NULL, 0) < 0)
		return 1;
	t = store_table("crash", 4);
	x = store_index("crashix", 4, 0);
	for (unsigned i = 0; i < top; i++) {
		const uint32_t *v = store_get(t, k, kname(k, "k", i));
		const uint32_t *w = store_iget(x, i + 1, store_now());

		if ((state[i] == 1 && (v == NULL || *v != i)) ||
		    (state[i] == 2 && v != NULL)) {
			if (bad++ == 0)
				T_CHECK(0, "key %u: state %d, got %s", i,
				        state[i], v ? "a value" : "none");
		}
		if ((state[i] == 1 && (w == NULL || *w != i)) ||
		    (state[i] == 2 && w != NULL)) {
			if (bad++ == 0)
				T_CHECK(0, "index key %u: state %d, got %s", i,
				        state[i], w ? "a value" : "none");
		}
	}
	/* the unreported batch: all or nothing */
	{
		unsigned want = 0;

		for (unsigned i = next; i < next + BATCH; i++) {
			bool own_del = (i + 5) % 7 == 0 && i + 5 < next + BATCH;

			if (own_del)
				continue; /* deleted within the batch */
			want++;
			seen += store_get(t, k, kname(k, "k", i)) != NULL;
			seen_x += store_iget(x, i + 1, store_now()) != NULL;
		}
		if ((seen != 0 && seen != want) || seen_x != seen) {
			bad++;
			T_CHECK(0,
			        "a torn batch loaded: %u of %u keys (index: "
			        "%u)",
			        seen, want, seen_x);
		}
	}
	for (unsigned h = 0; hot_min >= 0 && h < HOT; h++) {
		const uint32_t *v = store_get(t, k, kname(k, "hot", h));

		const uint32_t *w =
		        store_iget(x, (1ull << 40) + h, store_now());

		if (v == NULL || (int64_t)*v < hot_min) {
			if (bad++ == 0)
				T_CHECK(0, "hot %u: got %ld, want >= %ld", h,
				        v ? (long)*v : -1L, (long)hot_min);
		}
		if (w == NULL || (int64_t)*w < hot_min || *w != *v) {
			if (bad++ == 0)
				T_CHECK(0, "index hot %u: got %ld, want %ld", h,
				        w ? (long)*w : -1L, v ? (long)*v : -1L);
		}
	}
	return bad;
}

/* round_once - one writer run killed at a random moment; false when the
 * committed state did not load. */
static bool
round_once(unsigned *base, unsigned max_us)
{
	int p[2];
	pid_t pid;
	uint32_t b, last = 0;
	bool any = false;
	unsigned bad;

	if (pipe(p) < 0)
		return false;
	pid = fork();
	if (pid == 0) {
		close(p[0]);
		writer(p[1], *base);
	}
	close(p[1]);
	usleep((useconds_t)(rand() % max_us));
	kill(pid, SIGKILL);
	while (read(p[0], &b, sizeof(b)) == sizeof(b)) {
		last = b;
		any = true;
	}
	close(p[0]);
	waitpid(pid, NULL, 0);
	if (any) {
		for (uint32_t bb = 0; bb <= last; bb++) {
			for (unsigned j = 0; j < BATCH; j++) {
				unsigned i = *base + bb * BATCH + j;

				state[i] = 1;
				if (i % 7 == 0 && i >= *base + 5)
					state[i - 5] = 2;
			}
		}
	}
	/* The batch after the last reported one may have reached the flash
	 * (killed between its flush and the report) or not: all of it or
	 * none (state 3: keys either way, checked for all or nothing). */
	for (unsigned j = 0; j < BATCH; j++) {
		unsigned i = *base + (any ? last + 1 : 0) * BATCH + j;

		state[i] = 3;
		if (i % 7 == 0 && i >= *base + 5)
			state[i - 5] = 3;
	}
	bad = verify(*base + (any ? last + 2 : 1) * BATCH,
	             any ? (int64_t)last : -1,
	             *base + (any ? last + 1 : 0) * BATCH);
	store_close(); /* this is the restarted daemon's exit: a flush */
	/* strays of the killed batch may exist: start the next run apart */
	*base += (any ? (last + 2) * BATCH : BATCH) + 10;
	return bad == 0;
}

/* copy_file - src to dst (whole). */
static void
copy_file(const char *src, const char *dst)
{
	char buf[65536];
	int in = open(src, O_RDONLY), out;
	ssize_t r;

	out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	while (in >= 0 && (r = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)r) != r)
			break;
	if (in >= 0)
		close(in);
	close(out);
}

/* main - the rounds, then the damage. */
int
main(void)
{
	unsigned rounds = 300, base = 0, failed = 0, r;
	const char *env = getenv("MM_CRASH_ROUNDS");
	const char *pre = getenv("LD_PRELOAD");
	struct store_counters sc;
	uint64_t snaps = 0;

	if (env != NULL)
		rounds = (unsigned)atoi(env);
	else if (pre != NULL && strstr(pre, "vgpreload") != NULL)
		rounds = 20; /* under valgrind */
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	T_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	cfg.state_dir = dir;
	state = calloc(MAXKEYS, 1);
	log_open(false, false);

	t_begin("SIGKILL at random points: everything flushed before loads");
	for (r = 0; r < rounds && base < MAXKEYS - 200000; r++) {
		if (!round_once(&base, r % 10 == 0 ? 100000 : 8000)) {
			failed++;
			if (failed > 3)
				break;
		}
		store_open(uv_default_loop(), &cfg, NULL, 0);
		store_counters_get(&sc);
		store_close();
		snaps += sc.snapshots;
	}
	T_INTEQ(failed, 0);
	{
		struct stat sb;

		printf("# %u rounds, %u keys, %llu snapshots by the restarts, "
		       "snapshot %lld bytes\n",
		       r, base, (unsigned long long)snaps,
		       stat(path_of("store.snap"), &sb) == 0
		               ? (long long)sb.st_size
		               : -1LL);
	}
	t_end();

	t_begin("random truncation and corruption: loads, and persists");
	{
		struct stat sb;
		unsigned n = rounds / 3 ? rounds / 3 : 1;

		copy_file(path_of("store.snap"), path_of("orig.snap"));
		copy_file(path_of("store.jnl"), path_of("orig.jnl"));
		for (unsigned i = 0; i < n; i++) {
			const char *f =
			        (rand() & 1) ? "store.jnl" : "store.snap";
			size_t c1, c2, x1, x2;

			copy_file(path_of("orig.snap"), path_of("store.snap"));
			copy_file(path_of("orig.jnl"), path_of("store.jnl"));
			if (stat(path_of(f), &sb) < 0 || sb.st_size == 0)
				continue;
			if (rand() & 1) {
				T_CHECK(truncate(path_of(f),
				                 rand() % sb.st_size) == 0,
				        "truncate");
			} else {
				int fd = open(path_of(f), O_RDWR);

				for (int k = 0; k < 1 + rand() % 4; k++) {
					unsigned char x = (unsigned char)rand();

					T_CHECK(pwrite(fd, &x, 1,
					               rand() % sb.st_size) ==
					                1,
					        "pwrite");
				}
				close(fd);
			}
			T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0),
			        0);
			c1 = store_count(store_table("crash", 4));
			x1 = store_icount(store_index("crashix", 4, 0));
			store_close();
			T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0),
			        0);
			c2 = store_count(store_table("crash", 4));
			x2 = store_icount(store_index("crashix", 4, 0));
			store_counters_get(&sc);
			store_close();
			T_CHECK(c1 == c2, "loaded %zu, then %zu", c1, c2);
			T_CHECK(x1 == x2, "index loaded %zu, then %zu", x1, x2);
			T_INTEQ(sc.load_dropped, 0);
		}
	}
	t_end();

	unlink(path_of("store.snap"));
	unlink(path_of("store.jnl"));
	unlink(path_of("crashix.txt"));
	unlink(path_of("orig.snap"));
	unlink(path_of("orig.jnl"));
	rmdir(dir);
	free(state);
	return t_exit();
}
