/*
 * sender.c - checks "sender_tld" and "sender_mx" on the MAIL FROM domain.
 *
 * Public: chk_sender_tld, chk_sender_mx (check.h).
 *
 * smtp.c has already refused a path that is not RFC 5321 syntax; these
 * checks judge its domain.  The null sender <> passes both.
 *
 * sender_tld: the last label must be a TLD registered with IANA (tld.c;
 * the list is data, `tld_list` replaces the built-in copy).  An address
 * literal domain ([1.2.3.4]) has no TLD and fails.
 *
 * sender_mx: an MX query for the domain.  Records -> pass, unless the
 * answer is a null MX (RFC 7505: the single record ".") -> "Sender
 * domain does not accept mail (null MX): dom".  NXDOMAIN, or no MX with
 * sender_mx = mx (the default) -> "Sender domain has no MX record: dom".
 * With sender_mx = mx-or-a a domain without MX passes when it has an A
 * or AAAA record (the RFC 5321 5.1 implicit MX).  SERVFAIL or timeout ->
 * CHK_TEMPERR "Temporary DNS failure resolving the sender domain dom",
 * which the verdict turns into 451 4.4.3.
 * Stage MAIL; reads sender_mx, tld_list.
 */
#include <arpa/nameser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

struct sender_req {
	struct chk_ticket t;
	char dom[256];
	int pending;
	bool mx_or_a;
	enum dns_status mx, a, aaaa;
	bool null_mx;
};

/* sender_tld_start - judge the TLD of the sender domain. */
static void
sender_tld_start(struct session *s)
{
	const char *dom = s->from.domain, *dot;
	char text[192];

	if (!s->has_from || s->from.null || dom[0] == '\0') {
		chk_set(s, CHK_SENDER_TLD, CHK_PASS, NULL, "", "null sender");
	} else if (dom[0] == '[' ||
	           !tld_registered((dot = strrchr(dom, '.')) ? dot + 1 : dom)) {
		snprintf(text, sizeof(text),
		         "Sender domain has an unregistered TLD: %.150s", dom);
		chk_set(s, CHK_SENDER_TLD, CHK_FAIL, "550 5.7.1", text,
		        "domain=%s", dom);
	} else {
		chk_set(s, CHK_SENDER_TLD, CHK_PASS, NULL, "", "domain=%s",
		        dom);
	}
	chk_done_later(s, CHK_SENDER_TLD);
}

/* sender_tempfail - the TEMPERR result for dom. */
static void
sender_tempfail(struct session *s, const char *dom, const char *detail)
{
	char text[192];

	snprintf(text, sizeof(text),
	         "Temporary DNS failure resolving the sender domain %.130s",
	         dom);
	chk_set(s, CHK_SENDER_MX, CHK_TEMPERR, "451 4.4.3", text, "%s", detail);
}

/* sender_finish - every answer is in: decide. */
static void
sender_finish(struct sender_req *r)
{
	struct session *s = chk_ticket_session(&r->t);
	char text[192];

	if (s == NULL)
		goto out;
	if (r->mx == DNS_OK && r->null_mx) {
		snprintf(text, sizeof(text),
		         "Sender domain does not accept mail (null MX): %.140s",
		         r->dom);
		chk_set(s, CHK_SENDER_MX, CHK_FAIL, "550 5.7.1", text,
		        "domain=%s null MX", r->dom);
	} else if (r->mx == DNS_OK) {
		chk_set(s, CHK_SENDER_MX, CHK_PASS, NULL, "", "domain=%s MX",
		        r->dom);
	} else if (r->mx == DNS_TEMPFAIL) {
		sender_tempfail(s, r->dom, "MX lookup failed");
	} else if (r->mx_or_a && r->mx == DNS_NODATA &&
	           (r->a == DNS_OK || r->aaaa == DNS_OK)) {
		chk_set(s, CHK_SENDER_MX, CHK_PASS, NULL, "",
		        "domain=%s implicit MX (A/AAAA)", r->dom);
	} else if (r->mx_or_a && r->mx == DNS_NODATA &&
	           (r->a == DNS_TEMPFAIL || r->aaaa == DNS_TEMPFAIL)) {
		sender_tempfail(s, r->dom, "A/AAAA lookup failed");
	} else {
		snprintf(text, sizeof(text),
		         "Sender domain has no MX record: %.150s", r->dom);
		chk_set(s, CHK_SENDER_MX, CHK_FAIL, "550 5.7.1", text,
		        "domain=%s %s", r->dom,
		        r->mx == DNS_NXDOMAIN ? "NXDOMAIN" : "no MX");
	}
	sess_check_done(s, CHK_SENDER_MX);
out:
	free(r);
}

