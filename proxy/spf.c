/*
 * spf.c - SPF (RFC 7208) evaluation: the project's patched libspf2 with a
 * DNS layer answered from dns.c's cache, on the event loop.
 *
 *   spf_eval_start(q, fn, arg)  evaluate one identity (MAIL FROM, or
 *                       postmaster@HELO for the null sender); fn(arg,
 *                       outcome, rc) runs later on the loop, never from
 *                       spf_eval_start() itself.  Needs dns_init().
 *   spf_res_name(r)     "pass", "fail", ... (RFC 8601 result names)
 *   spf_sanitize()      network text made safe for replies and headers
 *
 * libspf2 is synchronous.  Its DNS layer here never waits: a lookup is
 * answered from what this evaluation fetched so far, else from dns.c's
 * TTL cache (dns_cache_peek()); anything else is a miss: the layer
 * records the (name, type), answers "try again" (libspf2 stops with
 * temperror), and when the run is over the misses are fetched through
 * dns_query() - the daemon's one c-ares channel, with its cache - and the
 * evaluation runs again from the start once they are all in.  A run
 * without DNS waits costs a few microseconds; SPF has at most 10
 * DNS-querying terms, so a sender seen before (within its TTLs) is one run
 * and no query, a new one a handful of runs.  The names an MX or PTR
 * answer leads to are fetched in the same round as that answer's
 * neighbours' misses (the A/AAAA of every MX host at once).  Every answer
 * an evaluation fetched is kept for its later runs (also temporary
 * failures and TTL 0 answers, which dns.c does not cache), so each run
 * sees the same DNS and libspf2's RFC 7208 limits (10 terms, 2 void
 * lookups, 10 MX/PTR names) apply to each run exactly as to one blocking
 * evaluation.  Bounds: SPF_MAX_RUNS runs, SPF_BUDGET_QUERIES lookups,
 * SPF_BUDGET_FACTOR query timeouts of wall time; past any of them the
 * result is temperror.
 *
 * One libspf2 server object is shared by all evaluations (they run one at
 * a time on the loop); the layer finds the running evaluation through
 * spf_cur.
 *
 * Result mapping from libspf2: SPF_RESULT_INVALID (the record could not be
 * fetched or compiled) becomes temperror when the error is a DNS failure,
 * permerror otherwise.  Explanations (exp=) come from the sender's DNS: they
 * are sanitized (printable ASCII only, bounded) before they leave this file.
 *
 * Reads no config itself: the caller copies dns_timeout_ms and hostname
 * into struct spf_query; servers are dns.c's.
 */
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h> /* before spf2/: its headers use time_t (musl) */

#define HAVE_NS_TYPE 1
#define HAVE_NETDB_H 1
#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#include "proxy.h"

#define SPF_BUDGET_QUERIES 100 /* DNS lookups per run, and fetched in all */
#define SPF_BUDGET_FACTOR 6    /* total time: this many query timeouts */
#define SPF_MAX_RUNS 30        /* evaluations of one query (DNS rounds) */
#define SPF_MAX_MISSES 32      /* names fetched per round */
#define SPF_MAX_PREFETCH 10    /* MX/PTR targets fetched with their answer */
#define MM_SPF_DEFAULT_EXP "mailmoat-default-exp"

/* An answer this evaluation fetched (kept for its later runs). */
struct spf_ans {
	char name[256];
	int type;
	SPF_dns_rr_t *rr;
	struct spf_ans *next;
};

/* A name the current run missed (or will need: MX/PTR targets). */
struct spf_miss {
	char name[256];
	int type;
};

/* One evaluation in progress. */
struct spf_ev {
	char helo[256];
	char sender[512];
	char receiver[256];
	char default_exp[256];
	struct ipaddr client;
	spf_done_fn fn;
	void *arg;
	uv_timer_t timer;  /* runs the evaluation on its own loop turn */
	uint64_t deadline; /* util_now_ms() */
	struct spf_ans *answers;
	unsigned n_answers;
	unsigned pending; /* dns_query() answers still to come */
	unsigned runs;
	unsigned fetched; /* dns_query() calls made */
	unsigned lookups; /* lookups of the current run */
	struct spf_miss miss[SPF_MAX_MISSES];
	unsigned n_miss, n_real; /* n_real: missed by libspf2 itself */
	bool none;               /* no identity: nothing to evaluate */
	struct spf_outcome out;
	int rc;
};

