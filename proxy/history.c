/*
 * history.c - the recent decisions and the decision chart series, for
 * `mailmoatctl decisions` and the web UI's dashboard.
 *
 * Public (proxy.h, history block):
 *   history_add()        one decision (copied into the ring)
 *   history_decisions()  the matching decisions as log lines, oldest first
 *   history_series()     counts per action: the last 24 h in 5-minute
 *                        buckets ("day") or the last 30 days ("month")
 *   history_reset()      forget everything (tests)
 *   history_open()       subscribe to the decisions (sess_on_decision)
 *                        and load what the store kept (after store_open)
 *
 * Owns a ring of the last HIST_MAX decisions (fixed-size records, longer
 * values cut) and two bucket arrays stamped with their bucket number, so
 * a stale bucket reads as zero without a timer.  All on the loop; nothing
 * blocks.  Persistence: the state store's blob "history" (set just before
 * each flush when something changed, store_on_flush): a header, the two
 * bucket arrays, then the records oldest first, each as its time and nine
 * NUL-terminated strings (a record takes ~150 bytes there, not its
 * fixed RAM size).  A blob that does not parse is ignored (logged).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "proxy.h"

#define HIST_DAY_BUCKETS 288 /* 24 h of 5 minutes */
#define HIST_DAY_SPAN 300
#define HIST_MONTH_BUCKETS 30
#define HIST_MONTH_SPAN 86400

struct hist_bucket {
	uint64_t stamp; /* time / span of what is counted here */
	uint32_t n[HIST_ACTIONS];
};

static struct hist_rec hist_ring[HIST_MAX];
static size_t hist_head, hist_len; /* next slot, records held */
static struct hist_bucket hist_day[HIST_DAY_BUCKETS];
static struct hist_bucket hist_month[HIST_MONTH_BUCKETS];

static bool hist_dirty;

static const char *const hist_action_names[HIST_ACTIONS] = {
        "accept", "tempfail", "reject", "log"};

/* hist_action_id - "reject" -> 2; -1 if unknown */
static int
hist_action_id(const char *a)
{
	int i;

	for (i = 0; i < HIST_ACTIONS; i++)
		if (strcmp(a, hist_action_names[i]) == 0)
			return i;
	return -1;
}

/* hist_copy - bounded copy; NULL becomes "" */
static void
hist_copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* hist_count - one more in the bucket of t */
static void
hist_count(struct hist_bucket *b, size_t nb, uint64_t span, uint64_t t,
           int action)
{
	uint64_t k = t / span;
	struct hist_bucket *x = &b[k % nb];

	if (x->stamp != k) {
		memset(x, 0, sizeof(*x));
		x->stamp = k;
	}
	x->n[action]++;
}

/* history_add - one decision into the ring and the series */
void
history_add(const struct hist_rec *r)
{
	struct hist_rec *d = &hist_ring[hist_head];
	int a = hist_action_id(r->action);

	*d = *r;
	/* Terminate every field, whatever the caller passed. */
	d->id[sizeof(d->id) - 1] = d->client[sizeof(d->client) - 1] = '\0';
	d->ptr[sizeof(d->ptr) - 1] = d->helo[sizeof(d->helo) - 1] = '\0';
	d->from[sizeof(d->from) - 1] = d->to[sizeof(d->to) - 1] = '\0';
	d->action[sizeof(d->action) - 1] = '\0';
	d->reason[sizeof(d->reason) - 1] = '\0';
	d->detail[sizeof(d->detail) - 1] = '\0';
	hist_head = (hist_head + 1) % HIST_MAX;
	if (hist_len < HIST_MAX)
		hist_len++;
	hist_dirty = true;
	if (a >= 0) {
		hist_count(hist_day, HIST_DAY_BUCKETS, HIST_DAY_SPAN, r->t, a);
		hist_count(hist_month, HIST_MONTH_BUCKETS, HIST_MONTH_SPAN,
		           r->t, a);
	}
}

/* history_add_fields - history_add from separate values (NULL: "") */
void
history_add_fields(uint64_t t, const char *id, const char *client,
                   const char *ptr, const char *helo, const char *from,
                   const char *to, const char *action, const char *reason,
                   const char *detail)
{
	struct hist_rec r;

	r.t = t;
	hist_copy(r.id, sizeof(r.id), id);
	hist_copy(r.client, sizeof(r.client), client);
	hist_copy(r.ptr, sizeof(r.ptr), ptr);
	hist_copy(r.helo, sizeof(r.helo), helo);
	hist_copy(r.from, sizeof(r.from), from);
	hist_copy(r.to, sizeof(r.to), to);
	hist_copy(r.action, sizeof(r.action), action);
	hist_copy(r.reason, sizeof(r.reason), reason);
	hist_copy(r.detail, sizeof(r.detail), detail);
	history_add(&r);
}

