/*
 * tld.c - the set of top-level domains registered with IANA.
 *
 * Public: tld_load(), tld_parse(), tld_registered(), tld_count().
 *
 * The list is the IANA file format: one TLD per line (A-labels, any
 * case), '#' comments, blank lines ignored.  A copy of data/tlds.txt is
 * compiled in (tld_builtin.c) and used when the config names no
 * tld_list; a file named by tld_list replaces it at load/reload, so the
 * list can be updated without a new build.  Reads config key tld_list
 * (through the helo and sender_tld checks' init).  Synchronous: files
 * are read at startup and reload only, never on the loop's hot path.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define TLD_MAX_LEN 63

/* An open-addressing hash set of lower-case TLDs. */
struct tld_set {
	char **slot;
	size_t cap;
	size_t n;
};

static struct tld_set *tld_current;

/* tld_hash - FNV-1a. */
static size_t
tld_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h;
}

/* tld_set_free - free a set and its strings. */
static void
tld_set_free(struct tld_set *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->cap; i++)
		free(t->slot[i]);
	free(t->slot);
	free(t);
}

/* tld_set_has - is name (lower case) in t? */
static bool
tld_set_has(const struct tld_set *t, const char *name)
{
	size_t i;

	if (t == NULL || t->cap == 0)
		return false;
	for (i = tld_hash(name) & (t->cap - 1); t->slot[i];
	     i = (i + 1) & (t->cap - 1))
		if (strcmp(t->slot[i], name) == 0)
			return true;
	return false;
}

/* tld_set_add - add name (lower case), growing the table as needed. */
static void
tld_set_add(struct tld_set *t, const char *name)
{
	size_t i;

	if (tld_set_has(t, name))
		return;
	if ((t->n + 1) * 2 > t->cap) {
		struct tld_set old = *t;

		t->cap = t->cap ? t->cap * 2 : 2048;
		t->slot = xcalloc(t->cap, sizeof(char *));
		t->n = 0;
		for (i = 0; i < old.cap; i++)
			if (old.slot[i]) {
				size_t j = tld_hash(old.slot[i]) & (t->cap - 1);

				while (t->slot[j])
					j = (j + 1) & (t->cap - 1);
				t->slot[j] = old.slot[i];
				t->n++;
			}
		free(old.slot);
	}
	for (i = tld_hash(name) & (t->cap - 1); t->slot[i];
	     i = (i + 1) & (t->cap - 1))
		;
	t->slot[i] = xstrdup(name);
	t->n++;
}

/* tld_valid_label - letters, digits, '-' (A-labels), 1..63 chars. */
static bool
tld_valid_label(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > TLD_MAX_LEN || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '-'))
			return false;
	return true;
}

/*
 * tld_parse - build a set from text (the IANA file format).  name is for
 * messages.  Returns the set, or NULL with "NAME:LINE: ..." in err.  An
 * empty list is an error: it would refuse every domain.
 */
static struct tld_set *
tld_parse_set(const char *text, size_t len, const char *name, char *err,
              size_t errlen)
{
	struct tld_set *t = xcalloc(1, sizeof(*t));
	size_t pos = 0;
	int line = 0;

	size_t a, b;

	while (util_data_line(text, len, &pos, &line, &a, &b)) {
		char word[TLD_MAX_LEN + 2];
		size_t wl = b - a;

		if (wl > TLD_MAX_LEN || memchr(text + a, '\0', wl)) {
			snprintf(err, errlen, "%s:%d: not a TLD", name, line);
			tld_set_free(t);
			return NULL;
		}
		memcpy(word, text + a, wl);
		word[wl] = '\0';
		if (word[wl - 1] == '.' && wl > 1)
			word[wl - 1] = '\0';
		util_lowercase(word);
		if (!tld_valid_label(word)) {
			snprintf(err, errlen, "%s:%d: not a TLD: \"%.40s\"",
			         name, line, word);
			tld_set_free(t);
			return NULL;
		}
		tld_set_add(t, word);
	}
	if (t->n == 0) {
		snprintf(err, errlen, "%s: no TLDs in the list", name);
		tld_set_free(t);
		return NULL;
	}
	return t;
}

/* tld_parse - replace the current set with one parsed from text. */
int
tld_parse(const char *text, size_t len, const char *name, char *err,
          size_t errlen)
{
	struct tld_set *t = tld_parse_set(text, len, name, err, errlen);

	if (t == NULL)
		return -EINVAL;
	tld_set_free(tld_current);
	tld_current = t;
	return 0;
}

/*
 * tld_load - load the list from path (NULL: the compiled-in copy).
 * Returns 0, or -errno / -EINVAL with the reason in err; the current
 * set is kept on error.
 */
int
tld_load(const char *path, char *err, size_t errlen)
{
	struct buf b = {0};
	char chunk[8192];
	size_t n;
	FILE *f;
	int rc;

	if (path == NULL)
		return tld_parse(tld_builtin_text, strlen(tld_builtin_text),
		                 "(built-in TLD list)", err, errlen);
	f = fopen(path, "r");
	if (f == NULL) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		buf_append(&b, chunk, n);
		if (b.len > (1u << 20)) {
			snprintf(err, errlen, "%s: too big for a TLD list",
			         path);
			fclose(f);
			buf_free(&b);
			return -EFBIG;
		}
	}
	fclose(f);
	rc = tld_parse(b.data ? b.data : "", b.len, path, err, errlen);
	buf_free(&b);
	return rc;
}

/* tld_registered - is tld (any case, no dot) in the list? */
bool
tld_registered(const char *tld)
{
	char low[TLD_MAX_LEN + 1];
	size_t n = strlen(tld);

	if (tld_current == NULL) {
		char err[128];

		if (tld_load(NULL, err, sizeof(err)) < 0)
			log_panic("tld: built-in list: %s", err);
	}
	if (n == 0 || n > TLD_MAX_LEN)
		return false;
	memcpy(low, tld, n + 1);
	util_lowercase(low);
	return tld_set_has(tld_current, low);
}

/* tld_count - how many TLDs the current list has (0 before loading). */
size_t
tld_count(void)
{
	return tld_current ? tld_current->n : 0;
}

/* tld_free - drop the current list (at exit; for leak checkers). */
void
tld_free(void)
{
	tld_set_free(tld_current);
	tld_current = NULL;
}
