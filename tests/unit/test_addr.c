/*
 * test_addr.c - addr.c: path syntax (a table of named cases and the
 * isemail suite, tests/unit/data/isemail-tests.tsv), FQDN rules for HELO,
 * addr_tld, addr_format round trips.
 */
#include <errno.h>
#include <stdlib.h>

#include "proxy.h"
#include "t.h"

/* test_paths - named cases: result, local, domain, *end */
static void
test_paths(void)
{
	static const struct {
		const char *name, *in;
		int want;
		const char *local, *domain, *rest;
	} cases[] = {
	        {"plain", "<a@b.example>", ADDR_OK, "a", "b.example", ""},
	        {"null", "<>", ADDR_OK, "", "", ""},
	        {"null with params", "<> SIZE=10", ADDR_OK, "", "", " SIZE=10"},
	        {"params left", "<a@b.c> BODY=8BITMIME", ADDR_OK, "a", "b.c",
	         " BODY=8BITMIME"},
	        {"domain lower-cased", "<Joe.Bloggs@Example.COM>", ADDR_OK,
	         "Joe.Bloggs", "example.com", ""},
	        {"dotless domain", "<a@localhost>", ADDR_OK, "a", "localhost",
	         ""},
	        {"quoted", "<\"john doe\"@x.org>", ADDR_OK, "john doe", "x.org",
	         ""},
	        {"quoted pair", "<\"a\\\"b\"@x.org>", ADDR_OK, "a\"b", "x.org",
	         ""},
	        {"ipv4 literal", "<a@[192.0.2.1]>", ADDR_OK, "a", "[192.0.2.1]",
	         ""},
	        {"ipv6 literal", "<a@[IPv6:2001:db8::1]>", ADDR_OK, "a",
	         "[ipv6:2001:db8::1]", ""},
	        {"route", "<@r1.example,@r2.example:a@b.example>", ADDR_EROUTE,
	         "a", "b.example", ""},
	        {"route literal", "<@[10.0.0.1]:a@b.example>", ADDR_EROUTE, "a",
	         "b.example", ""},
	        {"percent hack", "<a%c.example@b.example>", ADDR_ERELAY,
	         "a%c.example", "b.example", ""},
	        {"bang path", "<c.example!a@b.example>", ADDR_ERELAY,
	         "c.example!a", "b.example", ""},
	        {"quoted at", "<\"a@c.example\"@b.example>", ADDR_ERELAY,
	         "a@c.example", "b.example", ""},
	        {"quoted percent", "<\"a%c.example\"@b.example>", ADDR_ERELAY,
	         "a%c.example", "b.example", ""},
	        {"quoted bang", "<\"c!a\"@b.example>", ADDR_ERELAY, "c!a",
	         "b.example", ""},
	        {"no brackets", "a@b.example", ADDR_ESYNTAX, "", "", NULL},
	        {"no close", "<a@b.example", ADDR_ESYNTAX, "", "", NULL},
	        {"no domain", "<a>", ADDR_ESYNTAX, "", "", NULL},
	        {"empty domain", "<a@>", ADDR_ESYNTAX, "", "", NULL},
	        {"no local", "<@b.example>", ADDR_ESYNTAX, "", "", NULL},
	        {"space inside", "<a b@c.example>", ADDR_ESYNTAX, "", "", NULL},
	        {"double dot", "<a..b@c.example>", ADDR_ESYNTAX, "", "", NULL},
	        {"trailing dot domain", "<a@c.example.>", ADDR_ESYNTAX, "", "",
	         NULL},
	        {"hyphen label", "<a@-c.example>", ADDR_ESYNTAX, "", "", NULL},
	        {"underscore domain", "<a@c_d.example>", ADDR_ESYNTAX, "", "",
	         NULL},
	        {"bad route", "<@:a@b.example>", ADDR_ESYNTAX, "", "", NULL},
	        {"route no colon", "<@r.example,a@b.example>", ADDR_ESYNTAX, "",
	         "", NULL},
	        {"general literal", "<a@[x-tag:abc]>", ADDR_ESYNTAX, "", "",
	         NULL},
	        {"v4 too big", "<a@[256.1.1.1]>", ADDR_ESYNTAX, "", "", NULL},
	        {"v6 no tag", "<a@[2001:db8::1]>", ADDR_ESYNTAX, "", "", NULL},
	        {"nul in quoted", "<\"a\x01\"@b.c>", ADDR_ESYNTAX, "", "",
	         NULL},
	        {"8bit local", "<j\xc3\xb6rg@b.c>", ADDR_ESYNTAX, "", "", NULL},
	        {"local 64",
	         "<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	         "aaaaaaaaaa@b.c>",
	         ADDR_OK,
	         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	         "aaa",
	         "b.c", ""},
	        {"local 65",
	         "<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	         "aaaaaaaaaaa@b.c>",
	         ADDR_ETOOLONG, "", "", ""},
	};

	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		char name[96];
		struct mailpath p;
		const char *end = NULL;
		int r;

		snprintf(name, sizeof(name), "addr_parse_path: %s",
		         cases[i].name);
		t_begin(name);
		r = addr_parse_path(cases[i].in, &p, &end);
		T_INTEQ(r, cases[i].want);
		if (r == ADDR_OK || r == ADDR_EROUTE || r == ADDR_ERELAY) {
			T_STREQ(p.local, cases[i].local);
			T_STREQ(p.domain, cases[i].domain);
			T_CHECK(p.null == (cases[i].in[1] == '>'),
			        "got null=%d", p.null);
		}
		if (cases[i].rest != NULL && r != ADDR_ESYNTAX)
			T_STREQ(end, cases[i].rest);
		t_end();
	}
}