/* A dns_query() of an evaluation in flight. */
struct spf_fetch {
	struct spf_ev *ev;
	char name[256];
	int type;
};

static struct spf_ev *spf_cur; /* the evaluation libspf2 is running */
static SPF_dns_server_t spf_layer;
static SPF_server_t *spf_srv;
static char spf_srv_rec[256], spf_srv_exp[256];
static bool spf_inited;

/* spf_log_quiet_cb - libspf2's warnings and debug output go nowhere: the
 * interesting part ends up in the outcome's reason. */
static void
spf_log_quiet_cb(const char *file, int line, const char *errmsg)
{
}

/* spf_log_error_cb - libspf2 calls this on out of memory or a broken
 * invariant, and expects it not to return. */
static void __attribute__((noreturn))
spf_log_error_cb(const char *file, int line, const char *errmsg)
{
	log_panic("libspf2: %s:%d: %s", file, line, errmsg);
}

/* spf_global_init - once per process: libspf2's log hooks. */
static void
spf_global_init(void)
{
	if (spf_inited)
		return;
	spf_inited = true;
	SPF_error_handler = spf_log_error_cb;
	SPF_warning_handler = spf_log_quiet_cb;
	SPF_info_handler = spf_log_quiet_cb;
	SPF_debug_handler = spf_log_quiet_cb;
}

/* spf_res_name - the RFC 8601 name of a result. */
const char *
spf_res_name(enum spf_res r)
{
	static const char *const names[] = {
	        [SPF_RES_NONE] = "none",
	        [SPF_RES_NEUTRAL] = "neutral",
	        [SPF_RES_PASS] = "pass",
	        [SPF_RES_FAIL] = "fail",
	        [SPF_RES_SOFTFAIL] = "softfail",
	        [SPF_RES_TEMPERROR] = "temperror",
	        [SPF_RES_PERMERROR] = "permerror",
	};

	if ((unsigned)r >= ARRAY_LEN(names))
		return "permerror";
	return names[r];
}

/* spf_sanitize - copy in to out keeping printable ASCII; tab, CR and LF
 * become spaces, other bytes '?'; always terminated. */
