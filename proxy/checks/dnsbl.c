/*
 * dnsbl.c - check "dnsbl": is the client listed in a DNS blocklist?
 *
 * Public: chk_dnsbl (check.h), dnsbl_stats_json() (proxy.h).
 *
 * For every zone of `dnsbl` (in config order) one A query of the
 * reversed address (RFC 5782 2.1; IPv6 in 32-nibble form, 2.4).  An
 * answer counts as "listed" when it lies in the zone's accepted ranges
 * (any 127.0.0.0/8 address when the zone names none).  Answers in
 * 127.255.255.0/24 (Spamhaus's "query refused / public resolver / rate
 * limited" codes) and anything outside the accepted set are logged as
 * errors and never count; a zone that times out or fails counts as not
 * listed and is logged.  The first listed zone decides: "554 5.7.1 We
 * don't accept mail from your IP (listed at ZONE)", detail
 * "ZONE=127.0.0.2,..." with every answer.
 *
 * Zone health: each zone is self-tested (RFC 5782 5: 127.0.0.2 must be
 * listed, 127.0.0.1 must not) when its last test is older than
 * DNSBL_RETEST_OK_S (DNSBL_RETEST_BAD_S for a failing zone): in the
 * background from dns.c's tick (at start, at each reload, then every 30 s
 * for the zones due), and by a session that finds a test due and none
 * running - it runs the two test queries next to its own and decides with
 * the fresh result, so no session ever decides on an untested zone.
 * A test that gets no answers (timeout, SERVFAIL) leaves the zone
 * "unreachable": nothing is known to be wrong with it, its answers still
 * count, and each session tests it again - a DNS server that comes up
 * after the daemon is used at once.  A zone that answers its self-test
 * wrongly (typically: a public resolver refused by the list operator) is
 * suspended - its answers are ignored - and shown as
 * unhealthy under "dnsbl" in `mailmoatctl stats`, instead of rejecting every
 * sender.
 *
 * Per session at most DNSBL_MAX_ZONES zones, 3 queries each.  Answers
 * carry the request, which holds a ticket, never the session.
 * Stage CONNECT; reads dnsbl (zones and ranges).
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define DNSBL_MAX_ZONES 16
#define DNSBL_MAX_HEALTH 64
#define DNSBL_RETEST_OK_S 600
#define DNSBL_RETEST_BAD_S 60
#define DNSBL_MAX_CODES 8

/*
 * UNKNOWN: never tested.  UNREACHABLE: the last test could not get its
 * answers (timeout, SERVFAIL): nothing is known to be wrong with the
 * zone, so its answers still count and every session tests it again.
 * SUSPENDED: the last test got wrong answers: its answers are ignored.
 */
enum dnsbl_state {
	DNSBL_UNKNOWN,
	DNSBL_HEALTHY,
	DNSBL_SUSPENDED,
	DNSBL_UNREACHABLE,
};

/* dnsbl_due_s - seconds after a test before the next one is due. */
static unsigned
dnsbl_due_s(enum dnsbl_state st)
{
	switch (st) {
	case DNSBL_HEALTHY:
		return DNSBL_RETEST_OK_S;
	case DNSBL_SUSPENDED:
		return DNSBL_RETEST_BAD_S;
	default:
		return 0;
	}
}

/* Health of one zone, kept across sessions and reloads (by name). */
struct dnsbl_health {
	char zone[256];
	enum dnsbl_state state;
	uint64_t tested_ms;  /* when the last self-test ended; 0 never */
	bool testing;        /* a self-test is running */
	bool configured;     /* in the current config's dnsbl */
	struct dnsbl_zone z; /* its ranges (zone string: .zone above) */
	char why[96];        /* why it is suspended */
	uint64_t listed, errors, timeouts, queries;
};

/* One answer of a request. */
struct dnsbl_ans {
	enum dns_status status;
	int n;
	uint32_t a[DNSBL_MAX_CODES]; /* host byte order */
};

