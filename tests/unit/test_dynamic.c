/*
 * test_dynamic.c - the dynamic-PTR matcher: the pattern file, its built-in
 * copy, the rules one by one, and the labelled corpus
 * (tests/unit/data/dynamic-ptrs.tsv) in both directions: catch rate on
 * dynamic names, false positives on static ones, with floor figures.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "t.h"

/* read_file - whole file into a NUL-terminated buffer, or NULL. */
static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *p;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	p = xmalloc((size_t)n + 1);
	if (fread(p, 1, (size_t)n, f) != (size_t)n) {
		free(p);
		fclose(f);
		return NULL;
	}
	p[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return p;
}

/* one - does ptr (client ip, may be "") match? */
static bool
one(const struct dynamic_rules *r, const char *ptr, const char *ip, char *why,
    size_t whylen)
{
	struct ipaddr a;

	if (ip && *ip && ipaddr_parse(&a, ip) == 0)
		return dynamic_match(r, ptr, &a, why, whylen);
	return dynamic_match(r, ptr, NULL, why, whylen);
}

/* corpus - run the labelled corpus through r; 0 or -1 (no file). */
static int
corpus(const struct dynamic_rules *r, bool verbose, unsigned *dyn,
       unsigned *caught, unsigned *stat, unsigned *fp)
{
	FILE *f = fopen("tests/unit/data/dynamic-ptrs.tsv", "r");
	char line[512], why[96];

	*dyn = *caught = *stat = *fp = 0;
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		char *ptr, *ip, *label, *save;

		if (line[0] == '#')
			continue;
		ptr = strtok_r(line, "\t\n", &save);
		ip = strtok_r(NULL, "\t", &save);
		label = strtok_r(NULL, "\t\n", &save);
		if (!ptr || !ip || !label)
			continue;
		/* an empty ip column: strtok skips it */
		if (strcmp(ip, "dynamic") == 0 || strcmp(ip, "static") == 0) {
			label = ip;
			ip = "";
		}
		bool got = one(r, ptr, ip, why, sizeof(why));
		if (strcmp(label, "dynamic") == 0) {
			(*dyn)++;
			if (got)
				(*caught)++;
			else if (verbose)
				printf("# missed dynamic: %s %s\n", ptr, ip);
		} else {
			(*stat)++;
			if (got) {
				(*fp)++;
				if (verbose)
					printf("# false positive: %s %s (%s)\n",
					       ptr, ip, why);
			}
		}
	}
	fclose(f);
	return 0;
}

static const struct {
	const char *name, *ptr, *ip;
	bool want;
} cases[] = {
        {"spec example dip.t-dialin", "pD9FFF73B.dip.t-dialin.net",
         "217.255.247.59", true},
        {"spec example without ip", "pD9FFF73B.dip.t-dialin.net", "", true},
        {"ip dashes", "host-109-168-232-131.stv.ru", "109.168.232.131", true},
        {"ip reversed dots", "74.67-201-80.adsl.skynet.be", "80.201.67.74",
         true},
        {"ip hex 0x", "0x3ec6ec81.inet.dsl.telianet.dk", "62.198.236.129",
         true},
        {"ip 12 digits", "yahoobb219173000034.bbtec.net", "219.173.0.34", true},
        {"static word wins", "static-1-2-3-4.example.net", "1.2.3.4", false},
        {"business wins", "c-76-121-96-159.business.wa.comcast.net",
         "76.121.96.159", false},
        {"dedicated wins", "92-67-42-100-dedicated.multacom.com",
         "100.42.67.92", false},
        {"mail server", "mail.example.com", "192.0.2.1", false},
        {"google outbound", "mail-we0-f182.google.com", "74.125.82.182", false},
        {"two labels never", "dsl.example", "", false},
        {"domain part ignored", "www.dynamic-dsl.com", "", false},
        {"keyword needs number", "user.example.com", "", false},
        {"keyword with number", "user123.pool.example.com", "", true},
        {"strong keyword alone", "abc.dialup.example.net", "", true},
        {"trailing dot", "dsl-1-2-3-4.example.net.", "1.2.3.4", true},
        {"empty", "", "", false},
        {"upper case", "DSL-188-34-255-136.ASRETELECOM.NET", "188.34.255.136",
         true},
        {"ipv6 client keyword", "dyn-2001-db8.pool.example.net", "2001:db8::1",
         true},
        {"ipv6 client mail", "mail.example.net", "2001:db8::1", false},
        {"four numbers no ip", "10-20-30-40.customers.example.org", "", true},
        {"two octets not enough", "m17-178.vip.126.com", "123.58.178.17",
         false},
        {"keyword digit elsewhere", "good6.client.example.org", "", false},
        {"keyword digit in label", "client-77.example.org.uk", "", true},
};

