/*
 * spf.c - SPF (RFC 7208) evaluation: the project's patched libspf2 with a
 * DNS layer fed by c-ares.
 *
 *   spf_eval(q, out)    evaluate one identity (MAIL FROM, or postmaster@HELO
 *                       for the null sender); BLOCKS for the DNS lookups,
 *                       so the daemon calls it from the uv threadpool
 *                       (checks/spf.c), the test driver calls it directly.
 *   spf_res_name(r)     "pass", "fail", ... (RFC 8601 result names)
 *   spf_sanitize()      network text made safe for replies and headers
 *
 * libspf2 is synchronous and its own resolver (res_query) blocks and, with
 * musl, has no TCP fallback for answers over 512 bytes.  So each evaluation
 * gets its own c-ares channel (EDNS, TCP fallback on truncation), driven in
 * blocking mode by poll() in the calling thread; nothing here touches the
 * event loop and nothing is shared between threads except the one-time
 * library initialisation.  Each query waits at most q->timeout_ms (split
 * over two tries), the whole evaluation at most SPF_BUDGET_QUERIES queries
 * and SPF_BUDGET_FACTOR timeouts; past that every lookup answers "try
 * again", which libspf2 turns into temperror.
 *
 * Result mapping from libspf2: SPF_RESULT_INVALID (the record could not be
 * fetched or compiled) becomes temperror when the error is a DNS failure,
 * permerror otherwise.  Explanations (exp=) come from the sender's DNS: they
 * are sanitized (printable ASCII only, bounded) before they leave this file.
 *
 * Reads no config itself: the caller copies dns_servers, dns_timeout_ms and
 * hostname into struct spf_query.
 */
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ares.h>

#define HAVE_NS_TYPE 1
#define HAVE_NETDB_H 1
#include <spf2/spf.h>
#include <spf2/spf_dns.h>

#include "proxy.h"

#define SPF_BUDGET_QUERIES 100 /* DNS queries per evaluation */
#define SPF_BUDGET_FACTOR 6    /* total time: this many query timeouts */
#define MM_SPF_DEFAULT_EXP "mailmoat-default-exp"

/* The state of one evaluation's DNS layer (the layer's hook). */
struct spf_dns {
	SPF_dns_server_t layer;
	ares_channel ch;
	uint64_t deadline; /* spf_now_ms() */
	unsigned n_queries;
};

/* One outstanding c-ares query. */
struct spf_lookup {
	bool done;
	int status;
	unsigned char *abuf;
	int alen;
};

static pthread_once_t spf_once = PTHREAD_ONCE_INIT;

/* spf_now_ms - CLOCK_MONOTONIC in ms; read here, not from a loop, since
 * this runs in worker threads. */
static uint64_t
spf_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

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