/* A zone within one session's request. */
struct dnsbl_zreq {
	struct dnsbl_zone z; /* copy: the config may go first */
	struct dnsbl_health *h;
	bool selftest;
	struct dnsbl_ans q, t2, t1; /* the client, 127.0.0.2, 127.0.0.1 */
};

struct dnsbl_req {
	struct chk_ticket t;
	struct ipaddr ip;
	char ip_str[INET6_ADDRSTRLEN];
	int pending;
	int n;
	struct dnsbl_zreq z[DNSBL_MAX_ZONES];
};

/* One query of a request. */
/* One A query of a group (a session's request or a background
 * self-test): the answer goes into ans, and the group's done() runs
 * after the last of its queries. */
struct dnsbl_q {
	struct dnsbl_ans *ans;
	int *pending;
	void (*done)(void *group);
	void *group;
};

static struct dnsbl_health health[DNSBL_MAX_HEALTH];
static int n_health;

/* A background self-test (from the DNS tick), owned by its queries. */
struct dnsbl_test {
	struct dnsbl_zreq zr;
	int pending;
};

static void dnsbl_selftest_eval(struct dnsbl_zreq *zr);

/* dnsbl_health_get - the health entry of zone (created if new). */
static struct dnsbl_health *
dnsbl_health_get(const char *zone)
{
	int i;

	for (i = 0; i < n_health; i++)
		if (strcmp(health[i].zone, zone) == 0)
			return &health[i];
	if (n_health == DNSBL_MAX_HEALTH)
		return NULL;
	snprintf(health[n_health].zone, sizeof(health[0].zone), "%s", zone);
	return &health[n_health++];
}

/* dnsbl_code_str - "127.0.0.2" from a host-order address. */
static void
dnsbl_code_str(uint32_t a, char *out, size_t outlen)
{
	snprintf(out, outlen, "%u.%u.%u.%u", a >> 24, (a >> 16) & 255,
	         (a >> 8) & 255, a & 255);
}

/* dnsbl_accepted - does code a mean "listed" for zone z? */
static bool
dnsbl_accepted(const struct dnsbl_zone *z, uint32_t a)
{
	int i;

	if ((a >> 24) != 127 || (a >> 8) == 0x7fffff)
		return false; /* not 127/8, or 127.255.255.x */
	if (z->n_ranges == 0)
		return true;
	for (i = 0; i < z->n_ranges; i++)
		if (a >= z->lo[i] && a <= z->hi[i])
			return true;
	return false;
}

/* dnsbl_listed - any accepted code in the answer? */
static bool
dnsbl_listed(const struct dnsbl_zone *z, const struct dnsbl_ans *a)
{
	int i;

	if (a->status != DNS_OK)
		return false;
	for (i = 0; i < a->n; i++)
		if (dnsbl_accepted(z, a->a[i]))
			return true;
	return false;
}

/* dnsbl_codes - "127.0.0.2,127.0.0.4" into out. */
static void
dnsbl_codes(const struct dnsbl_ans *a, char *out, size_t outlen)
{
	size_t o = 0;
	int i;

	out[0] = '\0';
	for (i = 0; i < a->n && o + 17 < outlen; i++) {
		char c[16];

		dnsbl_code_str(a->a[i], c, sizeof(c));
		o += (size_t)snprintf(out + o, outlen - o, "%s%s", i ? "," : "",
		                      c);
	}
}

