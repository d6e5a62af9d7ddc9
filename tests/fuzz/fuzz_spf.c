/*
 * fuzz_spf.c - libFuzzer harness for the SPF path: the project's patched
 * libspf2 (record compiler, macro compiler and expander, interpreter) fed
 * with attacker-controlled records, explanations and identities.
 *
 * The input is split at '\n' into fields (missing ones are empty):
 *   0  the TXT record of the sender domain fuzz.test
 *   1  the TXT record of exp.fuzz.test (explanations)
 *   2  the TXT record of inc.fuzz.test (include:/redirect= target)
 *   3  the local part of the sender ("" = null sender: HELO identity)
 *   4  the HELO name
 *   5  a record compiled and expanded on its own (SPF_record_compile)
 *   6  an explanation compiled and expanded on its own (compile_macro)
 * and an odd input length picks an IPv6 client, an even one IPv4.  DNS answers
 * come from libspf2's zone layer (no network): A/AAAA/MX/PTR records for the
 * usual names so the a, mx, ptr, exists, include and redirect paths all run.
 * Whatever the bytes: no crash, no out-of-bounds access, no leak, and the
 * explanation through spf_sanitize() is printable ASCII.
 *
 * tests/fuzz/run.sh builds this against build/spf2-host (uninstrumented
 * libspf2); tests/spf/run.sh also builds it against an ASan/UBSan-built
 * libspf2 (firmware/libspf2.sh ... EXTRA_CFLAGS) and runs it for a while.
 * Seeds: tests/fuzz/seeds/spf/.
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HAVE_NS_TYPE 1
#define HAVE_NETDB_H 1
#include <spf2/spf.h>
#include <spf2/spf_dns.h>
#include <spf2/spf_dns_zone.h>

#include "proxy.h"

#define NFIELDS 7

/* As libspf2's internal SPF_macro_data(): the data follows the header. */
static SPF_data_t *
fuzz_macro_data(SPF_macro_t *mac)
{
	return (SPF_data_t *)((char *)mac + sizeof(SPF_macro_t));
}

/* quiet_cb - libspf2's warnings would only slow the fuzzer down. */
static void
quiet_cb(const char *file, int line, const char *errmsg)
{
}

/* zone_add - one record into the zone layer. */
static void
zone_add(SPF_dns_server_t *z, const char *name, ns_type t, const char *v)
{
	SPF_dns_zone_add_str(z, name, t, NETDB_SUCCESS, v);
}

/* zone_new - the fixed part of the zone plus the fuzzed TXT records. */
static SPF_dns_server_t *
zone_new(char **f)
{
	SPF_dns_server_t *z = SPF_dns_zone_new(NULL, "fuzz", 0);

	if (z == NULL)
		return NULL;
	zone_add(z, "fuzz.test", ns_t_txt, f[0]);
	zone_add(z, "exp.fuzz.test", ns_t_txt, f[1]);
	zone_add(z, "inc.fuzz.test", ns_t_txt, f[2]);
	zone_add(z, "fuzz.test", ns_t_a, "192.0.2.1");
	zone_add(z, "fuzz.test", ns_t_aaaa, "2001:db8::1");
	zone_add(z, "fuzz.test", ns_t_mx, "mx.fuzz.test");
	zone_add(z, "mx.fuzz.test", ns_t_a, "192.0.2.2");
	zone_add(z, "mx.fuzz.test", ns_t_aaaa, "2001:db8::2");
	zone_add(z, "2.2.0.192.in-addr.arpa", ns_t_ptr, "mx.fuzz.test");
	zone_add(z, "helo.test", ns_t_txt, "v=spf1 a -all");
	zone_add(z, "helo.test", ns_t_a, "192.0.2.2");
	return z;
}

/* run_query - one full check_host() through the zone. */
static void
run_query(char **f, bool v6)
{
	SPF_dns_server_t *z = zone_new(f);
	SPF_server_t *srv;
	SPF_request_t *req;
	SPF_response_t *resp = NULL;
	char from[400], clean[256];
	const char *exp;

	if (z == NULL)
		return;
	srv = SPF_server_new_dns(z, 0);
	if (srv == NULL) {
		SPF_dns_free(z);
		return;
	}
	SPF_server_set_rec_dom(srv, "mx.mailmoat.test");
	req = SPF_request_new(srv);
	if (v6) {
		struct in6_addr a;

		inet_pton(AF_INET6, "2001:db8::2", &a);
		SPF_request_set_ipv6(req, a);
	} else {
		struct in_addr a;

		inet_pton(AF_INET, "192.0.2.2", &a);
		SPF_request_set_ipv4(req, a);
	}
	SPF_request_set_helo_dom(req, f[4][0] ? f[4] : "helo.test");
	snprintf(from, sizeof(from), "%s@fuzz.test", f[3]);
	SPF_request_set_env_from(req, f[3][0] ? from : "");
	SPF_request_query_mailfrom(req, &resp);
	if (resp != NULL) {
		exp = SPF_response_get_explanation(resp);
		spf_sanitize(clean, sizeof(clean), exp);
		for (size_t i = 0; clean[i]; i++)
			if (clean[i] < 0x20 || clean[i] > 0x7e)
				abort();
		(void)SPF_response_get_received_spf(resp);
		(void)SPF_response_get_header_comment(resp);
		SPF_response_free(resp);
	}
	SPF_request_free(req);
	SPF_server_free(srv); /* a server_new_dns() leaves the layer */
	SPF_dns_free(z);
}

/* run_compile - the compiler and expander on their own. */
static void
run_compile(char **f)
{
	SPF_server_t *srv = SPF_server_new(SPF_DNS_ZONE, 0);
	SPF_request_t *req;
	SPF_response_t *resp;
	SPF_record_t *rec = NULL;
	SPF_macro_t *mac = NULL;
	char *buf = NULL;
	size_t len = 0;
	struct in_addr a;

	if (srv == NULL)
		return;
	req = SPF_request_new(srv);
	inet_pton(AF_INET, "192.0.2.3", &a);
	SPF_request_set_ipv4(req, a);
	SPF_request_set_helo_dom(req, "helo.test");
	SPF_request_set_env_from(req, "some-body+tag@sub.fuzz.test");
	resp = SPF_response_new(req);
	if (SPF_record_compile(srv, resp, &rec, f[5]) == SPF_E_SUCCESS &&
	    rec != NULL)
		SPF_record_stringify(rec, &buf, &len);
	if (rec != NULL)
		SPF_record_free(rec);
	SPF_response_free(resp);
	resp = SPF_response_new(req);
	if (SPF_record_compile_macro(srv, resp, &mac, f[6]) == SPF_E_SUCCESS &&
	    mac != NULL)
		SPF_record_expand_data(srv, req, resp, fuzz_macro_data(mac),
		                       mac->macro_len, &buf, &len);
	if (mac != NULL)
		SPF_macro_free(mac);
	free(buf);
	SPF_response_free(resp);
	SPF_request_free(req);
	SPF_server_free(srv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* LLVMFuzzerTestOneInput - split the input, run both paths. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool once;
	char *copy = malloc(size + 1), *f[NFIELDS], *p;
	int i;

	if (!once) {
		SPF_warning_handler = quiet_cb;
		SPF_info_handler = quiet_cb;
		SPF_debug_handler = quiet_cb;
		once = true;
	}
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	p = copy;
	for (i = 0; i < NFIELDS; i++) {
		f[i] = p ? p : "";
		if (p && (p = strchr(p, '\n')) != NULL)
			*p++ = '\0';
	}
	run_query(f, size & 1);
	run_compile(f);
	free(copy);
	return 0;
}
