/*
 * fuzz_dynamic.c - libFuzzer harness for the dynamic-PTR matcher and its
 * pattern-file parser.
 *
 * Input: byte 0 even: the rest is PTR names (one per line, as a hostile
 * DNS server may send them: any bytes) matched against the built-in
 * rules, with a client address taken from bytes 1..4 (IPv4) or none;
 * byte 0 odd: the rest is a pattern file, parsed (regex directives are
 * skipped: the file is the administrator's, and a hostile ERE can make
 * any regcomp() slow), and if it loads, matched against a few names.
 * Checked: no crash, leak or UB; why is always a terminated string; the
 * same name gives the same answer twice.
 * Seeds: tests/fuzz/seeds/dynamic/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

static struct dynamic_rules *builtin;

static const char *const names[] = {
        "dsl-1-2-3-4.pool.example.net",
        "mail.example.com",
        "pD9FFF73B.dip.t-dialin.net",
        "x.y",
        "a.b.c.d.e.f.g",
};

/* match2 - match twice, compare, check why. */
static void
match2(const struct dynamic_rules *r, const char *name, const struct ipaddr *ip)
{
	char why[96], why2[96];
	bool a, b;

	memset(why, 'x', sizeof(why));
	a = dynamic_match(r, name, ip, why, sizeof(why));
	if (memchr(why, '\0', sizeof(why)) == NULL)
		abort();
	b = dynamic_match(r, name, ip, why2, sizeof(why2));
	if (a != b)
		abort();
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char err[256];

	if (builtin == NULL) {
		builtin = dynamic_rules_load(NULL, err, sizeof(err));
		if (builtin == NULL)
			abort();
	}
	if (size < 1)
		return 0;
	if ((data[0] & 1) == 0) {
		struct ipaddr ip = {.family = AF_INET};
		const unsigned char *p = data + 1, *end = data + size;
		char name[512];

		if (size >= 5)
			memcpy(&ip.u.v4, data + 1, 4);
		while (p < end) {
			const unsigned char *nl =
			        memchr(p, '\n', (size_t)(end - p));
			size_t l = (size_t)((nl ? nl : end) - p);

			if (l >= sizeof(name))
				l = sizeof(name) - 1;
			memcpy(name, p, l);
			name[l] = '\0';
			match2(builtin, name, data[0] & 2 ? NULL : &ip);
			p = nl ? nl + 1 : end;
		}
		return 0;
	}
	/* a pattern file without regex directives */
	struct buf b = {0};
	const unsigned char *p = data + 1, *end = data + size;

	while (p < end) {
		const unsigned char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t l = (size_t)((nl ? nl + 1 : end) - p);

		if (!(memmem(p, l, "regex", 5)))
			buf_append(&b, p, l);
		p += l;
	}
	struct dynamic_rules *r = dynamic_rules_parse(
	        b.data ? b.data : "", b.len, "fuzz", err, sizeof(err));
	if (r != NULL) {
		for (size_t i = 0; i < ARRAY_LEN(names); i++)
			match2(r, names[i], NULL);
		dynamic_rules_free(r);
	} else if (memchr(err, '\0', sizeof(err)) == NULL) {
		abort();
	}
	buf_free(&b);
	return 0;
}
