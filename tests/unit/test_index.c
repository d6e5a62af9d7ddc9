/*
 * test_index.c - the store's compact index (store_index): put/get/del
 * against a model (backward-shift deletion, wrap-around, growth), expiry,
 * persistence through journal bursts and block snapshots, a snapshot
 * written by the thread pool while the loop changes records, a damaged
 * snapshot block (dropped alone, logged), texts on flash (listing,
 * compaction), garbage images.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy.h"
#include "fakeclock.h"
#include "t.h"

#define NK 40000 /* 1.7 MB of slots: a snapshot prepares its copy buffer */

static char dir[] = "/tmp/test_index.XXXXXX";
static struct config cfg;

/* path_of - dir/name. */
static const char *
path_of(const char *name)
{
	static char p[128];

	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

/* fsize - size of dir/name, or -1. */
static long
fsize(const char *name)
{
	struct stat sb;

	return stat(path_of(name), &sb) < 0 ? -1 : (long)sb.st_size;
}

/* open_dir - load the store of dir (or RAM only with NULL). */
static void
open_dir(const char *d)
{
	cfg.state_dir = (char *)d;
	store_clock_hooks(wall_cb, mono_cb);
	T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0), 0);
}

/* wipe - no files. */
static void
wipe(void)
{
	store_close();
	unlink(path_of("store.snap"));
	unlink(path_of("store.jnl"));
	unlink(path_of("t.txt"));
}

/* The model: value (0: absent) per key number; key = k * big odd + 1. */
static uint32_t model[NK];

static uint64_t
key(unsigned k)
{
	return (uint64_t)k * 0x9e3779b97f4a7c15ull + 1;
}

struct val {
	uint32_t v;
	uint32_t pad[3];
};

/* agrees - does index x hold exactly the model? */
static bool
agrees(struct store_index *x, unsigned nk)
{
	size_t n = 0;

	for (unsigned k = 0; k < nk; k++) {
		const struct val *p = store_iget(x, key(k), store_now());

		if ((p == NULL) != (model[k] == 0))
			return printf("# key %u: got %s, want %u\n", k,
			              p ? "a value" : "none", model[k]),
			       false;
		if (p != NULL && p->v != model[k])
			return printf("# key %u: got %u, want %u\n", k, p->v,
			              model[k]),
			       false;
		n += model[k] != 0;
	}
	if (store_icount(x) != n)
		return printf("# count %zu, want %zu\n", store_icount(x), n),
		       false;
	return true;
}

/* random_ops - n random puts/dels among nk keys, mirrored in the model. */
static void
random_ops(struct store_index *x, unsigned nk, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		unsigned k = (unsigned)rand() % nk;

		if (rand() % 3 == 0) {
			int rc = store_idel(x, key(k));

			T_INTEQ(rc, model[k] ? 0 : -ENOENT);
			model[k] = 0;
		} else {
			struct val v = {(uint32_t)rand() | 1u, {0}};

			T_INTEQ(store_iput(x, key(k), &v, 0), 0);
			model[k] = v.v;
		}
	}
}

static int flush_rc = 1;

static void
flush_cb(int rc, void *arg)
{
	(void)arg;
	flush_rc = rc;
}

struct texts {
	unsigned with, without;
	bool bad;
};

/* text_cb - a listed record's text must be "text-K" of its key. */
static void
text_cb(uint64_t k, const void *val, uint64_t exp, const char *text,
        size_t tlen, void *arg)
{
	struct texts *t = arg;
	const struct val *v = val;
	char want[32];

	if (text == NULL) {
		t->without++;
		return;
	}
	snprintf(want, sizeof(want), "text-%u", v->pad[0]);
	if (tlen != strlen(want) || memcmp(text, want, tlen) != 0 ||
	    key(v->pad[0]) != k)
		t->bad = true;
	t->with++;
}

static int texts_done;

/* texts_done_cb - store_text_foreach_async finished. */
static void
texts_done_cb(void *arg)
{
	(void)arg;
	texts_done++;
}