/* test_lengths - path 256, domain 255, label 63 limits */
static void
test_lengths(void)
{
	char in[600], dom[300];
	struct mailpath p;
	const char *end;
	size_t n;

	t_begin("addr_parse_path: path of 256 octets accepted, 257 refused");
	/* "<" + 60 local + "@" + domain + ">" == 256: domain 193 */
	n = 0;
	for (int l = 0; l < 3; l++) {
		memset(dom + n, 'd', 63);
		n += 63;
		dom[n++] = '.';
	}
	memcpy(dom + n, "com", 3); /* 192 + 3 = 195 */
	n += 3;
	dom[n] = '\0';
	snprintf(in, sizeof(in), "<%.58s@%s>",
	         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	         "xx",
	         dom);
	T_INTEQ(strlen(in), 256);
	T_INTEQ(addr_parse_path(in, &p, &end), ADDR_OK);
	snprintf(in, sizeof(in), "<%.59s@%s>",
	         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	         "xx",
	         dom);
	T_INTEQ(addr_parse_path(in, &p, &end), ADDR_ETOOLONG);
	t_end();

	t_begin("addr_parse_path: label of 64 octets refused");
	memset(dom, 'a', 64);
	memcpy(dom + 64, ".com", 5);
	snprintf(in, sizeof(in), "<x@%s>", dom);
	T_INTEQ(addr_parse_path(in, &p, &end), ADDR_ESYNTAX);
	snprintf(in, sizeof(in), "<x@%s>", dom + 1); /* 63 */
	T_INTEQ(addr_parse_path(in, &p, &end), ADDR_OK);
	t_end();
}

