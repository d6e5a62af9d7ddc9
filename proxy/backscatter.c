/*
 * backscatter.c - hosts that sent us backscatter, and their blocks.
 *
 * Public (proxy.h, backscatter block):
 *   bs_init()        the table; at startup (and reload: keeps entries)
 *   bs_refused()     a DSN from this client was refused: count it; at
 *                    backscatter_threshold refusals within
 *                    backscatter_block the client is blocked until now +
 *                    backscatter_block, by IP and by its PTR domain
 *   bs_lookup()      is this client blocked (by IP or PTR domain)?
 *   bs_list_text()   the entries, one line each (mailmoatctl backscatter)
 *   bs_del()         lift one (an IP address or a domain)
 *   bs_blocked_count()
 *   bs_ptr_domain()  the key of a PTR name: its registered domain
 *   bs_format_time() "2026-12-10 19:00 UTC"
 *
 * A record is {refused, until}: until 0 while counting.  The PTR key is
 * the name's registered domain when the public suffix list knows it
 * (psl.c, when it is there), else the whole PTR name.  Entries expire by
 * themselves (a block at its end, a count backscatter_block after the
 * first refusal).  Times are wall-clock seconds.
 *
 * The table lives in RAM (at most BS_MAX entries; a full table blocks
 * nobody new, logged once).  Reads backscatter_block,
 * backscatter_threshold.  Nothing async.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy.h"

#define BS_BUCKETS 1024
#define BS_MAX 100000

struct bs_ent {
	struct bs_ent *next;
	uint32_t refused;
	uint64_t until;   /* blocked until; 0: counting */
	uint64_t expires; /* the entry goes */
	char key[];
};

static struct bs_ent *bs_tab[BS_BUCKETS];
static size_t bs_n, bs_n_domains;
static bool bs_full_logged;
static uint64_t (*bs_clock)(void);

/* bs_now - wall seconds (the injected clock in tests). */
uint64_t
bs_now(void)
{
	return bs_clock != NULL ? bs_clock() : (uint64_t)time(NULL);
}

/* bs_set_clock - tests: a clock of their own (NULL: time()). */
void
bs_set_clock(uint64_t (*fn)(void))
{
	bs_clock = fn;
}

/* bs_hash - FNV-1a of key. */
static unsigned
bs_hash(const char *key)
{
	uint32_t h = 2166136261u;

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * 16777619u;
	return h % BS_BUCKETS;
}

/* bs_is_domain - a PTR-domain key, not an IP address one. */
static bool
bs_is_domain(const char *key)
{
	struct ipaddr ip;

	return ipaddr_parse(&ip, key) != 0;
}

/* bs_forget - free an entry already unlinked. */
static void
bs_forget(struct bs_ent *e)
{
	if (bs_is_domain(e->key))
		bs_n_domains--;
	bs_n--;
	free(e);
}

/* bs_has_domains - is any PTR domain counted or blocked? */
bool
bs_has_domains(void)
{
	return bs_n_domains > 0;
}

/* bs_get - the live entry of key (expired ones are dropped on the way). */
static struct bs_ent *
bs_get(const char *key, uint64_t now)
{
	struct bs_ent **pp = &bs_tab[bs_hash(key)], *e;

	while ((e = *pp) != NULL) {
		if (e->expires <= now) {
			*pp = e->next;
			bs_forget(e);
			continue;
		}
		if (strcmp(e->key, key) == 0)
			return e;
		pp = &e->next;
	}
	return NULL;
}

/* bs_new - a new entry for key, or NULL when the table is full. */
static struct bs_ent *
bs_new(const char *key)
{
	size_t kl = strlen(key);
	struct bs_ent *e;
	unsigned h;

	if (bs_n >= BS_MAX) {
		if (!bs_full_logged)
			log_warn("backscatter: table full (%d entries), "
			         "nobody new is blocked",
			         BS_MAX);
		bs_full_logged = true;
		return NULL;
	}
	e = xcalloc(1, sizeof(*e) + kl + 1);
	memcpy(e->key, key, kl + 1);
	h = bs_hash(key);
	e->next = bs_tab[h];
	bs_tab[h] = e;
	bs_n++;
	if (bs_is_domain(key))
		bs_n_domains++;
	return e;
}

