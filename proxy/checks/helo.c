/*
 * helo.c - check "helo": the EHLO/HELO argument must be a fully qualified
 * domain name with a TLD registered at IANA, or an address literal equal
 * to the client's address, and must not claim to be us.
 *
 * Public: chk_helo (check.h); helo_judge() (proxy.h, the pure part, for
 * tests).
 *
 * Order of the tests (the first failure is the reply, always "550 5.7.1"):
 * empty / bare word / localhost / bad label syntax -> "Invalid HELO name
 * (not a fully qualified domain name): X"; our hostname, one of
 * local_domains, or a literal of one of local_addresses -> "HELO name
 * claims to be us"; a literal that is not the client's address -> "HELO
 * address literal does not match your IP"; an unregistered TLD -> "HELO
 * name has an unregistered TLD".  With helo_resolve the name must then
 * have an A or AAAA record (NXDOMAIN/none: "HELO name does not resolve:
 * X"; a temporary failure: CHK_TEMPERR).  Stage HELO; reads hostname,
 * local_domains, local_addresses, helo_resolve, tld_list.
 */
#include <arpa/nameser.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* The A/AAAA lookup of helo_resolve. */
struct helo_req {
	struct chk_ticket t;
	char name[256];
	int pending;
	enum dns_status a, aaaa;
};

/* helo_label_ok - an RFC 1035 label (letters, digits, inner hyphens). */
static bool
helo_label_ok(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '-'))
			return false;
	}
	return true;
}

/* helo_fqdn_ok - labels, at least one dot, at most 253 chars, the TLD
 * not all digits. */
static bool
helo_fqdn_ok(const char *name)
{
	const char *p = name, *dot;
	size_t n = strlen(name);
	bool any_dot = false, tld_alpha = false;

	if (n == 0 || n > 253)
		return false;
	for (;;) {
		dot = strchr(p, '.');
		size_t l = dot ? (size_t)(dot - p) : strlen(p);

		if (!helo_label_ok(p, l))
			return false;
		if (dot == NULL) {
			for (size_t i = 0; i < l; i++)
				if (!(p[i] >= '0' && p[i] <= '9'))
					tld_alpha = true;
			break;
		}
		any_dot = true;
		p = dot + 1;
	}
	return any_dot && tld_alpha;
}

/* helo_tld - the last label of name. */
static const char *
helo_tld(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot ? dot + 1 : name;
}

/*
 * helo_judge - the syntax and policy part, no DNS.  Returns CHK_PASS or
 * CHK_FAIL with the reply text in text (without code).
 */
int
helo_judge(const struct config *cfg, const struct ipaddr *client,
           const char *helo, char *text, size_t textlen)
{
	char low[256];
	size_t n = helo ? strlen(helo) : 0;
	int i;

	text[0] = '\0';
	if (n == 0) {
		snprintf(text, textlen, "Invalid HELO name (empty)");
		return CHK_FAIL;
	}
	if (n >= sizeof(low)) {
		snprintf(text, textlen,
		         "Invalid HELO name (not a fully qualified domain "
		         "name): %.60s...",
		         helo);
		return CHK_FAIL;
	}
	memcpy(low, helo, n + 1);
	util_lowercase(low);

	if (low[0] == '[') {
		struct ipaddr lit;
		char inner[256];
		const char *a = low + 1;

		if (low[n - 1] != ']' || n < 3)
			goto bad_literal;
		memcpy(inner, low + 1, n - 2);
		inner[n - 2] = '\0';
		a = inner;
		if (strncmp(inner, "ipv6:", 5) == 0) {
			a = inner + 5;
			if (ipaddr_parse(&lit, a) < 0 || !strchr(a, ':'))
				goto bad_literal;
		} else if (strchr(inner, ':') || ipaddr_parse(&lit, a) < 0 ||
		           lit.family != AF_INET) {
			goto bad_literal;
		}
		for (i = 0; i < cfg->n_local_addresses; i++)
			if (ipaddr_equal(&lit, &cfg->local_addresses[i])) {
				snprintf(text, textlen,
				         "HELO name claims to be us");
				return CHK_FAIL;
			}
		if (!ipaddr_equal(&lit, client)) {
			snprintf(text, textlen,
			         "HELO address literal does not match your IP");
			return CHK_FAIL;
		}
		return CHK_PASS;
	bad_literal:
		snprintf(text, textlen, "Invalid HELO address literal: %s",
		         helo);
		return CHK_FAIL;
	}

	if (strcmp(low, "localhost") == 0 ||
	    strncmp(low, "localhost.", 10) == 0 || !helo_fqdn_ok(low)) {
		snprintf(text, textlen,
		         "Invalid HELO name (not a fully qualified domain "
		         "name): %s",
		         helo);
		return CHK_FAIL;
	}
	if (cfg->hostname && util_strcaseeq(low, cfg->hostname)) {
		snprintf(text, textlen, "HELO name claims to be us");
		return CHK_FAIL;
	}
	for (i = 0; i < cfg->local_domains.n; i++)
		if (util_strcaseeq(low, cfg->local_domains.v[i])) {
			snprintf(text, textlen, "HELO name claims to be us");
			return CHK_FAIL;
		}
	if (!tld_registered(helo_tld(low))) {
		/* the text as SPEC'd; the name is in the log detail */
		snprintf(text, textlen, "HELO name has an unregistered TLD");
		return CHK_FAIL;
	}
	return CHK_PASS;
}