/* hist_field - the value of a filter key in r, or NULL if no such key */
static const char *
hist_field(const struct hist_rec *r, const char *k, size_t kl)
{
#define K(name) (kl == sizeof(name) - 1 && strncmp(k, name, kl) == 0)
	if (K("id"))
		return r->id;
	if (K("client"))
		return r->client;
	if (K("ptr"))
		return r->ptr;
	if (K("helo"))
		return r->helo;
	if (K("from") || K("sender"))
		return r->from;
	if (K("to") || K("recipient"))
		return r->to;
	if (K("action"))
		return r->action;
	if (K("reason"))
		return r->reason;
	if (K("detail"))
		return r->detail;
#undef K
	return NULL;
}

/* hist_line - r as its log line (with time= in front) */
static void
hist_line(struct buf *b, const struct hist_rec *r)
{
	char v[9][420], line[4096];
	const char *src[9] = {r->ptr, r->helo,   r->from,
	                      r->to,  r->reason, r->detail,
	                      r->id,  r->client, r->action};
	int i, n;

	for (i = 0; i < 9; i++)
		log_kv_escape(v[i], sizeof(v[i]), src[i]);
	n = snprintf(line, sizeof(line),
	             "time=%llu id=%s client=%s ptr=%s helo=%s from=%s to=%s "
	             "action=%s reason=%s detail=%s\n",
	             (unsigned long long)r->t, v[6], v[7], v[0], v[1], v[2],
	             v[3], v[8], v[4], v[5]);
	if (n > 0)
		buf_append(b, line,
		           (size_t)n < sizeof(line) ? (size_t)n
		                                    : sizeof(line) - 1);
}

/*
 * hist_match - r matches every term of the filter: "key=value" (value a
 * case-insensitive substring of that field; an empty value matches all)
 * or a bare word (a substring of the whole line).  -1: a bad key.
 */
static int
hist_match(const struct hist_rec *r, const char *filter)
{
	char term[256], *eq;
	const char *p = filter, *e, *f;
	size_t n;
	struct buf line = {0};
	int ok = 1;

	while (*p && ok) {
		while (*p == ' ' || *p == '\t')
			p++;
		if (!*p)
			break;
		e = p + strcspn(p, " \t");
		n = (size_t)(e - p) < sizeof(term) - 1 ? (size_t)(e - p)
		                                       : sizeof(term) - 1;
		memcpy(term, p, n);
		term[n] = '\0';
		p = e;
		eq = strchr(term, '=');
		if (eq) {
			f = hist_field(r, term, (size_t)(eq - term));
			if (f == NULL) {
				ok = -1;
				break;
			}
			if (eq[1] && !strcasestr(f, eq + 1))
				ok = 0;
		} else {
			if (line.len == 0) {
				hist_line(&line, r);
				buf_append(&line, "", 1);
			}
			if (!strcasestr(line.data, term))
				ok = 0;
		}
	}
	buf_free(&line);
	return ok;
}

/* history_decisions - matching decisions as log lines; 0 or -EINVAL */
int
history_decisions(struct buf *b, const char *filter)
{
	size_t i, k;
	int m;

	for (i = 0; i < hist_len; i++) {
		k = (hist_head + HIST_MAX - hist_len + i) % HIST_MAX;
		m = hist_match(&hist_ring[k], filter ? filter : "");
		if (m < 0)
			return -EINVAL;
		if (m)
			hist_line(b, &hist_ring[k]);
	}
	return 0;
}

/* history_series - "day" or "month" counts up to now; 0 or -EINVAL */
int
history_series(struct buf *b, const char *which, uint64_t now)
{
	const struct hist_bucket *arr;
	size_t nb, i;
	uint64_t span, k0, k;
	char line[128];
	int n;

	if (strcmp(which, "day") == 0) {
		arr = hist_day;
		nb = HIST_DAY_BUCKETS;
		span = HIST_DAY_SPAN;
	} else if (strcmp(which, "month") == 0) {
		arr = hist_month;
		nb = HIST_MONTH_BUCKETS;
		span = HIST_MONTH_SPAN;
	} else {
		return -EINVAL;
	}
	k0 = now / span - (nb - 1);
	n = snprintf(line, sizeof(line),
	             "span=%llu buckets=%zu actions=accept,tempfail,reject,"
	             "log\n",
	             (unsigned long long)span, nb);
	buf_append(b, line, (size_t)n);
	for (i = 0; i < nb; i++) {
		const struct hist_bucket *x;

		k = k0 + i;
		x = &arr[k % nb];
		if (x->stamp == k)
			n = snprintf(line, sizeof(line), "%llu %u %u %u %u\n",
			             (unsigned long long)(k * span), x->n[0],
			             x->n[1], x->n[2], x->n[3]);
		else
			n = snprintf(line, sizeof(line), "%llu 0 0 0 0\n",
			             (unsigned long long)(k * span));
		buf_append(b, line, (size_t)n);
	}
	return 0;
}

/* history_reset - forget everything (tests) */
void
history_reset(void)
{
	hist_head = hist_len = 0;
	memset(hist_day, 0, sizeof(hist_day));
	memset(hist_month, 0, sizeof(hist_month));
}

#define HIST_BLOB "history"
#define HIST_MAGIC 0x4d4d4831u /* "MMH1" */