/* dnsbl_selftest_eval - update zone health from a finished self-test. */
static void
dnsbl_selftest_eval(struct dnsbl_zreq *zr)
{
	struct dnsbl_health *h = zr->h;
	char codes[160];
	const char *why = NULL;

	h->testing = false;
	h->tested_ms = util_now_ms();
	if (zr->t2.status == DNS_TEMPFAIL || zr->t1.status == DNS_TEMPFAIL) {
		if (h->state != DNSBL_UNREACHABLE)
			log_warn("dnsbl: zone %s: self-test lookups failed "
			         "(SERVFAIL or timeout); testing again",
			         h->zone);
		h->state = DNSBL_UNREACHABLE;
		snprintf(h->why, sizeof(h->why),
		         "self-test lookups failed (SERVFAIL or timeout)");
		return;
	}
	if (!dnsbl_listed(&zr->z, &zr->t2))
		why = "127.0.0.2 is not listed";
	else if (zr->t1.status == DNS_OK)
		why = "127.0.0.1 is listed (lists everything, or refuses us)";
	if (why == NULL) {
		if (h->state != DNSBL_HEALTHY)
			log_info("dnsbl: zone %s passed its self-test",
			         h->zone);
		h->state = DNSBL_HEALTHY;
		h->why[0] = '\0';
		return;
	}
	dnsbl_codes(zr->t2.status == DNS_OK ? &zr->t2 : &zr->t1, codes,
	            sizeof(codes));
	if (h->state != DNSBL_SUSPENDED || strcmp(h->why, why) != 0)
		log_warn("dnsbl: zone %s suspended: %s%s%s", h->zone, why,
		         codes[0] ? "; answers " : "", codes);
	h->state = DNSBL_SUSPENDED;
	snprintf(h->why, sizeof(h->why), "%s", why);
}

/* dnsbl_finish - all answers are in: decide (if the session lives). */
static void
dnsbl_finish(struct dnsbl_req *req)
{
	struct session *s = chk_ticket_session(&req->t);
	int i, j;

	for (i = 0; i < req->n; i++)
		if (req->z[i].selftest)
			dnsbl_selftest_eval(&req->z[i]);
	for (i = 0; i < req->n; i++) {
		struct dnsbl_zreq *zr = &req->z[i];
		char codes[160];

		if (zr->h)
			zr->h->queries++;
		if (zr->h && zr->h->state == DNSBL_SUSPENDED) {
			log_debug("dnsbl: zone %s suspended, ignored for %s",
			          zr->z.zone, req->ip_str);
			continue;
		}
		if (zr->q.status == DNS_TEMPFAIL) {
			log_warn("dnsbl: zone %s: lookup of %s failed "
			         "(timeout or SERVFAIL), counted as not listed",
			         zr->z.zone, req->ip_str);
			if (zr->h)
				zr->h->timeouts++;
			continue;
		}
		if (zr->q.status != DNS_OK)
			continue;
		dnsbl_codes(&zr->q, codes, sizeof(codes));
		for (j = 0; j < zr->q.n; j++)
			if (!dnsbl_accepted(&zr->z, zr->q.a[j]))
				break;
		if (j < zr->q.n) {
			log_warn("dnsbl: zone %s: %s answered %s: not an "
			         "accepted listing code, ignored",
			         zr->z.zone, req->ip_str, codes);
			if (zr->h)
				zr->h->errors++;
		}
		if (!dnsbl_listed(&zr->z, &zr->q))
			continue;
		if (zr->h)
			zr->h->listed++;
		if (s != NULL) {
			char text[192];

			snprintf(text, sizeof(text),
			         "We don't accept mail from your IP (listed "
			         "at %s)",
			         zr->z.zone);
			chk_set(s, CHK_DNSBL, CHK_FAIL, "554 5.7.1", text,
			        "%s=%s", zr->z.zone, codes);
		}
		goto done;
	}
	if (s != NULL)
		chk_set(s, CHK_DNSBL, CHK_PASS, NULL, "",
		        "not listed (%d zones)", req->n);
done:
	if (s != NULL)
		sess_check_done(s, CHK_DNSBL);
	for (i = 0; i < req->n; i++)
		free(req->z[i].z.zone);
	free(req);
}

/* dnsbl_q_cb - one answer of a group's query. */
static void
dnsbl_q_cb(void *arg, const struct dns_answer *a)
{
	struct dnsbl_q *q = arg;
	void (*done)(void *) = q->done;
	void *group = q->group;
	int *pending = q->pending;
	int i;

	q->ans->status = a->status;
	for (i = 0;
	     i < a->n && a->status == DNS_OK && q->ans->n < DNSBL_MAX_CODES;
	     i++)
		q->ans->a[q->ans->n++] = ntohl(a->rr[i].u.a.s_addr);
	free(q);
	if (--*pending == 0)
		done(group);
}

