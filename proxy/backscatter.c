/*
 * backscatter.c - hosts that sent us backscatter, and their blocks.
 *
 * Public (proxy.h, backscatter block):
 *   bs_init()        the store table "backscatter" (at startup; reloads
 *                    keep it)
 *   bs_refused()     a DSN from this client was refused: count it; at
 *                    backscatter_threshold refusals within
 *                    backscatter_block the client is blocked until now +
 *                    backscatter_block, by IP and by its PTR domain
 *   bs_lookup()      is this client blocked (by IP or PTR domain)?
 *   bs_list_text()   the entries, one line each (mailmoatctl backscatter)
 *   bs_del()         lift one (an IP address or a domain)
 *   bs_blocked_count(), bs_has_domains()
 *   bs_ptr_domain()  the key of a PTR name
 *   bs_format_time() "2026-12-10 19:00:00 UTC"
 *
 * The entries live in the state store (store.c, table "backscatter":
 * key = the IP address or PTR domain as text, value = struct bs_rec), so
 * they survive a restart, a power cut after a flush, and updates.  A
 * record expires by itself: a block at its end, a count backscatter_block
 * after the first refusal.  Times are store time (store_now(): wall
 * seconds corrected for clock jumps).  Reads backscatter_block,
 * backscatter_threshold.  Nothing async (the store flushes off the loop).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy.h"

#define BS_VERSION 1

/* One record; fixed layout, versioned. */
struct bs_rec {
	uint32_t version;
	uint32_t refused;
	uint64_t until; /* blocked until (store time); 0: counting */
};

static struct store_table *bs_t;
static size_t bs_n_domains;
static uint64_t bs_domains_at; /* when bs_n_domains was counted */

/* bs_now - store time (store_clock_hooks() in tests). */
uint64_t
bs_now(void)
{
	return store_now();
}

/* bs_table - the store table, opened on first use. */
static struct store_table *
bs_table(void)
{
	if (bs_t == NULL)
		bs_t = store_table("backscatter", sizeof(struct bs_rec));
	return bs_t;
}

/* bs_is_domain - a PTR-domain key, not an IP address one. */
static bool
bs_is_domain(const char *key, size_t n)
{
	struct ipaddr ip;
	char k[256];

	snprintf(k, sizeof(k), "%.*s", (int)n, key);
	return ipaddr_parse(&ip, k) != 0;
}

/* bs_get - the live record of key into *r; false if none. */
static bool
bs_get(const char *key, struct bs_rec *r)
{
	const struct bs_rec *p;
	uint64_t exp = 0;

	if (bs_table() == NULL || key[0] == '\0')
		return false;
	p = store_get(bs_t, key, strlen(key));
	if (p == NULL || p->version != BS_VERSION)
		return false;
	if (store_get_expires(bs_t, key, strlen(key), &exp) == 0 && exp != 0 &&
	    exp <= bs_now())
		return false;
	*r = *p;
	return true;
}

/* bs_ptr_domain - the block key of a PTR name into out ("" if none): the
 * registered domain (psl.c) of the forward-confirmed name, lower case,
 * without a trailing dot; the name itself when it has none, and an IP
 * address (as `backscatter del` gets one) as it is. */
void
bs_ptr_domain(const char *ptr, char *out, size_t outlen)
{
	char reg[256];
	struct ipaddr ip;
	size_t n;

	snprintf(out, outlen, "%s", ptr != NULL ? ptr : "");
	n = strlen(out);
	while (n > 0 && out[n - 1] == '.')
		out[--n] = '\0';
	util_lowercase(out);
	if (n > 0 && ipaddr_parse(&ip, out) != 0 &&
	    psl_registered(out, reg, sizeof(reg)))
		snprintf(out, outlen, "%s", reg);
}

/* bs_init - the table; entries survive a reload. */
int
bs_init(const struct config *cfg)
{
	(void)cfg;
	bs_domains_at = 0;
	return 0;
}

/* bs_count_one - count a refusal against key; true if it is blocked. */
static bool
bs_count_one(const struct config *cfg, const char *key, uint64_t now)
{
	struct bs_rec r;
	uint64_t expires;

	if (bs_table() == NULL)
		return false;
	if (!bs_get(key, &r)) {
		memset(&r, 0, sizeof(r));
		r.version = BS_VERSION;
		if (bs_is_domain(key, strlen(key)))
			bs_n_domains++;
	}
	if (r.refused < UINT32_MAX)
		r.refused++;
	if (r.until == 0 && r.refused >= cfg->backscatter_threshold) {
		r.until = now + cfg->backscatter_block_s;
		log_info("backscatter: %s blocked for %us (%u refused DSNs)",
		         key, cfg->backscatter_block_s, r.refused);
	}
	if (r.until != 0) {
		expires = r.until;
	} else if (store_get_expires(bs_t, key, strlen(key), &expires) != 0 ||
	           expires == 0 || expires <= now) {
		expires = now + cfg->backscatter_block_s;
	}
	if (store_put(bs_t, key, strlen(key), &r, expires) != 0)
		log_warn("backscatter: cannot store %s", key);
	return r.until != 0;
}

