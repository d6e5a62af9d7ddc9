/*
 * greylist.c - greylisting logic: triplets, their states and times, kept
 * in the store (store.c does the flash).
 *
 * Public (proxy.h block "greylist.c"):
 *   greylist_open()      the tables (after store_open; idempotent)
 *   greylist_net()       the client network part of a triplet
 *   greylist_sender()    a normalised sender
 *   greylist_triplet()   "NET SENDER RCPT" text of a session's recipient
 *   greylist_lookup()    pass, wait or new for a triplet (a pass that
 *                        satisfied the delay marks the triplet passed)
 *   greylist_record()    a new triplet starts waiting (the RCPT was
 *                        refused by greylisting and nothing else)
 *   greylist_delivered() renew a passed triplet; count the network's
 *                        deliveries for auto-allow
 *   greylist_list/del/flush  for mailmoatctl greylist (the daemon lists
 *                        with greylist_list_async: file reads off the loop)
 *   greylist_stats()     entries, pending, passed, auto-allowed nets
 *
 * State: the store's compact index "triplets" (store_index: key the
 * 64-bit FNV-1a hash of the triplet text, value struct gl_val, 16 bytes,
 * in a 32-byte slot; the index keeps the expiry: the end of the window
 * for a pending triplet, passed + lifetime for a passed one), the triplet
 * texts on flash only (store_text_put: STATE_DIR/triplets.txt, read back
 * for greylist list), and the table "greylist_net" (key: network text,
 * value: deliveries and the time it is auto-allowed until).  The generic
 * tables "greylist" and "greylist_text" of earlier versions are taken
 * over once.  Times are store time (store_now(): monotonic within a run,
 * corrected for wall clock jumps).  The number of triplets is bounded
 * (greylist_capacity(): a third of physical RAM at GL_BYTES per
 * triplet); when full, expired triplets go, then the oldest pending
 * ones, passed ones only when no pending one is left.
 *
 * Reads config keys greylist_delay, greylist_window, greylist_lifetime,
 * greylist_auto_allow through its callers.
 */
#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy.h"

#define GL_TEXT 120     /* bytes of a triplet text of the old tables */
#define GL_EVICT_DIV 64 /* evict 1/64 of the capacity at a time */
#define GL_BYTES 96     /* RAM per triplet for greylist_capacity() */

enum { GL_PENDING = 1, GL_PASSED = 2 };

/* The value of a triplet in the index "triplets" (key: gl_hash of the
 * text; the index keeps the expiry: the end of the window for a pending
 * triplet, passed + lifetime for a passed one).  16 bytes, a 32-byte
 * slot. */
struct gl_val {
	uint32_t first;  /* first attempt (store time) */
	uint32_t seen;   /* last attempt or delivery */
	uint32_t passed; /* when it passed, 0: pending */
	uint16_t count;  /* attempts while pending, deliveries after */
	uint8_t state;
	uint8_t pad;
};

/* The value of the generic table "greylist" of earlier versions (taken
 * over once by gl_migrate). */
struct gl_old {
	uint32_t first, passed, seen;
	uint16_t count;
	uint8_t state, pad;
};

struct gl_net {
	uint32_t deliveries;
	uint32_t allowed_until; /* 0: not auto-allowed */
};

static struct store_index *gl_x;
static struct store_table *gl_nets;
static void gl_counted(void);
static struct {
	uint64_t evicted;
} stats_greylist;
static size_t gl_cap_override;

/* greylist_capacity - how many triplets RAM holds: a third of physical
 * memory at GL_BYTES per triplet (a 32-byte slot at a load of 3/4 is 43
 * bytes; a snapshot copies the slots for the thread pool, twice that
 * while it runs; bench/greylist measures 43 at 1M), at least 10,000: a
 * 64 MB box holds 233,000. */