/* bs_ptr_domain - the block key of a PTR name into out ("" if none). */
void
bs_ptr_domain(const char *ptr, char *out, size_t outlen)
{
	size_t n;

	snprintf(out, outlen, "%s", ptr != NULL ? ptr : "");
	n = strlen(out);
	while (n > 0 && out[n - 1] == '.')
		out[--n] = '\0';
	util_lowercase(out);
}

/* bs_init - the table; entries survive a reload. */
int
bs_init(const struct config *cfg)
{
	(void)cfg;
	return 0;
}

/* bs_count_one - count a refusal against key; true if it is blocked. */
static bool
bs_count_one(const struct config *cfg, const char *key, uint64_t now)
{
	struct bs_ent *e = bs_get(key, now);

	if (e == NULL) {
		e = bs_new(key);
		if (e == NULL)
			return false;
		e->expires = now + cfg->backscatter_block_s;
	}
	if (e->refused < UINT32_MAX)
		e->refused++;
	if (e->until == 0 && e->refused >= cfg->backscatter_threshold) {
		e->until = now + cfg->backscatter_block_s;
		e->expires = e->until;
		log_info("backscatter: %s blocked for %us (%u refused DSNs)",
		         key, cfg->backscatter_block_s, e->refused);
	}
	return e->until != 0;
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
	struct bs_ent *e;

	ipaddr_format(ip, k, sizeof(k));
	e = bs_get(k, now);
	if (e == NULL || e->until == 0) {
		bs_ptr_domain(ptr, k, sizeof(k));
		e = k[0] != '\0' ? bs_get(k, now) : NULL;
	}
	if (e == NULL || e->until == 0)
		return false;
	snprintf(key, keylen, "%s", e->key);
	*until = e->until;
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

/* bs_list_text - "KEY blocked until T refused N" (or "counting") lines,
 * blocks first; out gets at most `max` lines. */
void
bs_list_text(struct buf *out, size_t max)
{
	uint64_t now = bs_now();
	struct bs_ent *e;
	char line[512], t[64];
	size_t i, n = 0;
	int pass;

	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < BS_BUCKETS; i++)
			for (e = bs_tab[i]; e != NULL && n < max; e = e->next) {
				if (e->expires <= now ||
				    (pass == 0) != (e->until != 0))
					continue;
				if (e->until != 0) {
					bs_format_time(e->until, t, sizeof(t));
					snprintf(line, sizeof(line),
					         "%s blocked until %s refused "
					         "%u\n",
					         e->key, t, e->refused);
				} else {
					bs_format_time(e->expires, t,
					               sizeof(t));
					snprintf(line, sizeof(line),
					         "%s counting refused %u "
					         "(forgotten %s)\n",
					         e->key, e->refused, t);
				}
				buf_append(out, line, strlen(line));
				n++;
			}
}

/* bs_del - lift the block (and the count) of key: 0 or -ENOENT. */
int
bs_del(const char *key)
{
	char k[256];
	struct bs_ent **pp, *e;

	bs_ptr_domain(key, k, sizeof(k));
	for (pp = &bs_tab[bs_hash(k)]; (e = *pp) != NULL; pp = &e->next)
		if (strcmp(e->key, k) == 0) {
			*pp = e->next;
			bs_forget(e);
			log_info("backscatter: %s deleted", k);
			return 0;
		}
	return -ENOENT;
}

/* bs_blocked_count - entries blocking now. */
size_t
bs_blocked_count(void)
{
	uint64_t now = bs_now();
	struct bs_ent *e;
	size_t i, n = 0;

	for (i = 0; i < BS_BUCKETS; i++)
		for (e = bs_tab[i]; e != NULL; e = e->next)
			if (e->until != 0 && e->expires > now)
				n++;
	return n;
}

/* bs_free - drop everything (at exit, and between tests). */
void
bs_free(void)
{
	struct bs_ent *e, *next;
	size_t i;

	for (i = 0; i < BS_BUCKETS; i++) {
		for (e = bs_tab[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
		bs_tab[i] = NULL;
	}
	bs_n = 0;
	bs_n_domains = 0;
	bs_full_logged = false;
}
