/*
 * test_util.c - util.c and log.c: sockaddr_parse, ipaddr, buf, session
 * ids (uniqueness and alphabet), util_strcaseeq/lowercase, log_kv_escape.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>

#include "proxy.h"
#include "t.h"

/* sockaddr_text - "fam addr port" of ss for comparisons */
static void
sockaddr_text(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
	char a[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &s->sin_addr, a, sizeof(a));
		snprintf(out, outlen, "4 %s %u", a, ntohs(s->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &s->sin6_addr, a, sizeof(a));
		snprintf(out, outlen, "6 %s %u", a, ntohs(s->sin6_port));
	} else {
		snprintf(out, outlen, "?");
	}
}

/* test_sockaddr_parse - accepted forms and refused ones */
static void
test_sockaddr_parse(void)
{
	static const struct {
		const char *in;
		int defport;
		const char *want; /* NULL: -EINVAL */
	} cases[] = {
	        {"1.2.3.4:25", 25, "4 1.2.3.4 25"},
	        {"0.0.0.0:2525", 25, "4 0.0.0.0 2525"},
	        {"1.2.3.4", 25, "4 1.2.3.4 25"},
	        {"1.2.3.4", -1, NULL},
	        {"[::1]:25", 25, "6 ::1 25"},
	        {"[::]:25", 25, "6 :: 25"},
	        {"[2001:db8::5]", 587, "6 2001:db8::5 587"},
	        {"::1", 53, "6 ::1 53"},
	        {"127.0.0.1:65535", 25, "4 127.0.0.1 65535"},
	        {"127.0.0.1:65536", 25, NULL},
	        {"127.0.0.1:", 25, NULL},
	        {"127.0.0.1:2x", 25, NULL},
	        {"127.0.0.1:-1", 25, NULL},
	        {"localhost:25", 25, NULL},
	        {"mail.example.com", 25, NULL},
	        {"[::1", 25, NULL},
	        {"[::1]x", 25, NULL},
	        {"[1.2.3.4]:25", 25, NULL},
	        {"1.2.3:25", 25, NULL},
	        {"", 25, NULL},
	        {":25", 25, NULL},
	        {"[]:25", 25, NULL},
	};
	struct sockaddr_storage ss;
	char got[96], name[96];
	size_t i;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		int rc = sockaddr_parse(&ss, cases[i].in, cases[i].defport);

		snprintf(name, sizeof(name), "sockaddr_parse \"%s\"",
		         cases[i].in);
		t_begin(name);
		if (cases[i].want == NULL) {
			T_INTEQ(rc, -EINVAL);
		} else {
			T_INTEQ(rc, 0);
			sockaddr_text(&ss, got, sizeof(got));
			T_STREQ(got, cases[i].want);
		}
		t_end();
	}
}

/* test_ipaddr - parse, v4-mapped folding, format, equality */
static void
test_ipaddr(void)
{
	struct ipaddr a, b;
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	char out[INET6_ADDRSTRLEN];

	t_begin("ipaddr_parse v4");
	T_INTEQ(ipaddr_parse(&a, "192.0.2.1"), 0);
	T_INTEQ(a.family, AF_INET);
	ipaddr_format(&a, out, sizeof(out));
	T_STREQ(out, "192.0.2.1");
	t_end();

	t_begin("ipaddr_parse v6");
	T_INTEQ(ipaddr_parse(&a, "2001:DB8::1"), 0);
	T_INTEQ(a.family, AF_INET6);
	ipaddr_format(&a, out, sizeof(out));
	T_STREQ(out, "2001:db8::1");
	t_end();

	t_begin("ipaddr_parse v4-mapped folds to v4");
	T_INTEQ(ipaddr_parse(&a, "::ffff:192.0.2.1"), 0);
	T_INTEQ(a.family, AF_INET);
	ipaddr_parse(&b, "192.0.2.1");
	T_CHECK(ipaddr_equal(&a, &b), "mapped != plain");
	ipaddr_format(&a, out, sizeof(out));
	T_STREQ(out, "192.0.2.1");
	t_end();

	t_begin("ipaddr_parse bad");
	T_INTEQ(ipaddr_parse(&a, "1.2.3"), -EINVAL);
	T_INTEQ(ipaddr_parse(&a, "1.2.3.4/24"), -EINVAL);
	T_INTEQ(ipaddr_parse(&a, "[::1]"), -EINVAL);
	T_INTEQ(ipaddr_parse(&a, ""), -EINVAL);
	T_INTEQ(ipaddr_parse(&a, NULL), -EINVAL);
	T_INTEQ(ipaddr_parse(&a, "example.com"), -EINVAL);
	t_end();

	t_begin("ipaddr_from_sockaddr v4-mapped");
	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:10.1.2.3", &s6.sin6_addr);
	T_INTEQ(ipaddr_from_sockaddr(&a, (struct sockaddr *)&s6), 0);
	T_INTEQ(a.family, AF_INET);
	ipaddr_format(&a, out, sizeof(out));
	T_STREQ(out, "10.1.2.3");
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	inet_pton(AF_INET, "10.1.2.3", &s4.sin_addr);
	T_INTEQ(ipaddr_from_sockaddr(&b, (struct sockaddr *)&s4), 0);
	T_CHECK(ipaddr_equal(&a, &b), "from_sockaddr mapped != plain");
	t_end();

	t_begin("ipaddr_equal different families and values");
	ipaddr_parse(&a, "::1");
	ipaddr_parse(&b, "127.0.0.1");
	T_CHECK(!ipaddr_equal(&a, &b), "::1 == 127.0.0.1");
	ipaddr_parse(&a, "127.0.0.2");
	T_CHECK(!ipaddr_equal(&a, &b), "127.0.0.2 == 127.0.0.1");
	t_end();
}