/* dnsbl_q_send - one A query for name into ans, counted in *pending. */
static void
dnsbl_q_send(const char *name, struct dnsbl_ans *ans, int *pending,
             void (*done)(void *), void *group)
{
	struct dnsbl_q *q = xcalloc(1, sizeof(*q));

	q->ans = ans;
	q->pending = pending;
	q->done = done;
	q->group = group;
	++*pending;
	if (dns_query(name, ns_t_a, dnsbl_q_cb, q) < 0) {
		ans->status = DNS_TEMPFAIL;
		--*pending;
		free(q);
	}
}

/* dnsbl_req_done - every query of a session's request is answered. */
static void
dnsbl_req_done(void *group)
{
	dnsbl_finish(group);
}

/* dnsbl_start - query every zone (and self-test the ones due). */
static void
dnsbl_start(struct session *s)
{
	const struct config *cfg = s->cfg;
	struct dnsbl_req *req;
	uint64_t now = util_now_ms();
	char name[512];
	int i;

	req = xcalloc(1, sizeof(*req));
	req->t = chk_ticket_make(s, CHK_DNSBL);
	req->ip = s->client;
	ipaddr_format(&s->client, req->ip_str, sizeof(req->ip_str));
	req->pending = 1; /* held until every query is sent */
	for (i = 0; i < cfg->n_dnsbl && req->n < DNSBL_MAX_ZONES; i++) {
		struct dnsbl_zreq *zr = &req->z[req->n++];
		struct dnsbl_health *h;
		uint64_t due;

		zr->z = cfg->dnsbl[i];
		zr->z.zone = xstrdup(cfg->dnsbl[i].zone);
		zr->h = h = dnsbl_health_get(zr->z.zone);
		if (h != NULL) {
			due = dnsbl_due_s(h->state);
			if (h->tested_ms == 0 ||
			    now - h->tested_ms >= due * 1000) {
				/* someone else's test is in flight and we
				 * know a state: use it */
				if (!(h->testing &&
				      (h->state == DNSBL_HEALTHY ||
				       h->state == DNSBL_SUSPENDED))) {
					zr->selftest = true;
					h->testing = true;
				}
			}
		}
		if (zr->selftest) {
			snprintf(name, sizeof(name), "2.0.0.127.%s",
			         zr->z.zone);
			dnsbl_q_send(name, &zr->t2, &req->pending,
			             dnsbl_req_done, req);
			snprintf(name, sizeof(name), "1.0.0.127.%s",
			         zr->z.zone);
			dnsbl_q_send(name, &zr->t1, &req->pending,
			             dnsbl_req_done, req);
		}
		dns_reverse_name(&s->client, zr->z.zone, name, sizeof(name));
		dnsbl_q_send(name, &zr->q, &req->pending, dnsbl_req_done, req);
	}
	if (--req->pending == 0) {
		/* nothing went out (no zones, or no resolver): decide on
		 * the next turn, never from start() */
		chk_set(s, CHK_DNSBL, CHK_PASS, NULL, "", "no zone answered");
		for (i = 0; i < req->n; i++) {
			if (req->z[i].h && req->z[i].selftest)
				req->z[i].h->testing = false;
			free(req->z[i].z.zone);
		}
		free(req);
		chk_done_later(s, CHK_DNSBL);
	}
}

/* dnsbl_test_done - a background self-test is answered: judge it. */
static void
dnsbl_test_done(void *group)
{
	struct dnsbl_test *t = group;

	dnsbl_selftest_eval(&t->zr);
	free(t->zr.z.zone);
	free(t);
}

/*
 * dnsbl_tick - from dns.c's tick (after start, after a reload, every
 * 30 s): self-test every configured zone whose test is due, so that zone
 * health is known (and shown in stats) before the first session needs it.
 */
