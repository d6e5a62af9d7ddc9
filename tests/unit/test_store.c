/*
 * test_store.c - the state store: put/get/del, expiry, reload, a torn
 * tail, a bad checksum, snapshot + journal (and a stale journal), blobs,
 * the clock's jump rule, write amplification.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy.h"
#include "fakeclock.h"
#include "t.h"

static char dir[] = "/tmp/test_store.XXXXXX";
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

/* reopen - close (final flush) and load again. */
static void
reopen(void)
{
	store_close();
	store_clock_hooks(wall_cb, mono_cb);
	T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0), 0);
}

/* wipe - no files, a fresh store. */
static void
wipe(void)
{
	store_close();
	unlink(path_of("store.snap"));
	unlink(path_of("store.jnl"));
	store_clock_hooks(wall_cb, mono_cb);
	T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0), 0);
}

/* key_of - "key-N". */
static const char *
key_of(unsigned i)
{
	static char k[32];

	snprintf(k, sizeof(k), "key-%u", i);
	return k;
}

/* has - does table t hold key-i with value v? */
static bool
has(struct store_table *t, unsigned i, uint32_t v)
{
	const uint32_t *p = store_get(t, key_of(i), strlen(key_of(i)));

	return p != NULL && *p == v;
}

struct count_arg {
	unsigned n, del_odd;
};

/* count_cb - counts; deletes odd values when asked. */
static bool
count_cb(const void *key, size_t klen, const void *val, uint64_t exp, void *arg)
{
	struct count_arg *a = arg;
	uint32_t v;

	memcpy(&v, val, 4);
	a->n++;
	if (a->del_odd && (v & 1))
		store_del(store_table("t", 4), key, klen);
	return true;
}

static int flush_rc = 1;

/* flush_done_cb - the async burst finished. */
static void
flush_done_cb(int rc, void *arg)
{
	flush_rc = rc;
}

/* corrupt - flip one byte of dir/name at off. */
static void
corrupt(const char *name, long off)
{
	int fd = open(path_of(name), O_RDWR);
	unsigned char c;

	T_CHECK(pread(fd, &c, 1, off) == 1, "pread");
	c ^= 0x5a;
	T_CHECK(pwrite(fd, &c, 1, off) == 1, "pwrite");
	close(fd);
}