size_t
greylist_capacity(void)
{
	static size_t derived;
	long pages, psz;

	if (gl_cap_override)
		return gl_cap_override;
	if (derived)
		return derived;
	pages = sysconf(_SC_PHYS_PAGES);
	psz = sysconf(_SC_PAGESIZE);
	if (pages <= 0 || psz <= 0)
		return derived = 100000;
	derived = (size_t)pages * (size_t)psz / 3 / GL_BYTES;
	return derived < 10000 ? derived = 10000 : derived;
}

/* greylist_set_capacity - tests: a small capacity (0: derived again). */
void
greylist_set_capacity(size_t n)
{
	gl_cap_override = n;
	if (gl_x != NULL)
		gl_x = store_index("triplets", sizeof(struct gl_val),
		                   greylist_capacity());
}

struct gl_mig {
	struct store_table *text;
	size_t n;
};

/* gl_migrate_cb - one triplet of the old tables into the index. */
static bool
gl_migrate_cb(const void *key, size_t klen, const void *val, uint64_t exp,
              void *arg)
{
	struct gl_mig *m = arg;
	const struct gl_old *o = val;
	struct gl_val v = {0};
	uint64_t k;
	const char *text;

	if (klen != 8)
		return true;
	memcpy(&k, key, 8);
	if (k == 0)
		k = 1;
	v.first = o->first;
	v.seen = o->seen;
	v.passed = o->passed;
	v.count = o->count;
	v.state = o->state;
	store_iput(gl_x, k, &v, exp);
	text = m->text ? store_get(m->text, key, klen) : NULL;
	if (text != NULL) {
		char t[GL_TEXT + 1];

		memcpy(t, text, GL_TEXT);
		t[GL_TEXT] = '\0';
		store_text_put(gl_x, k, t);
	}
	m->n++;
	return true;
}

/* gl_migrate - the generic tables "greylist" and "greylist_text" of
 * earlier versions become the index (once; they are dropped). */
static void
gl_migrate(void)
{
	struct store_table *old = store_table_find("greylist");
	struct gl_mig m = {store_table_find("greylist_text"), 0};

	if (old != NULL) {
		old = store_table("greylist", sizeof(struct gl_old));
		store_foreach(old, gl_migrate_cb, &m);
		store_table_drop(old);
		log_info("greylist: %zu triplets taken over from the old "
		         "tables",
		         m.n);
	}
	if (m.text != NULL)
		store_table_drop(m.text);
}

/* greylist_open - the index and the network table (store_open first). */
void
greylist_open(void)
{
	gl_x = store_index("triplets", sizeof(struct gl_val),
	                   greylist_capacity());
	gl_nets = store_table("greylist_net", sizeof(struct gl_net));
	gl_migrate();
	gl_counted();
}

/* gl_counted - stats.greylist_entries follows the index. */
static void
gl_counted(void)
{
	stats.greylist_entries = gl_x ? store_icount(gl_x) : 0;
}

/* gl_hash - 64-bit FNV-1a of the triplet text: the index key (never 0).
 * Two triplets with the same hash are one triplet: at 1M triplets a new
 * one collides with one of them with a probability of 1M / 2^64 = 5e-14
 * (docs/STORE.md). */
static uint64_t
gl_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h ? h : 1;
}

/* greylist_net - the network of a client: the registered domain of its
 * forward-confirmed PTR when it has one (ptr may be "" or NULL), else
 * the /24 (IPv4) or /64 (IPv6). */
void
greylist_net(const struct ipaddr *ip, const char *ptr, char *out, size_t outlen)
{
	struct ipaddr n = *ip;
	char a[INET6_ADDRSTRLEN];

	if (ptr != NULL && ptr[0] != '\0' && psl_registered(ptr, out, outlen))
		return;
	if (n.family == AF_INET) {
		((unsigned char *)&n.u.v4)[3] = 0;
		ipaddr_format(&n, a, sizeof(a));
		snprintf(out, outlen, "%s/24", a);
	} else {
		memset(n.u.v6.s6_addr + 8, 0, 8);
		ipaddr_format(&n, a, sizeof(a));
		snprintf(out, outlen, "%s/64", a);
	}
}