/* sender_mx_cb - the MX answer. */
static void
sender_mx_cb(void *arg, const struct dns_answer *a)
{
	struct sender_req *r = arg;
	int i;

	r->mx = a->status;
	for (i = 0; i < a->n && a->status == DNS_OK; i++) {
		const char *h = a->rr[i].u.mx.host;

		if (h == NULL || h[0] == '\0' || strcmp(h, ".") == 0)
			r->null_mx = true;
	}
	if (--r->pending == 0)
		sender_finish(r);
}

/* sender_a_cb / sender_aaaa_cb - the implicit-MX answers. */
static void
sender_a_cb(void *arg, const struct dns_answer *a)
{
	struct sender_req *r = arg;

	r->a = a->status;
	if (--r->pending == 0)
		sender_finish(r);
}

static void
sender_aaaa_cb(void *arg, const struct dns_answer *a)
{
	struct sender_req *r = arg;

	r->aaaa = a->status;
	if (--r->pending == 0)
		sender_finish(r);
}

/* sender_mx_start - MX (and, for mx-or-a, A and AAAA at once). */
static void
sender_mx_start(struct session *s)
{
	const char *dom = s->from.domain;
	struct sender_req *r;

	if (!s->has_from || s->from.null || dom[0] == '\0') {
		chk_set(s, CHK_SENDER_MX, CHK_PASS, NULL, "", "null sender");
		chk_done_later(s, CHK_SENDER_MX);
		return;
	}
	if (dom[0] == '[') {
		char text[192];

		snprintf(text, sizeof(text),
		         "Sender domain has no MX record: %.150s", dom);
		chk_set(s, CHK_SENDER_MX, CHK_FAIL, "550 5.7.1", text,
		        "domain=%s address literal", dom);
		chk_done_later(s, CHK_SENDER_MX);
		return;
	}
	r = xcalloc(1, sizeof(*r));
	r->t = chk_ticket_make(s, CHK_SENDER_MX);
	snprintf(r->dom, sizeof(r->dom), "%s", dom);
	r->mx_or_a = s->cfg->sender_mx == SENDER_MX_OR_A;
	r->mx = r->a = r->aaaa = DNS_TEMPFAIL;
	r->pending = 1;
	if (dns_query(dom, ns_t_mx, sender_mx_cb, r) < 0)
		r->pending--;
	if (r->mx_or_a) {
		r->pending += 2;
		if (dns_query(dom, ns_t_a, sender_a_cb, r) < 0)
			r->pending--;
		if (dns_query(dom, ns_t_aaaa, sender_aaaa_cb, r) < 0)
			r->pending--;
	}
	if (r->pending == 0) {
		sender_tempfail(s, dom, "resolver unavailable");
		free(r);
		chk_done_later(s, CHK_SENDER_MX);
	}
}

/* sender_init - the TLD list (shared with helo). */
static int
sender_init(const struct config *cfg, char *err, size_t errlen)
{
	return tld_load(cfg->tld_list, err, errlen);
}

const struct check chk_sender_tld = {
        .name = "sender_tld",
        .id = CHK_SENDER_TLD,
        .stage = STAGE_MAIL,
        .init = sender_init,
        .start = sender_tld_start,
};

const struct check chk_sender_mx = {
        .name = "sender_mx",
        .id = CHK_SENDER_MX,
        .stage = STAGE_MAIL,
        .init = sender_init,
        .start = sender_mx_start,
};
