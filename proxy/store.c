/*
 * store.c - the flash-backed state store: named tables of small records
 * and named blobs, in RAM, persisted to state_dir.
 *
 * Public (proxy.h block "store.c"):
 *   store_open()      load STATE_DIR/store.snap then STATE_DIR/store.jnl
 *                     (blocking: at startup, before the loop runs)
 *   store_close()     final flush, blocking (at exit), frees everything
 *   store_flush()     one write burst from the thread pool: what changed
 *                     since the last one, coalesced (the flush timer)
 *   store_table()     a named table of fixed-size values (created on first
 *                     call; its records may already be loaded)
 *   store_put/get/del/foreach/count
 *   store_table_find/drop  an existing table / away with it (upgrades)
 *   store_index()     a compact index: u64 keys, small fixed values, one
 *                     slot array (the greylist triplets); store_iput/
 *                     iget/idel/iclear/iforeach/icount/isweep/imem
 *   store_text_put/foreach  texts of index records, on flash only
 *   store_compact()   the next burst is a snapshot
 *   store_blob_set/get one opaque value per name, saved when set
 *   store_on_flush()  a module refreshes its blobs just before a flush
 *   store_now()       wall seconds, corrected for clock jumps
 *   store_load_mem()  the loader on a memory image (fuzzing, tests)
 *
 * This is the only file that touches state_dir.  On-flash format, flush
 * policy and the clock rule: docs/STORE.md.  In short: every record is
 * [crc32 u32][len u32][body len bytes], little endian, the CRC covering
 * len and body.  The snapshot holds the whole state and is replaced by
 * atomic rename; the journal gets one appended burst per flush holding
 * each record changed since the previous one (a put or a del, coalesced).
 * When the journal is bigger than twice the live state, the next burst
 * is a new snapshot plus an empty journal instead (bytes written stay
 * below 1.5x the bytes of changed records).  A CLOCK record opens every
 * burst and both files; it carries the snapshot generation, so a journal
 * older than the snapshot (crash between the two renames) is ignored.
 *
 * The loop only serialises records into a buffer (and, for a snapshot,
 * copies each index's slot array, which the thread pool turns into
 * checksummed blocks of 4,096 records); open, write, fsync and rename run
 * in uv_queue_work (one burst at a time).  The loader keeps
 * every record with a good checksum, skips bad ones and a torn tail,
 * logs what it dropped (count, offset), and never fails the daemon.
 *
 * Reads config keys state_dir and (through main.c's timer) state_flush.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"

#define STORE_SNAP "store.snap"
#define STORE_JNL "store.jnl"
#define STORE_OLD_COUNTERS "counters"

#define REC_HDR 8                  /* crc32 + len */
#define REC_MAX (4u << 20)         /* largest body: a 4 MiB blob */
#define JNL_MIN_COMPACT (64 << 10) /* never compact a journal below this */
#define CLOCK_BODY 33 /* type, gen, store time, wall, burst length */
#define CLOCK_REC (REC_HDR + CLOCK_BODY)
#define CLOCK_JUMP 60 /* seconds of wall/monotonic disagreement */

enum rec_type {
	REC_CLOCK = 1,  /* u64 gen, u64 store time, u64 wall, u64 burst len */
	REC_TABLE = 2,  /* u32 tid, u32 val_size, u8 nlen, name */
	REC_PUT = 3,    /* u32 tid, u64 expires, u8 klen, key, value */
	REC_DEL = 4,    /* u32 tid, u8 klen, key */
	REC_BLOB = 5,   /* u8 nlen, name, data */
	REC_INDEX = 6,  /* u32 tid, u32 val_size, u64 count, u8 nlen, name */
	REC_IPUT = 7,   /* u32 tid, u64 key, u32 expires, value */
	REC_IDEL = 8,   /* u32 tid, u64 key */
	REC_IBLOCK = 9, /* u32 tid, u32 n, n x (u64 key, u32 expires, value) */
	REC_TEXT = 10,  /* text files only: u64 key, text */
};

/* A compact index (store_index): open addressing over one array of
 * fixed-size slots, no allocation per record.  Slot: u64 key (0: empty),
 * u32 expires, u8 dirty mark, 3 bytes pad, then the value (8-byte
 * aligned).  A slot is dirty when its mark is the index's epoch: a
 * snapshot makes every slot clean at once by a new epoch. */
#define IX_HDR 16
#define IX_SWEEP (1u << 16) /* slots swept per burst at least */
#define IX_BLOCK 4096       /* entries per snapshot block record */
#define IX_VAL_MAX 240
#define TEXT_MAX 1000            /* bytes of one text */
#define TEXT_RAM_MAX (16u << 20) /* texts kept in RAM without state_dir */

struct store_index {
	char *name; /* NULL: loaded but not asked for by anyone yet */
	uint32_t tid;
	size_t val_size, slot_size;
	unsigned char *slots;
	size_t nslots, count, max; /* max: the caller's bound (sizing) */
	uint64_t *dirty;           /* keys changed since the last burst */
	size_t n_dirty, cap_dirty;
	bool by_code, declared_dirty, size_warned, text_known;
	unsigned char epoch;          /* 1..255: the dirty mark of this burst */
	size_t sweep_at;              /* where the next partial sweep starts */
	struct buf texts;             /* TEXT records not handed to a burst */
	size_t n_texts;               /* how many */
	const struct buf *texts_busy; /* those of the running burst */
	uint64_t text_file;           /* bytes of NAME.txt on flash */
	uint64_t text_recs, text_bytes; /* live texts on flash (estimate) */
	struct store_index *next;
};

/* One index's part of a burst (the thread pool reads it, nothing else
 * touches it until the burst is done). */
struct ix_job {
	uint32_t tid;
	size_t val_size, slot_size, nslots;
	unsigned char *frozen; /* snapshot: a copy of the slots */
	uint32_t now;
	struct buf texts; /* TEXT records to append */
	size_t n_texts;
	bool compact_texts;
	char file[80];
	int text_rc;
	uint64_t text_file, kept_recs, kept_bytes; /* results */
};

struct store_ent {
	uint64_t expires;
	uint32_t hash;
	uint8_t klen;
	uint8_t dirty; /* changed since the last burst */
	uint8_t ghost; /* deleted, kept until the burst writes the del */
	uint8_t pad;
	unsigned char kv[]; /* key, then the value at VOFF(klen) */
};

/* VOFF - where the value starts after a key: 8-byte aligned, so that
 * store_get()'s pointer can be read as a struct. */
#define VOFF(klen) (((size_t)(klen) + 7) & ~(size_t)7)

struct store_table {
	char *name;      /* NULL: loaded but not asked for by anyone yet */
	uint32_t tid;    /* crc32 of the name: the id in records */
	size_t val_size; /* fixed per table */
	struct store_ent **slot; /* open addressing, linear probing */
	size_t cap, used, live;  /* slots, entries (ghosts too), live ones */
	struct store_ent **dirty;
	size_t n_dirty, cap_dirty;
	bool declared_dirty; /* its TABLE record must go out */
	bool by_code;        /* store_table() asked for it */
	bool size_warned;
	struct store_table *next;
};

struct store_blob {
	char *name;
	void *data;
	size_t len;
	bool dirty;
	struct store_blob *next;
};

struct flush_req {
	uv_work_t req;
	struct buf data;
	bool snapshot; /* data is a whole snapshot; else a journal burst */
	uint64_t gen;
	struct ix_job *ix;
	size_t n_ix;
	uint64_t written; /* bytes, all files */
	int rc;
	void (*done)(int rc, void *arg);
	void *arg;
};

static struct {
	uv_loop_t *loop;
	char *dir; /* NULL: RAM only */
	struct store_table *tables;
	struct store_blob *blobs;
	struct store_index *indexes;
	uint64_t gen;        /* generation of the snapshot on flash */
	uint64_t jnl_bytes;  /* journal size on flash (as we wrote it) */
	uint64_t live_bytes; /* size of a snapshot of the state now */
	bool need_compact;   /* next burst: snapshot (damage, write error) */
	bool busy;           /* a burst is in the thread pool */
	struct ix_pre {
		uint32_t tid;
		size_t n;
		unsigned char *p;
	} * pre; /* buffers for the copies of the next snapshot */
	size_t n_pre;
	void (*hooks[8])(void);
	unsigned n_hooks;
	struct store_counters ctr;
} st;

/* ----------------------------------------------------------- crc32 */

static uint32_t crc_table[8][256];

/* store_crc_init - the slicing-by-8 tables. */
static void
store_crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] =
			        (crc_table[t - 1][i] >> 8) ^
			        crc_table[0][crc_table[t - 1][i] & 0xff];
}