/* gl_strip_digits - runs of digits become one '#' (VERP numbers). */
static void
gl_strip_digits(char *s)
{
	char *w = s;

	for (char *r = s; *r;) {
		if (isdigit((unsigned char)*r)) {
			while (isdigit((unsigned char)*r))
				r++;
			*w++ = '#'; /* after the run: w may be where r was */
		} else {
			*w++ = *r++;
		}
	}
	*w = '\0';
}

/*
 * greylist_sender - the sender as greylisting sees it, lower case:
 * "<>" for the null sender; BATV "prvs=TAG=local" -> local; SRS0
 * "SRS0=HH=TT=domain=local@fwd" and SRS1 "SRS1=HH=fwd==HH=TT=domain=
 * local@fwd2" -> local@domain; "local+ext" -> local; digit runs of the
 * local part (VERP per-recipient numbers) -> "#".
 */
void
greylist_sender(const struct mailpath *from, char *out, size_t outlen)
{
	char local[80], domain[260], *p;

	if (from == NULL || from->null || from->local[0] == '\0') {
		snprintf(out, outlen, "<>");
		return;
	}
	snprintf(local, sizeof(local), "%s", from->local);
	snprintf(domain, sizeof(domain), "%s", from->domain);
	util_lowercase(local);
	util_lowercase(domain);
	if (strncmp(local, "prvs=", 5) == 0 ||
	    strncmp(local, "msprvs1=", 8) == 0) {
		p = strchr(strchr(local, '=') + 1, '=');
		if (p != NULL && p[1] != '\0')
			memmove(local, p + 1, strlen(p + 1) + 1);
	}
	if (strncmp(local, "srs0=", 5) == 0 ||
	    strncmp(local, "srs1=", 5) == 0) {
		/* the last two '='-fields are the original domain and local */
		char *f[64];
		int n = 0;

		p = local;
		if (local[3] == '1') { /* SRS1: after the "==" */
			char *dd = strstr(local, "==");

			if (dd != NULL)
				p = dd + 1;
		}
		for (char *c = p; *c && n < 64; c++)
			if (*c == '=')
				f[n++] = c;
		if (n >= 3) {
			char *od = f[n - 2] + 1, *ol = f[n - 1] + 1;

			*f[n - 1] = '\0';
			snprintf(domain, sizeof(domain), "%s", od);
			memmove(local, ol, strlen(ol) + 1);
		}
	}
	if ((p = strchr(local, '+')) != NULL && p != local)
		*p = '\0';
	gl_strip_digits(local);
	snprintf(out, outlen, "%s@%s", local, domain);
}

/* greylist_triplet - "NET SENDER RCPT" for the session's client, sender
 * and the given recipient (lower case). */
void
greylist_triplet(const struct ipaddr *ip, const char *ptr,
                 const struct mailpath *from, const struct mailpath *rcpt,
                 char *out, size_t outlen)
{
	char net[260], snd[340], rc[340];

	greylist_net(ip, ptr, net, sizeof(net));
	greylist_sender(from, snd, sizeof(snd));
	snprintf(rc, sizeof(rc), "%s@%s", rcpt->local, rcpt->domain);
	if (rcpt->domain[0] == '\0')
		snprintf(rc, sizeof(rc), "%s", rcpt->local);
	util_lowercase(rc);
	snprintf(out, outlen, "%s %s %s", net, snd, rc);
}

/* gl_net_of - the network part of a triplet (up to the first space). */
static void
gl_net_of(const char *triplet, char *out, size_t outlen)
{
	size_t n = strcspn(triplet, " ");

	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, triplet, n);
	out[n] = '\0';
}

/* greylist_lookup - the decision for a triplet now: GL_R_PASS (passed
 * before: *waited = 0; or the delay is over: it passes now, *waited =
 * the wait since the first attempt),
 * GL_R_AUTO (the network is auto-allowed), GL_R_WAIT (pending, too
 * early: *waited so far), GL_R_NEW (unknown: greylist_record() it). */
