/*
 * test_spf.c - unit tests of spf.c and checks/spf.c that need no DNS
 * peer: result names, sanitizing of network text, the
 * Authentication-Results line built from hostile values, and
 * spf_eval_start()'s error paths on a loop with dns.c (bad query, no
 * identity, resolver down; never a synchronous callback).
 * The RFC 7208 suite and the daemon tests (tests/spf/) cover the rest.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "proxy.h"

/* count - occurrences of needle in s. */
static int
count(const char *s, const char *needle)
{
	int n = 0;

	while ((s = strstr(s, needle)) != NULL) {
		n++;
		s += strlen(needle);
	}
	return n;
}

/* printable - only printable ASCII (and the final CRLF when crlf). */
static bool
printable(const char *s, bool crlf)
{
	size_t n = strlen(s);

	if (crlf) {
		if (n < 2 || strcmp(s + n - 2, "\r\n") != 0)
			return false;
		n -= 2;
	}
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return false;
	return true;
}

static void
test_res_names(void)
{
	static const struct {
		enum spf_res r;
		const char *want;
	} cases[] = {
	        {SPF_RES_NONE, "none"},
	        {SPF_RES_NEUTRAL, "neutral"},
	        {SPF_RES_PASS, "pass"},
	        {SPF_RES_FAIL, "fail"},
	        {SPF_RES_SOFTFAIL, "softfail"},
	        {SPF_RES_TEMPERROR, "temperror"},
	        {SPF_RES_PERMERROR, "permerror"},
	        {(enum spf_res)99, "permerror"},
	};

	t_begin("spf_res_name");
	for (size_t i = 0; i < ARRAY_LEN(cases); i++)
		T_STREQ(spf_res_name(cases[i].r), cases[i].want);
	t_end();
}

static void
test_sanitize(void)
{
	static const struct {
		const char *in;
		size_t outlen;
		const char *want;
	} cases[] = {
	        {"plain text", 64, "plain text"},
	        {"two\r\n250 ok", 64, "two  250 ok"},
	        {"tab\there", 64, "tab here"},
	        {"caf\xc3\xa9", 64, "caf??"},
	        {"\x01\x7f", 64, "??"},
	        {"truncated here", 10, "truncated"},
	        {"", 4, ""},
	};
	char out[64];

	t_begin("spf_sanitize");
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		spf_sanitize(out, cases[i].outlen, cases[i].in);
		T_STREQ(out, cases[i].want);
	}
	spf_sanitize(out, sizeof(out), NULL);
	T_STREQ(out, "");
	out[0] = 'x';
	spf_sanitize(out, 0, "abc"); /* no room: untouched */
	T_CHECK(out[0] == 'x', "wrote into a 0-byte buffer");
	t_end();
}

static void
test_auth_results(void)
{
	struct mailpath from = {0};
	struct ipaddr ip;
	char out[1200];

	ipaddr_parse(&ip, "192.0.2.7");
	strcpy(from.local, "alice");
	strcpy(from.domain, "example.org");

	t_begin("auth-results pass with iprev");
	spf_auth_results(out, sizeof(out), "mx.example.net", SPF_RES_PASS,
	                 &from, "h.example.org", &ip, "mail.example.org",
	                 false);
	T_STREQ(out, "Authentication-Results: mx.example.net; spf=pass "
	             "smtp.mailfrom=alice@example.org; iprev=pass "
	             "policy.iprev=192.0.2.7 (mail.example.org)\r\n");
	t_end();

	t_begin("auth-results no iprev, null sender uses helo");
	from.null = true;
	spf_auth_results(out, sizeof(out), "mx.example.net", SPF_RES_FAIL,
	                 &from, "h.example.org", &ip, NULL, false);
	T_STREQ(out, "Authentication-Results: mx.example.net; spf=fail "
	             "smtp.helo=h.example.org\r\n");
	from.null = false;
	t_end();

	t_begin("auth-results iprev fail and temperror");
	spf_auth_results(out, sizeof(out), "mx", SPF_RES_NONE, &from, "h", &ip,
	                 "", false);
	T_CHECK(strstr(out, "; iprev=fail policy.iprev=192.0.2.7\r\n"),
	        "got %s", out);
	spf_auth_results(out, sizeof(out), "mx", SPF_RES_NONE, &from, "h", &ip,
	                 "", true);
	T_CHECK(strstr(out, "; iprev=temperror policy.iprev=192.0.2.7\r\n"),
	        "got %s", out);
	t_end();

	t_begin("auth-results hostile values stay one line");
	strcpy(from.local, "a;b\"c"); /* not safe: the local part goes */
	strcpy(from.domain, "evil.test\r\nX-Injected: 1");
	spf_auth_results(out, sizeof(out), "mx\r\nBcc: x", SPF_RES_PASS, &from,
	                 "h", &ip, "ptr.test\r\n(x); y", false);
	T_CHECK(printable(out, true), "not one printable line: %s", out);
	T_INTEQ(count(out, "\r\n"), 1);
	T_CHECK(strstr(out, "smtp.mailfrom=evil.testX-Injected1") != NULL,
	        "got %s", out);
	T_CHECK(strstr(out, "a;b") == NULL, "unsafe local part kept: %s", out);
	T_CHECK(strstr(out, "(ptr.testxy)") != NULL, "got %s", out);
	t_end();

	t_begin("auth-results quoted local part dropped");
	strcpy(from.local, "john doe");
	strcpy(from.domain, "example.org");
	from.quoted = true;
	spf_auth_results(out, sizeof(out), "mx", SPF_RES_SOFTFAIL, &from, "h",
	                 &ip, NULL, false);
	T_STREQ(out, "Authentication-Results: mx; spf=softfail "
	             "smtp.mailfrom=example.org\r\n");
	t_end();
}

