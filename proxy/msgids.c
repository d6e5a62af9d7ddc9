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
 * The set is compact: a store table "msgids" (store.c) whose key is a
 * 64-bit hash of the id (its domain folded to lower case) and whose value
 * is one byte, with the expiry the store keeps; so the ids survive a
 * restart and a power cut after a flush.  A false positive needs a
 * 64-bit hash collision with an id we sent.  Kept for backscatter_block
 * plus the retry time of a bounce (the caller picks `expires`, store
 * time).  Nothing async; reads no config key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy.h"

static struct store_table *tab;

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

/* msgids_table - the store table "msgids": key the 8-byte hash, value
 * one byte (the version), opened on first use. */
static struct store_table *
msgids_table(void)
{
	if (tab == NULL)
		tab = store_table("msgids", 1);
	return tab;
}

/* msgids_add - record id (brackets optional) until expires (store time). */
void
msgids_add(const char *id, size_t n, uint64_t expires)
{
	uint64_t h = msgid_hash(id, n), old = 0;
	unsigned char v = 1;

	if (store_get_expires(msgids_table(), &h, sizeof(h), &old) == 0 &&
	    old >= expires)
		return;
	if (store_put(tab, &h, sizeof(h), &v, expires) != 0)
		log_warn("msgids: cannot record an outgoing Message-ID");
}

/* msgids_has - recorded and not expired? */
bool
msgids_has(const char *id, size_t n)
{
	uint64_t h = msgid_hash(id, n);

	return store_get(msgids_table(), &h, sizeof(h)) != NULL;
}

/* msgids_count - ids recorded. */
size_t
msgids_count(void)
{
	return store_count(msgids_table());
}

/* msgids_free - forget the table handle (the store owns the records). */
void
msgids_free(void)
{
	tab = NULL;
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
