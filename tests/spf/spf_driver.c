/*
 * spf_driver.c - run SPF queries through the project's SPF path for the
 * RFC 7208 suite: spf_eval_start() (patched libspf2 answered from dns.c's
 * cache) on a small libuv loop with dns.c, exactly as in the daemon.
 *
 * Usage: spf_driver DNS_SERVERS TIMEOUT_MS
 * stdin: one query per line, TAB-separated: id, client IP, HELO, MAIL FROM
 * ("" = null sender).  stdout: id, result, explanation, reason per line.
 * The default explanation is "DEFAULT", as in the pyspf test driver.
 * dns.c's cache is flushed before each query, so every query sees the
 * zone as served, as a fresh evaluation would.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

/* field - the next TAB-separated field of *p (modifies the line). */
static char *
field(char **p)
{
	char *f = *p, *t;

	if (!f)
		return "";
	t = strchr(f, '\t');
	if (t) {
		*t = '\0';
		*p = t + 1;
	} else {
		*p = NULL;
	}
	return f;
}

struct result {
	bool done;
	int rc;
	struct spf_outcome out;
};

/* done_cb - keep the outcome for main. */
static void
done_cb(void *arg, const struct spf_outcome *out, int rc)
{
	struct result *r = arg;

	r->done = true;
	r->rc = rc;
	r->out = *out;
}

/* main - one evaluation per input line. */
int
main(int argc, char **argv)
{
	char line[4096];
	struct config cfg = {0};
	uv_loop_t *loop = uv_default_loop();

	if (argc != 3) {
		fprintf(stderr, "usage: %s DNS_SERVERS TIMEOUT_MS\n", argv[0]);
		return 2;
	}
	cfg.dns_servers = argv[1];
	cfg.dns_timeout_ms = (unsigned)atoi(argv[2]);
	if (dns_init(loop, &cfg) < 0) {
		fprintf(stderr, "%s: bad DNS servers %s\n", argv[0], argv[1]);
		return 2;
	}
	while (fgets(line, sizeof(line), stdin)) {
		struct spf_query q = {0};
		struct result r = {0};
		char *p = line, *id, *ip;

		line[strcspn(line, "\n")] = '\0';
		id = field(&p);
		ip = field(&p);
		q.helo = field(&p);
		q.sender = field(&p);
		q.receiver = "mx.mailmoat.test";
		q.timeout_ms = cfg.dns_timeout_ms;
		q.default_exp = "DEFAULT";
		if (ipaddr_parse(&q.client, ip) < 0) {
			printf("%s\terror\t\tbad ip %s\n", id, ip);
			continue;
		}
		dns_cache_flush();
		if (spf_eval_start(loop, &q, done_cb, &r) < 0) {
			printf("%s\terror\t\tbad query\n", id);
			continue;
		}
		while (!r.done)
			uv_run(loop, UV_RUN_ONCE);
		if (r.rc < 0)
			printf("%s\terror\t\t%s\n", id, r.out.reason);
		else
			printf("%s\t%s\t%s\t%s\n", id,
			       spf_res_name(r.out.result), r.out.explanation,
			       r.out.reason);
		fflush(stdout);
	}
	return 0;
}