struct res {
	int calls;
	int rc;
	struct spf_outcome out;
};

static void
res_cb(void *arg, const struct spf_outcome *out, int rc)
{
	struct res *r = arg;

	r->calls++;
	r->rc = rc;
	r->out = *out;
}

/* run_eval - start q and run the loop until its callback. */
static int
run_eval(uv_loop_t *loop, const struct spf_query *q, struct res *r)
{
	int rc;

	memset(r, 0, sizeof(*r));
	rc = spf_eval_start(loop, q, res_cb, r);
	if (rc < 0)
		return rc;
	T_INTEQ(r->calls, 0); /* never from spf_eval_start() */
	while (r->calls == 0)
		uv_run(loop, UV_RUN_ONCE);
	return 0;
}

static void
test_eval_errors(void)
{
	uv_loop_t *loop = uv_default_loop();
	struct config cfg = {0};
	struct spf_query q = {0};
	struct res r;

	cfg.dns_servers = "127.0.0.1:1";
	cfg.dns_timeout_ms = 300;
	T_INTEQ(dns_init(loop, &cfg), 0);

	t_begin("spf_eval_start bad address family");
	q.client.family = AF_UNIX;
	q.sender = "a@example.org";
	T_INTEQ(spf_eval_start(loop, &q, res_cb, &r), -EINVAL);
	t_end();

	t_begin("spf_eval no identity is none");
	ipaddr_parse(&q.client, "192.0.2.1");
	q.sender = "";
	q.helo = "";
	T_INTEQ(run_eval(loop, &q, &r), 0);
	T_INTEQ(r.rc, 0);
	T_INTEQ(r.calls, 1);
	T_STREQ(spf_res_name(r.out.result), "none");
	t_end();

	t_begin("spf_eval resolver unreachable is temperror");
	q.sender = "a@example.org";
	q.helo = "h.example.org";
	q.timeout_ms = 300;
	T_INTEQ(run_eval(loop, &q, &r), 0);
	T_INTEQ(r.rc, 0);
	T_STREQ(spf_res_name(r.out.result), "temperror");
	T_STREQ(r.out.domain, "example.org");
	T_CHECK(!r.out.helo_identity, "mail from identity expected");
	T_CHECK(r.out.dns_queries >= 1, "the TXT query went to dns.c");
	t_end();

	t_begin("spf_eval temporary failures are not fetched again");
	/* dns.c does not cache a failure; the evaluation keeps it: the
	 * second run sees it and ends (no loop of refetches). */
	T_INTEQ(r.out.dns_queries, 1);
	T_INTEQ(r.out.runs, 2);
	t_end();
	dns_shutdown();
	uv_run(loop, UV_RUN_DEFAULT);
}

int
main(void)
{
	test_res_names();
	test_sanitize();
	test_auth_results();
	test_eval_errors();
	return t_exit();
}