/* helo_finish - both answers are in. */
static void
helo_finish(struct helo_req *r)
{
	struct session *s = chk_ticket_session(&r->t);
	char text[192];

	if (s == NULL)
		goto out;
	if (r->a == DNS_OK || r->aaaa == DNS_OK) {
		chk_set(s, CHK_HELO, CHK_PASS, NULL, "", "helo=%s resolves",
		        r->name);
	} else if (r->a == DNS_TEMPFAIL || r->aaaa == DNS_TEMPFAIL) {
		chk_set(s, CHK_HELO, CHK_TEMPERR, NULL,
		        "Temporary DNS failure resolving your HELO name",
		        "helo=%s lookup failed", r->name);
	} else {
		snprintf(text, sizeof(text),
		         "HELO name does not resolve: %.150s", r->name);
		chk_set(s, CHK_HELO, CHK_FAIL, "550 5.7.1", text, "helo=%s %s",
		        r->name,
		        r->a == DNS_NXDOMAIN ? "NXDOMAIN" : "no A/AAAA");
	}
	sess_check_done(s, CHK_HELO);
out:
	free(r);
}

/* helo_a_cb / helo_aaaa_cb - one answer of helo_resolve. */
static void
helo_a_cb(void *arg, const struct dns_answer *a)
{
	struct helo_req *r = arg;

	r->a = a->status;
	if (--r->pending == 0)
		helo_finish(r);
}

static void
helo_aaaa_cb(void *arg, const struct dns_answer *a)
{
	struct helo_req *r = arg;

	r->aaaa = a->status;
	if (--r->pending == 0)
		helo_finish(r);
}

/* helo_start - judge the name; resolve it when helo_resolve asks. */
static void
helo_start(struct session *s)
{
	char text[192];
	struct helo_req *r;
	int st;

	st = helo_judge(s->cfg, &s->client, s->helo, text, sizeof(text));
	if (st != CHK_PASS) {
		chk_set(s, CHK_HELO, st, "550 5.7.1", text, "helo=%s", s->helo);
		chk_done_later(s, CHK_HELO);
		return;
	}
	if (!s->cfg->helo_resolve || s->helo[0] == '[') {
		chk_set(s, CHK_HELO, CHK_PASS, NULL, "", "helo=%s", s->helo);
		chk_done_later(s, CHK_HELO);
		return;
	}
	r = xcalloc(1, sizeof(*r));
	r->t = chk_ticket_make(s, CHK_HELO);
	snprintf(r->name, sizeof(r->name), "%s", s->helo);
	r->a = r->aaaa = DNS_TEMPFAIL;
	r->pending = 2;
	if (dns_query(r->name, ns_t_a, helo_a_cb, r) < 0)
		r->pending--;
	if (dns_query(r->name, ns_t_aaaa, helo_aaaa_cb, r) < 0)
		r->pending--;
	if (r->pending == 0) {
		free(r);
		chk_set(s, CHK_HELO, CHK_TEMPERR, NULL,
		        "Temporary DNS failure resolving your HELO name",
		        "resolver unavailable");
		chk_done_later(s, CHK_HELO);
	}
}

/* helo_init - the TLD list. */
static int
helo_init(const struct config *cfg, char *err, size_t errlen)
{
	return tld_load(cfg->tld_list, err, errlen);
}

const struct check chk_helo = {
        .name = "helo",
        .id = CHK_HELO,
        .stage = STAGE_HELO,
        .init = helo_init,
        .start = helo_start,
};
