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
 * sender_mx: the domain must be able to receive mail.  An MX query; a
 * null MX (RFC 7505: the record ".") -> "Sender domain does not accept
 * mail (null MX): dom".  Otherwise the A and AAAA of its MX hosts (the
 * SENDER_MAX_HOSTS of lowest preference): one host with an address a mail
 * server can be reached at -> pass.  Not reachable: unspecified (0/8,
 * ::), loopback, link-local, multicast, reserved (240/4, ::/8), the
 * documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24,
 * 2001:db8::/32), and unless sender_mx_private = yes the private ranges
 * (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7); an IPv4-mapped
 * address is judged as IPv4.  No host reachable -> "Sender domain cannot
 * receive mail: its MX host H resolves only to 127.0.0.1 (loopback)" or
 * "... its MX host H does not exist" / "has no address" (a host with
 * refused addresses is named before one without any).  NXDOMAIN, or no
 * MX with sender_mx = mx (the default) -> "Sender domain has no MX
 * record: dom".  With sender_mx = mx-or-a a domain without MX passes when
 * its own A/AAAA (asked at once with the MX) include a reachable address
 * (the RFC 5321 5.1 implicit MX); only refused ones -> "Sender domain
 * cannot receive mail: dom resolves only to ...".  SERVFAIL or timeout of
 * the MX query, or of an address query when no host was found reachable
 * -> CHK_TEMPERR "Temporary DNS failure resolving the sender domain dom",
 * which the verdict turns into 451 4.4.3.  Tests' DNS worlds give their
 * MX hosts addresses outside the refused ranges (198.18.0.0/15, the
 * benchmarking range); nothing is ever connected to.
 * Stage MAIL; reads sender_mx, sender_mx_private, tld_list.
 */
#include <arpa/nameser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define SENDER_MAX_HOSTS 10 /* MX hosts looked up (lowest preferences) */
#define SENDER_MX_SCAN 64   /* MX records considered (dns.c keeps 64) */

/* What the A/AAAA answers of one name (an MX host, or the domain for the
 * implicit MX) said. */
struct sender_addrs {
	char name[256];
	enum dns_status a, aaaa;
	bool reachable;   /* one address a mail server can be reached at */
	char refused[96]; /* the first refused address: "127.0.0.1 (loopback)"
	                   */
};

struct sender_req {
	struct chk_ticket t;
	char dom[256];
	int pending;
	bool mx_or_a, allow_private;
	enum dns_status mx;
	bool null_mx;
	struct sender_addrs self;                   /* the domain's A/AAAA */
	struct sender_addrs host[SENDER_MAX_HOSTS]; /* its MX hosts' */
	int n_host;
};

/* One A or AAAA query of a request. */
struct sender_sub {
	struct sender_req *r;
	struct sender_addrs *ad;
	int type;
};

/* sender_v4_refused - why a mail server cannot be at v4 (network
 * order bytes), or NULL. */
static const char *
sender_v4_refused(const unsigned char *b, bool allow_private)
{
	if (b[0] == 0)
		return "unspecified";
	if (b[0] == 127)
		return "loopback";
	if (b[0] == 169 && b[1] == 254)
		return "link-local";
	if (b[0] >= 224 && b[0] <= 239)
		return "multicast";
	if (b[0] >= 240)
		return "reserved";
	if ((b[0] == 192 && b[1] == 0 && b[2] == 2) ||
	    (b[0] == 198 && b[1] == 51 && b[2] == 100) ||
	    (b[0] == 203 && b[1] == 0 && b[2] == 113))
		return "documentation";
	if (allow_private)
		return NULL;
	if (b[0] == 10 || (b[0] == 172 && (b[1] & 0xf0) == 16) ||
	    (b[0] == 192 && b[1] == 168) ||
	    (b[0] == 100 && (b[1] & 0xc0) == 64))
		return "private";
	return NULL;
}