enum gl_result
greylist_lookup(const struct config *cfg, const char *triplet, unsigned *waited)
{
	char net[260];
	const struct gl_val *p;
	const struct gl_net *gn;
	struct gl_val v;
	uint64_t now = store_now(), key;

	*waited = 0;
	gl_net_of(triplet, net, sizeof(net));
	gn = store_get(gl_nets, net, strlen(net));
	if (gn != NULL && gn->allowed_until != 0 && gn->allowed_until > now)
		return GL_R_AUTO;
	key = gl_hash(triplet);
	p = store_iget(gl_x, key, now);
	if (p == NULL)
		return GL_R_NEW;
	v = *p;
	if (v.state == GL_PASSED)
		return GL_R_PASS; /* this mail was not held: waited 0 */
	*waited = (unsigned)(now - v.first);
	if (now < (uint64_t)v.first + cfg->greylist_delay_s) {
		if (v.count < UINT16_MAX)
			v.count++;
		v.seen = (uint32_t)now;
		store_iput(gl_x, key, &v,
		           (uint64_t)v.first + cfg->greylist_window_s);
		return GL_R_WAIT;
	}
	v.state = GL_PASSED;
	v.passed = v.seen = (uint32_t)now;
	v.count = 0;
	store_iput(gl_x, key, &v, now + cfg->greylist_lifetime_s);
	return GL_R_PASS;
}

struct gl_evict {
	int state; /* GL_PENDING, then GL_PASSED */
	uint32_t cutoff;
	size_t want;
	uint32_t *times;
	uint64_t *keys;
	size_t nt, nk;
};

/* gl_time - the age that eviction orders by: first attempt of a pending
 * triplet, last delivery of a passed one. */
static inline uint32_t
gl_time(const struct gl_val *v)
{
	return v->state == GL_PASSED ? v->seen : v->first;
}

/* gl_times_cb - collect the times of one state. */
static bool
gl_times_cb(uint64_t key, const void *val, uint64_t exp, void *arg)
{
	struct gl_evict *e = arg;
	const struct gl_val *v = val;

	if ((v->state == GL_PASSED) == (e->state == GL_PASSED))
		e->times[e->nt++] = gl_time(v);
	return true;
}

/* gl_cmp_u32 - qsort order. */
static int
gl_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* gl_keys_cb - collect the keys of the state at or before cutoff. */
static bool
gl_keys_cb(uint64_t key, const void *val, uint64_t exp, void *arg)
{
	struct gl_evict *e = arg;
	const struct gl_val *v = val;

	if ((v->state == GL_PASSED) != (e->state == GL_PASSED) ||
	    gl_time(v) > e->cutoff)
		return true;
	e->keys[e->nk++] = key;
	return e->nk < e->want;
}

/* gl_evict_state - up to want of the oldest entries of a state; how many
 * went. */
static size_t
gl_evict_state(int state, size_t want)
{
	struct gl_evict e = {.state = state, .want = want};
	size_t n = store_icount(gl_x);

	e.times = xmalloc((n ? n : 1) * sizeof(*e.times));
	store_iforeach(gl_x, gl_times_cb, &e);
	if (e.nt > 0) {
		qsort(e.times, e.nt, sizeof(*e.times), gl_cmp_u32);
		e.cutoff = e.times[(want < e.nt ? want : e.nt) - 1];
		e.keys = xmalloc(want * sizeof(*e.keys));
		store_iforeach(gl_x, gl_keys_cb, &e);
		for (size_t i = 0; i < e.nk; i++)
			store_idel(gl_x, e.keys[i]);
		free(e.keys);
	}
	free(e.times);
	return e.nk;
}

/* gl_evict - room for new triplets: the oldest pending ones go first,
 * passed ones only when there is no pending one left. */