struct hist_blob_hdr {
	uint32_t magic;
	uint32_t n; /* records that follow the buckets */
	uint32_t day_buckets, month_buckets;
};

/* hist_fields - the nine strings of r, in the blob's order */
static void
hist_fields(struct hist_rec *r, char **f, size_t *len)
{
	f[0] = r->id, len[0] = sizeof(r->id);
	f[1] = r->client, len[1] = sizeof(r->client);
	f[2] = r->ptr, len[2] = sizeof(r->ptr);
	f[3] = r->helo, len[3] = sizeof(r->helo);
	f[4] = r->from, len[4] = sizeof(r->from);
	f[5] = r->to, len[5] = sizeof(r->to);
	f[6] = r->action, len[6] = sizeof(r->action);
	f[7] = r->reason, len[7] = sizeof(r->reason);
	f[8] = r->detail, len[8] = sizeof(r->detail);
}

/* history_blob - everything as the blob text into b */
void
history_blob(struct buf *b)
{
	struct hist_blob_hdr h = {HIST_MAGIC, (uint32_t)hist_len,
	                          HIST_DAY_BUCKETS, HIST_MONTH_BUCKETS};
	char *f[9];
	size_t len[9], i, k;
	int j;

	buf_append(b, &h, sizeof(h));
	buf_append(b, hist_day, sizeof(hist_day));
	buf_append(b, hist_month, sizeof(hist_month));
	for (i = 0; i < hist_len; i++) {
		struct hist_rec *r;

		k = (hist_head + HIST_MAX - hist_len + i) % HIST_MAX;
		r = &hist_ring[k];
		buf_append(b, &r->t, sizeof(r->t));
		hist_fields(r, f, len);
		for (j = 0; j < 9; j++)
			buf_append(b, f[j], strlen(f[j]) + 1);
	}
}

/* history_load_blob - replace everything by a blob's content; 0 or
 * -EINVAL (then nothing changed) */
int
history_load_blob(const void *p, size_t n)
{
	const char *c = p, *end = c + n, *z;
	struct hist_blob_hdr h;
	struct hist_rec r;
	char *f[9];
	size_t len[9];
	uint32_t i;
	int j;

	if (n < sizeof(h) + sizeof(hist_day) + sizeof(hist_month))
		return -EINVAL;
	memcpy(&h, c, sizeof(h));
	if (h.magic != HIST_MAGIC || h.n > HIST_MAX ||
	    h.day_buckets != HIST_DAY_BUCKETS ||
	    h.month_buckets != HIST_MONTH_BUCKETS)
		return -EINVAL;
	/* Check every record before anything is replaced. */
	c += sizeof(h) + sizeof(hist_day) + sizeof(hist_month);
	for (i = 0; i < h.n; i++) {
		if ((size_t)(end - c) < sizeof(uint64_t))
			return -EINVAL;
		c += sizeof(uint64_t);
		for (j = 0; j < 9; j++) {
			z = memchr(c, '\0', (size_t)(end - c));
			if (z == NULL)
				return -EINVAL;
			c = z + 1;
		}
	}
	if (c != end)
		return -EINVAL;
	history_reset();
	c = p;
	memcpy(hist_day, c + sizeof(h), sizeof(hist_day));
	memcpy(hist_month, c + sizeof(h) + sizeof(hist_day),
	       sizeof(hist_month));
	c += sizeof(h) + sizeof(hist_day) + sizeof(hist_month);
	for (i = 0; i < h.n; i++) {
		memset(&r, 0, sizeof(r));
		memcpy(&r.t, c, sizeof(r.t));
		c += sizeof(uint64_t);
		hist_fields(&r, f, len);
		for (j = 0; j < 9; j++) {
			snprintf(f[j], len[j], "%s", c);
			c += strlen(c) + 1;
		}
		/* Into the ring only: the buckets were loaded whole. */
		hist_ring[hist_head] = r;
		hist_head = (hist_head + 1) % HIST_MAX;
		hist_len++;
	}
	hist_dirty = false;
	return 0;
}

/* history_flush_cb - before a store burst: the blob, if it changed */
static void
history_flush_cb(void)
{
	struct buf b = {0};

	if (!hist_dirty)
		return;
	history_blob(&b);
	if (store_blob_set(HIST_BLOB, b.data, b.len) == 0)
		hist_dirty = false;
	buf_free(&b);
}

/* history_decision_cb - every decision log line */
static void
history_decision_cb(const struct decision_rec *d)
{
	history_add_fields(d->time, d->id, d->client, d->ptr, d->helo, d->from,
	                   d->to, d->action, d->reason, d->detail);
}

/* history_open - subscribe, and load what the previous run kept */
void
history_open(void)
{
	static bool subscribed;
	const void *p;
	size_t n;

	if (!subscribed) {
		sess_on_decision(history_decision_cb);
		store_on_flush(history_flush_cb);
		subscribed = true;
	}
	p = store_blob_get(HIST_BLOB, &n);
	if (p != NULL && history_load_blob(p, n) < 0)
		log_warn("history: the stored decision history does not "
		         "parse; starting empty");
}