/* test_fqdn - HELO name rules */
static void
test_fqdn(void)
{
	static const struct {
		const char *in;
		bool want;
	} cases[] = {
	        {"mail.example.com", true},
	        {"a.b", true},
	        {"MX1.Example.ORG", true},
	        {"a-b.c-d.example", true},
	        {"xn--bcher-kva.example", true},
	        {"1.2.3.com", true},
	        {"localhost", false},
	        {"example.com.", false},
	        {".example.com", false},
	        {"a..b", false},
	        {"-a.example.com", false},
	        {"a-.example.com", false},
	        {"mail.example.123", false},
	        {"192.0.2.1", false},
	        {"[192.0.2.1]", false},
	        {"under_score.example.com", false},
	        {"", false},
	        {"a b.example", false},
	};
	char big[300];

	t_begin("addr_is_fqdn: table");
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		T_CHECK(addr_is_fqdn(cases[i].in) == cases[i].want,
		        "%s: got %d, want %d", cases[i].in,
		        addr_is_fqdn(cases[i].in), cases[i].want);
	T_CHECK(!addr_is_fqdn(NULL), "NULL accepted");
	t_end();

	t_begin("addr_is_fqdn: 253 octets accepted, 254 refused");
	/* 4 labels of 62 + 3 dots = 251, + ".a" ... build exactly */
	memset(big, 'a', sizeof(big));
	for (int i = 62; i < 253; i += 63)
		big[i] = '.'; /* labels of 62 */
	big[253] = '\0';      /* 253 long, last label "aaaaa.." */
	T_CHECK(addr_is_fqdn(big), "253 refused");
	big[253] = 'a';
	big[254] = '\0';
	T_CHECK(!addr_is_fqdn(big), "254 accepted");
	t_end();

	t_begin("addr_tld");
	T_STREQ(addr_tld("mail.example.com"), "com");
	T_STREQ(addr_tld("localhost"), "localhost");
	T_STREQ(addr_tld("a.b."), "");
	t_end();
}

/* test_format - addr_format round trips through addr_parse_path */
static void
test_format(void)
{
	static const char *const in[] = {
	        "<a@b.example>",
	        "<\"john doe\"@x.org>",
	        "<\"a\\\"b\\\\c\"@x.org>",
	        "<a@[192.0.2.1]>",
	        "<\"\"@x.org>",
	};
	static const char *const want[] = {
	        "a@b.example",   "\"john doe\"@x.org", "\"a\\\"b\\\\c\"@x.org",
	        "a@[192.0.2.1]", "\"\"@x.org",
	};
	struct mailpath p, q;
	char out[600], again[610];

	t_begin("addr_format: round trips");
	for (size_t i = 0; i < ARRAY_LEN(in); i++) {
		T_INTEQ(addr_parse_path(in[i], &p, NULL), ADDR_OK);
		addr_format(&p, out, sizeof(out));
		T_STREQ(out, want[i]);
		snprintf(again, sizeof(again), "<%s>", out);
		T_INTEQ(addr_parse_path(again, &q, NULL), ADDR_OK);
		T_STREQ(q.local, p.local);
	}
	t_end();

	t_begin("addr_format: null path and truncation");
	T_INTEQ(addr_parse_path("<>", &p, NULL), ADDR_OK);
	strcpy(out, "junk");
	addr_format(&p, out, sizeof(out));
	T_STREQ(out, "");
	T_INTEQ(addr_parse_path("<abcdef@example.com>", &p, NULL), ADDR_OK);
	addr_format(&p, out, 8);
	T_STREQ(out, "abcdef@");
	t_end();
}

/* tsv_unescape - the TSV's C escapes (\\ \t \r \n \xNN) in place */
static size_t
tsv_unescape(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (*p != '\\') {
			*o++ = *p;
			continue;
		}
		p++;
		if (*p == 't')
			*o++ = '\t';
		else if (*p == 'r')
			*o++ = '\r';
		else if (*p == 'n')
			*o++ = '\n';
		else if (*p == 'x' && p[1] && p[2]) {
			char hex[3] = {p[1], p[2], 0};

			*o++ = (char)strtol(hex, NULL, 16);
			p += 2;
		} else if (*p == '\0')
			break;
		else
			*o++ = *p;
	}
	*o = '\0';
	return o - s;
}

