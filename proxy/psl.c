/*
 * psl.c - the public suffix list: the registered domain of a host name.
 *
 * Public: psl_registered().
 *
 * The rules are data/public_suffix_list.dat, compiled in as
 * psl_builtin_text (proxy/psl_builtin.c, made by data/gen-psl.py: one rule
 * a line, lower case, IDN rules as A-labels).  They go into a hash set at
 * the first call (once per process, on the loop: about 9,500 rules, a
 * millisecond).  Matching follows the list's algorithm: an exception rule
 * ("!www.ck") wins, else the longest rule, a wildcard ("*.ck") matching
 * any one label, else the default rule "*" (the TLD).  Reads no config.
 */
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

extern const char psl_builtin_text[];

static struct {
	const char **slot; /* pointers into psl_builtin_text (lines) */
	unsigned char *lens;
	size_t cap;
} psl;

/* psl_hash - FNV-1a of p[0..n). */
static uint32_t
psl_hash(const char *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ (unsigned char)*p++) * 16777619u;
	return h;
}

/* psl_has - is the rule p[0..n) in the set? */
static bool
psl_has(const char *p, size_t n)
{
	size_t i = psl_hash(p, n) & (psl.cap - 1);

	while (psl.slot[i] != NULL) {
		if (psl.lens[i] == n && memcmp(psl.slot[i], p, n) == 0)
			return true;
		i = (i + 1) & (psl.cap - 1);
	}
	return false;
}

/* psl_init - the set, from the compiled-in list. */
static void
psl_init(void)
{
	const char *p = psl_builtin_text, *e;
	size_t n = 0;

	for (e = p; *e; e++)
		n += *e == '\n';
	psl.cap = 1;
	while (psl.cap < n * 2)
		psl.cap <<= 1;
	psl.slot = xcalloc(psl.cap, sizeof(*psl.slot));
	psl.lens = xcalloc(psl.cap, 1);
	for (; *p; p = e + 1) {
		size_t len, i;

		e = strchr(p, '\n');
		len = (size_t)(e - p);
		if (len == 0 || len > 255)
			continue;
		i = psl_hash(p, len) & (psl.cap - 1);
		while (psl.slot[i] != NULL)
			i = (i + 1) & (psl.cap - 1);
		psl.slot[i] = p;
		psl.lens[i] = (unsigned char)len;
	}
}

/* psl_has2 - is prefix+p[0..n) a rule ("!" or "*." prefixes)? */
static bool
psl_has2(const char *prefix, const char *p, size_t n)
{
	char tmp[260];
	size_t pl = strlen(prefix);

	if (pl + n >= sizeof(tmp))
		return false;
	memcpy(tmp, prefix, pl);
	memcpy(tmp + pl, p, n);
	return psl_has(tmp, pl + n);
}

/*
 * psl_registered - the registered domain of name (public suffix plus one
 * label) in lower case into out; false when name is a public suffix
 * itself, empty, too long or malformed (empty labels).
 */
bool
psl_registered(const char *name, char *out, size_t outlen)
{
	char d[256];
	size_t n = strlen(name), i, ps = (size_t)-1;

	if (psl.slot == NULL)
		psl_init();
	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == 0 || n >= sizeof(d) || name[0] == '.')
		return false;
	for (i = 0; i < n; i++) {
		d[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32
		                                                 : name[i]);
		if (d[i] == '.' && (i + 1 == n || name[i + 1] == '.'))
			return false;
	}
	d[n] = '\0';
	/* Suffixes from the longest (the whole name) to the shortest. */
	for (i = 0; i < n; i = strchr(d + i, '.')
	                               ? (size_t)(strchr(d + i, '.') - d) + 1
	                               : n) {
		const char *s = d + i, *dot = strchr(s, '.');
		size_t sl = n - i;

		if (psl_has2("!", s, sl)) {
			ps = dot ? (size_t)(dot - d) + 1 : n;
			break;
		}
		if (psl_has(s, sl) ||
		    (dot != NULL &&
		     psl_has2("*.", dot + 1, n - (size_t)(dot - d) - 1))) {
			ps = i;
			break;
		}
	}
	if (ps == (size_t)-1) { /* the default rule "*": the last label */
		const char *last = strrchr(d, '.');

		ps = last ? (size_t)(last - d) + 1 : 0;
	}
	if (ps >= n || ps == 0)
		return false; /* the name is a public suffix */
	/* one label more: back from the dot before ps */
	i = ps - 1; /* the dot */
	while (i > 0 && d[i - 1] != '.')
		i--;
	if ((size_t)snprintf(out, outlen, "%s", d + i) >= outlen)
		return false;
	return true;
}