static void
gl_evict(void)
{
	size_t want = greylist_capacity() / GL_EVICT_DIV + 1, n;

	/* Expired triplets go first (a flush sweeps only part of them). */
	if (store_isweep(gl_x) >= want)
		return;
	n = gl_evict_state(GL_PENDING, want);
	if (n < want)
		n += gl_evict_state(GL_PASSED, want - n);
	stats_greylist.evicted += n;
	log_info("greylist: full (%zu triplets): %zu oldest evicted",
	         greylist_capacity(), n);
}

/* greylist_record - a new triplet starts waiting (when unknown). */
void
greylist_record(const struct config *cfg, const char *triplet)
{
	struct gl_val v = {0};
	uint64_t now = store_now(), key = gl_hash(triplet);

	if (store_iget(gl_x, key, now) != NULL)
		return;
	if (store_icount(gl_x) >= greylist_capacity())
		gl_evict();
	v.first = v.seen = (uint32_t)now;
	v.state = GL_PENDING;
	v.count = 1;
	store_iput(gl_x, key, &v, now + cfg->greylist_window_s);
	store_text_put(gl_x, key, triplet);
	gl_counted();
}

/* greylist_delivered - a message for triplet was delivered: a passed
 * triplet is renewed for greylist_lifetime; the network's deliveries
 * count towards greylist_auto_allow. */
void
greylist_delivered(const struct config *cfg, const char *triplet)
{
	const struct gl_val *p;
	struct gl_net gn = {0};
	const struct gl_net *gp;
	char net[260];
	uint64_t now = store_now(), key = gl_hash(triplet);

	p = store_iget(gl_x, key, now);
	if (p != NULL && p->state == GL_PASSED) {
		struct gl_val v = *p;

		v.seen = (uint32_t)now;
		if (v.count < UINT16_MAX)
			v.count++;
		store_iput(gl_x, key, &v, now + cfg->greylist_lifetime_s);
	}
	if (cfg->greylist_auto_allow == 0)
		return;
	gl_net_of(triplet, net, sizeof(net));
	gp = store_get(gl_nets, net, strlen(net));
	if (gp != NULL)
		gn = *gp;
	gn.deliveries++;
	if (gn.deliveries >= cfg->greylist_auto_allow) {
		if (gn.allowed_until <= now)
			log_info("greylist: %s auto-allowed after %u "
			         "deliveries",
			         net, gn.deliveries);
		gn.allowed_until = (uint32_t)(now + cfg->greylist_lifetime_s);
	}
	store_put(gl_nets, net, strlen(net), &gn,
	          now + cfg->greylist_lifetime_s);
}

struct gl_list {
	const char *pattern;
	struct buf *out;
	uint64_t now;
	size_t n;
};

/* gl_list_cb - one line per triplet matching the pattern (a triplet
 * whose text is not on flash shows as "#KEY" and matches no pattern). */
static void
gl_list_cb(uint64_t key, const void *val, uint64_t exp, const char *text,
           size_t tlen, void *arg)
{
	struct gl_list *l = arg;
	const struct gl_val *v = val;
	char t[1024], line[1024 + 96];
	int n;

	if (text == NULL) {
		if (l->pattern != NULL && l->pattern[0] != '\0')
			return;
		snprintf(t, sizeof(t), "#%016llx", (unsigned long long)key);
	} else {
		if (tlen >= sizeof(t))
			tlen = sizeof(t) - 1;
		memcpy(t, text, tlen);
		t[tlen] = '\0';
		if (l->pattern != NULL && l->pattern[0] != '\0' &&
		    fnmatch(l->pattern, t, 0) != 0 &&
		    strstr(t, l->pattern) == NULL)
			return;
	}
	n = snprintf(line, sizeof(line), "%s %s age=%llus %s=%u\n", t,
	             v->state == GL_PASSED ? "passed" : "pending",
	             (unsigned long long)(l->now - v->first),
	             v->state == GL_PASSED ? "deliveries" : "attempts",
	             v->count);
	buf_append(l->out, line, (size_t)n);
	l->n++;
}