/* tsv_open - the data file, from the tree or from the shared data */
static FILE *
tsv_open(const char *name, const char *shared)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "tests/unit/data/%s", name);
	f = fopen(path, "r");
	return f != NULL ? f : fopen(shared, "r");
}

struct xfail {
	int id;
	const char *why;
};

/*
 * isemail_run - the rfc5321_envelope column of one isemail TSV.  Syntax
 * is what is compared: ADDR_ERELAY is a valid address that policy refuses
 * for RCPT, so it counts as "accept" (the strict figure, with ERELAY as a
 * refusal, is printed too).  Disagreements we hold to be right are in
 * xfail[] with the reason; any other one fails the case.
 */
static void
isemail_run(const char *name, const char *file, const char *shared,
            const struct xfail *xfail, size_t n_xfail, int min_cases)
{
	FILE *f;
	char line[2048], path[1100];
	int total = 0, agree = 0, strict = 0;

	t_begin(name);
	f = tsv_open(file, shared);
	T_CHECK(f != NULL, "%s not found", file);
	while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
		char *fld[8] = {0}, *s = line;
		int nf = 0, id, r;
		bool want, got, expected_fail = false;
		struct mailpath p;
		const char *end;

		if (line[0] == '#' || strncmp(line, "id\t", 3) == 0)
			continue;
		line[strcspn(line, "\n")] = '\0';
		/* strtok would merge empty fields: split by hand */
		for (; nf < 8; nf++) {
			fld[nf] = s;
			s = strchr(s, '\t');
			if (s == NULL) {
				nf++;
				break;
			}
			*s++ = '\0';
		}
		if (nf < 6)
			continue;
		id = atoi(fld[0]);
		tsv_unescape(fld[1]);
		want = strcmp(fld[5], "accept") == 0;
		snprintf(path, sizeof(path), "<%s>", fld[1]);
		r = addr_parse_path(path, &p, &end);
		got = (r == ADDR_OK || r == ADDR_ERELAY) && *end == '\0';
		total++;
		if (got == want)
			agree++;
		if (((r == ADDR_OK) && *end == '\0') == want)
			strict++;
		for (size_t k = 0; k < n_xfail; k++)
			if (xfail[k].id == id && got != want) {
				expected_fail = true;
				printf("# %s id %d: expected disagreement: "
				       "%s\n",
				       file, id, xfail[k].why);
			}
		if (got != want && !expected_fail)
			T_CHECK(0, "id %d %s: got %s (%d), want %s", id, fld[3],
			        got ? "accept" : "reject", r, fld[5]);
	}
	if (f != NULL)
		fclose(f);
	printf("# %s: %d/%d agree on syntax (%d/%d if ERELAY counted as a "
	       "refusal)\n",
	       file, agree, total, strict, total);
	T_CHECK(total >= min_cases, "only %d cases read", total);
	t_end();
}

/* test_isemail - tests.xml (v3.05) and tests-original.xml (v3.04) */
static void
test_isemail(void)
{
	static const struct xfail xf[] = {
	        {1, "\"\" wrapped is \"<>\", the null reverse-path: valid "
	            "for MAIL FROM (RFC 5321 4.1.1.2); smtp.c refuses it "
	            "for RCPT"},
	};

	isemail_run("isemail: rfc5321_envelope verdicts (tests.xml)",
	            "isemail-tests.tsv",
	            "/work/shared/data/email-address-isemail/isemail-tests.tsv",
	            xf, ARRAY_LEN(xf), 160);
	isemail_run("isemail: rfc5321_envelope verdicts (tests-original.xml)",
	            "isemail-tests-original.tsv",
	            "/work/shared/data/email-address-isemail/"
	            "isemail-tests-original.tsv",
	            NULL, 0, 270); /* no disagreement there */
}

int
main(void)
{
	test_paths();
	test_lengths();
	test_fqdn();
	test_format();
	test_isemail();
	return t_exit();
}