/* main - the cases. */
int
main(void)
{
	struct store_index *x;
	unsigned i;
	uint64_t snaps;

	T_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	srand(11);

	t_begin("RAM only: puts and dels against a model (small, wrapping)");
	open_dir(NULL);
	x = store_index("t", sizeof(struct val), 100);
	random_ops(x, 150, 20000); /* a few slots: clusters wrap around */
	T_CHECK(agrees(x, 150), "model");
	memset(model, 0, sizeof(model));
	store_iclear(x);
	random_ops(x, NK, 100000);
	T_CHECK(agrees(x, NK), "model (grown)");
	T_CHECK(store_iput(x, 0, model, 0) == -EINVAL, "key 0");
	T_CHECK(store_imem(x) <=
	                (store_icount(x) * 4 / 3 + 64) * 32 * 2 + 65536,
	        "slots %zu bytes for %zu", store_imem(x), store_icount(x));
	store_close();
	t_end();

	t_begin("sized for max: 32-byte slots at a load of 3/4");
	open_dir(NULL);
	x = store_index("t", sizeof(struct val), 100000);
	for (i = 0; i < 100000; i++) {
		struct val v = {i + 1, {0}};

		store_iput(x, key(i), &v, 0);
	}
	T_CHECK(store_imem(x) <= 100000 * 43 + 1024, "%zu bytes",
	        store_imem(x));
	store_close();
	t_end();

	t_begin("expiry: gone at its time, and after a reload");
	open_dir(dir);
	x = store_index("t", sizeof(struct val), 0);
	{
		struct val v = {7, {0}};

		store_iput(x, key(1), &v, store_now() + 10);
		store_iput(x, key(2), &v, 0);
		store_flush_now();
		tick(5);
		T_CHECK(store_iget(x, key(1), store_now()) != NULL, "alive");
		tick(5);
		T_CHECK(store_iget(x, key(1), store_now()) == NULL, "expired");
		store_close();
		open_dir(dir);
		x = store_index("t", sizeof(struct val), 0);
		T_CHECK(store_iget(x, key(1), store_now()) == NULL,
		        "expired after reload");
		T_CHECK(store_iget(x, key(2), store_now()) != NULL, "kept");
		T_INTEQ(store_icount(x), 1);
	}
	wipe();
	t_end();

	t_begin("persistence: journal bursts, snapshots, reloads agree");
	memset(model, 0, sizeof(model));
	open_dir(dir);
	x = store_index("t", sizeof(struct val), NK);
	snaps = 0;
	for (int round = 0; round < 12; round++) {
		random_ops(x, NK, 5000);
		if (round % 4 == 3)
			store_compact();
		T_INTEQ(store_flush_now(), 0);
		if (round % 3 == 2) {
			struct store_counters c;

			store_counters_get(&c);
			snaps += c.snapshots;
			store_close();
			open_dir(dir);
			x = store_index("t", sizeof(struct val), NK);
			T_CHECK(agrees(x, NK), "round %d", round);
		}
	}
	T_CHECK(snaps >= 3, "snapshots %llu", (unsigned long long)snaps);
	store_close();
	open_dir(dir);
	x = store_index("t", sizeof(struct val), NK);
	T_CHECK(agrees(x, NK), "final");
	t_end();

	t_begin("snapshot in the thread pool while the loop changes records");
	{
		struct val v = {0, {0}};

		store_compact();
		flush_rc = 1;
		T_INTEQ(store_flush(flush_cb, NULL), 0);
		/* The burst holds a copy: these go to the next one. */
		for (i = 0; i < 3000; i++) {
			v.v = 1000000 + i;
			store_iput(x, key(i), &v, 0);
			model[i] = v.v;
			if (i % 5 == 0) {
				store_idel(x, key(NK - 1 - i));
				model[NK - 1 - i] = 0;
			}
		}
		while (flush_rc == 1)
			uv_run(uv_default_loop(), UV_RUN_ONCE);
		T_INTEQ(flush_rc, 0);
		T_CHECK(agrees(x, NK), "in RAM");
		store_close(); /* the final burst: the changes */
		open_dir(dir);
		x = store_index("t", sizeof(struct val), NK);
		T_CHECK(agrees(x, NK), "after reload");
	}
	t_end();

	t_begin("a damaged snapshot block: dropped alone and logged");
	{
		struct store_counters c;
		size_t n0 = store_icount(x);
		long sz;
		int fd;
		unsigned char b = 0;

		store_compact();
		store_close(); /* a snapshot: 4096 records a block */
		sz = fsize("store.snap");
		fd = open(path_of("store.snap"), O_RDWR);
		T_CHECK(pread(fd, &b, 1, sz / 2) == 1, "pread");
		b ^= 0x41;
		T_CHECK(pwrite(fd, &b, 1, sz / 2) == 1, "pwrite");
		close(fd);
		open_dir(dir);
		x = store_index("t", sizeof(struct val), NK);
		store_counters_get(&c);
		T_INTEQ(c.load_dropped, 1);
		T_CHECK(store_icount(x) < n0 && store_icount(x) >= n0 - 4096,
		        "%zu of %zu loaded", store_icount(x), n0);
		/* The next burst is a clean snapshot of what loaded. */
		n0 = store_icount(x);
		store_close();
		open_dir(dir);
		x = store_index("t", sizeof(struct val), NK);
		store_counters_get(&c);
		T_INTEQ(c.load_dropped, 0);
		T_INTEQ(store_icount(x), n0);
	}
	wipe();
	t_end();

	t_begin("texts: on flash only, listed from file, burst and RAM");
	{
		struct texts tx = {0};
		char t[32];
		long before;

		open_dir(dir);
		x = store_index("t", sizeof(struct val), 0);
		for (i = 0; i < 2000; i++) {
			struct val v = {i + 1, {i, 0, 0}};

			store_iput(x, key(i), &v, 0);
			snprintf(t, sizeof(t), "text-%u", i);
			store_text_put(x, key(i), t);
			if (i == 999)
				store_flush_now(); /* half on flash */
		}
		store_text_foreach(x, text_cb, &tx);
		T_INTEQ(tx.with, 2000);
		T_INTEQ(tx.without, 0);
		T_CHECK(!tx.bad, "texts match");
		/* The same off the loop: the file is read in the thread pool,
		 * the walk and done() come on a later turn. */
		memset(&tx, 0, sizeof(tx));
		texts_done = 0;
		store_text_foreach_async(x, text_cb, texts_done_cb, &tx);
		T_INTEQ(tx.with, 0);
		T_INTEQ(texts_done, 0);
		while (texts_done == 0)
			uv_run(uv_default_loop(), UV_RUN_ONCE);
		T_INTEQ(texts_done, 1);
		T_INTEQ(tx.with, 2000);
		T_INTEQ(tx.without, 0);
		T_CHECK(!tx.bad, "texts match");
		/* One in flight in the thread pool. */
		flush_rc = 1;
		store_flush(flush_cb, NULL);
		memset(&tx, 0, sizeof(tx));
		store_text_foreach(x, text_cb, &tx);
		T_INTEQ(tx.with, 2000);
		while (flush_rc == 1)
			uv_run(uv_default_loop(), UV_RUN_ONCE);
		T_CHECK(fsize("t.txt") > 2000 * 15, "t.txt %ld",
		        fsize("t.txt"));
		/* Deleted ones are not listed; the file compacts. */
		for (i = 0; i < 1900; i++)
			store_idel(x, key(i));
		for (int r = 0; r < 40; r++) { /* churn: texts pile up */
			for (i = 0; i < 200; i++) {
				unsigned k = 5000 + r * 200 + i;
				struct val v = {k, {k, 0, 0}};

				store_iput(x, key(k), &v, 0);
				snprintf(t, sizeof(t), "text-%u", k);
				store_text_put(x, key(k), t);
				if (r > 0)
					store_idel(x, key(k - 200));
			}
			store_flush_now();
		}
		before = fsize("t.txt");
		store_close();
		open_dir(dir);
		x = store_index("t", sizeof(struct val), 0);
		memset(&tx, 0, sizeof(tx));
		store_text_foreach(x, text_cb, &tx);
		T_INTEQ(tx.with, 300);
		T_INTEQ(tx.without, 0);
		T_CHECK(!tx.bad, "texts match");
		T_CHECK(before < 100 * 1024, "t.txt compacted: %ld", before);
		/* A damaged text record: that record is lost, not the rest. */
		{
			int fd = open(path_of("t.txt"), O_RDWR);
			unsigned char b = 0;

			T_CHECK(pread(fd, &b, 1, 20) == 1, "pread");
			b ^= 0x41;
			T_CHECK(pwrite(fd, &b, 1, 20) == 1, "pwrite");
			close(fd);
		}
		memset(&tx, 0, sizeof(tx));
		store_text_foreach(x, text_cb, &tx);
		T_INTEQ(tx.with, 299);
		T_INTEQ(tx.without, 1);
	}
	wipe();
	t_end();

	t_begin("write amplification: overwrites with compactions stay < 2x");
	{
		struct store_counters c0, c1;
		uint64_t changed = 0;
		unsigned dirty = 0;
		static unsigned char mark[2000];

		open_dir(dir);
		x = store_index("t", sizeof(struct val), 2000);
		store_counters_get(&c0);
		for (int burst = 0; burst < 200; burst++) {
			memset(mark, 0, sizeof(mark));
			dirty = 0;
			for (i = 0; i < 300; i++) {
				unsigned k = (unsigned)rand() % 2000;
				struct val v = {(uint32_t)burst + 1, {k, 0, 0}};

				store_iput(x, key(k), &v, 0);
				dirty += !mark[k];
				mark[k] = 1;
			}
			/* each changed record once: an IPUT of 8 + 17 + 16 */
			changed += dirty * 41;
			T_INTEQ(store_flush_now(), 0);
		}
		store_counters_get(&c1);
		printf("# index overwrites: %llu bytes written for %llu bytes "
		       "of changed records (%.2fx), %llu snapshots\n",
		       (unsigned long long)(c1.bytes_written -
		                            c0.bytes_written),
		       (unsigned long long)changed,
		       (double)(c1.bytes_written - c0.bytes_written) / changed,
		       (unsigned long long)(c1.snapshots - c0.snapshots));
		T_CHECK(c1.snapshots - c0.snapshots >= 3, "compacted");
		T_CHECK(c1.bytes_written - c0.bytes_written < 2 * changed,
		        "amplification");
	}
	wipe();
	t_end();

	t_begin("a big index (slots mapped for huge pages) persists");
	{
		enum { NBIG = 400000 }; /* 533,336 slots: 17 MB */
		unsigned bad = 0;

		open_dir(dir);
		x = store_index("t", sizeof(struct val), NBIG);
		for (i = 0; i < NBIG; i++) {
			struct val v = {i + 1, {0}};

			store_iput(x, key(i), &v, 0);
		}
		T_CHECK(store_imem(x) >= 16u << 20, "%zu", store_imem(x));
		for (i = 0; i < NBIG; i += 3)
			store_idel(x, key(i));
		store_compact();
		flush_rc = 1;
		T_INTEQ(store_flush(flush_cb, NULL), 0); /* buffer prepared */
		while (flush_rc == 1)
			uv_run(uv_default_loop(), UV_RUN_ONCE);
		T_INTEQ(flush_rc, 0);
		store_close();
		open_dir(dir);
		x = store_index("t", sizeof(struct val), NBIG);
		for (i = 0; i < NBIG; i++) {
			const struct val *p =
			        store_iget(x, key(i), store_now());

			bad += i % 3 == 0 ? p != NULL
			                  : (p == NULL || p->v != i + 1);
		}
		T_INTEQ(bad, 0);
		T_INTEQ(store_icount(x), NBIG - (NBIG + 2) / 3);
	}
	wipe();
	t_end();

	t_begin("value size changed: old records dropped, no crash");
	open_dir(dir);
	x = store_index("t", sizeof(struct val), 0);
	{
		struct val v = {1, {0}};

		store_iput(x, key(1), &v, 0);
	}
	store_close();
	open_dir(dir);
	x = store_index("t", 8, 0);
	T_INTEQ(store_icount(x), 0);
	T_CHECK(store_iget(x, key(1), store_now()) == NULL, "gone");
	wipe();
	t_end();

	t_begin("loader: mutated index images never crash");
	{
		struct buf snap = {0};
		size_t good, dropped;
		int fd;
		long sz;

		open_dir(dir);
		x = store_index("t", sizeof(struct val), 0);
		for (i = 0; i < 5000; i++) {
			struct val v = {i + 1, {0}};

			store_iput(x, key(i), &v,
			           i % 2 ? store_now() + 100 : 0);
		}
		store_compact();
		store_close();
		sz = fsize("store.snap");
		snap.data = malloc((size_t)sz);
		snap.len = (size_t)sz;
		fd = open(path_of("store.snap"), O_RDONLY);
		T_CHECK(read(fd, snap.data, snap.len) == sz, "read");
		close(fd);
		store_load_mem(snap.data, snap.len, NULL, 0, &good, &dropped);
		T_INTEQ(dropped, 0);
		store_close();
		for (int r = 0; r < 300; r++) {
			size_t off = (size_t)rand() % snap.len;
			unsigned char keep = (unsigned char)snap.data[off];

			snap.data[off] ^= (char)(1 + rand() % 255);
			store_load_mem(snap.data, r % 2 ? off : snap.len,
			               snap.data, snap.len / 3, &good,
			               &dropped);
			x = store_index("t", sizeof(struct val), 0);
			(void)store_iget(x, key(3), store_now());
			store_close();
			snap.data[off] = (char)keep;
		}
		free(snap.data);
	}
	wipe();
	t_end();

	rmdir(dir);
	return t_exit();
}