int
main(void)
{
	struct dynamic_rules *r, *rb;
	char err[256], why[96];
	size_t len;
	char *text;
	unsigned i;

	t_begin("pattern file loads");
	r = dynamic_rules_load("data/dynamic-ptr.patterns", err, sizeof(err));
	T_CHECK(r != NULL, "load: %s", err);
	t_end();
	if (r == NULL)
		return 1;

	t_begin("built-in copy equals data/dynamic-ptr.patterns");
	text = read_file("data/dynamic-ptr.patterns", &len);
	T_CHECK(text && strcmp(text, dynamic_builtin_text) == 0,
	        "run data/gen-builtin.sh");
	free(text);
	rb = dynamic_rules_load(NULL, err, sizeof(err));
	T_CHECK(rb != NULL, "built-in: %s", err);
	dynamic_rules_free(rb);
	t_end();

	t_begin("built-in TLD copy equals data/tlds.txt");
	text = read_file("data/tlds.txt", &len);
	T_CHECK(text && strcmp(text, tld_builtin_text) == 0,
	        "run data/gen-builtin.sh");
	free(text);
	t_end();

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		char name[128];

		snprintf(name, sizeof(name), "match: %s", cases[i].name);
		t_begin(name);
		bool got = one(r, cases[i].ptr, cases[i].ip, why, sizeof(why));
		T_CHECK(got == cases[i].want, "%s: got %d (%s), want %d",
		        cases[i].ptr, got, why, cases[i].want);
		t_end();
	}

	static const struct {
		const char *text, *err;
	} bad[] = {
	        {"frobnicate dsl\n", "x:1: unknown directive \"frobnicate\""},
	        {"# c\n\nkeyword\n", "x:3: \"keyword\" needs an argument"},
	        {"regex (unclosed\n", "x:1: bad regex"},
	        {"keyword a.b\n", "x:1: \"a.b\" is not a word (a-z, 0-9)"},
	};
	for (i = 0; i < ARRAY_LEN(bad); i++) {
		char name[64];
		struct dynamic_rules *x;

		snprintf(name, sizeof(name), "pattern file error %u", i + 1);
		t_begin(name);
		err[0] = '\0';
		x = dynamic_rules_parse(bad[i].text, strlen(bad[i].text), "x",
		                        err, sizeof(err));
		T_CHECK(x == NULL, "accepted a bad file");
		T_CHECK(strncmp(err, bad[i].err, strlen(bad[i].err)) == 0,
		        "got \"%s\", want \"%s...\"", err, bad[i].err);
		dynamic_rules_free(x);
		t_end();
	}

	t_begin("missing pattern file is an error");
	T_CHECK(dynamic_rules_load("/nonexistent/p", err, sizeof(err)) == NULL,
	        "loaded");
	t_end();

	/* The labelled corpus, both directions. */
	unsigned dyn, caught, stat, fp;

	t_begin("labelled corpus readable");
	T_CHECK(corpus(r, true, &dyn, &caught, &stat, &fp) == 0,
	        "tests/unit/data/dynamic-ptrs.tsv");
	t_end();
	printf("# corpus: dynamic caught %u/%u (%.1f%%), static flagged "
	       "%u/%u (%.1f%%)\n",
	       caught, dyn, dyn ? 100.0 * caught / dyn : 0.0, fp, stat,
	       stat ? 100.0 * fp / stat : 0.0);
	t_begin("corpus: >= 95% of dynamic names caught");
	T_CHECK(dyn >= 60 && caught * 100 >= dyn * 95, "caught %u/%u", caught,
	        dyn);
	t_end();
	t_begin("corpus: 0 false positives on static names");
	T_CHECK(stat >= 20 && fp == 0, "flagged %u/%u", fp, stat);
	t_end();

	/* For the record: the generic rules alone (no provider regexes). */
	text = read_file("data/dynamic-ptr.patterns", &len);
	if (text) {
		struct buf b = {0};
		char *line, *save;

		for (line = strtok_r(text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			if (strncmp(line, "regex", 5) == 0)
				continue;
			buf_append(&b, line, strlen(line));
			buf_append(&b, "\n", 1);
		}
		rb = dynamic_rules_parse(b.data, b.len, "generic", err,
		                         sizeof(err));
		if (rb && corpus(rb, false, &dyn, &caught, &stat, &fp) == 0)
			printf("# generic rules only (no regex lines): dynamic "
			       "caught %u/%u (%.1f%%), static flagged %u/%u\n",
			       caught, dyn, 100.0 * caught / dyn, fp, stat);
		dynamic_rules_free(rb);
		buf_free(&b);
		free(text);
	}

	dynamic_rules_free(r);
	return t_exit();
}
