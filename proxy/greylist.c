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
 *   greylist_list/del/flush  for mailmoatctl greylist
 *   greylist_stats()     entries, pending, passed, auto-allowed nets
 *
 * Tables: "greylist" (key: 64-bit hash of the triplet text, value: struct
 * gl_val, 16 bytes; the store's expiry is the end of the window for a
 * pending triplet and passed+lifetime for a passed one), "greylist_text"
 * (same key, the triplet text for listing and patterns, GL_TEXT bytes),
 * "greylist_net" (key: network text, value: deliveries and the time it is
 * auto-allowed until).  Times are store time (store_now(): monotonic
 * within a run, corrected for wall clock jumps).  The number of triplets
 * is bounded (greylist_capacity(): a third of physical RAM at the
 * measured bytes per triplet); when full, the oldest pending triplets go
 * first, passed ones only when no pending one is left.
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

#define GL_TEXT 120     /* bytes of triplet text kept for listing */
#define GL_EVICT_DIV 64 /* evict 1/64 of the capacity at a time */

enum { GL_PENDING = 1, GL_PASSED = 2 };

struct gl_val {
	uint32_t first;  /* first attempt (store time) */
	uint32_t passed; /* when it passed, 0: pending */
	uint32_t seen;   /* last attempt or delivery */
	uint16_t count;  /* attempts while pending, deliveries after */
	uint8_t state;
	uint8_t pad;
};

struct gl_net {
	uint32_t deliveries;
	uint32_t allowed_until; /* 0: not auto-allowed */
};

static struct store_table *gl_t, *gl_text, *gl_nets;
static void gl_counted(void);
static struct {
	uint64_t evicted;
} stats_greylist;
static size_t gl_cap_override;

/* greylist_capacity - how many triplets RAM holds: a third of physical
 * memory at 220 bytes per triplet (index + text: 242 measured at 1M in
 * bench/greylist, less at 100k), at least 10,000: a 64 MB box holds
 * 101,000. */
size_t
greylist_capacity(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	size_t n;

	if (gl_cap_override)
		return gl_cap_override;
	if (pages <= 0 || psz <= 0)
		return 100000;
	n = (size_t)pages * (size_t)psz / 3 / 220;
	return n < 10000 ? 10000 : n;
}

/* greylist_set_capacity - tests: a small capacity (0: derived again). */
void
greylist_set_capacity(size_t n)
{
	gl_cap_override = n;
}

/* greylist_open - the tables (store_open first). */
void
greylist_open(void)
{
	gl_t = store_table("greylist", sizeof(struct gl_val));
	gl_text = store_table("greylist_text", GL_TEXT);
	gl_nets = store_table("greylist_net", sizeof(struct gl_net));
	gl_counted();
}

/* gl_counted - stats.greylist_entries follows the table. */
static void
gl_counted(void)
{
	stats.greylist_entries = gl_t ? store_count(gl_t) : 0;
}

/* gl_hash - 64-bit FNV-1a of the triplet text: the table key. */
static uint64_t
gl_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (unsigned char)*s++) * 1099511628211ull;
	return h;
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