/* store_crc32 - CRC-32 (IEEE, as zlib) of p[0..n), eight bytes a step. */
uint32_t
store_crc32(uint32_t crc, const void *p, size_t n)
{
	const unsigned char *b = p;

	if (crc_table[0][1] == 0)
		store_crc_init();
	crc = ~crc;
	while (n >= 8) {
		uint32_t lo =
		        crc ^ ((uint32_t)b[0] | (uint32_t)b[1] << 8 |
		               (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24);

		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][b[4]] ^ crc_table[2][b[5]] ^
		      crc_table[1][b[6]] ^ crc_table[0][b[7]];
		b += 8;
		n -= 8;
	}
	while (n--)
		crc = crc_table[0][(crc ^ *b++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ----------------------------------------------------------- clock */

static struct {
	bool started;
	int64_t offset;   /* store time = wall + offset */
	uint64_t last_s;  /* last store time handed out */
	uint64_t last_ns; /* monotonic time of it */
	time_t (*wall)(void);
	uint64_t (*mono_ns)(void);
} clk;

/* store_wall_real - time(NULL). */
static time_t
store_wall_real(void)
{
	return time(NULL);
}

/* store_mono_real - CLOCK_MONOTONIC in nanoseconds. */
static uint64_t
store_mono_real(void)
{
	return uv_hrtime();
}

/* store_clock_hooks - tests replace the two clocks (NULL: the real ones). */
void
store_clock_hooks(time_t (*wall)(void), uint64_t (*mono_ns)(void))
{
	clk.wall = wall;
	clk.mono_ns = mono_ns;
	clk.started = false;
}

/* store_clock_start - store time resumes from the previous run: the wall
 * clock's progress since the last flush counts (downtime), a wall clock
 * behind the last flush (a box without RTC before NTP) does not. */
static void
store_clock_start(uint64_t saved_s, uint64_t saved_wall)
{
	time_t (*wall)(void) = clk.wall ? clk.wall : store_wall_real;
	uint64_t (*mono)(void) = clk.mono_ns ? clk.mono_ns : store_mono_real;
	int64_t w = (int64_t)wall();
	uint64_t s = (uint64_t)(w > 0 ? w : 0);

	if (saved_s != 0) {
		if (w >= (int64_t)saved_wall)
			s = saved_s + (uint64_t)(w - (int64_t)saved_wall);
		else
			s = saved_s;
	}
	clk.offset = (int64_t)s - w;
	clk.last_s = s;
	clk.last_ns = mono();
	clk.started = true;
	if (clk.offset > CLOCK_JUMP || clk.offset < -CLOCK_JUMP)
		log_info("store: clock: store time is wall %+" PRId64 "s "
		         "(wall clock behind or jumped before)",
		         clk.offset);
}

/* store_now - wall seconds corrected for jumps: within a run store time
 * follows the monotonic clock; when the wall clock disagrees with it by
 * more than CLOCK_JUMP seconds the wall jumped, and the offset changes so
 * that store time goes on smoothly.  Never goes backwards. */
uint64_t
store_now(void)
{
	time_t (*wall)(void) = clk.wall ? clk.wall : store_wall_real;
	uint64_t (*mono)(void) = clk.mono_ns ? clk.mono_ns : store_mono_real;
	uint64_t ns, expect, s;
	int64_t w, cand, d;

	if (!clk.started)
		store_clock_start(0, 0);
	ns = mono();
	w = (int64_t)wall();
	expect = clk.last_s + (ns - clk.last_ns) / 1000000000ull;
	cand = w + clk.offset;
	if (cand > (int64_t)expect + CLOCK_JUMP ||
	    cand < (int64_t)expect - CLOCK_JUMP) {
		int64_t old = clk.offset;

		clk.offset = (int64_t)expect - w;
		cand = (int64_t)expect;
		st.ctr.clock_jumps++;
		log_warn("store: wall clock jumped by %+" PRId64
		         "s: store time keeps to the monotonic clock "
		         "(offset %+" PRId64 "s, was %+" PRId64 "s)",
		         old - clk.offset, clk.offset, old);
	}
	s = cand > (int64_t)clk.last_s ? (uint64_t)cand : clk.last_s;
	/* last_ns advances by the whole seconds store time took, so that
	 * frequent calls do not lose the fractions; a wall clock running
	 * ahead (a small step) is absorbed by starting over from now. */
	clk.last_ns += (s - clk.last_s) * 1000000000ull;
	d = (int64_t)(ns - clk.last_ns);
	if (d < 0 || d > 2 * 1000000000ll * CLOCK_JUMP)
		clk.last_ns = ns;
	clk.last_s = s;
	return s;
}

/* ------------------------------------------------------------ tables */

/* store_hash - FNV-1a of a key (never 0). */
static uint32_t
store_hash(const void *key, size_t n)
{
	const unsigned char *p = key;
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h ? h : 1;
}

/* store_rec_size - bytes of the PUT record of one entry. */
static size_t
store_rec_size(const struct store_table *t, size_t klen)
{
	return REC_HDR + 1 + 4 + 8 + 1 + klen + t->val_size;
}

/* store_find_tid - the table with this id, or NULL. */
static struct store_table *
store_find_tid(uint32_t tid)
{
	struct store_table *t;

	for (t = st.tables; t != NULL; t = t->next)
		if (t->tid == tid)
			return t;
	return NULL;
}

/* store_table_new - an empty table (name may be NULL). */
static struct store_table *
store_table_new(uint32_t tid, const char *name, size_t val_size)
{
	struct store_table *t = xcalloc(1, sizeof(*t));

	t->tid = tid;
	t->name = name ? xstrdup(name) : NULL;
	t->val_size = val_size;
	t->declared_dirty = true;
	t->next = st.tables;
	st.tables = t;
	return t;
}

/* store_table_clear - drop every entry. */
static void
store_table_clear(struct store_table *t)
{
	for (size_t i = 0; i < t->cap; i++) {
		if (t->slot[i] != NULL) {
			if (!t->slot[i]->ghost)
				st.live_bytes -=
				        store_rec_size(t, t->slot[i]->klen);
			free(t->slot[i]);
		}
	}
	free(t->slot);
	free(t->dirty);
	t->slot = NULL;
	t->dirty = NULL;
	t->cap = t->used = t->live = 0;
	t->n_dirty = t->cap_dirty = 0;
}

/* store_slot - index of key's slot, or of the empty slot it would take. */
static size_t
store_slot(const struct store_table *t, const void *key, size_t klen,
           uint32_t h)
{
	size_t mask = t->cap - 1, i = h & mask;

	for (;;) {
		struct store_ent *e = t->slot[i];

		if (e == NULL || (e->hash == h && e->klen == klen &&
		                  memcmp(e->kv, key, klen) == 0))
			return i;
		i = (i + 1) & mask;
	}
}

/* store_grow - double the slots (or make the first 16). */
static void
store_grow(struct store_table *t)
{
	struct store_ent **old = t->slot;
	size_t oldcap = t->cap;

	t->cap = oldcap ? oldcap * 2 : 16;
	t->slot = xcalloc(t->cap, sizeof(*t->slot));
	for (size_t i = 0; i < oldcap; i++) {
		struct store_ent *e = old[i];
		size_t j;

		if (e == NULL)
			continue;
		j = e->hash & (t->cap - 1);
		while (t->slot[j] != NULL)
			j = (j + 1) & (t->cap - 1);
		t->slot[j] = e;
	}
	free(old);
}

/* store_remove_slot - take slot i out (backward-shift deletion); frees
 * the entry. */
static void
store_remove_slot(struct store_table *t, size_t i)
{
	size_t mask = t->cap - 1, j = i;

	free(t->slot[i]);
	t->slot[i] = NULL;
	t->used--;
	for (;;) {
		size_t home;

		j = (j + 1) & mask;
		if (t->slot[j] == NULL)
			return;
		home = t->slot[j]->hash & mask;
		/* Move j back to i if its home is not within (i, j]. */
		if ((i <= j) ? (home <= i || home > j)
		             : (home <= i && home > j)) {
			t->slot[i] = t->slot[j];
			t->slot[j] = NULL;
			i = j;
		}
	}
}

/* store_mark_dirty - e goes out in the next burst. */
static void
store_mark_dirty(struct store_table *t, struct store_ent *e)
{
	if (st.dir == NULL || e->dirty)
		return;
	if (t->n_dirty == t->cap_dirty) {
		t->cap_dirty = t->cap_dirty ? t->cap_dirty * 2 : 64;
		t->dirty = xrealloc(t->dirty, t->cap_dirty * sizeof(*t->dirty));
	}
	t->dirty[t->n_dirty++] = e;
	e->dirty = 1;
}

/* store_expired - is e past its time at now? */
static inline bool
store_expired(const struct store_ent *e, uint64_t now)
{
	return e->expires != 0 && e->expires <= now;
}

/* store_set - put without the dirty mark (the loader) or with it; the
 * entry, which may have moved. */
static struct store_ent *
store_set(struct store_table *t, const void *key, size_t klen, const void *val,
          uint64_t expires, bool dirty)
{
	uint32_t h = store_hash(key, klen);
	struct store_ent *e;
	size_t i;

	if (t->cap == 0 || (t->used + 1) * 4 > t->cap * 3)
		store_grow(t);
	i = store_slot(t, key, klen, h);
	e = t->slot[i];
	if (e == NULL) {
		e = xmalloc(sizeof(*e) + VOFF(klen) + t->val_size);
		memset(e, 0, sizeof(*e));
		e->hash = h;
		e->klen = (uint8_t)klen;
		memcpy(e->kv, key, klen);
		e->ghost = 1;
		t->slot[i] = e;
		t->used++;
	}
	if (e->ghost) {
		e->ghost = 0;
		t->live++;
		st.live_bytes += store_rec_size(t, klen);
	}
	memcpy(e->kv + VOFF(klen), val, t->val_size);
	e->expires = expires;
	if (dirty)
		store_mark_dirty(t, e);
	return e;
}

/* store_unset - delete key: a ghost until the burst (dirty) or gone. */
static int
store_unset(struct store_table *t, const void *key, size_t klen, bool dirty)
{
	uint32_t h = store_hash(key, klen);
	struct store_ent *e;
	size_t i;

	if (t->cap == 0)
		return -ENOENT;
	i = store_slot(t, key, klen, h);
	e = t->slot[i];
	if (e == NULL || e->ghost)
		return -ENOENT;
	e->ghost = 1;
	t->live--;
	st.live_bytes -= store_rec_size(t, klen);
	if (dirty && st.dir != NULL) {
		store_mark_dirty(t, e);
		return 0;
	}
	if (!e->dirty)
		store_remove_slot(t, i);
	return 0;
}

/* store_table - the table called name (created on first call). */
struct store_table *
store_table(const char *name, size_t val_size)
{
	uint32_t tid = store_crc32(0, name, strlen(name));
	struct store_table *t = store_find_tid(tid);

	if (strlen(name) > 64 || val_size > 65536)
		log_panic("store_table: bad table %s/%zu", name, val_size);
	if (t == NULL) {
		t = store_table_new(tid, name, val_size);
		t->by_code = true;
		return t;
	}
	t->by_code = true;
	if (t->name == NULL)
		t->name = xstrdup(name);
	else if (strcmp(t->name, name) != 0)
		log_panic("store: table ids of %s and %s collide", t->name,
		          name);
	if (t->val_size != val_size) {
		if (t->live > 0)
			log_warn("store: table %s: values of %zu bytes on "
			         "flash, %zu now: %zu records dropped",
			         name, t->val_size, val_size, t->live);
		store_table_clear(t);
		t->val_size = val_size;
		t->declared_dirty = true;
		st.need_compact = true;
	}
	return t;
}

/* store_put - key's value becomes val (val_size bytes); 0 or -EINVAL. */
int
store_put(struct store_table *t, const void *key, size_t klen, const void *val,
          uint64_t expires)
{
	if (klen == 0 || klen > STORE_KEY_MAX)
		return -EINVAL;
	store_set(t, key, klen, val, expires, true);
	return 0;
}

/* store_get - key's value, or NULL (none, or expired). */
const void *
store_get(struct store_table *t, const void *key, size_t klen)
{
	struct store_ent *e;

	if (t->cap == 0 || klen == 0 || klen > STORE_KEY_MAX)
		return NULL;
	e = t->slot[store_slot(t, key, klen, store_hash(key, klen))];
	if (e == NULL || e->ghost || store_expired(e, store_now()))
		return NULL;
	return e->kv + VOFF(klen);
}

/* store_get_expires - key's expiry time (0: never) or -ENOENT. */
int
store_get_expires(struct store_table *t, const void *key, size_t klen,
                  uint64_t *expires)
{
	struct store_ent *e;

	if (t->cap == 0 || klen == 0 || klen > STORE_KEY_MAX)
		return -ENOENT;
	e = t->slot[store_slot(t, key, klen, store_hash(key, klen))];
	if (e == NULL || e->ghost || store_expired(e, store_now()))
		return -ENOENT;
	*expires = e->expires;
	return 0;
}

/* store_del - key goes; 0 or -ENOENT. */
int
store_del(struct store_table *t, const void *key, size_t klen)
{
	if (klen == 0 || klen > STORE_KEY_MAX)
		return -ENOENT;
	return store_unset(t, key, klen, true);
}

/* store_foreach - fn for every live record until it returns false.  fn
 * may store_del() the record it is given, but not put. */
void
store_foreach(struct store_table *t,
              bool (*fn)(const void *key, size_t klen, const void *val,
                         uint64_t expires, void *arg),
              void *arg)
{
	uint64_t now = store_now();
	bool saved = st.dir != NULL;

	/* A del inside fn must not reshuffle the slots: make it a ghost. */
	for (size_t i = 0; i < t->cap; i++) {
		struct store_ent *e = t->slot[i];

		if (e == NULL || e->ghost || store_expired(e, now))
			continue;
		if (!saved)
			e->dirty = 1; /* keeps it in place if fn deletes it */
		if (!fn(e->kv, e->klen, e->kv + VOFF(e->klen), e->expires,
		        arg)) {
			if (!saved)
				e->dirty = 0;
			break;
		}
		if (!saved)
			e->dirty = 0;
	}
	if (!saved) { /* RAM only: drop the ghosts fn left */
		for (size_t i = 0; i < t->cap;) {
			if (t->slot[i] != NULL && t->slot[i]->ghost &&
			    !t->slot[i]->dirty)
				store_remove_slot(t, i);
			else
				i++;
		}
	}
}

/* store_count - live records (expired ones may count until the sweep). */
size_t
store_count(struct store_table *t)
{
	return t->live;
}

/* store_table_find - the table called name if it exists (loaded or
 * asked for), else NULL; does not create it. */
struct store_table *
store_table_find(const char *name)
{
	return store_find_tid(store_crc32(0, name, strlen(name)));
}

/* store_table_drop - t and its records go (the next burst is a snapshot
 * without them); t is freed. */
void
store_table_drop(struct store_table *t)
{
	struct store_table **pp;

	for (pp = &st.tables; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			store_table_clear(t);
			free(t->name);
			free(t);
			st.need_compact = true;
			return;
		}
	}
}

/* ------------------------------------------------------------- blobs */

/* store_blob_find - the blob called name, or NULL. */
static struct store_blob *
store_blob_find(const char *name)
{
	struct store_blob *b;

	for (b = st.blobs; b != NULL; b = b->next)
		if (strcmp(b->name, name) == 0)
			return b;
	return NULL;
}

/* store_blob_put - set name's blob (dirty or as loaded). */
static void
store_blob_put(const char *name, const void *p, size_t n, bool dirty)
{
	struct store_blob *b = store_blob_find(name);

	if (b == NULL) {
		b = xcalloc(1, sizeof(*b));
		b->name = xstrdup(name);
		b->next = st.blobs;
		st.blobs = b;
	} else {
		st.live_bytes -= REC_HDR + 2 + strlen(name) + b->len;
		free(b->data);
	}
	b->data = xmalloc(n ? n : 1);
	memcpy(b->data, p, n);
	b->len = n;
	b->dirty = b->dirty || dirty;
	st.live_bytes += REC_HDR + 2 + strlen(name) + n;
}

/* store_blob_set - name's blob becomes p[0..n); saved at the next flush.
 * 0, or -EINVAL (name longer than 64 bytes, blob above 4 MiB). */
int
store_blob_set(const char *name, const void *p, size_t n)
{
	if (strlen(name) == 0 || strlen(name) > 64 ||
	    n > REC_MAX - 2 - strlen(name))
		return -EINVAL;
	store_blob_put(name, p, n, true);
	return 0;
}

/* store_blob_get - name's blob and its size, or NULL. */
const void *
store_blob_get(const char *name, size_t *n)
{
	struct store_blob *b = store_blob_find(name);

	if (b == NULL)
		return NULL;
	*n = b->len;
	return b->data;
}

/* store_on_flush - fn runs on the loop just before each burst (and the
 * final one): set blobs there. */
void
store_on_flush(void (*fn)(void))
{
	for (unsigned i = 0; i < st.n_hooks; i++)
		if (st.hooks[i] == fn)
			return;
	if (st.n_hooks == ARRAY_LEN(st.hooks))
		log_panic("store: too many flush hooks");
	st.hooks[st.n_hooks++] = fn;
}

/* ----------------------------------------------------------- indexes */

/* ix_keyof/ix_expof - a slot's key and expiry (native order in RAM). */
static inline uint64_t
ix_keyof(const unsigned char *s)
{
	uint64_t k;

	memcpy(&k, s, 8);
	return k;
}

static inline uint32_t
ix_expof(const unsigned char *s)
{
	uint32_t e;

	memcpy(&e, s + 8, 4);
	return e;
}

/* ix_home - the first slot of key among n: a 64-bit mix (murmur3's
 * finaliser) scaled to n (n need not be a power of two). */
static inline size_t
ix_home(uint64_t key, size_t n)
{
	uint64_t h = key;

	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
#ifdef __SIZEOF_INT128__
	return (size_t)(((unsigned __int128)h * n) >> 64);
#else
	/* 32-bit boards (rpi2): n < 2^32, the top 32 bits of h suffice */
	return (size_t)(((h >> 32) * (uint64_t)n) >> 32);
#endif
}

/* ix_find - the slot of key among n slots of ss bytes, or the empty one
 * it would take (there always is one: load <= 3/4). */
static size_t
ix_find(const unsigned char *slots, size_t n, size_t ss, uint64_t key)
{
	size_t i = ix_home(key, n);

	for (;;) {
		uint64_t k = ix_keyof(slots + i * ss);

		if (k == key || k == 0)
			return i;
		if (++i == n)
			i = 0;
	}
}

/* ix_live - is slot s a record alive at now? */
static inline bool
ix_live(const unsigned char *s, uint64_t now)
{
	uint32_t e = ix_expof(s);

	return ix_keyof(s) != 0 && (e == 0 || e > now);
}

/* ix_find_tid - the index with this id, or NULL. */
static struct store_index *
ix_find_tid(uint32_t tid)
{
	for (struct store_index *x = st.indexes; x != NULL; x = x->next)
		if (x->tid == tid)
			return x;
	return NULL;
}

/* ix_new - an empty index (name may be NULL: known from flash only). */
static struct store_index *
ix_new(uint32_t tid, const char *name, size_t val_size)
{
	struct store_index *x = xcalloc(1, sizeof(*x));

	x->tid = tid;
	x->name = name ? xstrdup(name) : NULL;
	x->val_size = val_size;
	x->slot_size = (IX_HDR + val_size + 7) & ~(size_t)7;
	x->declared_dirty = true;
	x->epoch = 1;
	x->next = st.indexes;
	st.indexes = x;
	return x;
}

#define IX_HUGE (2u << 20)      /* a transparent huge page */
#define IX_HUGE_MIN (16u << 20) /* arrays mapped for them: <= 1/8 lost */

/* ix_alloc - n zeroed bytes for slots: a big array (16 MiB and more: the
 * rounding to 2 MiB costs at most 1/8) is mapped on its own, 2 MiB
 * aligned and advised for transparent huge pages (a 1M-triplet
 * index is 42 MB: with 4 KiB pages every lookup misses the TLB, and the
 * page faults of filling it cost more than the load itself). */
static unsigned char *
ix_alloc(size_t n)
{
	unsigned char *p, *a;
	size_t len;

	if (n < IX_HUGE_MIN)
		return xcalloc(1, n ? n : 1);
	len = (n + IX_HUGE - 1) / IX_HUGE * IX_HUGE;
	p = mmap(NULL, len + IX_HUGE, PROT_READ | PROT_WRITE,
	         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		log_panic("store: cannot map %zu bytes of slots", len);
	a = (unsigned char *)(((uintptr_t)p + IX_HUGE - 1) &
	                      ~(uintptr_t)(IX_HUGE - 1));
	if (a > p)
		munmap(p, (size_t)(a - p));
	if (a + len < p + len + IX_HUGE)
		munmap(a + len, (size_t)(p + len + IX_HUGE - (a + len)));
#ifdef MADV_HUGEPAGE
	madvise(a, len, MADV_HUGEPAGE);
#endif
	return a;
}

/* ix_free - slots of n bytes from ix_alloc. */
static void
ix_free(unsigned char *p, size_t n)
{
	if (p == NULL)
		return;
	if (n < IX_HUGE_MIN)
		free(p);
	else
		munmap(p, (n + IX_HUGE - 1) / IX_HUGE * IX_HUGE);
}

/* ix_resize - the slots become n (>= count * 4/3 + 1), every record
 * rehashed. */
static void
ix_resize(struct store_index *x, size_t n)
{
	unsigned char *old = x->slots;
	size_t oldn = x->nslots, ss = x->slot_size;

	x->slots = ix_alloc(n * ss);
	x->nslots = n;
	for (size_t i = 0; i < oldn; i++) {
		const unsigned char *s = old + i * ss;
		uint64_t k = ix_keyof(s);

		if (k != 0)
			memcpy(x->slots + ix_find(x->slots, n, ss, k) * ss, s,
			       ss);
	}
	ix_free(old, oldn * ss);
}

/* ix_slots_for - slots that hold n records at a load of 3/4. */
static size_t
ix_slots_for(size_t n)
{
	return n + n / 3 + 2;
}

/* ix_reserve - room for one more record: doubles the slots, but not
 * beyond what the caller's max needs (so that an index sized for max
 * ends at a load of 3/4, not 3/8). */
static void
ix_reserve(struct store_index *x, size_t more)
{
	size_t need = ix_slots_for(x->count + more), n, lim;

	if (x->nslots >= need)
		return;
	n = x->nslots ? x->nslots * 2 : 64;
	if (n < need)
		n = need;
	lim = x->max ? ix_slots_for(x->max) : 0;
	if (lim >= need && n > lim)
		n = lim;
	ix_resize(x, n);
}

/* ix_push_dirty - key goes out in the next burst. */
static void
ix_push_dirty(struct store_index *x, uint64_t key)
{
	if (x->n_dirty == x->cap_dirty) {
		x->cap_dirty = x->cap_dirty ? x->cap_dirty * 2 : 256;
		x->dirty = xrealloc(x->dirty, x->cap_dirty * sizeof(*x->dirty));
	}
	x->dirty[x->n_dirty++] = key;
}

/* ix_set - key's record becomes (val, expires); marked dirty or not (the
 * loader). */
static void
ix_set(struct store_index *x, uint64_t key, const void *val, uint32_t expires,
       bool dirty)
{
	unsigned char *s;
	size_t i;

	if (x->nslots == 0)
		ix_reserve(x, 1);
	i = ix_find(x->slots, x->nslots, x->slot_size, key);
	if (ix_keyof(x->slots + i * x->slot_size) == 0 &&
	    ix_slots_for(x->count + 1) > x->nslots) {
		ix_reserve(x, 1);
		i = ix_find(x->slots, x->nslots, x->slot_size, key);
	}
	s = x->slots + i * x->slot_size;
	if (ix_keyof(s) == 0) {
		memcpy(s, &key, 8);
		s[12] = 0;
		x->count++;
	}
	memcpy(s + 8, &expires, 4);
	memcpy(s + IX_HDR, val, x->val_size);
	if (dirty && st.dir != NULL && s[12] != x->epoch) {
		s[12] = x->epoch;
		ix_push_dirty(x, key);
	}
}

/* ix_remove - empty slot i (backward-shift deletion). */
static void
ix_remove(struct store_index *x, size_t i)
{
	size_t n = x->nslots, ss = x->slot_size, j = i;

	memset(x->slots + i * ss, 0, ss);
	x->count--;
	for (;;) {
		unsigned char *s;
		uint64_t k;
		size_t h;

		j = j + 1 == n ? 0 : j + 1;
		s = x->slots + j * ss;
		k = ix_keyof(s);
		if (k == 0)
			return;
		h = ix_home(k, n);
		/* j may move back to i when i is not before its home. */
		if ((j + n - h) % n >= (j + n - i) % n) {
			memcpy(x->slots + i * ss, s, ss);
			memset(s, 0, ss);
			i = j;
		}
	}
}

/* ix_unset - delete key; a del record goes out when dirty. */
static int
ix_unset(struct store_index *x, uint64_t key, bool dirty)
{
	size_t i;
	unsigned char *s;
	bool was;

	if (x->nslots == 0 || key == 0)
		return -ENOENT;
	i = ix_find(x->slots, x->nslots, x->slot_size, key);
	s = x->slots + i * x->slot_size;
	if (ix_keyof(s) == 0)
		return -ENOENT;
	was = s[12] == x->epoch;
	ix_remove(x, i);
	if (dirty && st.dir != NULL && !was)
		ix_push_dirty(x, key);
	return 0;
}

/* ix_clear - drop every record and pending text. */
static void
ix_clear(struct store_index *x)
{
	ix_free(x->slots, x->nslots * x->slot_size);
	free(x->dirty);
	x->slots = NULL;
	x->dirty = NULL;
	x->nslots = x->count = x->n_dirty = x->cap_dirty = 0;
	buf_free(&x->texts);
	x->n_texts = 0;
}

/* ix_sweep - forget the expired records that are not dirty among n
 * slots from sweep_at on (no del record: the loader drops expired ones
 * itself); how many went. */
static size_t
ix_sweep(struct store_index *x, uint64_t now, size_t n)
{
	size_t gone = 0, i;

	if (x->nslots == 0)
		return 0;
	if (n > x->nslots)
		n = x->nslots;
	i = x->sweep_at % x->nslots;
	while (n > 0) {
		unsigned char *s = x->slots + i * x->slot_size;

		if (ix_keyof(s) != 0 && !ix_live(s, now) && s[12] != x->epoch) {
			ix_remove(x, i); /* slot i refilled: look again */
			gone++;
			continue;
		}
		i = i + 1 == x->nslots ? 0 : i + 1;
		n--;
	}
	x->sweep_at = i;
	return gone;
}

/* store_isweep - forget every expired record now (a full pass); how
 * many went. */
size_t
store_isweep(struct store_index *x)
{
	return ix_sweep(x, store_now(), x->nslots);
}

/* store_index - the compact index called name (created on first call;
 * its records may already be loaded).  name: [a-z0-9_], <= 64 bytes (its
 * texts go to STATE_DIR/NAME.txt); val_size <= 240; max: how many records
 * the caller keeps at most (it sizes the slots; 0: no bound). */
struct store_index *
store_index(const char *name, size_t val_size, size_t max)
{
	uint32_t tid = store_crc32(0, name, strlen(name));
	struct store_index *x = ix_find_tid(tid);

	if (strlen(name) == 0 || strlen(name) > 64 ||
	    strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") !=
	            strlen(name) ||
	    val_size == 0 || val_size > IX_VAL_MAX)
		log_panic("store_index: bad index %s/%zu", name, val_size);
	if (x == NULL)
		x = ix_new(tid, name, val_size);
	if (x->name == NULL)
		x->name = xstrdup(name);
	else if (strcmp(x->name, name) != 0)
		log_panic("store: index ids of %s and %s collide", x->name,
		          name);
	x->by_code = true;
	x->max = max;
	if (x->val_size != val_size) {
		if (x->count > 0)
			log_warn("store: index %s: values of %zu bytes on "
			         "flash, %zu now: %zu records dropped",
			         name, x->val_size, val_size, x->count);
		ix_clear(x);
		x->val_size = val_size;
		x->slot_size = (IX_HDR + val_size + 7) & ~(size_t)7;
		x->declared_dirty = true;
		st.need_compact = true;
	}
	if (!x->text_known && st.dir != NULL) {
		char path[4096];
		struct stat sb;

		snprintf(path, sizeof(path), "%s/%s.txt", st.dir, name);
		x->text_file = stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
		x->text_known = true;
	}
	return x;
}

/* store_iput - key's record becomes val (val_size bytes) until expires
 * (store time, 0: never; kept to 32 bits); 0 or -EINVAL (key 0). */
int
store_iput(struct store_index *x, uint64_t key, const void *val,
           uint64_t expires)
{
	if (key == 0)
		return -EINVAL;
	ix_set(x, key, val,
	       expires > UINT32_MAX ? UINT32_MAX : (uint32_t)expires, true);
	return 0;
}

/* store_iget - key's value alive at now (store_now()), or NULL; valid
 * until the index changes. */
const void *
store_iget(struct store_index *x, uint64_t key, uint64_t now)
{
	const unsigned char *s;

	if (x->nslots == 0 || key == 0)
		return NULL;
	s = x->slots +
	    ix_find(x->slots, x->nslots, x->slot_size, key) * x->slot_size;
	return ix_live(s, now) ? s + IX_HDR : NULL;
}

/* store_idel - key goes; 0 or -ENOENT. */
int
store_idel(struct store_index *x, uint64_t key)
{
	return ix_unset(x, key, true);
}

/* store_iclear - every record goes (the next burst is a snapshot). */
void
store_iclear(struct store_index *x)
{
	ix_clear(x);
	st.need_compact = true;
}

/* store_iforeach - fn for each record alive now until it returns false;
 * fn must not change the index. */
void
store_iforeach(struct store_index *x,
               bool (*fn)(uint64_t key, const void *val, uint64_t expires,
                          void *arg),
               void *arg)
{
	uint64_t now = store_now();

	for (size_t i = 0; i < x->nslots; i++) {
		const unsigned char *s = x->slots + i * x->slot_size;

		if (ix_live(s, now) &&
		    !fn(ix_keyof(s), s + IX_HDR, ix_expof(s), arg))
			return;
	}
}

/* store_icount - records (expired ones count until the next flush). */
size_t
store_icount(const struct store_index *x)
{
	return x->count;
}

/* store_imem - bytes of RAM the index holds (slots, dirty list, texts
 * not yet written). */
size_t
store_imem(const struct store_index *x)
{
	return x->nslots * x->slot_size + x->cap_dirty * 8 + x->texts.cap;
}

/* ---------------------------------------------------- serialisation */

/* put_u32/put_u64 - little-endian into p. */
static inline void
put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline void
put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static inline uint32_t
get_u32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

static inline uint64_t
get_u64(const unsigned char *p)
{
	return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* rec_begin - room for a record of body size n in b; returns the body
 * (finish with rec_end). */
static unsigned char *
rec_begin(struct buf *b, size_t n)
{
	size_t need = b->len + REC_HDR + n;

	if (need > b->cap) {
		b->cap = need > b->cap * 2 ? need : b->cap * 2;
		b->data = xrealloc(b->data, b->cap);
	}
	return (unsigned char *)b->data + b->len + REC_HDR;
}

/* rec_end - write the header of the record rec_begin made; commit it. */
static void
rec_end(struct buf *b, size_t n)
{
	unsigned char *h = (unsigned char *)b->data + b->len;

	put_u32(h + 4, (uint32_t)n);
	put_u32(h, store_crc32(0, h + 4, 4 + n));
	b->len += REC_HDR + n;
}

/* ser_clock - a CLOCK record with the generation gen (its burst length
 * is set by clock_seal when the burst is complete). */
static void
ser_clock(struct buf *b, uint64_t gen)
{
	unsigned char *p = rec_begin(b, CLOCK_BODY);
	uint64_t s = store_now();

	p[0] = REC_CLOCK;
	put_u64(p + 1, gen);
	put_u64(p + 9, s);
	put_u64(p + 17, (uint64_t)(s - clk.offset));
	put_u64(p + 25, 0);
	rec_end(b, CLOCK_BODY);
}

/* clock_seal - the CLOCK record at b+at says that burst_len bytes follow
 * it in its burst; its checksum again. */
static void
clock_seal(unsigned char *rec, uint64_t burst_len)
{
	put_u64(rec + REC_HDR + 25, burst_len);
	put_u32(rec, store_crc32(0, rec + 4, 4 + CLOCK_BODY));
}

/* ser_table - t's TABLE record. */
static void
ser_table(struct buf *b, const struct store_table *t)
{
	size_t nl = t->name ? strlen(t->name) : 0;
	unsigned char *p = rec_begin(b, 10 + nl);

	p[0] = REC_TABLE;
	put_u32(p + 1, t->tid);
	put_u32(p + 5, (uint32_t)t->val_size);
	p[9] = (unsigned char)nl;
	memcpy(p + 10, t->name ? t->name : "", nl);
	rec_end(b, 10 + nl);
}

/* ser_ent - e's PUT, or its DEL when it is a ghost. */
static void
ser_ent(struct buf *b, const struct store_table *t, const struct store_ent *e)
{
	size_t n;
	unsigned char *p;

	if (e->ghost) {
		n = 6 + e->klen;
		p = rec_begin(b, n);
		p[0] = REC_DEL;
		put_u32(p + 1, t->tid);
		p[5] = e->klen;
		memcpy(p + 6, e->kv, e->klen);
	} else {
		n = 14 + e->klen + t->val_size;
		p = rec_begin(b, n);
		p[0] = REC_PUT;
		put_u32(p + 1, t->tid);
		put_u64(p + 5, e->expires);
		p[13] = e->klen;
		memcpy(p + 14, e->kv, e->klen);
		memcpy(p + 14 + e->klen, e->kv + VOFF(e->klen), t->val_size);
	}
	rec_end(b, n);
}

/* ser_blob - a BLOB record. */
static void
ser_blob(struct buf *b, const struct store_blob *bl)
{
	size_t nl = strlen(bl->name), n = 2 + nl + bl->len;
	unsigned char *p = rec_begin(b, n);

	p[0] = REC_BLOB;
	p[1] = (unsigned char)nl;
	memcpy(p + 2, bl->name, nl);
	memcpy(p + 2 + nl, bl->data, bl->len);
	rec_end(b, n);
}

/* ser_index - x's INDEX record (with its record count: the loader sizes
 * the slots once). */
static void
ser_index(struct buf *b, const struct store_index *x)
{
	size_t nl = x->name ? strlen(x->name) : 0;
	unsigned char *p = rec_begin(b, 18 + nl);

	p[0] = REC_INDEX;
	put_u32(p + 1, x->tid);
	put_u32(p + 5, (uint32_t)x->val_size);
	put_u64(p + 9, x->count);
	p[17] = (unsigned char)nl;
	memcpy(p + 18, x->name ? x->name : "", nl);
	rec_end(b, 18 + nl);
}

/* ix_rec_size - bytes of one IPUT record of x. */
static size_t
ix_rec_size(const struct store_index *x)
{
	return REC_HDR + 17 + x->val_size;
}

/* ix_live_bytes - bytes of x in a snapshot. */
static size_t
ix_live_bytes(const struct store_index *x)
{
	return x->count * (12 + x->val_size) +
	       (x->count / IX_BLOCK + 1) * (REC_HDR + 9) + REC_HDR + 18 + 64;
}

/* ser_ix_dirty - x's changed records: an IPUT each (from its slot), or
 * an IDEL when it is gone (or expired); the dirty marks go. */
static void
ser_ix_dirty(struct buf *b, struct store_index *x, uint64_t now)
{
	for (size_t d = 0; d < x->n_dirty; d++) {
		uint64_t key = x->dirty[d];
		unsigned char *s = NULL, *p;

		if (x->nslots > 0) {
			s = x->slots +
			    ix_find(x->slots, x->nslots, x->slot_size, key) *
			            x->slot_size;
			s[12] = 0;
		}
		if (s != NULL && ix_live(s, now)) {
			p = rec_begin(b, 17 + x->val_size);
			p[0] = REC_IPUT;
			put_u32(p + 1, x->tid);
			put_u64(p + 5, key);
			put_u32(p + 13, ix_expof(s));
			memcpy(p + 17, s + IX_HDR, x->val_size);
			rec_end(b, 17 + x->val_size);
		} else {
			p = rec_begin(b, 13);
			p[0] = REC_IDEL;
			put_u32(p + 1, x->tid);
			put_u64(p + 5, key);
			rec_end(b, 13);
		}
	}
	x->n_dirty = 0;
}

/* ix_undirty - every slot clean (a snapshot holds everything): a new
 * epoch; when the epochs wrap, the marks are cleared one by one. */
static void
ix_undirty(struct store_index *x)
{
	x->n_dirty = 0;
	if (++x->epoch == 0) {
		for (size_t i = 0; i < x->nslots; i++)
			x->slots[i * x->slot_size + 12] = 0;
		x->epoch = 1;
	}
}

/* ix_text_due - is x's text file more than twice its live texts? */
static bool
ix_text_due(const struct store_index *x)
{
	uint64_t avg = x->text_recs ? x->text_bytes / x->text_recs : 80;

	return st.dir != NULL && x->text_file > JNL_MIN_COMPACT &&
	       x->text_file > 2 * x->count * avg;
}

/* store_text_put - the text of key (a listing aid: kept on flash only,
 * STATE_DIR/NAME.txt, read back by store_text_foreach).  Without
 * state_dir texts stay in RAM (up to 16 MiB). */
void
store_text_put(struct store_index *x, uint64_t key, const char *text)
{
	size_t n = strnlen(text, TEXT_MAX);
	unsigned char *p;

	if (st.dir == NULL && x->texts.len > TEXT_RAM_MAX)
		return;
	p = rec_begin(&x->texts, 9 + n);
	p[0] = REC_TEXT;
	put_u64(p + 1, key);
	memcpy(p + 9, text, n);
	rec_end(&x->texts, 9 + n);
	x->n_texts++;
}

/* text_scan - fn for each good TEXT record of p[0..n) (a bad stretch is
 * skipped byte by byte); how many damaged stretches. */
static size_t
text_scan(const unsigned char *p, size_t n,
          void (*fn)(uint64_t key, const char *t, size_t tl, void *arg),
          void *arg)
{
	size_t off = 0, bad = 0;
	bool in_bad = false;

	while (off < n) {
		if (n - off >= REC_HDR) {
			uint32_t len = get_u32(p + off + 4);

			if (len >= 9 && len <= 9 + TEXT_MAX &&
			    len <= n - off - REC_HDR &&
			    p[off + REC_HDR] == REC_TEXT &&
			    store_crc32(0, p + off + 4, 4 + len) ==
			            get_u32(p + off)) {
				fn(get_u64(p + off + REC_HDR + 1),
				   (const char *)p + off + REC_HDR + 9, len - 9,
				   arg);
				off += REC_HDR + len;
				in_bad = false;
				continue;
			}
		}
		if (!in_bad)
			bad++;
		in_bad = true;
		off++;
	}
	return bad;
}

/* store_text_scan_mem - text_scan for the fuzzer: good records, bad
 * stretches. */
void store_text_scan_mem(const void *p, size_t n, size_t *good, size_t *bad);

static void
text_count_cb(uint64_t key, const char *t, size_t tl, void *arg)
{
	(void)key;
	(void)t;
	(void)tl;
	(*(size_t *)arg)++;
}

void
store_text_scan_mem(const void *p, size_t n, size_t *good, size_t *bad)
{
	size_t g = 0, b = text_scan(p, n, text_count_cb, &g);

	if (good)
		*good = g;
	if (bad)
		*bad = b;
}

struct text_walk {
	const unsigned char *slots;
	size_t nslots, slot_size;
	uint64_t now;
	unsigned char *seen; /* one bit per slot */
	void (*fn)(uint64_t key, const void *val, uint64_t expires,
	           const char *text, size_t tlen, void *arg);
	void *arg;
	struct buf *out; /* compaction: kept records */
	uint64_t kept;
};

/* text_walk_cb - a text whose key is alive and not seen yet. */
static void
text_walk_cb(uint64_t key, const char *t, size_t tl, void *arg)
{
	struct text_walk *w = arg;
	size_t i;
	const unsigned char *s;

	if (w->nslots == 0 || key == 0)
		return;
	i = ix_find(w->slots, w->nslots, w->slot_size, key);
	s = w->slots + i * w->slot_size;
	if (!ix_live(s, w->now) || (w->seen[i / 8] & (1u << (i % 8))))
		return;
	w->seen[i / 8] |= (unsigned char)(1u << (i % 8));
	if (w->fn != NULL)
		w->fn(key, s + IX_HDR, ix_expof(s), t, tl, w->arg);
	if (w->out != NULL) {
		unsigned char *p = rec_begin(w->out, 9 + tl);

		p[0] = REC_TEXT;
		put_u64(p + 1, key);
		memcpy(p + 9, t, tl);
		rec_end(w->out, 9 + tl);
		w->kept++;
	}
}

static int store_read_file(const char *dir, const char *name, struct buf *b);

typedef void (*text_fn)(uint64_t key, const void *val, uint64_t expires,
                        const char *text, size_t tlen, void *arg);

/* text_walk_all - fn for each live record of x: with its text from file
 * (NAME.txt as read), the burst being written and the texts not yet
 * written, then the ones without a text.  On the loop. */
static void
text_walk_all(struct store_index *x, const struct buf *file, text_fn fn,
              void *arg)
{
	struct text_walk w = {x->slots,    x->nslots, x->slot_size,
	                      store_now(), NULL,      fn,
	                      arg,         NULL,      0};

	w.seen = xcalloc(x->nslots / 8 + 1, 1);
	if (file != NULL)
		text_scan((const unsigned char *)file->data, file->len,
		          text_walk_cb, &w);
	if (x->texts_busy != NULL)
		text_scan((const unsigned char *)x->texts_busy->data,
		          x->texts_busy->len, text_walk_cb, &w);
	text_scan((const unsigned char *)x->texts.data, x->texts.len,
	          text_walk_cb, &w);
	for (size_t i = 0; i < x->nslots; i++) {
		const unsigned char *s = x->slots + i * x->slot_size;

		if (ix_live(s, w.now) && !(w.seen[i / 8] & (1u << (i % 8))))
			fn(ix_keyof(s), s + IX_HDR, ix_expof(s), NULL, 0, arg);
	}
	free(w.seen);
}

/* text_file_name - "NAME.txt" of x into name; false without one. */
static bool
text_file_name(const struct store_index *x, char *name, size_t len)
{
	return st.dir != NULL && x->name != NULL &&
	       (size_t)snprintf(name, len, "%s.txt", x->name) < len;
}

/* store_text_foreach - fn once for each live record of x with its text
 * (from STATE_DIR/NAME.txt, the burst being written and those not yet
 * written), then for each one without a text (text NULL).  Reads the
 * file on the calling thread (tests; the daemon uses the _async one).
 * fn must not change the index. */
void
store_text_foreach(struct store_index *x, text_fn fn, void *arg)
{
	struct buf f = {0};
	char name[80];
	bool have = text_file_name(x, name, sizeof(name)) &&
	            store_read_file(st.dir, name, &f) == 0;

	text_walk_all(x, have ? &f : NULL, fn, arg);
	buf_free(&f);
}

/* A text listing whose file is read in the thread pool. */
struct text_job {
	uv_work_t req;
	struct store_index *x;
	char *dir;
	char name[80];
	struct buf file;
	int rc;
	text_fn fn;
	void (*done)(void *arg);
	void *arg;
};

/* text_job_work - in the thread pool: the whole text file. */
static void
text_job_work(uv_work_t *req)
{
	struct text_job *j = container_of(req, struct text_job, req);

	j->rc = store_read_file(j->dir, j->name, &j->file);
}

/* text_job_done - back on the loop: walk the index with the file. */
static void
text_job_done(uv_work_t *req, int status)
{
	struct text_job *j = container_of(req, struct text_job, req);

	text_walk_all(j->x, status == 0 && j->rc == 0 ? &j->file : NULL, j->fn,
	              j->arg);
	j->done(j->arg);
	buf_free(&j->file);
	free(j->dir);
	free(j);
}

/* store_text_foreach_async - store_text_foreach with the file read in the
 * thread pool (it can be tens of MB on flash: never on the loop); fn
 * runs on the loop, then done(arg).  Without a file, at once. */
void
store_text_foreach_async(struct store_index *x, text_fn fn,
                         void (*done)(void *arg), void *arg)
{
	struct text_job *j = xcalloc(1, sizeof(*j));

	j->x = x;
	j->fn = fn;
	j->done = done;
	j->arg = arg;
	if (st.loop != NULL && text_file_name(x, j->name, sizeof(j->name))) {
		j->dir = xstrdup(st.dir);
		if (uv_queue_work(st.loop, &j->req, text_job_work,
		                  text_job_done) == 0)
			return;
		free(j->dir);
		j->dir = NULL;
	}
	text_walk_all(x, NULL, fn, arg);
	done(arg);
	free(j);
}

/* store_sweep - forget expired records (no del record is needed: the
 * loader drops expired puts itself) and the ghosts already written. */
static void
store_sweep(struct store_table *t, uint64_t now)
{
	for (size_t i = 0; i < t->cap;) {
		struct store_ent *e = t->slot[i];

		if (e != NULL && !e->dirty &&
		    (e->ghost || store_expired(e, now))) {
			if (!e->ghost) {
				t->live--;
				st.live_bytes -= store_rec_size(t, e->klen);
			}
			store_remove_slot(t,
			                  i); /* slot i refilled: look again */
			continue;
		}
		i++;
	}
}

/* store_serialise - the next burst into w: the changed records, or the
 * whole state (w->snapshot); clears the dirty marks.  The tables and
 * blobs go into w->data here; an index goes as its changed records in a
 * journal burst, or in a snapshot as a copy of its slots that the thread
 * pool turns into block records (the loop only copies them); the texts
 * of the burst go along in w->ix. */
/* store_snapshot_due - is the next burst a snapshot? */
static bool
store_snapshot_due(void)
{
	size_t changed = 0, live = st.live_bytes;
	bool text_due = false;

	for (struct store_table *t = st.tables; t != NULL; t = t->next)
		for (size_t i = 0; i < t->n_dirty; i++)
			changed += store_rec_size(t, t->dirty[i]->klen);
	for (struct store_index *x = st.indexes; x != NULL; x = x->next) {
		changed += x->n_dirty * ix_rec_size(x);
		live += ix_live_bytes(x);
		text_due = text_due || ix_text_due(x);
	}
	return st.need_compact || text_due ||
	       (st.jnl_bytes + changed > 2 * live &&
	        st.jnl_bytes + changed > JNL_MIN_COMPACT);
}

/* ix_frozen_buf - n bytes for the copy of an index's slots: the buffer
 * the thread pool allocated and touched beforehand (store_flush: page
 * faults of a fresh 42 MB buffer cost more than the copy itself), or a
 * new one. */
static unsigned char *
ix_frozen_buf(uint32_t tid, size_t n)
{
	for (size_t k = 0; k < st.n_pre; k++) {
		if (st.pre[k].tid == tid && st.pre[k].p != NULL &&
		    st.pre[k].n >= n) {
			unsigned char *p = st.pre[k].p;

			st.pre[k].p = NULL;
			return p;
		}
	}
	return xmalloc(n + 1);
}

/* store_pre_free - the buffers prepared and not used. */
static void
store_pre_free(void)
{
	for (size_t k = 0; k < st.n_pre; k++)
		free(st.pre[k].p);
	free(st.pre);
	st.pre = NULL;
	st.n_pre = 0;
}

static void
store_serialise(struct flush_req *w)
{
	struct buf *b = &w->data;
	struct store_table *t;
	struct store_index *x;
	struct store_blob *bl;
	size_t n_ix = 0;
	uint64_t now = store_now(), t0 = uv_hrtime();

	for (x = st.indexes; x != NULL; x = x->next)
		n_ix++;
	w->snapshot = store_snapshot_due();
	w->gen = w->snapshot ? st.gen + 1 : st.gen;
	ser_clock(b, w->gen);
	for (t = st.tables; t != NULL; t = t->next) {
		if (w->snapshot || t->declared_dirty || t->n_dirty > 0)
			ser_table(b, t);
		t->declared_dirty = false;
		for (size_t i = 0; i < t->n_dirty; i++) {
			struct store_ent *e = t->dirty[i];

			if (!w->snapshot)
				ser_ent(b, t, e);
			e->dirty = 0;
		}
		t->n_dirty = 0;
		if (w->snapshot) {
			for (size_t i = 0; i < t->cap; i++) {
				struct store_ent *e = t->slot[i];

				if (e != NULL && !e->ghost &&
				    !store_expired(e, now))
					ser_ent(b, t, e);
			}
		}
		store_sweep(t, now);
	}
	for (bl = st.blobs; bl != NULL; bl = bl->next) {
		if (w->snapshot || bl->dirty)
			ser_blob(b, bl);
		bl->dirty = false;
	}
	w->ix = xcalloc(n_ix ? n_ix : 1, sizeof(*w->ix));
	w->n_ix = n_ix;
	n_ix = 0;
	for (x = st.indexes; x != NULL; x = x->next) {
		struct ix_job *j = &w->ix[n_ix++];

		j->tid = x->tid;
		j->val_size = x->val_size;
		j->slot_size = x->slot_size;
		j->now = now > UINT32_MAX ? UINT32_MAX : (uint32_t)now;
		snprintf(j->file, sizeof(j->file), "%s.txt",
		         x->name ? x->name : "index");
		j->text_file = x->text_file;
		if (w->snapshot || x->declared_dirty || x->n_dirty > 0)
			ser_index(b, x);
		x->declared_dirty = false;
		if (w->snapshot) {
			ix_undirty(x);
			j->nslots = x->nslots;
			j->frozen =
			        ix_frozen_buf(x->tid, x->nslots * x->slot_size);
			if (x->nslots > 0)
				memcpy(j->frozen, x->slots,
				       x->nslots * x->slot_size);
			j->compact_texts = ix_text_due(x);
		} else {
			ser_ix_dirty(b, x, now);
		}
		/* A bounded part of the slots per burst: a whole pass over
		 * a big index would hold the loop. */
		ix_sweep(x, now,
		         x->nslots / 16 > IX_SWEEP ? x->nslots / 16 : IX_SWEEP);
		j->texts = x->texts; /* moved: the burst owns them */
		j->n_texts = x->n_texts;
		memset(&x->texts, 0, sizeof(x->texts));
		x->n_texts = 0;
		x->texts_busy = &j->texts;
	}
	clock_seal((unsigned char *)b->data, b->len - CLOCK_REC);
	st.need_compact = false;
	store_pre_free();
	st.ctr.serialise_us = (uv_hrtime() - t0) / 1000;
}

/* ---------------------------------------------------------- file I/O */

/* store_path - dir/name into out. */
static int
store_path(char *out, size_t outlen, const char *dir, const char *name)
{
	if ((size_t)snprintf(out, outlen, "%s/%s", dir, name) >= outlen)
		return -ENAMETOOLONG;
	return 0;
}

static int write_all(int fd, const void *p, size_t n);

/* store_append_path - p[0..n) at the end of path, fdatasync.  Blocking. */
static int
store_append_path(const char *path, const void *p, size_t n)
{
	int fd, rc;

	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	rc = write_all(fd, p, n);
	if (rc == 0 && fdatasync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	return rc;
}

/* store_append - p[0..n) at the end of the journal, fdatasync.  Blocking:
 * thread pool or exit. */
static int
store_append(const char *dir, const void *p, size_t n)
{
	char path[4096];
	int rc;

	if ((rc = store_path(path, sizeof(path), dir, STORE_JNL)) < 0)
		return rc;
	return store_append_path(path, p, n);
}

/* write_all - p[0..n) to fd; 0 or -errno. */
static int
write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* ix_job_live - records alive in a job's frozen slots. */
static size_t
ix_job_live(const struct ix_job *j)
{
	size_t n = 0;

	for (size_t i = 0; i < j->nslots; i++)
		n += ix_live(j->frozen + i * j->slot_size, j->now);
	return n;
}

/* ix_job_bytes - bytes of the block records of a job with live records. */
static size_t
ix_job_bytes(const struct ix_job *j, size_t live)
{
	size_t blocks = (live + IX_BLOCK - 1) / IX_BLOCK;

	return blocks * (REC_HDR + 9) + live * (12 + j->val_size);
}

/* ix_job_write - the frozen slots as IBLOCK records of up to IX_BLOCK
 * records each (one CRC per block), written to fd. */
static int
ix_job_write(int fd, const struct ix_job *j)
{
	size_t es = 12 + j->val_size, i = 0;
	struct buf b = {0};
	int rc = 0;

	while (rc == 0 && i < j->nslots) {
		unsigned char *p = rec_begin(&b, 9 + IX_BLOCK * es);
		uint32_t n = 0;

		for (; i < j->nslots && n < IX_BLOCK; i++) {
			const unsigned char *s = j->frozen + i * j->slot_size;
			unsigned char *e = p + 9 + (size_t)n * es;

			if (!ix_live(s, j->now))
				continue;
			put_u64(e, ix_keyof(s));
			put_u32(e + 8, ix_expof(s));
			memcpy(e + 12, s + IX_HDR, j->val_size);
			n++;
		}
		if (n == 0)
			break;
		p[0] = REC_IBLOCK;
		put_u32(p + 1, j->tid);
		put_u32(p + 5, n);
		rec_end(&b, 9 + (size_t)n * es);
		rc = write_all(fd, b.data, b.len);
		b.len = 0;
	}
	buf_free(&b);
	return rc;
}

/* store_write_snapshot - w's data then the block records of every index
 * become the snapshot (a temp file, fsync, rename, fsync of the dir),
 * then the journal is replaced by one holding only a CLOCK record of the
 * same generation.  A crash between the two renames leaves an older
 * journal, which the loader ignores for its generation.  Blocking. */
static int
store_write_snapshot(const char *dir, struct flush_req *w)
{
	char path[4096], tmp[4200];
	size_t extra = 0, *live = xcalloc(w->n_ix + 1, sizeof(size_t));
	struct buf j = {0};
	int fd, rc;

	for (size_t k = 0; k < w->n_ix; k++) {
		live[k] = ix_job_live(&w->ix[k]);
		extra += ix_job_bytes(&w->ix[k], live[k]);
	}
	free(live);
	clock_seal((unsigned char *)w->data.data,
	           w->data.len - CLOCK_REC + extra);
	if ((rc = store_path(path, sizeof(path), dir, STORE_SNAP)) < 0)
		return rc;
	snprintf(tmp, sizeof(tmp), "%s.tmpXXXXXX", path);
	fd = mkstemp(tmp);
	if (fd < 0)
		return -errno;
	rc = fchmod(fd, 0600) < 0 ? -errno : 0;
	if (rc == 0)
		rc = write_all(fd, w->data.data, w->data.len);
	for (size_t k = 0; rc == 0 && k < w->n_ix; k++)
		rc = ix_job_write(fd, &w->ix[k]);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		return rc;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	if (rc < 0)
		return rc;
	w->written += w->data.len + extra;
	/* The journal's first record: the snapshot's CLOCK, on its own. */
	buf_append(&j, w->data.data, CLOCK_REC);
	clock_seal((unsigned char *)j.data, 0);
	if ((rc = store_path(path, sizeof(path), dir, STORE_JNL)) == 0)
		rc = util_write_file_atomic(path, j.data, j.len, 0600);
	w->written += j.len;
	buf_free(&j);
	return rc;
}

/* ix_job_texts - the burst's texts appended to NAME.txt, or (compaction)
 * NAME.txt rewritten with the texts of live records only, once each,
 * these included.  Blocking.  0 or -errno (in j->text_rc too). */
static int
ix_job_texts(const char *dir, struct ix_job *j, uint64_t *written)
{
	char path[4096];
	struct buf old = {0}, out = {0};
	struct text_walk tw = {0};
	int rc;

	if ((rc = store_path(path, sizeof(path), dir, j->file)) < 0)
		return j->text_rc = rc;
	if (!j->compact_texts) {
		if (j->texts.len == 0)
			return 0;
		rc = store_append_path(path, j->texts.data, j->texts.len);
		if (rc == 0) {
			j->text_file += j->texts.len;
			*written += j->texts.len;
		}
		return j->text_rc = rc;
	}
	rc = store_read_file(dir, j->file, &old);
	if (rc < 0 && rc != -ENOENT) {
		buf_free(&old);
		return j->text_rc = rc;
	}
	tw.slots = j->frozen;
	tw.nslots = j->nslots;
	tw.slot_size = j->slot_size;
	tw.now = j->now;
	tw.seen = xcalloc(j->nslots / 8 + 1, 1);
	tw.out = &out;
	text_scan((const unsigned char *)old.data, old.len, text_walk_cb, &tw);
	text_scan((const unsigned char *)j->texts.data, j->texts.len,
	          text_walk_cb, &tw);
	free(tw.seen);
	buf_free(&old);
	rc = util_write_file_atomic(path, out.data ? out.data : "", out.len,
	                            0600);
	if (rc == 0) {
		j->text_file = out.len;
		j->kept_recs = tw.kept;
		j->kept_bytes = out.len;
		*written += out.len;
	}
	buf_free(&out);
	return j->text_rc = rc;
}

/* store_write - one burst, blocking: the texts first (a text without
 * its record is harmless, the other way round a listing shows a key),
 * then the journal burst or the snapshot. */
static int
store_write(const char *dir, struct flush_req *w)
{
	int rc;

	for (size_t k = 0; k < w->n_ix; k++)
		ix_job_texts(dir, &w->ix[k], &w->written);
	if (w->snapshot)
		return store_write_snapshot(dir, w);
	rc = store_append(dir, w->data.data, w->data.len);
	if (rc == 0)
		w->written += w->data.len;
	return rc;
}

/* store_flush_work - in the thread pool. */
static void
store_flush_work(uv_work_t *req)
{
	struct flush_req *w = container_of(req, struct flush_req, req);

	w->rc = store_write(st.dir, w);
}

/* store_burst_done - account a finished burst (loop or exit) and free
 * it. */
static void
store_burst_done(int rc, struct flush_req *w)
{
	st.ctr.bursts++;
	for (size_t k = 0; k < w->n_ix; k++) {
		struct ix_job *j = &w->ix[k];
		struct store_index *x = ix_find_tid(j->tid);

		if (x != NULL) {
			if (x->texts_busy == &j->texts)
				x->texts_busy = NULL;
			if (j->text_rc < 0)
				log_warn("store: cannot write %s/%s: %s "
				         "(texts for listing lost)",
				         st.dir, j->file,
				         strerror(-j->text_rc));
			x->text_file = j->text_file;
			if (j->compact_texts && j->text_rc == 0) {
				x->text_recs = j->kept_recs;
				x->text_bytes = j->kept_bytes;
			} else if (j->text_rc == 0) {
				x->text_bytes += j->texts.len;
				x->text_recs += j->n_texts;
			}
		}
		free(j->frozen);
		buf_free(&j->texts);
	}
	free(w->ix);
	w->ix = NULL;
	w->n_ix = 0;
	st.ctr.bytes_written += w->written;
	if (rc < 0) {
		st.ctr.write_errors++;
		st.need_compact = true; /* whatever it held goes out whole */
		log_warn("store: cannot write %s in %s: %s",
		         w->snapshot ? "the snapshot" : "the journal", st.dir,
		         strerror(-rc));
		return;
	}
	if (w->snapshot) {
		st.ctr.snapshots++;
		st.gen = w->gen;
		st.jnl_bytes = CLOCK_REC;
	} else {
		st.jnl_bytes += w->data.len;
	}
}

/* store_flush_done - back on the loop. */
static void
store_flush_done(uv_work_t *req, int status)
{
	struct flush_req *w = container_of(req, struct flush_req, req);
	int rc = status < 0 ? status : w->rc;

	st.busy = false;
	store_burst_done(rc, w);
	if (w->done)
		w->done(rc, w->arg);
	buf_free(&w->data);
	free(w);
}

/* store_hooks_run - modules refresh their blobs. */
static void
store_hooks_run(void)
{
	for (unsigned i = 0; i < st.n_hooks; i++)
		st.hooks[i]();
}

/* store_flush_go - serialise and hand the burst to the thread pool. */
static int
store_flush_go(void (*done)(int rc, void *arg), void *arg)
{
	struct flush_req *w;
	int rc;

	store_hooks_run();
	w = xcalloc(1, sizeof(*w));
	store_serialise(w);
	w->done = done;
	w->arg = arg;
	st.busy = true;
	rc = uv_queue_work(st.loop, &w->req, store_flush_work,
	                   store_flush_done);
	if (rc < 0) {
		st.busy = false;
		store_burst_done(rc, w);
		buf_free(&w->data);
		free(w);
	}
	return rc;
}

struct pre_req {
	uv_work_t req;
	struct ix_pre *pre;
	size_t n_pre;
	void (*done)(int rc, void *arg);
	void *arg;
};

/* store_pre_work - the thread pool allocates and touches the buffers. */
static void
store_pre_work(uv_work_t *req)
{
	struct pre_req *r = container_of(req, struct pre_req, req);

	for (size_t k = 0; k < r->n_pre; k++) {
		r->pre[k].p = malloc(r->pre[k].n + 1);
		if (r->pre[k].p != NULL)
			memset(r->pre[k].p, 0, r->pre[k].n + 1);
	}
}

/* store_pre_done - back on the loop: the burst (the copies are cheap). */
static void
store_pre_done(uv_work_t *req, int status)
{
	struct pre_req *r = container_of(req, struct pre_req, req);
	int rc;

	st.busy = false;
	store_pre_free();
	st.pre = r->pre;
	st.n_pre = r->n_pre;
	rc = store_flush_go(r->done, r->arg);
	if (rc < 0 && r->done)
		r->done(rc, r->arg);
	free(r);
	(void)status;
}

/* store_flush - one burst of what changed, from the thread pool; done
 * (may be NULL) is called on the loop with 0 or -errno.  -EBUSY when a
 * burst is still running (the changes wait for the next one), -ENOENT
 * without state_dir.  A snapshot of big indexes first has the thread
 * pool prepare the buffers for the copies of their slots. */
int
store_flush(void (*done)(int rc, void *arg), void *arg)
{
	struct pre_req *r;
	size_t big = 0, k = 0;
	int rc;

	if (st.dir == NULL)
		return -ENOENT;
	if (st.busy)
		return -EBUSY;
	for (struct store_index *x = st.indexes; x != NULL; x = x->next)
		big += x->nslots * x->slot_size >= (1u << 20);
	if (big == 0 || !store_snapshot_due())
		return store_flush_go(done, arg);
	r = xcalloc(1, sizeof(*r));
	r->pre = xcalloc(big, sizeof(*r->pre));
	for (struct store_index *x = st.indexes; x != NULL; x = x->next) {
		if (x->nslots * x->slot_size < (1u << 20))
			continue;
		r->pre[k].tid = x->tid;
		r->pre[k].n = x->nslots * x->slot_size;
		k++;
	}
	r->n_pre = k;
	r->done = done;
	r->arg = arg;
	st.busy = true;
	rc = uv_queue_work(st.loop, &r->req, store_pre_work, store_pre_done);
	if (rc < 0) {
		st.busy = false;
		free(r->pre);
		free(r);
		return store_flush_go(done, arg);
	}
	return 0;
}

/* store_flush_now - one burst, blocking (store_close, tests). */
int
store_flush_now(void)
{
	struct flush_req w = {0};
	int rc;

	if (st.dir == NULL)
		return -ENOENT;
	if (st.busy)
		return -EBUSY;
	store_hooks_run();
	store_serialise(&w);
	rc = store_write(st.dir, &w);
	store_burst_done(rc, &w);
	buf_free(&w.data);
	return rc;
}

/* store_compact - the next burst is a snapshot (tests, bench). */
void
store_compact(void)
{
	st.need_compact = true;
}

/* -------------------------------------------------------------- load */

struct loader {
	uint64_t gen; /* generation of this file (CLOCK seen) */
	bool have_gen;
	uint64_t clock_s, clock_wall; /* last CLOCK */
	size_t good, dropped;
	size_t first_bad; /* offset of the first dropped byte */
	bool journal;
	uint64_t want_gen;
	bool stale;
	size_t len; /* bytes of the file: bounds what a count may size */
};

/* store_apply - one record's body (its CRC was good); false when it does
 * not parse (counted as dropped). */
static bool
store_apply(struct loader *ld, const unsigned char *p, size_t n)
{
	struct store_table *t;
	size_t kl;

	if (n < 1)
		return false;
	if (ld->stale && p[0] != REC_CLOCK)
		return true; /* an old journal: skipped as a whole */
	switch (p[0]) {
	case REC_CLOCK:
		if (n != CLOCK_BODY)
			return false;
		ld->gen = get_u64(p + 1);
		ld->have_gen = true;
		ld->clock_s = get_u64(p + 9);
		ld->clock_wall = get_u64(p + 17);
		ld->stale = ld->journal && ld->gen != ld->want_gen;
		return true;
	case REC_TABLE: {
		uint32_t tid, vs;
		size_t nl;
		char name[65];

		if (n < 10)
			return false;
		tid = get_u32(p + 1);
		vs = get_u32(p + 5);
		nl = p[9];
		if (n != 10 + nl || nl > 64 || vs > 65536)
			return false;
		memcpy(name, p + 10, nl);
		name[nl] = '\0';
		if (nl > 0 && store_crc32(0, name, nl) != tid)
			return false;
		t = store_find_tid(tid);
		if (t == NULL)
			t = store_table_new(tid, nl ? name : NULL, vs);
		else if (t->val_size != vs && t->by_code) {
			/* Asked for before the load with another size: the
			 * records on flash do not fit and are dropped. */
			if (!t->size_warned)
				log_warn("store: table %s: values of %u bytes "
				         "on flash, %zu now: dropped",
				         t->name, vs, t->val_size);
			t->size_warned = true;
			st.need_compact = true;
		} else if (t->val_size != vs) {
			store_table_clear(t);
			t->val_size = vs;
		}
		if (t->name == NULL && nl > 0)
			t->name = xstrdup(name);
		return true;
	}
	case REC_PUT:
		if (n < 14)
			return false;
		t = store_find_tid(get_u32(p + 1));
		kl = p[13];
		if (t == NULL || kl == 0 || n != 14 + kl + t->val_size)
			return false;
		store_set(t, p + 14, kl, p + 14 + kl, get_u64(p + 5), false);
		return true;
	case REC_DEL:
		if (n < 6)
			return false;
		t = store_find_tid(get_u32(p + 1));
		kl = p[5];
		if (t == NULL || kl == 0 || n != 6 + kl)
			return false;
		store_unset(t, p + 6, kl, false);
		return true;
	case REC_INDEX: {
		struct store_index *x;
		uint32_t tid, vs;
		uint64_t cnt;
		size_t nl;
		char name[65];

		if (n < 18)
			return false;
		tid = get_u32(p + 1);
		vs = get_u32(p + 5);
		cnt = get_u64(p + 9);
		nl = p[17];
		if (n != 18 + nl || nl == 0 || nl > 64 || vs == 0 ||
		    vs > IX_VAL_MAX)
			return false;
		memcpy(name, p + 18, nl);
		name[nl] = '\0';
		if (store_crc32(0, name, nl) != tid ||
		    strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != nl)
			return false;
		x = ix_find_tid(tid);
		if (x == NULL)
			x = ix_new(tid, name, vs);
		else if (x->val_size != vs && x->by_code) {
			if (!x->size_warned)
				log_warn("store: index %s: values of %u bytes "
				         "on flash, %zu now: dropped",
				         x->name, vs, x->val_size);
			x->size_warned = true;
			st.need_compact = true;
			return true;
		} else if (x->val_size != vs) {
			ix_clear(x);
			x->val_size = vs;
			x->slot_size = (IX_HDR + vs + 7) & ~(size_t)7;
		}
		if (x->name == NULL)
			x->name = xstrdup(name);
		/* Size the slots once for the records announced, no more
		 * than the file can hold (a forged count must not allocate
		 * the machine). */
		if (cnt > ld->len / (12 + vs))
			cnt = ld->len / (12 + vs);
		if (ix_slots_for(cnt) > x->nslots)
			ix_resize(x, ix_slots_for(cnt));
		return true;
	}
	case REC_IPUT: {
		struct store_index *x;

		if (n < 17)
			return false;
		x = ix_find_tid(get_u32(p + 1));
		if (x == NULL || n != 17 + x->val_size || get_u64(p + 5) == 0)
			return false;
		ix_set(x, get_u64(p + 5), p + 17, get_u32(p + 13), false);
		return true;
	}
	case REC_IDEL: {
		struct store_index *x;

		if (n != 13)
			return false;
		x = ix_find_tid(get_u32(p + 1));
		if (x == NULL)
			return false;
		ix_unset(x, get_u64(p + 5), false);
		return true;
	}
	case REC_IBLOCK: {
		struct store_index *x;
		uint32_t cnt;
		size_t es;

		if (n < 9)
			return false;
		x = ix_find_tid(get_u32(p + 1));
		cnt = get_u32(p + 5);
		if (x == NULL)
			return false;
		es = 12 + x->val_size;
		if (cnt == 0 || cnt > IX_BLOCK || n != 9 + cnt * es)
			return false;
		for (uint32_t i = 0; i < cnt; i++)
			if (get_u64(p + 9 + i * es) == 0)
				return false;
		if (ix_slots_for(x->count + cnt) > x->nslots)
			ix_reserve(x, cnt);
		for (uint32_t i = 0; i < cnt; i++) {
			const unsigned char *e = p + 9 + i * es;

			ix_set(x, get_u64(e), e + 12, get_u32(e + 8), false);
		}
		return true;
	}
	case REC_BLOB: {
		size_t nl;
		char name[65];

		if (n < 2)
			return false;
		nl = p[1];
		if (nl == 0 || nl > 64 || n < 2 + nl)
			return false;
		memcpy(name, p + 2, nl);
		name[nl] = '\0';
		if (memchr(name, '\0', nl) != NULL)
			return false;
		store_blob_put(name, p + 2 + nl, n - 2 - nl, false);
		return true;
	}
	default:
		return false;
	}
}

/* store_torn - is the (checked) record at p a CLOCK opening a burst
 * longer than the rest of the file (room bytes from p)? */
static bool
store_torn(const struct loader *ld, const unsigned char *p, uint32_t len,
           size_t room)
{
	uint64_t burst;

	if (len != CLOCK_BODY || p[REC_HDR] != REC_CLOCK)
		return false;
	burst = get_u64(p + REC_HDR + 25);
	return burst > room - CLOCK_REC;
}

/* store_parse - every record of p[0..n) into the RAM state; a bad one is
 * skipped by scanning for the next offset where a record with a good
 * checksum starts. */
static void
store_parse(struct loader *ld, const unsigned char *p, size_t n)
{
	size_t off = 0;
	bool in_bad = false;

	ld->len = n;
	while (off < n) {
		uint32_t len;

		if (n - off >= REC_HDR) {
			len = get_u32(p + off + 4);
			/* A known type first: scanning a damaged stretch,
			 * the CRC of every plausible length costs.  One CRC
			 * per record. */
			if (len >= 1 && len <= REC_MAX &&
			    len <= n - off - REC_HDR &&
			    p[off + REC_HDR] >= REC_CLOCK &&
			    p[off + REC_HDR] <= REC_IBLOCK &&
			    store_crc32(0, p + off + 4, 4 + len) ==
			            get_u32(p + off)) {
				if (store_torn(ld, p + off, len, n - off)) {
					/* A burst cut short by a crash: all
					 * of it goes, so that a burst is all
					 * or nothing. */
					if (ld->dropped == 0)
						ld->first_bad = off;
					ld->dropped++;
					return;
				}
				if (store_apply(ld, p + off + REC_HDR, len)) {
					ld->good++;
					off += REC_HDR + len;
					in_bad = false;
					continue;
				}
			}
		}
		if (!in_bad) {
			if (ld->dropped == 0)
				ld->first_bad = off;
			ld->dropped++;
			in_bad = true;
		}
		off++;
	}
}

/* store_load_mem - load a snapshot image and a journal image into the
 * (empty) RAM state, as store_open does from files; for the fuzzer and
 * tests.  Counts of good and dropped records in *good, *dropped. */
void
store_load_mem(const void *snap, size_t snap_len, const void *jnl,
               size_t jnl_len, size_t *good, size_t *dropped)
{
	struct loader ls = {0}, lj = {0};

	store_parse(&ls, snap, snap_len);
	lj.journal = true;
	lj.want_gen = ls.have_gen ? ls.gen : 0;
	store_parse(&lj, jnl, jnl_len);
	if (good)
		*good = ls.good + lj.good;
	if (dropped)
		*dropped = ls.dropped + lj.dropped;
}

/* store_read_file - the whole of dir/name into b; 0, -ENOENT or -errno. */
static int
store_read_file(const char *dir, const char *name, struct buf *b)
{
	char path[4096], tmp[65536];
	int fd, rc;

	if ((rc = store_path(path, sizeof(path), dir, name)) < 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	{
		/* One allocation and one read for the whole file (the 1M
		 * triplet load), then the loop below finds EOF. */
		struct stat sb;

		if (fstat(fd, &sb) == 0 && sb.st_size > 0 &&
		    (uint64_t)sb.st_size < (1ull << 40)) {
			size_t want = (size_t)sb.st_size;

			if (b->cap < b->len + want + 1) {
				b->cap = b->len + want + 1;
				b->data = xrealloc(b->data, b->cap);
			}
			while (want > 0) {
				ssize_t r = read(fd, b->data + b->len, want);

				if (r < 0 && errno == EINTR)
					continue;
				if (r <= 0)
					break;
				b->len += (size_t)r;
				want -= (size_t)r;
			}
		}
	}
	for (;;) {
		ssize_t r = read(fd, tmp, sizeof(tmp));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			break;
		}
		if (r == 0)
			break;
		buf_append(b, tmp, (size_t)r);
	}
	close(fd);
	return rc;
}

/* store_load_file - one file into the state; logs what it dropped. */
static void
store_load_file(struct loader *ld, const char *name)
{
	struct buf b = {0};
	int rc = store_read_file(st.dir, name, &b);

	if (rc < 0) {
		if (rc != -ENOENT)
			log_warn("store: cannot read %s/%s: %s", st.dir, name,
			         strerror(-rc));
		buf_free(&b);
		return;
	}
	store_parse(ld, (const unsigned char *)b.data, b.len);
	if (ld->dropped > 0) {
		log_warn("store: %s/%s: %zu good records, %zu damaged "
		         "stretch(es) dropped (the first at offset %zu of "
		         "%zu)",
		         st.dir, name, ld->good, ld->dropped, ld->first_bad,
		         b.len);
		st.need_compact = true;
		st.ctr.load_dropped += ld->dropped;
	}
	if (ld->journal) {
		st.jnl_bytes = b.len;
		if (ld->stale) {
			log_info("store: %s/%s is older than the snapshot: "
			         "ignored",
			         st.dir, name);
			st.need_compact = true;
		}
	}
	st.ctr.load_records += ld->good;
	buf_free(&b);
}

/* store_upgrade - the counters file of earlier versions becomes the blob
 * "counters" (same text) when the store has none yet. */
static void
store_upgrade(void)
{
	struct buf b = {0};
	size_t n;

	if (store_blob_get("counters", &n) != NULL)
		return;
	if (store_read_file(st.dir, STORE_OLD_COUNTERS, &b) == 0 &&
	    b.len < REC_MAX) {
		store_blob_put("counters", b.data, b.len, true);
		log_info("store: %s/%s taken over as the counters blob", st.dir,
		         STORE_OLD_COUNTERS);
	}
	buf_free(&b);
}

/* store_open - load the state of state_dir (when it is a directory; if
 * not the store lives in RAM only and that is logged).  0 or -errno with
 * the reason in err. */
int
store_open(uv_loop_t *loop, const struct config *cfg, char *err, size_t errlen)
{
	struct loader ls = {0}, lj = {0};
	struct stat sb;
	uint64_t t0 = uv_hrtime();

	st.loop = loop;
	if (cfg->state_dir == NULL || cfg->state_dir[0] == '\0' ||
	    stat(cfg->state_dir, &sb) < 0 || !S_ISDIR(sb.st_mode)) {
		log_warn("store: state_dir %s is not a directory: state is "
		         "not kept across restarts",
		         cfg->state_dir ? cfg->state_dir : "(unset)");
		store_clock_start(0, 0);
		return 0;
	}
	st.dir = xstrdup(cfg->state_dir);
	store_load_file(&ls, STORE_SNAP);
	st.gen = ls.have_gen ? ls.gen : 0;
	lj.journal = true;
	lj.want_gen = st.gen;
	store_load_file(&lj, STORE_JNL);
	if (!ls.have_gen && !lj.have_gen && (ls.good || lj.good))
		st.need_compact = true;
	/* The clock resumes from the newest CLOCK record. */
	if (lj.have_gen && !lj.stale)
		store_clock_start(lj.clock_s, lj.clock_wall);
	else
		store_clock_start(ls.clock_s, ls.clock_wall);
	store_upgrade();
	/* What the loader took in is on flash already: nothing is dirty. */
	for (struct store_table *t = st.tables; t != NULL; t = t->next) {
		store_sweep(t, store_now());
		t->declared_dirty = false;
	}
	for (struct store_index *x = st.indexes; x != NULL; x = x->next) {
		ix_sweep(x, store_now(), x->nslots);
		x->declared_dirty = false;
	}
	st.ctr.load_ms = (uv_hrtime() - t0) / 1000000;
	log_info("store: %s: %zu records loaded in %" PRIu64 " ms", st.dir,
	         ls.good + lj.good, st.ctr.load_ms);
	(void)err;
	(void)errlen;
	return 0;
}

/* store_close - the final burst (blocking), then free everything. */
void
store_close(void)
{
	struct store_table *t;
	struct store_index *x;
	struct store_blob *b;
	int rc;

	if (st.dir != NULL) {
		rc = store_flush_now();
		if (rc < 0 && rc != -EBUSY)
			log_warn("store: final flush: %s", strerror(-rc));
	}
	while ((t = st.tables) != NULL) {
		st.tables = t->next;
		store_table_clear(t);
		free(t->name);
		free(t);
	}
	while ((x = st.indexes) != NULL) {
		st.indexes = x->next;
		ix_clear(x);
		free(x->name);
		free(x);
	}
	while ((b = st.blobs) != NULL) {
		st.blobs = b->next;
		free(b->name);
		free(b->data);
		free(b);
	}
	store_pre_free();
	free(st.dir);
	memset(&st, 0, sizeof(st));
	clk.started = false;
}

/* store_counters_get - the store's own figures (tests, stats, bench). */
void
store_counters_get(struct store_counters *out)
{
	*out = st.ctr;
	out->jnl_bytes = st.jnl_bytes;
	out->live_bytes = st.live_bytes;
}