void
spf_sanitize(char *out, size_t outlen, const char *in)
{
	size_t n = 0;

	if (outlen == 0)
		return;
	for (; in && *in && n + 1 < outlen; in++) {
		unsigned char c = (unsigned char)*in;

		if (c == '\t' || c == '\r' || c == '\n')
			c = ' ';
		out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[n] = '\0';
}

/* spf_dns_add_rr - append one record's data (len bytes) to rr. */
static int
spf_dns_add_rr(SPF_dns_rr_t *rr, const void *data, size_t len)
{
	int idx = rr->num_rr;

	if (SPF_dns_rr_buf_realloc(rr, idx, len + 1) != SPF_E_SUCCESS)
		return -ENOMEM;
	memcpy(rr->rr[idx], data, len);
	((char *)rr->rr[idx])[len] = '\0';
	rr->num_rr++;
	return 0;
}

/* spf_rr_new - an empty answer of libspf2's kind. */
static SPF_dns_rr_t *
spf_rr_new(const char *domain, ns_type type, SPF_dns_stat_t herrno)
{
	SPF_dns_rr_t *rr =
	        SPF_dns_rr_new_init(&spf_layer, domain, type, 0, herrno);

	if (rr == NULL)
		log_panic("libspf2: out of memory");
	return rr;
}

/* spf_rr_from - dns.c's answer a as libspf2's for (domain, type). */
static SPF_dns_rr_t *
spf_rr_from(const struct dns_answer *a, const char *domain, ns_type type)
{
	SPF_dns_rr_t *rr;
	int i, rc = 0;

	switch (a->status) {
	case DNS_NODATA:
		return spf_rr_new(domain, type, NO_DATA);
	case DNS_NXDOMAIN:
		return spf_rr_new(domain, type, HOST_NOT_FOUND);
	case DNS_TEMPFAIL:
		return spf_rr_new(domain, type, TRY_AGAIN);
	case DNS_OK:
		break;
	}
	rr = spf_rr_new(domain, type, NETDB_SUCCESS);
	for (i = 0; i < a->n && rc == 0; i++) {
		const struct dns_rr *r = &a->rr[i];

		switch (type) {
		case ns_t_a:
			rc = spf_dns_add_rr(rr, &r->u.a, 4);
			break;
		case ns_t_aaaa:
			rc = spf_dns_add_rr(rr, &r->u.aaaa, 16);
			break;
		case ns_t_mx:
			rc = spf_dns_add_rr(rr, r->u.mx.host,
			                    strlen(r->u.mx.host));
			break;
		case ns_t_ptr:
			rc = spf_dns_add_rr(rr, r->u.name, strlen(r->u.name));
			break;
		case ns_t_txt:
			rc = spf_dns_add_rr(rr, r->u.txt, strlen(r->u.txt));
			break;
		default:
			break;
		}
	}
	if (rc < 0)
		rr->herrno = TRY_AGAIN;
	else if (rr->num_rr == 0)
		rr->herrno = NO_DATA;
	rr->ttl = (int)a->ttl;
	return rr;
}

/* spf_name_key - name lower-cased, without its final dot, into key[256].
 * False when DNS cannot carry it (empty, an empty label or one over 63
 * bytes, over 253 in all): libspf2 hears "no such host" then, as c-ares
 * (EBADNAME) made it hear before. */
static bool
spf_name_key(const char *name, char *key)
{
	size_t n = strlen(name), i, label = 0;

	if (n > 0 && name[n - 1] == '.' && (n < 2 || name[n - 2] != '\\'))
		n--;
	if (n == 0 || n > 253)
		return false;
	for (i = 0; i < n; i++) {
		char c = name[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
			key[i] = c;
			continue;
		}
		if (c == '\\' && i + 1 < n) /* an escape is one byte */
			key[i++] = c, c = name[i];
		if (++label > 63)
			return false;
		key[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
	}
	key[n] = '\0';
	return true;
}

/* spf_ans_find - what e fetched for (key, type), or NULL. */
static struct spf_ans *
spf_ans_find(struct spf_ev *e, const char *key, int type)
{
	struct spf_ans *k;

	for (k = e->answers; k; k = k->next)
		if (k->type == type && strcmp(k->name, key) == 0)
			return k;
	return NULL;
}

/* spf_miss_add - remember that (key, type) is needed; real: libspf2
 * asked for it (a prefetch is only fetched along with real misses). */
static void
spf_miss_add(struct spf_ev *e, const char *key, int type, bool real)
{
	unsigned i;

	for (i = 0; i < e->n_miss; i++)
		if (e->miss[i].type == type &&
		    strcmp(e->miss[i].name, key) == 0)
			break;
	if (i == e->n_miss) {
		if (e->n_miss == SPF_MAX_MISSES) {
			if (real) /* the next round fetches it */
				e->n_real++;
			return;
		}
		snprintf(e->miss[i].name, sizeof(e->miss[i].name), "%s", key);
		e->miss[i].type = type;
		e->n_miss++;
	}
	if (real)
		e->n_real++;
}

/* spf_prefetch - the A/AAAA of the hosts an MX or PTR answer names: what
 * libspf2 will ask next, fetched in the same round. */
static void
spf_prefetch(struct spf_ev *e, const SPF_dns_rr_t *rr)
{
	int want = e->client.family == AF_INET6 ? ns_t_aaaa : ns_t_a;
	char key[256];
	int i;

	if (rr->herrno != NETDB_SUCCESS ||
	    (rr->rr_type != ns_t_mx && rr->rr_type != ns_t_ptr))
		return;
	for (i = 0; i < rr->num_rr && i < SPF_MAX_PREFETCH; i++) {
		const char *h =
		        rr->rr_type == ns_t_mx ? rr->rr[i]->mx : rr->rr[i]->ptr;

		if (!spf_name_key(h, key) || spf_ans_find(e, key, want) ||
		    dns_cache_peek(key, want))
			continue;
		spf_miss_add(e, key, want, false);
	}
}

/* spf_dns_lookup_cb - libspf2's lookup entry point for our layer: never
 * waits (see the top of the file). */
static SPF_dns_rr_t *
spf_dns_lookup_cb(SPF_dns_server_t *layer, const char *domain, ns_type type,
                  int should_cache)
{
	struct spf_ev *e = spf_cur;
	const struct dns_answer *a;
	struct spf_ans *k;
	SPF_dns_rr_t *rr = NULL;
	char key[256];

	if (!spf_name_key(domain, key))
		return spf_rr_new(domain, type, HOST_NOT_FOUND);
	switch (type) {
	case ns_t_a:
	case ns_t_aaaa:
	case ns_t_mx:
	case ns_t_ptr:
	case ns_t_txt:
		break;
	default: /* ns_t_spf (RFC 7208 3.1: not used) and others */
		return spf_rr_new(domain, type, NO_DATA);
	}
	if (e == NULL || ++e->lookups > SPF_BUDGET_QUERIES)
		return spf_rr_new(domain, type, TRY_AGAIN);
	k = spf_ans_find(e, key, type);
	if (k != NULL) {
		if (SPF_dns_rr_dup(&rr, k->rr) != SPF_E_SUCCESS)
			log_panic("libspf2: out of memory");
	} else if ((a = dns_cache_peek(key, type)) != NULL) {
		rr = spf_rr_from(a, domain, type);
	} else {
		spf_miss_add(e, key, type, true);
		return spf_rr_new(domain, type, TRY_AGAIN);
	}
	spf_prefetch(e, rr);
	return rr;
}

/* spf_map - libspf2's result (and error) to ours. */
static enum spf_res
spf_map(SPF_result_t r, SPF_errcode_t err)
{
	switch (r) {
	case SPF_RESULT_PASS:
		return SPF_RES_PASS;
	case SPF_RESULT_FAIL:
		return SPF_RES_FAIL;
	case SPF_RESULT_SOFTFAIL:
		return SPF_RES_SOFTFAIL;
	case SPF_RESULT_NEUTRAL:
		return SPF_RES_NEUTRAL;
	case SPF_RESULT_NONE:
		return SPF_RES_NONE;
	case SPF_RESULT_TEMPERROR:
		return SPF_RES_TEMPERROR;
	case SPF_RESULT_PERMERROR:
		return SPF_RES_PERMERROR;
	default:
		return err == SPF_E_DNS_ERROR ? SPF_RES_TEMPERROR
		                              : SPF_RES_PERMERROR;
	}
}

/* spf_reason - the first error message of the response, or its comment. */
static void
spf_reason(SPF_response_t *resp, char *out, size_t outlen)
{
	const char *why = NULL;
	int i;

	for (i = 0; i < SPF_response_messages(resp); i++) {
		SPF_error_t *e = SPF_response_message(resp, i);

		if (SPF_error_errorp(e)) {
			why = SPF_error_message(e);
			break;
		}
	}
	if (!why)
		why = SPF_response_get_header_comment(resp);
	spf_sanitize(out, outlen, why);
}

/* spf_server_for - the shared libspf2 server, (re)made for receiver rec
 * and default explanation exp; NULL when libspf2 refuses them. */
static SPF_server_t *
spf_server_for(const char *rec, const char *exp)
{
	SPF_response_t *resp = NULL;
	SPF_errcode_t err;

	if (spf_srv != NULL && strcmp(rec, spf_srv_rec) == 0 &&
	    strcmp(exp, spf_srv_exp) == 0)
		return spf_srv;
	if (spf_srv != NULL)
		SPF_server_free(spf_srv);
	spf_layer.destroy = NULL; /* static: nothing to free */
	spf_layer.lookup = spf_dns_lookup_cb;
	spf_layer.name = "mailmoat-cache";
	spf_srv = SPF_server_new_dns(&spf_layer, 0);
	if (spf_srv == NULL)
		return NULL;
	SPF_server_set_rec_dom(spf_srv, rec);
	err = SPF_server_set_explanation(spf_srv, exp, &resp);
	SPF_response_free(resp);
	if (err != SPF_E_SUCCESS) {
		SPF_server_free(spf_srv);
		spf_srv = NULL;
		return NULL;
	}
	snprintf(spf_srv_rec, sizeof(spf_srv_rec), "%s", rec);
	snprintf(spf_srv_exp, sizeof(spf_srv_exp), "%s", exp);
	return spf_srv;
}

/* spf_run_once - one evaluation of e with what DNS is known now; the
 * misses are left in e->miss. */
static void
spf_run_once(struct spf_ev *e)
{
	SPF_server_t *srv;
	SPF_request_t *req;
	SPF_response_t *resp = NULL;
	SPF_errcode_t err;
	const char *exp;

	e->runs++;
	e->lookups = 0;
	e->n_miss = e->n_real = 0;
	e->out.explanation[0] = '\0';
	srv = spf_server_for(e->receiver, e->default_exp);
	if (srv == NULL) {
		e->rc = -EINVAL;
		snprintf(e->out.reason, sizeof(e->out.reason),
		         "libspf2 refused the receiver or explanation");
		return;
	}
	req = SPF_request_new(srv);
	if (e->client.family == AF_INET)
		SPF_request_set_ipv4(req, e->client.u.v4);
	else
		SPF_request_set_ipv6(req, e->client.u.v6);
	if (e->helo[0])
		SPF_request_set_helo_dom(req, e->helo);
	SPF_request_set_env_from(req, e->sender);

	/* When the record cannot be fetched or compiled, the result stays
	 * SPF_RESULT_INVALID and the error code is the return value. */
	spf_cur = e;
	err = SPF_request_query_mailfrom(req, &resp);
	spf_cur = NULL;
	e->out.result = spf_map(SPF_response_result(resp), err);
	e->out.errcode = (int)err;
	spf_reason(resp, e->out.reason, sizeof(e->out.reason));
	if (e->out.result == SPF_RES_FAIL) {
		exp = SPF_response_get_explanation(resp);
		if (exp && strcmp(exp, MM_SPF_DEFAULT_EXP) != 0)
			spf_sanitize(e->out.explanation,
			             sizeof(e->out.explanation), exp);
	}
	SPF_response_free(resp);
	SPF_request_free(req);
}

/* spf_ev_close_cb - the timer is closed: free the evaluation. */
static void
spf_ev_close_cb(uv_handle_t *h)
{
	struct spf_ev *e = container_of((uv_timer_t *)h, struct spf_ev, timer);
	struct spf_ans *k;

	while ((k = e->answers) != NULL) {
		e->answers = k->next;
		SPF_dns_rr_free(k->rr);
		free(k);
	}
	free(e);
}

/* spf_finish - hand the outcome over and free e. */
static void
spf_finish(struct spf_ev *e)
{
	e->out.dns_queries = e->fetched;
	e->out.runs = e->runs;
	e->fn(e->arg, &e->out, e->rc);
	uv_close((uv_handle_t *)&e->timer, spf_ev_close_cb);
}

static void spf_round_cb(uv_timer_t *t);

/* spf_fetch_cb - dns.c answered one of e's misses. */
static void
spf_fetch_cb(void *arg, const struct dns_answer *ans)
{
	struct spf_fetch *f = arg;
	struct spf_ev *e = f->ev;

	if (spf_ans_find(e, f->name, f->type) == NULL) {
		struct spf_ans *k = xcalloc(1, sizeof(*k));

		snprintf(k->name, sizeof(k->name), "%s", f->name);
		k->type = f->type;
		k->rr = spf_rr_from(ans, f->name, (ns_type)f->type);
		k->next = e->answers;
		e->answers = k;
	}
	free(f);
	if (--e->pending == 0)
		uv_timer_start(&e->timer, spf_round_cb, 0, 0);
}

/* spf_round_cb - on its own loop turn: run e; done, or fetch what it
 * missed and come back when all of it is in. */
static void
spf_round_cb(uv_timer_t *t)
{
	struct spf_ev *e = container_of(t, struct spf_ev, timer);
	unsigned i;

	if (e->none) {
		spf_finish(e);
		return;
	}
	spf_run_once(e);
	if (e->rc < 0 || e->n_real == 0) {
		spf_finish(e);
		return;
	}
	if (e->runs >= SPF_MAX_RUNS || util_now_ms() >= e->deadline ||
	    e->fetched + e->n_miss > SPF_BUDGET_QUERIES) {
		/* A fail stands (only its explanation may be missing). */
		if (e->out.result != SPF_RES_FAIL) {
			e->out.result = SPF_RES_TEMPERROR;
			snprintf(e->out.reason, sizeof(e->out.reason),
			         "DNS budget exhausted (%u rounds, %u queries)",
			         e->runs, e->fetched);
		}
		spf_finish(e);
		return;
	}
	e->pending = 1; /* held until every query is started */
	for (i = 0; i < e->n_miss; i++) {
		struct spf_fetch *f = xcalloc(1, sizeof(*f));

		f->ev = e;
		snprintf(f->name, sizeof(f->name), "%s", e->miss[i].name);
		f->type = e->miss[i].type;
		e->pending++;
		e->fetched++;
		if (dns_query(f->name, f->type, spf_fetch_cb, f) < 0) {
			struct dns_answer tf = {.status = DNS_TEMPFAIL,
			                        .type = f->type};

			spf_fetch_cb(f, &tf);
		}
	}
	if (--e->pending == 0)
		uv_timer_start(&e->timer, spf_round_cb, 0, 0);
}

/*
 * spf_eval_start - evaluate q on loop (dns_init() done); fn(arg, outcome,
 * rc) runs later on the loop, never from here; rc is 0, or negative when
 * libspf2 could not be set up (the outcome says temperror then).  Returns
 * 0, or -EINVAL for a bad query (fn is not called then).
 */
int
spf_eval_start(uv_loop_t *loop, const struct spf_query *q, spf_done_fn fn,
               void *arg)
{
	struct spf_ev *e;
	const char *sender = q->sender ? q->sender : "";
	const char *at;

	spf_global_init();
	if (q->client.family != AF_INET && q->client.family != AF_INET6)
		return -EINVAL;
	e = xcalloc(1, sizeof(*e));
	e->fn = fn;
	e->arg = arg;
	e->client = q->client;
	/* An IPv4-mapped IPv6 client is an IPv4 client (RFC 7208 5). */
	if (e->client.family == AF_INET6 &&
	    IN6_IS_ADDR_V4MAPPED(&e->client.u.v6)) {
		e->client.family = AF_INET;
		memcpy(&e->client.u.v4, &q->client.u.v6.s6_addr[12], 4);
	}
	snprintf(e->helo, sizeof(e->helo), "%s", q->helo ? q->helo : "");
	snprintf(e->sender, sizeof(e->sender), "%s", sender);
	snprintf(e->receiver, sizeof(e->receiver), "%s",
	         q->receiver && *q->receiver ? q->receiver : "unknown");
	snprintf(e->default_exp, sizeof(e->default_exp), "%s",
	         q->default_exp ? q->default_exp : MM_SPF_DEFAULT_EXP);
	e->deadline = util_now_ms() +
	              (uint64_t)(q->timeout_ms ? q->timeout_ms : 5000) *
	                      SPF_BUDGET_FACTOR;
	e->out.result = SPF_RES_TEMPERROR;
	e->out.helo_identity = *sender == '\0';
	at = strrchr(sender, '@');
	spf_sanitize(e->out.domain, sizeof(e->out.domain),
	             e->out.helo_identity ? e->helo : (at ? at + 1 : sender));
	if (!*sender && !e->helo[0]) {
		/* Neither identity: nothing to check. */
		e->none = true;
		e->out.result = SPF_RES_NONE;
		snprintf(e->out.reason, sizeof(e->out.reason), "no identity");
	}
	uv_timer_init(loop, &e->timer);
	uv_timer_start(&e->timer, spf_round_cb, 0, 0);
	return 0;
}