static void
dnsbl_tick(void)
{
	uint64_t now = util_now_ms(), due;
	char name[512];
	int i;

	for (i = 0; i < n_health; i++) {
		struct dnsbl_health *h = &health[i];
		struct dnsbl_test *t;

		if (!h->configured || h->testing)
			continue;
		due = dnsbl_due_s(h->state);
		if (h->tested_ms != 0 && now - h->tested_ms < due * 1000)
			continue;
		t = xcalloc(1, sizeof(*t));
		t->zr.z = h->z;
		t->zr.z.zone = xstrdup(h->zone);
		t->zr.h = h;
		t->zr.selftest = true;
		h->testing = true;
		t->pending = 1;
		snprintf(name, sizeof(name), "2.0.0.127.%.255s", h->zone);
		dnsbl_q_send(name, &t->zr.t2, &t->pending, dnsbl_test_done, t);
		snprintf(name, sizeof(name), "1.0.0.127.%.255s", h->zone);
		dnsbl_q_send(name, &t->zr.t1, &t->pending, dnsbl_test_done, t);
		if (--t->pending == 0)
			dnsbl_test_done(t);
	}
}

/* dnsbl_stats_json - {"ZONE": {"healthy": ..., ...}, ...} into b. */
void
dnsbl_stats_json(struct buf *b)
{
	char tmp[256];
	int i;

	bool first = true;

	buf_append(b, "{", 1);
	for (i = 0; i < n_health; i++) {
		const struct dnsbl_health *h = &health[i];
		uint64_t now = util_now_ms();

		if (!h->configured)
			continue;
		if (!first)
			buf_append(b, ",", 1);
		first = false;
		stats_json_string(b, h->zone);
		snprintf(tmp, sizeof(tmp),
		         ":{\"healthy\":%s,\"state\":\"%s\",\"tested_ago_s\":%"
		         "lld,"
		         "\"queries\":%llu,\"listed\":%llu,\"errors\":%llu,"
		         "\"timeouts\":%llu,\"reason\":",
		         h->state == DNSBL_SUSPENDED ||
		                         h->state == DNSBL_UNREACHABLE
		                 ? "false"
		                 : "true",
		         h->state == DNSBL_HEALTHY       ? "healthy"
		         : h->state == DNSBL_SUSPENDED   ? "suspended"
		         : h->state == DNSBL_UNREACHABLE ? "unreachable"
		                                         : "untested",
		         h->tested_ms ? (long long)((now - h->tested_ms) / 1000)
		                      : -1LL,
		         (unsigned long long)h->queries,
		         (unsigned long long)h->listed,
		         (unsigned long long)h->errors,
		         (unsigned long long)h->timeouts);
		buf_append(b, tmp, strlen(tmp));
		stats_json_string(b, h->why);
		buf_append(b, "}", 1);
	}
	buf_append(b, "}", 1);
}

/*
 * dnsbl_init - register the stats section and the tick; note the zones
 * of this config (health entries survive reloads by name, but a reload
 * tests every zone again: its ranges may have changed).
 */
static int
dnsbl_init(const struct config *cfg, char *err, size_t errlen)
{
	struct dnsbl_health *h;
	int i;

	stats_add_section("dnsbl", dnsbl_stats_json);
	dns_tick_add(dnsbl_tick);
	if (cfg->n_dnsbl > DNSBL_MAX_ZONES)
		log_warn("dnsbl: %d zones configured, only the first %d are "
		         "queried",
		         cfg->n_dnsbl, DNSBL_MAX_ZONES);
	for (i = 0; i < n_health; i++)
		health[i].configured = false;
	for (i = 0; i < cfg->n_dnsbl; i++) {
		h = dnsbl_health_get(cfg->dnsbl[i].zone);
		if (h == NULL)
			continue;
		h->configured = true;
		h->z = cfg->dnsbl[i];
		h->z.zone = NULL; /* the name is h->zone */
		h->tested_ms = 0;
	}
	return 0;
}

const struct check chk_dnsbl = {
        .name = "dnsbl",
        .id = CHK_DNSBL,
        .stage = STAGE_CONNECT,
        .init = dnsbl_init,
        .start = dnsbl_start,
};