/* gl_key - the 8-byte key of a triplet. */
static void
gl_key(const char *triplet, unsigned char key[8])
{
	uint64_t h = gl_hash(triplet);

	memcpy(key, &h, 8);
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

/* gl_text_val - the GL_TEXT-byte value of a triplet's text (truncated,
 * NUL padded); a static buffer. */
static const void *
gl_text_val(const char *triplet)
{
	static char v[GL_TEXT];

	memset(v, 0, sizeof(v));
	memcpy(v, triplet, strnlen(triplet, GL_TEXT - 1));
	return v;
}

/* greylist_lookup - the decision for a triplet now: GL_R_PASS (passed
 * before, or the delay is over: it passes now, *waited = the wait),
 * GL_R_AUTO (the network is auto-allowed), GL_R_WAIT (pending, too
 * early: *waited so far), GL_R_NEW (unknown: greylist_record() it). */
enum gl_result
greylist_lookup(const struct config *cfg, const char *triplet, unsigned *waited)
{
	unsigned char key[8];
	char net[260];
	const struct gl_val *p;
	const struct gl_net *gn;
	struct gl_val v;
	uint64_t now = store_now();

	*waited = 0;
	gl_net_of(triplet, net, sizeof(net));
	gn = store_get(gl_nets, net, strlen(net));
	if (gn != NULL && gn->allowed_until != 0 && gn->allowed_until > now)
		return GL_R_AUTO;
	gl_key(triplet, key);
	p = store_get(gl_t, key, 8);
	if (p == NULL)
		return GL_R_NEW;
	v = *p;
	*waited = (unsigned)(now - v.first);
	if (v.state == GL_PASSED)
		return GL_R_PASS;
	if (now < (uint64_t)v.first + cfg->greylist_delay_s) {
		v.count++;
		v.seen = (uint32_t)now;
		store_put(gl_t, key, 8, &v,
		          (uint64_t)v.first + cfg->greylist_window_s);
		return GL_R_WAIT;
	}
	v.state = GL_PASSED;
	v.passed = v.seen = (uint32_t)now;
	v.count = 0;
	store_put(gl_t, key, 8, &v, now + cfg->greylist_lifetime_s);
	store_put(gl_text, key, 8, gl_text_val(triplet),
	          now + cfg->greylist_lifetime_s);
	return GL_R_PASS;
}

struct gl_evict {
	uint32_t cutoff; /* evict pending ones first seen at or before */
	int state;       /* GL_PENDING, then GL_PASSED */
	size_t want, n;
	unsigned char (*keys)[8];
	uint32_t *times;
	size_t nt;
};

/* gl_times_cb - collect the first-seen times of one state. */
static bool
gl_times_cb(const void *key, size_t klen, const void *val, uint64_t exp,
            void *arg)
{
	struct gl_evict *e = arg;
	const struct gl_val *v = val;

	if (v->state == e->state)
		e->times[e->nt++] = v->state == GL_PASSED ? v->seen : v->first;
	return true;
}

/* gl_cmp_u32 - qsort order. */
static int
gl_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* gl_evict_cb - delete the entries of the state at or before cutoff. */
static bool
gl_evict_cb(const void *key, size_t klen, const void *val, uint64_t exp,
            void *arg)
{
	struct gl_evict *e = arg;
	const struct gl_val *v = val;
	uint32_t t = v->state == GL_PASSED ? v->seen : v->first;

	if (v->state != e->state || t > e->cutoff)
		return true;
	store_del(gl_text, key, klen);
	store_del(gl_t, key, klen);
	e->n++;
	return e->n < e->want;
}

/* gl_evict_state - up to want of the oldest entries of a state; how many
 * went. */
static size_t
gl_evict_state(int state, size_t want)
{
	struct gl_evict e = {.state = state, .want = want};
	size_t n = store_count(gl_t);

	e.times = xmalloc((n ? n : 1) * sizeof(*e.times));
	store_foreach(gl_t, gl_times_cb, &e);
	if (e.nt > 0) {
		qsort(e.times, e.nt, sizeof(*e.times), gl_cmp_u32);
		e.cutoff = e.times[(want < e.nt ? want : e.nt) - 1];
		store_foreach(gl_t, gl_evict_cb, &e);
	}
	free(e.times);
	return e.n;
}

/* gl_evict - room for new triplets: the oldest pending ones go first,
 * passed ones only when there is no pending one left. */
static void
gl_evict(void)
{
	size_t want = greylist_capacity() / GL_EVICT_DIV + 1, n;

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
	unsigned char key[8];
	struct gl_val v = {0};
	uint64_t now = store_now();

	gl_key(triplet, key);
	if (store_get(gl_t, key, 8) != NULL)
		return;
	if (store_count(gl_t) >= greylist_capacity())
		gl_evict();
	v.first = v.seen = (uint32_t)now;
	v.state = GL_PENDING;
	v.count = 1;
	store_put(gl_t, key, 8, &v, now + cfg->greylist_window_s);
	store_put(gl_text, key, 8, gl_text_val(triplet),
	          now + cfg->greylist_window_s);
	gl_counted();
}

/* greylist_delivered - a message for triplet was delivered: a passed
 * triplet is renewed for greylist_lifetime; the network's deliveries
 * count towards greylist_auto_allow. */
void
greylist_delivered(const struct config *cfg, const char *triplet)
{
	unsigned char key[8];
	const struct gl_val *p;
	struct gl_net gn = {0};
	const struct gl_net *gp;
	char net[260];
	uint64_t now = store_now();

	gl_key(triplet, key);
	p = store_get(gl_t, key, 8);
	if (p != NULL && p->state == GL_PASSED) {
		struct gl_val v = *p;

		v.seen = (uint32_t)now;
		if (v.count < UINT16_MAX)
			v.count++;
		store_put(gl_t, key, 8, &v, now + cfg->greylist_lifetime_s);
		store_put(gl_text, key, 8, gl_text_val(triplet),
		          now + cfg->greylist_lifetime_s);
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

/* gl_list_cb - one line per triplet matching the pattern. */
static bool
gl_list_cb(const void *key, size_t klen, const void *val, uint64_t exp,
           void *arg)
{
	struct gl_list *l = arg;
	const struct gl_val *v = val;
	const char *text = store_get(gl_text, key, klen);
	char line[GL_TEXT + 96];
	int n;

	if (text == NULL)
		text = "?";
	if (l->pattern != NULL && l->pattern[0] != '\0' &&
	    fnmatch(l->pattern, text, 0) != 0 &&
	    strstr(text, l->pattern) == NULL)
		return true;
	n = snprintf(line, sizeof(line), "%.*s %s age=%llus %s=%u\n", GL_TEXT,
	             text, v->state == GL_PASSED ? "passed" : "pending",
	             (unsigned long long)(l->now - v->first),
	             v->state == GL_PASSED ? "deliveries" : "attempts",
	             v->count);
	buf_append(l->out, line, (size_t)n);
	l->n++;
	return true;
}

/* greylist_list - "TRIPLET STATE age=Ns ..." lines of the triplets whose
 * text matches pattern (a shell glob or a substring; NULL: all). */
size_t
greylist_list(const char *pattern, struct buf *out)
{
	struct gl_list l = {pattern, out, store_now(), 0};

	store_foreach(gl_t, gl_list_cb, &l);
	return l.n;
}

/* greylist_del - forget one triplet ("NET SENDER RCPT"); 0 or -ENOENT. */
int
greylist_del(const char *triplet)
{
	unsigned char key[8];

	int rc;

	gl_key(triplet, key);
	store_del(gl_text, key, 8);
	rc = store_del(gl_t, key, 8);
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
	size_t n = store_count(gl_t);

	store_foreach(gl_t, gl_flush_cb, gl_t);
	store_foreach(gl_text, gl_flush_cb, gl_text);
	store_foreach(gl_nets, gl_flush_cb, gl_nets);
	gl_counted();
	return n;
}

struct gl_count {
	uint64_t pending, passed, auto_allowed, now;
};

/* gl_count_cb - tally states. */
static bool
gl_count_cb(const void *key, size_t klen, const void *val, uint64_t exp,
            void *arg)
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

	if (gl_t != NULL) {
		store_foreach(gl_t, gl_count_cb, &c);
		store_foreach(gl_nets, gl_net_cb, &c);
	}
	*entries = c.pending + c.passed;
	*pending = c.pending;
	*passed = c.passed;
	*auto_allowed = c.auto_allowed;
}