/* main - the cases. */
int
main(void)
{
	struct store_table *t;
	struct store_counters sc;
	uint32_t v;
	unsigned i;

	T_CHECK(mkdtemp(dir) != NULL, "mkdtemp");
	cfg.state_dir = dir;

	t_begin("RAM only: put, get, replace, del, count, foreach");
	{
		struct config none = {0};
		struct count_arg a = {0};

		store_clock_hooks(wall_cb, mono_cb);
		T_INTEQ(store_open(uv_default_loop(), &none, NULL, 0), 0);
		t = store_table("t", 4);
		for (i = 0; i < 1000; i++) {
			v = i;
			T_INTEQ(store_put(t, key_of(i), strlen(key_of(i)), &v,
			                  0),
			        0);
		}
		T_INTEQ(store_count(t), 1000);
		v = 7777;
		store_put(t, key_of(5), strlen(key_of(5)), &v, 0);
		T_CHECK(has(t, 5, 7777), "replaced");
		T_INTEQ(store_count(t), 1000);
		T_INTEQ(store_del(t, key_of(6), strlen(key_of(6))), 0);
		T_INTEQ(store_del(t, key_of(6), strlen(key_of(6))), -ENOENT);
		T_CHECK(store_get(t, key_of(6), strlen(key_of(6))) == NULL,
		        "deleted");
		T_INTEQ(store_count(t), 999);
		a.del_odd = 1;
		store_foreach(t, count_cb, &a);
		T_INTEQ(a.n, 999);
		T_INTEQ(store_count(t), 499); /* the evens but 6 */
		a = (struct count_arg){0};
		store_foreach(t, count_cb, &a);
		T_INTEQ(a.n, 499);
		for (i = 0; i < 1000; i += 2)
			if (i != 6)
				T_CHECK(has(t, i, i), "even %u kept", i);
		T_CHECK(store_put(t, "", 0, &v, 0) == -EINVAL, "empty key");
		T_INTEQ(store_flush_now(), -ENOENT);
		store_close();
	}
	t_end();

	t_begin("expiry: a record is gone at its time, on flash too");
	{
		store_clock_hooks(wall_cb, mono_cb);
		T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0), 0);
		t = store_table("t", 4);
		v = 1;
		store_put(t, "a", 1, &v, store_now() + 10);
		store_put(t, "b", 1, &v, store_now() + 100);
		store_put(t, "c", 1, &v, 0);
		tick(9);
		T_CHECK(store_get(t, "a", 1) != NULL, "a before its time");
		tick(1);
		T_CHECK(store_get(t, "a", 1) == NULL, "a at its time");
		reopen();
		t = store_table("t", 4);
		T_CHECK(store_get(t, "a", 1) == NULL, "a after reload");
		T_CHECK(store_get(t, "b", 1) != NULL, "b after reload");
		T_INTEQ(store_count(t), 2);
		tick(200);
		reopen();
		t = store_table("t", 4);
		T_CHECK(store_get(t, "b", 1) == NULL, "b expired while down");
		T_CHECK(store_get(t, "c", 1) != NULL, "c never expires");
	}
	t_end();

	t_begin("reload: puts, replacements and dels survive close/open");
	{
		wipe();
		t = store_table("t", 4);
		for (i = 0; i < 5000; i++) {
			v = i;
			store_put(t, key_of(i), strlen(key_of(i)), &v, 0);
		}
		T_INTEQ(store_flush_now(), 0);
		for (i = 0; i < 5000; i += 3)
			store_del(t, key_of(i), strlen(key_of(i)));
		for (i = 1; i < 5000; i += 3) {
			v = i + 1000000;
			store_put(t, key_of(i), strlen(key_of(i)), &v, 0);
		}
		/* a put then a del in one interval, a del then a put */
		store_put(t, "tmp", 3, &v, 0);
		store_del(t, "tmp", 3);
		reopen();
		t = store_table("t", 4);
		for (i = 0; i < 5000; i++) {
			bool ok = i % 3 == 0   ? !has(t, i, i)
			          : i % 3 == 1 ? has(t, i, i + 1000000)
			                       : has(t, i, i);

			if (!ok) {
				T_CHECK(ok, "record %u", i);
				break;
			}
		}
		T_CHECK(store_get(t, "tmp", 3) == NULL, "tmp");
		T_INTEQ(store_count(t), 5000 - 1667);
	}
	t_end();

	t_begin("async flush: the burst runs in the thread pool");
	{
		long before = fsize("store.jnl");

		t = store_table("t", 4);
		v = 42;
		store_put(t, "async", 5, &v, 0);
		T_INTEQ(store_flush(flush_done_cb, NULL), 0);
		T_INTEQ(store_flush(NULL, NULL), -EBUSY);
		uv_run(uv_default_loop(), UV_RUN_DEFAULT);
		T_INTEQ(flush_rc, 0);
		T_CHECK(fsize("store.jnl") > before, "journal grew");
		/* nothing changed: a burst of just the CLOCK record */
		before = fsize("store.jnl");
		T_INTEQ(store_flush_now(), 0);
		T_INTEQ(fsize("store.jnl") - before, 8 + 33);
		reopen();
		t = store_table("t", 4);
		T_CHECK(store_get(t, "async", 5) != NULL, "async put kept");
	}
	t_end();

	t_begin("torn tail: every record before it loads, the rest dropped");
	{
		long sz;

		wipe();
		t = store_table("t", 4);
		for (i = 0; i < 100; i++) {
			v = i;
			store_put(t, key_of(i), strlen(key_of(i)), &v, 0);
			T_INTEQ(store_flush_now(), 0);
		}
		store_close();
		sz = fsize("store.jnl");
		T_CHECK(truncate(path_of("store.jnl"), sz - 3) == 0, "cut");
		store_clock_hooks(wall_cb, mono_cb);
		T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0), 0);
		t = store_table("t", 4);
		store_counters_get(&sc);
		T_INTEQ(sc.load_dropped, 1);
		for (i = 0; i < 99; i++)
			T_CHECK(has(t, i, i), "record %u", i);
		/* the last burst was the final CLOCK only: 99 came earlier */
		T_CHECK(has(t, 99, 99), "record 99 (before the close)");
		/* the damage makes the next burst a clean snapshot */
		reopen();
		store_counters_get(&sc);
		T_INTEQ(sc.load_dropped, 0);
		t = store_table("t", 4);
		T_INTEQ(store_count(t), 100);
	}
	t_end();

	t_begin("bad CRC in the middle: that record dropped, later ones kept");
	{
		long sz;

		wipe();
		t = store_table("t", 4);
		for (i = 0; i < 50; i++) {
			v = i;
			store_put(t, key_of(i), strlen(key_of(i)), &v, 0);
			T_INTEQ(store_flush_now(), 0);
		}
		store_close();
		sz = fsize("store.jnl");
		corrupt("store.jnl", sz / 2);
		store_clock_hooks(wall_cb, mono_cb);
		T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0), 0);
		t = store_table("t", 4);
		store_counters_get(&sc);
		T_INTEQ(sc.load_dropped, 1);
		{
			unsigned n = 0;

			for (i = 0; i < 50; i++)
				n += has(t, i, i);
			T_CHECK(n == 49 || n == 50, "got %u of 50", n);
			T_CHECK(has(t, 49, 49), "the last one");
			T_CHECK(has(t, 0, 0), "the first one");
		}
	}
	t_end();

	t_begin("snapshot + journal: compaction, bounded writes, stale "
	        "journal");
	{
		uint64_t changed = 0;
		char *old = NULL;
		long oldlen;
		FILE *f;

		wipe();
		t = store_table("t", 4);
		store_counters_get(&sc);
		uint64_t w0 = sc.bytes_written;
		for (unsigned round = 0; round < 200; round++) {
			for (i = 0; i < 200; i++) {
				v = round * 1000 + i;
				store_put(t, key_of(i), strlen(key_of(i)), &v,
				          0);
				changed += 8 + 14 + strlen(key_of(i)) + 4;
			}
			T_INTEQ(store_flush_now(), 0);
		}
		store_counters_get(&sc);
		T_CHECK(sc.snapshots > 0, "compacted (%llu snapshots)",
		        (unsigned long long)sc.snapshots);
		T_CHECK(sc.bytes_written - w0 < 2 * changed,
		        "wrote %llu for %llu changed",
		        (unsigned long long)(sc.bytes_written - w0),
		        (unsigned long long)changed);
		printf("# overwrite workload: %llu bytes written for %llu "
		       "bytes of changed records (%.2fx), %llu snapshots\n",
		       (unsigned long long)(sc.bytes_written - w0),
		       (unsigned long long)changed,
		       (double)(sc.bytes_written - w0) / (double)changed,
		       (unsigned long long)sc.snapshots);
		T_CHECK(fsize("store.jnl") <=
		                2 * fsize("store.snap") + (64 << 10) + 10000,
		        "journal %ld, snapshot %ld", fsize("store.jnl"),
		        fsize("store.snap"));
		reopen();
		t = store_table("t", 4);
		for (i = 0; i < 200; i++)
			T_CHECK(has(t, i, 199 * 1000 + i), "record %u", i);
		/* keep this journal, compact, put the old journal back: it is
		 * older than the snapshot and must be ignored */
		oldlen = fsize("store.jnl");
		old = malloc((size_t)oldlen);
		f = fopen(path_of("store.jnl"), "r");
		T_CHECK(fread(old, 1, (size_t)oldlen, f) == (size_t)oldlen,
		        "read");
		fclose(f);
		v = 1;
		store_put(t, key_of(0), strlen(key_of(0)), &v, 0);
		store_close(); /* journal had damage? no: force a snapshot */
		unlink(path_of("store.jnl"));
		store_clock_hooks(wall_cb, mono_cb);
		T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0), 0);
		t = store_table("t", 4);
		/* no journal and a snapshot: key 0 may be older; now compact
		 */
		for (unsigned round = 0; round < 100; round++) {
			for (i = 0; i < 200; i++) {
				v = 5;
				store_put(t, key_of(i), strlen(key_of(i)), &v,
				          0);
			}
			T_INTEQ(store_flush_now(), 0);
		}
		store_close();
		f = fopen(path_of("store.jnl"), "w");
		fwrite(old, 1, (size_t)oldlen, f);
		fclose(f);
		free(old);
		store_clock_hooks(wall_cb, mono_cb);
		T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0), 0);
		t = store_table("t", 4);
		for (i = 0; i < 200; i++)
			T_CHECK(has(t, i, 5), "record %u", i);
	}
	t_end();

	t_begin("blobs: set, replaced, kept across reload");
	{
		size_t n;
		const char *p;

		store_blob_set("b1", "hello", 5);
		store_blob_set("b2", "", 0);
		store_blob_set("b1", "world!", 6);
		reopen();
		p = store_blob_get("b1", &n);
		T_CHECK(p != NULL && n == 6 && memcmp(p, "world!", 6) == 0,
		        "b1");
		p = store_blob_get("b2", &n);
		T_CHECK(p != NULL && n == 0, "b2");
		T_CHECK(store_blob_get("b3", &n) == NULL, "b3");
		T_INTEQ(store_blob_set("", "x", 1), -EINVAL);
	}
	t_end();

	t_begin("table size changed: old records dropped, no crash");
	{
		wipe();
		t = store_table("sz", 4);
		v = 3;
		store_put(t, "k", 1, &v, 0);
		reopen();
		t = store_table("sz", 8);
		T_CHECK(store_get(t, "k", 1) == NULL, "dropped");
		T_INTEQ(store_count(t), 0);
	}
	t_end();

	t_begin("clock: a wall jump does not move store time");
	{
		uint64_t s0, s1;

		wipe();
		t = store_table("t", 4);
		s0 = store_now();
		v = 1;
		store_put(t, "x", 1, &v, s0 + 300);
		fake_wall += 86400; /* NTP: a day ahead */
		fake_mono += 1000000000ull;
		s1 = store_now();
		T_INTEQ(s1 - s0, 1);
		T_CHECK(store_get(t, "x", 1) != NULL, "x still there");
		fake_wall -= 2 * 86400; /* and back two days */
		fake_mono += 1000000000ull;
		T_INTEQ(store_now() - s0, 2);
		tick(298);
		T_CHECK(store_get(t, "x", 1) == NULL, "x gone after 300s");
		/* restart with the wall clock behind the last flush (no RTC
		 * box before NTP): store time resumes from the flash */
		s1 = store_now();
		store_close();
		fake_wall = 1000;
		store_clock_hooks(wall_cb, mono_cb);
		T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0), 0);
		T_CHECK(store_now() >= s1, "store time went back: %llu < %llu",
		        (unsigned long long)store_now(),
		        (unsigned long long)s1);
		/* restart after an hour with a good wall clock: it counts */
		s1 = store_now();
		store_close();
		fake_wall += 3600;
		fake_mono += 3600 * 1000000000ull;
		store_clock_hooks(wall_cb, mono_cb);
		T_INTEQ(store_open(uv_default_loop(), &cfg, NULL, 0), 0);
		T_CHECK(store_now() >= s1 + 3600 && store_now() < s1 + 3700,
		        "downtime counted: %llu",
		        (unsigned long long)(store_now() - s1));
		fake_wall = 1700000000 + 10 * 86400;
	}
	t_end();

	t_begin("loader: garbage never crashes, counts drops");
	{
		unsigned char junk[4096];
		size_t good, dropped;

		store_close();
		srand(7);
		for (int r = 0; r < 50; r++) {
			for (i = 0; i < sizeof(junk); i++)
				junk[i] = (unsigned char)(rand() >> 3);
			store_load_mem(junk, sizeof(junk), junk, 100, &good,
			               &dropped);
			T_CHECK(dropped >= 1, "garbage counted");
			store_close();
		}
	}
	t_end();

	store_close();
	unlink(path_of("store.snap"));
	unlink(path_of("store.jnl"));
	rmdir(dir);
	return t_exit();
}