/* bs_refused - a DSN from ip (ptr: forward-confirmed PTR or "") was
 * refused.  True if the client is blocked now. */
bool
bs_refused(const struct config *cfg, const struct ipaddr *ip, const char *ptr)
{
	char key[256];
	uint64_t now = bs_now();
	bool blocked;

	if (cfg->backscatter_block_s == 0)
		return false;
	ipaddr_format(ip, key, sizeof(key));
	blocked = bs_count_one(cfg, key, now);
	bs_ptr_domain(ptr, key, sizeof(key));
	if (key[0] != '\0')
		blocked = bs_count_one(cfg, key, now) || blocked;
	return blocked;
}

/* bs_lookup - is the client blocked?  key gets what matched (IP or
 * domain), *until the end of the block. */
bool
bs_lookup(const struct ipaddr *ip, const char *ptr, char *key, size_t keylen,
          uint64_t *until)
{
	char k[256];
	uint64_t now = bs_now();
	struct bs_rec r;

	ipaddr_format(ip, k, sizeof(k));
	if (!bs_get(k, &r) || r.until <= now) {
		bs_ptr_domain(ptr, k, sizeof(k));
		if (!bs_get(k, &r) || r.until <= now)
			return false;
	}
	snprintf(key, keylen, "%s", k);
	*until = r.until;
	return true;
}

/* bs_format_time - t as "YYYY-MM-DD HH:MM:SS UTC". */
void
bs_format_time(uint64_t t, char *out, size_t outlen)
{
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	strftime(out, outlen, "%Y-%m-%d %H:%M:%S UTC", &tm);
}

struct bs_walk {
	struct buf *out;
	size_t max, n, blocked, domains;
	int pass; /* 0: blocks, 1: counts, -1: only count */
	uint64_t now;
};

/* bs_walk_cb - one record for bs_list_text / the counts. */
static bool
bs_walk_cb(const void *key, size_t klen, const void *val, uint64_t expires,
           void *arg)
{
	struct bs_walk *w = arg;
	const struct bs_rec *r = val;
	char line[512], t[64];

	if (r->version != BS_VERSION || (expires != 0 && expires <= w->now))
		return true;
	if (w->pass < 0) {
		if (r->until > w->now)
			w->blocked++;
		if (bs_is_domain(key, klen))
			w->domains++;
		return true;
	}
	if ((w->pass == 0) != (r->until != 0) || w->n >= w->max)
		return w->n < w->max;
	if (r->until != 0) {
		bs_format_time(r->until, t, sizeof(t));
		snprintf(line, sizeof(line),
		         "%.*s blocked until %s refused %u\n", (int)klen,
		         (const char *)key, t, r->refused);
	} else {
		bs_format_time(expires, t, sizeof(t));
		snprintf(line, sizeof(line),
		         "%.*s counting refused %u (forgotten %s)\n", (int)klen,
		         (const char *)key, r->refused, t);
	}
	buf_append(w->out, line, strlen(line));
	w->n++;
	return true;
}

/* bs_list_text - "KEY blocked until T refused N" (or "counting") lines,
 * blocks first; out gets at most `max` lines. */
void
bs_list_text(struct buf *out, size_t max)
{
	struct bs_walk w = {.out = out, .max = max, .now = bs_now()};

	if (bs_table() == NULL)
		return;
	for (w.pass = 0; w.pass < 2; w.pass++)
		store_foreach(bs_t, bs_walk_cb, &w);
}

/* bs_del - lift the block (and the count) of key: 0 or -ENOENT. */
int
bs_del(const char *key)
{
	char k[256];
	struct bs_rec r;

	bs_ptr_domain(key, k, sizeof(k));
	if (!bs_get(k, &r))
		return -ENOENT;
	store_del(bs_t, k, strlen(k));
	if (bs_is_domain(k, strlen(k)) && bs_n_domains > 0)
		bs_n_domains--;
	log_info("backscatter: %s deleted", k);
	return 0;
}

/* bs_counts - walk the table: blocks now, domain entries. */
static void
bs_counts(size_t *blocked, size_t *domains)
{
	struct bs_walk w = {.pass = -1, .now = bs_now()};

	if (bs_table() != NULL)
		store_foreach(bs_t, bs_walk_cb, &w);
	*blocked = w.blocked;
	*domains = w.domains;
}

/* bs_blocked_count - entries blocking now. */
size_t
bs_blocked_count(void)
{
	size_t b, d;

	bs_counts(&b, &d);
	bs_n_domains = d;
	bs_domains_at = bs_now();
	return b;
}

/* bs_has_domains - is any PTR domain counted or blocked?  (Counted again
 * at most once a minute; in between new ones are added as they come.) */
bool
bs_has_domains(void)
{
	size_t b;

	if (bs_now() >= bs_domains_at + 60) {
		bs_counts(&b, &bs_n_domains);
		bs_domains_at = bs_now();
	}
	return bs_n_domains > 0;
}

/* bs_free - forget the table handle (the store owns the records). */
void
bs_free(void)
{
	bs_t = NULL;
	bs_n_domains = 0;
	bs_domains_at = 0;
}