/* spf_global_init - once per process: c-ares and libspf2's log hooks. */
static void
spf_global_init(void)
{
	ares_library_init(ARES_LIB_INIT_ALL);
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

/* spf_lookup_cb - c-ares answer for one query: keep a copy of the packet. */
static void
spf_lookup_cb(void *arg, int status, int timeouts, unsigned char *abuf,
              int alen)
{
	struct spf_lookup *lk = arg;

	lk->done = true;
	lk->status = status;
	if (abuf && alen > 0) {
		lk->abuf = xmalloc((size_t)alen);
		memcpy(lk->abuf, abuf, (size_t)alen);
		lk->alen = alen;
	}
}

/* spf_dns_wait - run the channel until lk is answered or the evaluation's
 * deadline passes (then the query is cancelled). */
static void
spf_dns_wait(struct spf_dns *d, struct spf_lookup *lk)
{
	while (!lk->done) {
		ares_socket_t socks[ARES_GETSOCK_MAXNUM];
		struct pollfd pfd[ARES_GETSOCK_MAXNUM];
		struct timeval tv, maxtv;
		uint64_t now = spf_now_ms();
		int bits, n = 0, i, ms;

		if (now >= d->deadline) {
			ares_cancel(d->ch);
			break;
		}
		maxtv.tv_sec = (time_t)((d->deadline - now) / 1000);
		maxtv.tv_usec =
		        (suseconds_t)((d->deadline - now) % 1000) * 1000;
		ares_timeout(d->ch, &maxtv, &tv);
		ms = (int)(tv.tv_sec * 1000 + tv.tv_usec / 1000) + 1;

		bits = ares_getsock(d->ch, socks, ARES_GETSOCK_MAXNUM);
		for (i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			short ev = 0;

			/* c-ares' ARES_GETSOCK_WRITABLE shifts a signed 1 by
			 * up to 31 (undefined): test the bits unsigned. */
			if ((unsigned)bits & (1u << i))
				ev |= POLLIN;
			if ((unsigned)bits & (1u << (i + ARES_GETSOCK_MAXNUM)))
				ev |= POLLOUT;
			if (!ev)
				continue;
			pfd[n].fd = socks[i];
			pfd[n].events = ev;
			pfd[n].revents = 0;
			n++;
		}
		if (poll(pfd, (nfds_t)n, ms) < 0 && errno != EINTR) {
			ares_cancel(d->ch);
			break;
		}
		for (i = 0; i < n; i++) {
			short re = pfd[i].revents;
			bool err = re & (POLLERR | POLLHUP | POLLNVAL);

			if (!re)
				continue;
			/* An error goes to c-ares as readable+writable. */
			ares_process_fd(d->ch,
			                (re & POLLIN) || err ? pfd[i].fd
			                                     : ARES_SOCKET_BAD,
			                (re & POLLOUT) || err
			                        ? pfd[i].fd
			                        : ARES_SOCKET_BAD);
		}
		/* Timeouts are handled even when nothing was readable. */
		ares_process_fd(d->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	}
	if (!lk->done) {
		lk->done = true;
		lk->status = ARES_ETIMEOUT;
	}
}

/* spf_dns_herrno - c-ares status to the h_errno libspf2 understands. */
static int
spf_dns_herrno(int status)
{
	switch (status) {
	case ARES_SUCCESS:
		return NETDB_SUCCESS;
	case ARES_ENODATA:
		return NO_DATA;
	case ARES_ENOTFOUND:
	case ARES_EBADNAME: /* a name that cannot exist */
		return HOST_NOT_FOUND;
	default: /* timeout, SERVFAIL, REFUSED, ... */
		return TRY_AGAIN;
	}
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

/* spf_dns_txt - the character-strings of one TXT rdata, joined. */
static int
spf_dns_txt(SPF_dns_rr_t *rr, const unsigned char *rd, size_t rdlen)
{
	char *txt = xmalloc(rdlen + 1);
	size_t n = 0, i = 0;
	int rc;

	while (i < rdlen) {
		size_t len = rd[i++];

		if (len > rdlen - i)
			len = rdlen - i; /* malformed: keep what is there */
		memcpy(txt + n, rd + i, len);
		n += len;
		i += len;
	}
	/* A NUL inside the text cannot pass through libspf2's C strings:
	 * make it a character that makes the record invalid (permerror)
	 * rather than letting it cut the record short. */
	for (i = 0; i < n; i++)
		if (txt[i] == '\0')
			txt[i] = '\x7f';
	rc = spf_dns_add_rr(rr, txt, n);
	free(txt);
	return rc;
}

/* spf_dns_parse - the answer section of a packet into rr (records of
 * rr->rr_type only; CNAMEs are followed by the server). */
static void
spf_dns_parse(SPF_dns_rr_t *rr, const unsigned char *abuf, int alen)
{
	ns_msg msg;
	int i, n;

	if (ns_initparse(abuf, alen, &msg) < 0) {
		rr->herrno = TRY_AGAIN;
		return;
	}
	n = ns_msg_count(msg, ns_s_an);
	for (i = 0; i < n; i++) {
		char name[NS_MAXDNAME];
		const unsigned char *rd;
		size_t rdlen;
		ns_rr r;
		int rc = 0;

		if (ns_parserr(&msg, ns_s_an, i, &r) < 0) {
			rr->herrno = TRY_AGAIN;
			return;
		}
		if (ns_rr_type(r) != rr->rr_type || ns_rr_class(r) != ns_c_in)
			continue;
		rd = ns_rr_rdata(r);
		rdlen = ns_rr_rdlen(r);
		switch (ns_rr_type(r)) {
		case ns_t_a:
			if (rdlen == 4)
				rc = spf_dns_add_rr(rr, rd, 4);
			break;
		case ns_t_aaaa:
			if (rdlen == 16)
				rc = spf_dns_add_rr(rr, rd, 16);
			break;
		case ns_t_mx:
			if (rdlen > 2 &&
			    ns_name_uncompress(abuf, abuf + alen, rd + 2, name,
			                       sizeof(name)) >= 0)
				rc = spf_dns_add_rr(rr, name, strlen(name));
			break;
		case ns_t_ptr:
			if (ns_name_uncompress(abuf, abuf + alen, rd, name,
			                       sizeof(name)) >= 0)
				rc = spf_dns_add_rr(rr, name, strlen(name));
			break;
		case ns_t_txt:
			rc = spf_dns_txt(rr, rd, rdlen);
			break;
		default:
			break;
		}
		if (rc < 0) {
			rr->herrno = TRY_AGAIN;
			return;
		}
		if (rr->ttl == 0 || (time_t)ns_rr_ttl(r) < rr->ttl)
			rr->ttl = ns_rr_ttl(r);
	}
	if (rr->num_rr == 0)
		rr->herrno = NO_DATA;
}

/* spf_dns_lookup_cb - libspf2's lookup entry point for our layer. */
static SPF_dns_rr_t *
spf_dns_lookup_cb(SPF_dns_server_t *layer, const char *domain, ns_type type,
                  int should_cache)
{
	struct spf_dns *d = container_of(layer, struct spf_dns, layer);
	struct spf_lookup lk = {0};
	SPF_dns_rr_t *rr;

	rr = SPF_dns_rr_new_init(layer, domain, type, 0, NETDB_SUCCESS);
	if (!rr)
		return NULL;
	if (++d->n_queries > SPF_BUDGET_QUERIES ||
	    spf_now_ms() >= d->deadline) {
		rr->herrno = TRY_AGAIN;
		return rr;
	}
	ares_query(d->ch, domain, ns_c_in, type, spf_lookup_cb, &lk);
	spf_dns_wait(d, &lk);
	rr->herrno = spf_dns_herrno(lk.status);
	if (lk.status == ARES_SUCCESS && lk.abuf)
		spf_dns_parse(rr, lk.abuf, lk.alen);
	free(lk.abuf);
	return rr;
}

/* spf_dns_open - set up d: a fresh c-ares channel for one evaluation. */
static int
spf_dns_open(struct spf_dns *d, const struct spf_query *q)
{
	struct ares_options opt = {0};
	unsigned timeout = q->timeout_ms ? q->timeout_ms : 5000;
	int rc;

	memset(d, 0, sizeof(*d));
	/* Two tries whose timeouts (t, then 2t) add up to about q's. */
	opt.timeout = (int)(timeout / 3 > 50 ? timeout / 3 : 50);
	opt.tries = 2;
	opt.flags = ARES_FLAG_EDNS | ARES_FLAG_NOSEARCH;
	opt.ednspsz = 1232;
	rc = ares_init_options(&d->ch, &opt,
	                       ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES |
	                               ARES_OPT_FLAGS | ARES_OPT_EDNSPSZ);
	if (rc != ARES_SUCCESS)
		return -EIO;
	if (q->dns_servers && *q->dns_servers &&
	    ares_set_servers_ports_csv(d->ch, q->dns_servers) != ARES_SUCCESS) {
		ares_destroy(d->ch);
		return -EINVAL;
	}
	d->deadline = spf_now_ms() + (uint64_t)timeout * SPF_BUDGET_FACTOR;
	d->layer.destroy = NULL; /* embedded in d: we free it */
	d->layer.lookup = spf_dns_lookup_cb;
	d->layer.name = "mailmoat-cares";
	return 0;
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

/* spf_eval - evaluate q (blocking); 0, or -EINVAL for a bad query, -EIO
 * when the resolver could not be set up (out->result is temperror then). */
int
spf_eval(const struct spf_query *q, struct spf_outcome *out)
{
	SPF_server_t *srv = NULL;
	SPF_request_t *req = NULL;
	SPF_response_t *resp = NULL;
	SPF_errcode_t err;
	struct spf_dns d;
	struct ipaddr ip = q->client;
	const char *helo = q->helo ? q->helo : "";
	const char *sender = q->sender ? q->sender : "";
	const char *exp;
	int rc = 0;

	pthread_once(&spf_once, spf_global_init);
	memset(out, 0, sizeof(*out));
	out->result = SPF_RES_TEMPERROR;
	out->helo_identity = *sender == '\0';
	spf_sanitize(out->domain, sizeof(out->domain),
	             out->helo_identity
	                     ? helo
	                     : (strrchr(sender, '@') ? strrchr(sender, '@') + 1
	                                             : sender));

	/* An IPv4-mapped IPv6 client is an IPv4 client (RFC 7208 5). */
	if (ip.family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&ip.u.v6)) {
		ip.family = AF_INET;
		memcpy(&ip.u.v4, &ip.u.v6.s6_addr[12], 4);
	}
	if (ip.family != AF_INET && ip.family != AF_INET6)
		return -EINVAL;

	rc = spf_dns_open(&d, q);
	if (rc < 0) {
		snprintf(out->reason, sizeof(out->reason),
		         "cannot set up the resolver (%d)", rc);
		return rc;
	}
	srv = SPF_server_new_dns(&d.layer, 0);
	if (!srv) {
		rc = -ENOMEM;
		goto done;
	}
	SPF_server_set_rec_dom(srv, q->receiver && *q->receiver ? q->receiver
	                                                        : "unknown");
	resp = NULL;
	if (SPF_server_set_explanation(
	            srv, q->default_exp ? q->default_exp : MM_SPF_DEFAULT_EXP,
	            &resp) != SPF_E_SUCCESS) {
		rc = -EINVAL;
		goto done;
	}
	SPF_response_free(resp);
	resp = NULL;

	req = SPF_request_new(srv);
	if (ip.family == AF_INET)
		SPF_request_set_ipv4(req, ip.u.v4);
	else
		SPF_request_set_ipv6(req, ip.u.v6);
	if (*helo)
		SPF_request_set_helo_dom(req, helo);
	if (*sender)
		SPF_request_set_env_from(req, sender);
	else if (*helo)
		SPF_request_set_env_from(req, "");
	else {
		/* Neither identity: nothing to check. */
		out->result = SPF_RES_NONE;
		snprintf(out->reason, sizeof(out->reason), "no identity");
		goto done;
	}

	/* When the record cannot be fetched or compiled, the result stays
	 * SPF_RESULT_INVALID and the error code is the return value. */
	err = SPF_request_query_mailfrom(req, &resp);
	out->result = spf_map(SPF_response_result(resp), err);
	out->errcode = (int)err;
	spf_reason(resp, out->reason, sizeof(out->reason));
	if (out->result == SPF_RES_FAIL) {
		exp = SPF_response_get_explanation(resp);
		if (exp && strcmp(exp, MM_SPF_DEFAULT_EXP) != 0)
			spf_sanitize(out->explanation, sizeof(out->explanation),
			             exp);
	}

done:
	out->dns_queries = d.n_queries;
	if (resp)
		SPF_response_free(resp);
	if (req)
		SPF_request_free(req);
	if (srv)
		SPF_server_free(srv);
	ares_destroy(d.ch);
	return rc;
}
