/*
 * fuzz_dns.c - libFuzzer harness for dns.c's answer parser (dns_parse),
 * the code that reads what the network sends back.
 *
 * Input: byte 0 picks the record type asked for (A, AAAA, MX, PTR, TXT,
 * CNAME); the rest is the DNS message.  Checked: -EBADMSG or a
 * well-formed answer (known status, 0..64 records, names and texts
 * NUL-terminated and under the RFC limits, TTL clamped to a day, no
 * records unless DNS_OK); and parsing is deterministic.  ASan/UBSan do
 * the rest (reads past the end, pointer loops, leaks).
 * Seeds: tests/fuzz/seeds/dns/ (answers recorded from nsd with dnslib).
 */
#include <arpa/nameser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

static const int types[] = {ns_t_a,   ns_t_aaaa, ns_t_mx,
                            ns_t_ptr, ns_t_txt,  ns_t_cname};

/* same - two parses of the same input agree. */
static void
same(const struct dns_answer *a, const struct dns_answer *b)
{
	if (a->status != b->status || a->n != b->n || a->ttl != b->ttl)
		abort();
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct dns_answer *a = NULL, *b = NULL;
	int type, rc, i;

	if (size < 1)
		return 0;
	type = types[data[0] % ARRAY_LEN(types)];
	rc = dns_parse(data + 1, size - 1, type, &a);
	if (rc != 0) {
		if (rc != -EBADMSG || a != NULL)
			abort();
		return 0;
	}
	if (a == NULL || a->n < 0 || a->n > 64 || a->ttl > 86400 ||
	    a->status < DNS_OK || a->status > DNS_TEMPFAIL || a->type != type)
		abort();
	if (a->n > 0 && a->status != DNS_OK)
		abort();
	if (a->status == DNS_OK && a->n == 0)
		abort();
	for (i = 0; i < a->n; i++) {
		switch (type) {
		case ns_t_mx:
			if (strlen(a->rr[i].u.mx.host) > 255)
				abort();
			break;
		case ns_t_ptr:
		case ns_t_cname:
			if (strlen(a->rr[i].u.name) > 255)
				abort();
			break;
		case ns_t_txt:
			if (strlen(a->rr[i].u.txt) > 65535)
				abort();
			break;
		}
	}
	if (dns_parse(data + 1, size - 1, type, &b) != 0)
		abort();
	same(a, b);
	dns_answer_free(a);
	dns_answer_free(b);
	return 0;
}
