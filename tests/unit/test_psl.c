/*
 * test_psl.c - psl_registered() against the list's own test file
 * (tests/unit/data/test_psl.txt: checkPublicSuffix(name, want) lines;
 * those with non-ASCII names are skipped: PTR names are A-labels).
 */
#include <stdio.h>
#include <stdlib.h>

#include "proxy.h"
#include "t.h"

/* arg - the next quoted string or null at p; *p moves past it. */
static bool
arg(const char **p, char *out, size_t outlen, bool *null)
{
	const char *s = *p, *e;

	while (*s == ' ' || *s == ',' || *s == '(')
		s++;
	if (strncmp(s, "null", 4) == 0) {
		*null = true;
		*p = s + 4;
		return true;
	}
	if (*s != '\'')
		return false;
	e = strchr(s + 1, '\'');
	if (e == NULL || (size_t)(e - s) >= outlen)
		return false;
	memcpy(out, s + 1, (size_t)(e - s - 1));
	out[e - s - 1] = '\0';
	*null = false;
	*p = e + 1;
	return true;
}

/* main - the cases. */
int
main(void)
{
	char line[512], name[256], want[256], got[256];
	unsigned n = 0, bad = 0, skipped = 0;
	FILE *f = fopen("tests/unit/data/test_psl.txt", "r");

	t_begin("public suffix list: the list's test cases");
	T_CHECK(f != NULL, "tests/unit/data/test_psl.txt");
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		const char *p = line;
		bool nn, wn, ascii = true, ok;

		if (strncmp(p, "checkPublicSuffix(", 18) != 0)
			continue;
		p += 17;
		if (!arg(&p, name, sizeof(name), &nn) ||
		    !arg(&p, want, sizeof(want), &wn))
			continue;
		for (const char *c = line; *c; c++)
			ascii = ascii && (unsigned char)*c < 0x80;
		if (!ascii || nn) {
			skipped++;
			continue;
		}
		n++;
		ok = psl_registered(name, got, sizeof(got));
		if (ok != !wn || (ok && strcmp(got, want) != 0)) {
			bad++;
			T_CHECK(0, "%s: got %s, want %s", name,
			        ok ? got : "null", wn ? "null" : want);
		}
	}
	if (f != NULL)
		fclose(f);
	T_CHECK(n > 50, "only %u cases", n);
	printf("# %u cases, %u skipped (IDN or null)\n", n, skipped);
	t_end();
	t_begin("PTR names of big senders");
	{
		T_CHECK(psl_registered("mail-ej1-f41.google.com", got, 256) &&
		                strcmp(got, "google.com") == 0,
		        "%s", got);
		T_CHECK(psl_registered("a8-33.smtp-out.amazonses.com.", got,
		                       256) &&
		                strcmp(got, "amazonses.com") == 0,
		        "%s", got);
		T_CHECK(psl_registered("mx.example.co.uk", got, 256) &&
		                strcmp(got, "example.co.uk") == 0,
		        "%s", got);
		T_CHECK(!psl_registered("co.uk", got, 256), "co.uk");
		T_CHECK(!psl_registered("a..b.com", got, 256), "empty label");
	}
	t_end();
	return t_exit();
}
