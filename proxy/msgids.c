/*
 * msgids.c - the Message-IDs the box saw leave (outbound learning), for
 * dsn_reference = sent.
 *
 * Public (proxy.h, msgids block):
 *   msgids_add()      record an id (without brackets) until `expires`
 *   msgids_has()      was it recorded (and not expired)?
 *   msgids_count(), msgids_free()
 *   msgids_tap_*()    a streaming reader of the top header section of an
 *                     outgoing message: its Message-ID field
 *
 * The set is compact: 16 bytes per id (a 64-bit hash of the id, its
 * domain folded to lower case, and the expiry), open addressing, grown
 * by doubling up to MSGIDS_MAX entries; a full table drops expired
 * entries first and then refuses new ones (logged once).  A false
 * positive needs a 64-bit hash collision with an id we sent.  Kept for
 * backscatter_block plus the retry time of a bounce (the caller picks
 * `expires`).  RAM only for now: the state store (issue 8) will persist
 * it.  Nothing async; reads no config key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy.h"

#define MSGIDS_MAX (1u << 20)

struct msgid_ent {
	uint64_t h;       /* 0: empty */
	uint64_t expires; /* wall seconds */
};

static struct msgid_ent *tab;
static size_t cap, used;
static bool full_logged;

/* msgid_hash - FNV-1a 64 of the id, its domain in lower case; never 0. */
static uint64_t
msgid_hash(const char *id, size_t n)
{
	const char *at = NULL, *p;
	uint64_t h = 14695981039346656037ull;
	int c;

	while (n > 0 && (*id == '<' || *id == ' ' || *id == '\t'))
		id++, n--;
	while (n > 0 && (id[n - 1] == '>' || id[n - 1] == ' ' ||
	                 id[n - 1] == '\t' || id[n - 1] == '\r'))
		n--;
	for (p = id; p < id + n; p++)
		if (*p == '@')
			at = p;
	for (p = id; p < id + n; p++) {
		c = (unsigned char)*p;
		if (at != NULL && p > at && c >= 'A' && c <= 'Z')
			c += 32;
		h = (h ^ (uint64_t)c) * 1099511628211ull;
	}
	return h ? h : 1;
}

/* msgids_slot - the slot of h (found, or the empty one to use). */
static struct msgid_ent *
msgids_slot(uint64_t h)
{
	size_t i = (size_t)(h & (cap - 1));

	while (tab[i].h != 0 && tab[i].h != h)
		i = (i + 1) & (cap - 1);
	return &tab[i];
}

/* msgids_rehash - into a table of newcap slots, dropping expired ones. */
static void
msgids_rehash(size_t newcap, uint64_t now)
{
	struct msgid_ent *old = tab;
	size_t oldcap = cap, i;

	tab = xcalloc(newcap, sizeof(*tab));
	cap = newcap;
	used = 0;
	for (i = 0; i < oldcap; i++)
		if (old[i].h != 0 && old[i].expires > now) {
			*msgids_slot(old[i].h) = old[i];
			used++;
		}
	free(old);
}

/* msgids_add - record id (brackets optional) until expires. */
void
msgids_add(const char *id, size_t n, uint64_t expires)
{
	uint64_t h = msgid_hash(id, n), now = (uint64_t)time(NULL);
	struct msgid_ent *e;

	if (cap == 0)
		msgids_rehash(1024, now);
	if ((used + 1) * 4 > cap * 3) {
		if (cap < MSGIDS_MAX)
			msgids_rehash(cap * 2, now);
		else
			msgids_rehash(cap, now);
		if ((used + 1) * 4 > cap * 3) {
			if (!full_logged)
				log_warn("msgids: %zu outgoing Message-IDs "
				         "recorded, no room for more",
				         used);
			full_logged = true;
			return;
		}
	}
	e = msgids_slot(h);
	if (e->h == 0)
		used++;
	e->h = h;
	if (e->expires < expires)
		e->expires = expires;
}

/* msgids_has - recorded and not expired? */
bool
msgids_has(const char *id, size_t n)
{
	const struct msgid_ent *e;

	if (cap == 0)
		return false;
	e = msgids_slot(msgid_hash(id, n));
	return e->h != 0 && e->expires > (uint64_t)time(NULL);
}

/* msgids_count - ids recorded (expired ones until the next growth). */
size_t
msgids_count(void)
{
	return used;
}

/* msgids_free - drop the set. */
void
msgids_free(void)
{
	free(tab);
	tab = NULL;
	cap = used = 0;
	full_logged = false;
}

/* msgids_tap_init - a new outgoing message. */
void
msgids_tap_init(struct msgids_tap *t)
{
	memset(t, 0, sizeof(*t));
}

/* msgids_tap_line - one header line (no line end) of the top section. */
static void
msgids_tap_line(struct msgids_tap *t, const char *p, size_t n)
{
	if (n == 0) {
		t->done = true;
		return;
	}
	if (p[0] == ' ' || p[0] == '\t') {
		if (t->in_field && t->len + n < sizeof(t->id))
			memcpy(t->id + t->len, p, n), t->len += n;
		return;
	}
	t->in_field = false;
	if (t->found)
		return;
	if (n >= 11 && strncasecmp(p, "message-id:", 11) == 0) {
		t->in_field = true;
		t->found = true;
		n -= 11;
		p += 11;
		if (n >= sizeof(t->id))
			n = sizeof(t->id) - 1;
		memcpy(t->id, p, n);
		t->len = n;
	}
}

/* msgids_tap_feed - message text (unstuffed) in any pieces. */
void
msgids_tap_feed(struct msgids_tap *t, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && !t->done; i++) {
		char c = p[i];

		if (c == '\n') {
			size_t l = t->llen;

			if (l > 0 && t->line[l - 1] == '\r')
				l--;
			msgids_tap_line(t, t->line, l);
			t->llen = 0;
			t->over = false;
		} else if (t->llen < sizeof(t->line)) {
			t->line[t->llen++] = c;
		} else {
			t->over = true;
		}
	}
}

/* msgids_tap_id - the Message-ID seen (brackets stripped) into out;
 * false if none. */
bool
msgids_tap_id(const struct msgids_tap *t, char *out, size_t outlen)
{
	const char *p = t->id, *end = t->id + t->len, *lt, *gt;

	if (!t->found)
		return false;
	lt = memchr(p, '<', t->len);
	gt = lt != NULL ? memchr(lt, '>', (size_t)(end - lt)) : NULL;
	if (lt == NULL || gt == NULL || gt - lt < 4 ||
	    memchr(lt, '@', (size_t)(gt - lt)) == NULL)
		return false;
	snprintf(out, outlen, "%.*s", (int)(gt - lt - 1), lt + 1);
	return true;
}
