/*
 * spf_driver.c - run SPF queries through the project's SPF path (spf_eval:
 * patched libspf2 + the c-ares DNS layer) for the RFC 7208 suite.
 *
 * Usage: spf_driver DNS_SERVERS TIMEOUT_MS
 * stdin: one query per line, TAB-separated: id, client IP, HELO, MAIL FROM
 * ("" = null sender).  stdout: id, result, explanation, reason per line.
 * The default explanation is "DEFAULT", as in the pyspf test driver.
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

/* main - one spf_eval per input line. */
int
main(int argc, char **argv)
{
	char line[4096];

	if (argc != 3) {
		fprintf(stderr, "usage: %s DNS_SERVERS TIMEOUT_MS\n", argv[0]);
		return 2;
	}
	while (fgets(line, sizeof(line), stdin)) {
		struct spf_query q = {0};
		struct spf_outcome out;
		char *p = line, *id, *ip;

		line[strcspn(line, "\n")] = '\0';
		id = field(&p);
		ip = field(&p);
		q.helo = field(&p);
		q.sender = field(&p);
		q.receiver = "mx.mailmoat.test";
		q.dns_servers = argv[1];
		q.timeout_ms = (unsigned)atoi(argv[2]);
		q.default_exp = "DEFAULT";
		if (ipaddr_parse(&q.client, ip) < 0) {
			printf("%s\terror\t\tbad ip %s\n", id, ip);
			continue;
		}
		if (spf_eval(&q, &out) < 0)
			printf("%s\terror\t\t%s\n", id, out.reason);
		else
			printf("%s\t%s\t%s\t%s\n", id, spf_res_name(out.result),
			       out.explanation, out.reason);
		fflush(stdout);
	}
	return 0;
}