/* test_buf - append, consume, free */
static void
test_buf(void)
{
	struct buf b = {0};
	int i;

	t_begin("buf append/consume");
	for (i = 0; i < 1000; i++)
		buf_append(&b, "abc", 3);
	T_INTEQ(b.len, 3000);
	T_CHECK(b.cap >= b.len, "cap %zu < len %zu", b.cap, b.len);
	buf_consume(&b, 2);
	T_INTEQ(b.len, 2998);
	T_CHECK(b.data[0] == 'c' && b.data[1] == 'a', "front wrong");
	buf_consume(&b, 5000);
	T_INTEQ(b.len, 0);
	buf_free(&b);
	T_CHECK(b.data == NULL && b.cap == 0, "buf_free left storage");
	t_end();
}

/* sid_cmp - qsort on 8-byte ids */
static int
sid_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 8);
}

/* test_session_id - 100000 ids: unique, 5 chars of the alphabet */
static void
test_session_id(void)
{
	enum { N = 100000 };
	char(*ids)[8] = xcalloc(N, 8);
	char again[8];
	int i, bad = 0, dups = 0, first_bad = -1;

	for (i = 0; i < N; i++)
		util_session_id((uint64_t)i + 1, ids[i]);
	util_session_id(1, again);

	t_begin("session id alphabet and length");
	for (i = 0; i < N; i++) {
		const char *s = ids[i];
		size_t j;

		if (strlen(s) != 5) {
			bad++;
		} else {
			for (j = 0; j < 5; j++)
				if (!strchr("0123456789ABCDEFGHJKLMNPQRSTUVWXY"
				            "Z",
				            s[j]) ||
				    s[j] == '\0')
					bad++;
		}
		if (bad && first_bad < 0)
			first_bad = i;
	}
	T_INTEQ(bad, 0);
	if (first_bad >= 0)
		T_CHECK(0, "first bad id \"%s\"", ids[first_bad]);
	t_end();

	t_begin("session id stable for one counter");
	T_STREQ(again, ids[0]);
	t_end();

	t_begin("session ids unique over 100000");
	qsort(ids, N, 8, sid_cmp);
	for (i = 1; i < N; i++)
		if (memcmp(ids[i - 1], ids[i], 8) == 0)
			dups++;
	T_INTEQ(dups, 0);
	t_end();
	free(ids);
}

/* test_strings - util_strcaseeq, util_lowercase */
static void
test_strings(void)
{
	char s[] = "MiXeD.Example.COM";

	t_begin("util_strcaseeq");
	T_CHECK(util_strcaseeq("Example.COM", "example.com"), "case");
	T_CHECK(!util_strcaseeq("example.com", "example.co"), "prefix");
	T_CHECK(!util_strcaseeq(NULL, "x"), "NULL vs x");
	T_CHECK(util_strcaseeq(NULL, NULL), "NULL vs NULL");
	t_end();

	t_begin("util_lowercase");
	util_lowercase(s);
	T_STREQ(s, "mixed.example.com");
	t_end();
}

/* test_kv_escape - the decision log's value escaping */
static void
test_kv_escape(void)
{
	static const struct {
		const char *name;
		const char *in;
		size_t outlen;
		const char *want;
	} cases[] = {
	        {"plain", "mail.example.com", 64, "mail.example.com"},
	        {"empty", "", 64, "-"},
	        {"NULL", NULL, 64, "-"},
	        {"space quoted", "a b", 64, "\"a b\""},
	        {"equals quoted", "k=v", 64, "\"k=v\""},
	        {"quote escaped and quoted", "say \"hi\"", 64,
	         "\"say \\x22hi\\x22\""},
	        {"lone quote", "a\"b", 64, "\"a\\x22b\""},
	        {"backslash", "a\\b", 64, "a\\x5cb"},
	        {"CRLF", "evil\r\nid=x", 64, "\"evil\\x0d\\x0aid=x\""},
	        {"tab", "a\tb", 64, "a\\x09b"},
	        {"NUL-free control", "\x01\x1f\x7f", 64, "\\x01\\x1f\\x7f"},
	        {"non-ASCII", "caf\xc3\xa9", 64, "caf\\xc3\\xa9"},
	        {"angle brackets kept", "<a@b>", 64, "<a@b>"},
	        {"truncated plain", "abcdefgh", 5, "abcd"},
	        {"truncated keeps escape whole", "ab\x01", 6, "ab"},
	        {"truncated quoted keeps quotes", "a b c d", 6, "\"a b\""},
	        {"outlen 1", "abc", 1, ""},
	};
	char out[64];
	char name[96];
	size_t i;

	for (i = 0; i < ARRAY_LEN(cases); i++) {
		snprintf(name, sizeof(name), "log_kv_escape %s", cases[i].name);
		t_begin(name);
		memset(out, 'Z', sizeof(out));
		log_kv_escape(out, cases[i].outlen, cases[i].in);
		T_STREQ(out, cases[i].want);
		T_CHECK(strlen(out) < cases[i].outlen, "overflow: %zu >= %zu",
		        strlen(out), cases[i].outlen);
		t_end();
	}
}

/* test_now_ms - monotonic */
static void
test_now_ms(void)
{
	uint64_t a = util_now_ms(), b = util_now_ms();

	t_begin("util_now_ms monotonic");
	T_CHECK(b >= a, "went back: %llu < %llu", (unsigned long long)b,
	        (unsigned long long)a);
	T_CHECK(a > 0, "zero clock");
	t_end();
}

int
main(void)
{
	test_sockaddr_parse();
	test_ipaddr();
	test_buf();
	test_session_id();
	test_strings();
	test_kv_escape();
	test_now_ms();
	return t_exit();
}