/* sender_v6_refused - the same for an IPv6 address. */
static const char *
sender_v6_refused(const struct in6_addr *a, bool allow_private)
{
	const unsigned char *b = a->s6_addr;

	if (IN6_IS_ADDR_V4MAPPED(a))
		return sender_v4_refused(b + 12, allow_private);
	if (IN6_IS_ADDR_UNSPECIFIED(a))
		return "unspecified";
	if (IN6_IS_ADDR_LOOPBACK(a))
		return "loopback";
	if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80)
		return "link-local";
	if (b[0] == 0xff)
		return "multicast";
	if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0x0d && b[3] == 0xb8)
		return "documentation";
	if (b[0] == 0) /* ::/8: IPv4-compatible and other reserved forms */
		return "reserved";
	if (!allow_private && (b[0] & 0xfe) == 0xfc)
		return "private";
	return NULL;
}

static void sender_finish(struct sender_req *r);

/* sender_addrs_cb - an A or AAAA answer for one name. */
static void
sender_addrs_cb(void *arg, const struct dns_answer *a)
{
	struct sender_sub *sub = arg;
	struct sender_req *r = sub->r;
	struct sender_addrs *ad = sub->ad;
	int i;

	if (sub->type == ns_t_a)
		ad->a = a->status;
	else
		ad->aaaa = a->status;
	for (i = 0; i < a->n && a->status == DNS_OK && !ad->reachable; i++) {
		struct ipaddr ip = {0};
		const char *why;
		char txt[INET6_ADDRSTRLEN];

		if (sub->type == ns_t_a) {
			ip.family = AF_INET;
			ip.u.v4 = a->rr[i].u.a;
			why = sender_v4_refused((const unsigned char *)&ip.u.v4,
			                        r->allow_private);
		} else {
			ip.family = AF_INET6;
			ip.u.v6 = a->rr[i].u.aaaa;
			why = sender_v6_refused(&ip.u.v6, r->allow_private);
		}
		if (why == NULL) {
			ad->reachable = true;
		} else if (ad->refused[0] == '\0') {
			ipaddr_format(&ip, txt, sizeof(txt));
			snprintf(ad->refused, sizeof(ad->refused), "%s (%s)",
			         txt, why);
		}
	}
	free(sub);
	if (--r->pending == 0)
		sender_finish(r);
}

/* sender_addrs_start - A and AAAA of ad->name, counted in r->pending. */
static void
sender_addrs_start(struct sender_req *r, struct sender_addrs *ad)
{
	static const int types[2] = {ns_t_a, ns_t_aaaa};
	int i;

	ad->a = ad->aaaa = DNS_TEMPFAIL;
	for (i = 0; i < 2; i++) {
		struct sender_sub *sub = xcalloc(1, sizeof(*sub));

		sub->r = r;
		sub->ad = ad;
		sub->type = types[i];
		r->pending++;
		if (dns_query(ad->name, types[i], sender_addrs_cb, sub) < 0) {
			free(sub);
			r->pending--;
		}
	}
}

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

/* sender_unreachable - the 550 for a domain whose mail servers cannot
 * be reached: ad is the MX host (mx) or the domain itself. */
static void
sender_unreachable(struct session *s, const struct sender_req *r,
                   const struct sender_addrs *ad, bool mx)
{
	char text[256], what[96];

	if (mx)
		snprintf(what, sizeof(what), "its MX host %.60s", ad->name);
	else
		snprintf(what, sizeof(what), "%.60s", ad->name);
	if (ad->refused[0])
		snprintf(text, sizeof(text),
		         "Sender domain cannot receive mail: %s resolves only "
		         "to %s",
		         what, ad->refused);
	else
		snprintf(text, sizeof(text),
		         "Sender domain cannot receive mail: %s %s", what,
		         ad->a == DNS_NXDOMAIN ? "does not exist"
		                               : "has no address");
	chk_set(s, CHK_SENDER_MX, CHK_FAIL, "550 5.7.1", text,
	        "domain=%s %s=%s %s", r->dom, mx ? "mx_host" : "implicit_mx",
	        ad->name,
	        ad->refused[0]
	                ? ad->refused
	                : (ad->a == DNS_NXDOMAIN ? "NXDOMAIN" : "no address"));
}

/* sender_judge_mx - the MX hosts' addresses are in: one reachable host
 * passes; else a temporary failure tempfails; else the domain cannot
 * receive mail (a host with refused addresses is named first, then one
 * that does not exist). */