/* greylist_list - "TRIPLET STATE age=Ns ..." lines of the triplets whose
 * text matches pattern (a shell glob or a substring; NULL: all).  The
 * texts are read from flash (store_text_foreach). */
size_t
greylist_list(const char *pattern, struct buf *out)
{
	struct gl_list l = {pattern, out, store_now(), 0};

	store_text_foreach(gl_x, gl_list_cb, &l);
	return l.n;
}

/* A listing whose texts are read off the loop. */
struct gl_list_job {
	struct gl_list l;
	char *pattern;
	void (*done)(size_t n, void *arg);
	void *arg;
};

/* gl_list_done - every line is in: tell the caller. */
static void
gl_list_done(void *arg)
{
	struct gl_list_job *j = arg;

	j->done(j->l.n, j->arg);
	free(j->pattern);
	free(j);
}

/* greylist_list_async - greylist_list with the texts read in the thread
 * pool (mailmoatctl greylist list: triplets.txt can be tens of MB);
 * done(n, arg) on the loop once out holds the lines. */
void
greylist_list_async(const char *pattern, struct buf *out,
                    void (*done)(size_t n, void *arg), void *arg)
{
	struct gl_list_job *j = xcalloc(1, sizeof(*j));

	j->pattern = pattern ? xstrdup(pattern) : NULL;
	j->l = (struct gl_list){j->pattern, out, store_now(), 0};
	j->done = done;
	j->arg = arg;
	store_text_foreach_async(gl_x, gl_list_cb, gl_list_done, j);
}

/* greylist_del - forget one triplet ("NET SENDER RCPT"); 0 or -ENOENT. */
int
greylist_del(const char *triplet)
{
	uint64_t key = gl_hash(triplet);
	int rc;

	if (store_iget(gl_x, key, store_now()) == NULL)
		return -ENOENT;
	rc = store_idel(gl_x, key);
	gl_counted();
	return rc;
}

/* gl_flush_cb - delete everything. */
static bool
gl_flush_cb(const void *key, size_t klen, const void *val, uint64_t exp,
            void *arg)
{
	store_del(arg, key, klen);
	return true;
}

/* greylist_flush - forget every triplet and network; how many triplets. */
size_t
greylist_flush(void)
{
	size_t n = 0;
	uint64_t e, p, ps, aa;

	greylist_stats(&e, &p, &ps, &aa);
	n = (size_t)e;
	store_iclear(gl_x);
	store_foreach(gl_nets, gl_flush_cb, gl_nets);
	gl_counted();
	return n;
}

struct gl_count {
	uint64_t pending, passed, auto_allowed, now;
};

/* gl_count_cb - tally states. */
static bool
gl_count_cb(uint64_t key, const void *val, uint64_t exp, void *arg)
{
	struct gl_count *c = arg;
	const struct gl_val *v = val;

	if (v->state == GL_PASSED)
		c->passed++;
	else
		c->pending++;
	return true;
}

/* gl_net_cb - tally auto-allowed networks. */
static bool
gl_net_cb(const void *key, size_t klen, const void *val, uint64_t exp,
          void *arg)
{
	struct gl_count *c = arg;
	const struct gl_net *g = val;

	if (g->allowed_until > c->now)
		c->auto_allowed++;
	return true;
}

/* greylist_stats - the figures for mailmoatctl stats. */
void
greylist_stats(uint64_t *entries, uint64_t *pending, uint64_t *passed,
               uint64_t *auto_allowed)
{
	struct gl_count c = {.now = store_now()};

	if (gl_x != NULL) {
		store_iforeach(gl_x, gl_count_cb, &c);
		store_foreach(gl_nets, gl_net_cb, &c);
	}
	*entries = c.pending + c.passed;
	*pending = c.pending;
	*passed = c.passed;
	*auto_allowed = c.auto_allowed;
}