static void
sender_judge_mx(struct session *s, const struct sender_req *r)
{
	const struct sender_addrs *bad = NULL, *gone = NULL;
	bool temp = false;
	int i;

	for (i = 0; i < r->n_host; i++) {
		const struct sender_addrs *h = &r->host[i];

		if (h->reachable) {
			chk_set(s, CHK_SENDER_MX, CHK_PASS, NULL, "",
			        "domain=%s MX %s", r->dom, h->name);
			return;
		}
		if (h->a == DNS_TEMPFAIL || h->aaaa == DNS_TEMPFAIL)
			temp = true;
		else if (h->refused[0] && bad == NULL)
			bad = h;
		else if (gone == NULL)
			gone = h;
	}
	if (temp || (bad == NULL && gone == NULL))
		sender_tempfail(s, r->dom, "MX host address lookup failed");
	else
		sender_unreachable(s, r, bad ? bad : gone, true);
}

/* sender_finish - every answer is in: decide. */
static void
sender_finish(struct sender_req *r)
{
	struct session *s = chk_ticket_session(&r->t);
	const struct sender_addrs *self = &r->self;
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
		sender_judge_mx(s, r);
	} else if (r->mx == DNS_TEMPFAIL) {
		sender_tempfail(s, r->dom, "MX lookup failed");
	} else if (r->mx_or_a && r->mx == DNS_NODATA && self->reachable) {
		chk_set(s, CHK_SENDER_MX, CHK_PASS, NULL, "",
		        "domain=%s implicit MX (A/AAAA)", r->dom);
	} else if (r->mx_or_a && r->mx == DNS_NODATA &&
	           (self->a == DNS_TEMPFAIL || self->aaaa == DNS_TEMPFAIL)) {
		sender_tempfail(s, r->dom, "A/AAAA lookup failed");
	} else if (r->mx_or_a && r->mx == DNS_NODATA && self->refused[0]) {
		sender_unreachable(s, r, self, false);
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

/* sender_mx_cb - the MX answer: a null MX, or the hosts to look up (the
 * SENDER_MAX_HOSTS of lowest preference, each name once). */
static void
sender_mx_cb(void *arg, const struct dns_answer *a)
{
	struct sender_req *r = arg;
	bool used[SENDER_MX_SCAN] = {false};
	int i, j;

	r->mx = a->status;
	for (i = 0; i < a->n && a->status == DNS_OK; i++) {
		const char *h = a->rr[i].u.mx.host;

		if (h == NULL || h[0] == '\0' || strcmp(h, ".") == 0)
			r->null_mx = true;
	}
	while (a->status == DNS_OK && !r->null_mx &&
	       r->n_host < SENDER_MAX_HOSTS) {
		int best = -1;

		for (i = 0; i < a->n && i < SENDER_MX_SCAN; i++)
			if (!used[i] &&
			    (best < 0 ||
			     a->rr[i].u.mx.pref < a->rr[best].u.mx.pref))
				best = i;
		if (best < 0)
			break;
		used[best] = true;
		for (j = 0; j < r->n_host; j++)
			if (strcmp(r->host[j].name, a->rr[best].u.mx.host) == 0)
				break;
		if (j < r->n_host)
			continue;
		snprintf(r->host[r->n_host].name, sizeof(r->host[0].name), "%s",
		         a->rr[best].u.mx.host);
		sender_addrs_start(r, &r->host[r->n_host]);
		r->n_host++;
	}
	if (--r->pending == 0)
		sender_finish(r);
}

/* sender_mx_start - MX (and, for mx-or-a, the domain's A and AAAA at
 * once); the MX hosts' A and AAAA when the MX answer is in. */
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
	r->allow_private = s->cfg->sender_mx_private;
	r->mx = DNS_TEMPFAIL;
	r->self.a = r->self.aaaa = DNS_TEMPFAIL;
	/* one extra count until every first query is started */
	r->pending = 2;
	if (dns_query(dom, ns_t_mx, sender_mx_cb, r) < 0)
		r->pending--;
	if (r->mx_or_a) {
		snprintf(r->self.name, sizeof(r->self.name), "%s", dom);
		sender_addrs_start(r, &r->self);
	}
	if (--r->pending == 0) {
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
