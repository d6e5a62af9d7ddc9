/*
 * rdns.c - check "rdns": the client's PTR must exist and be forward
 * confirmed (one of its names resolves back to the client address, A for
 * IPv4, AAAA for IPv6).
 *
 * Public: chk_rdns (check.h), rdns_lookup_start() (proxy.h).
 *
 * The lookup is shared with the dynamic check: a job per session (keyed
 * by session id and generation) runs the PTR query, then one forward
 * query per PTR name (at most RDNS_MAX_NAMES, the per-session cap), and
 * when the last answer is in, calls each waiting check's function with
 * the session - looked up again through its ticket, so a session that
 * has gone in the meantime is never touched.  The job owns its memory
 * and frees itself after the last DNS answer.
 *
 * Results: PTR NXDOMAIN or no PTR or no confirmed name -> FAIL ("550
 * 5.7.1 Your IP address does not resolve ..."); a temporary failure of
 * the PTR query, or of a forward query when none confirmed -> TEMPERR.
 * A confirmed name goes into s->ptr.  Stage CONNECT; reads no config key.
 */
#include <arpa/nameser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define RDNS_MAX_WAITERS 3 /* rdns, dynamic, dsn */

struct rdns_job {
	uint64_t sess_id;
	uint32_t gen;
	struct ipaddr ip;
	int pending; /* DNS queries in flight */
	bool done;   /* waiters have been told */
	struct rdns_ptr res;
	struct {
		enum chk_id id;
		rdns_done_fn fn;
	} w[RDNS_MAX_WAITERS];
	int n_w;
	struct rdns_job *next;
};

/* One forward query of a job. */
struct rdns_fwd {
	struct rdns_job *job;
	int idx;
};

static struct rdns_job *rdns_jobs;

static const char rdns_text[] = "Your IP address does not resolve to a "
                                "hostname - no proper reverse mapping exists";

/* rdns_job_unlink - take j off the list of live jobs. */
static void
rdns_job_unlink(struct rdns_job *j)
{
	struct rdns_job **pp;

	for (pp = &rdns_jobs; *pp; pp = &(*pp)->next)
		if (*pp == j) {
			*pp = j->next;
			return;
		}
}

/* rdns_job_finish - tell every waiter (if its session lives) and free. */
static void
rdns_job_finish(struct rdns_job *j)
{
	int i;

	rdns_job_unlink(j);
	j->done = true;
	for (i = 0; i < j->n_w; i++) {
		struct chk_ticket t = {
		        .sess_id = j->sess_id, .gen = j->gen, .id = j->w[i].id};
		struct session *s = chk_ticket_session(&t);

		if (s != NULL)
			j->w[i].fn(s, &j->res);
	}
	free(j);
}

/* rdns_fwd_cb - a forward (A/AAAA) answer for PTR name idx. */
static void
rdns_fwd_cb(void *arg, const struct dns_answer *a)
{
	struct rdns_fwd *f = arg;
	struct rdns_job *j = f->job;
	int i;

	if (a->status == DNS_TEMPFAIL)
		j->res.fwd_tempfail = true;
	for (i = 0; i < a->n && a->status == DNS_OK; i++) {
		struct ipaddr got = {.family = j->ip.family};

		if (j->ip.family == AF_INET)
			got.u.v4 = a->rr[i].u.a;
		else
			got.u.v6 = a->rr[i].u.aaaa;
		if (ipaddr_equal(&got, &j->ip) &&
		    (j->res.confirmed < 0 || f->idx < j->res.confirmed))
			j->res.confirmed = f->idx;
	}
	free(f);
	if (--j->pending == 0)
		rdns_job_finish(j);
}

/* rdns_ptr_cb - the PTR answer: start the forward lookups. */
static void
rdns_ptr_cb(void *arg, const struct dns_answer *a)
{
	struct rdns_job *j = arg;
	int i;

	j->res.status = a->status;
	for (i = 0;
	     i < a->n && a->status == DNS_OK && j->res.n < RDNS_MAX_NAMES;
	     i++) {
		const char *nm = a->rr[i].u.name;

		if (nm == NULL || *nm == '\0' || strlen(nm) > 253)
			continue;
		snprintf(j->res.name[j->res.n++], 256, "%s", nm);
	}
	for (i = 0; i < j->res.n; i++) {
		struct rdns_fwd *f = xcalloc(1, sizeof(*f));

		f->job = j;
		f->idx = i;
		j->pending++;
		if (dns_query(j->res.name[i],
		              j->ip.family == AF_INET ? ns_t_a : ns_t_aaaa,
		              rdns_fwd_cb, f) < 0) {
			j->pending--;
			j->res.fwd_tempfail = true;
			free(f);
		}
	}
	if (--j->pending == 0)
		rdns_job_finish(j);
}

/*
 * rdns_lookup_start - join s's lookup (or start it); fn(s, result) is
 * called on the loop when it is complete and s is still at this stage.
 */
void
rdns_lookup_start(struct session *s, enum chk_id who, rdns_done_fn fn)
{
	struct rdns_job *j;
	char name[128];

	for (j = rdns_jobs; j; j = j->next)
		if (j->sess_id == s->id && j->gen == s->gen)
			break;
	if (j == NULL) {
		j = xcalloc(1, sizeof(*j));
		j->sess_id = s->id;
		j->gen = s->gen;
		j->ip = s->client;
		j->res.confirmed = -1;
		j->res.status = DNS_TEMPFAIL;
		dns_reverse_name(&s->client, NULL, name, sizeof(name));
		j->pending = 1;
		if (dns_query(name, ns_t_ptr, rdns_ptr_cb, j) < 0) {
			/* no resolver: a known answer, on the next turn */
			free(j);
			chk_set(s, who, CHK_TEMPERR, NULL,
			        "Temporary DNS failure looking up your "
			        "reverse mapping",
			        "resolver unavailable");
			chk_done_later(s, who);
			return;
		}
		j->next = rdns_jobs;
		rdns_jobs = j;
	}
	if (j->n_w < RDNS_MAX_WAITERS) {
		j->w[j->n_w].id = who;
		j->w[j->n_w].fn = fn;
		j->n_w++;
	}
}

/* rdns_done_cb - the verdict of the rdns check from the lookup. */
static void
rdns_done_cb(struct session *s, const struct rdns_ptr *p)
{
	if (p->confirmed >= 0) {
		snprintf(s->ptr, sizeof(s->ptr), "%s", p->name[p->confirmed]);
		chk_set(s, CHK_RDNS, CHK_PASS, NULL, "", "ptr=%s", s->ptr);
	} else if (p->status == DNS_TEMPFAIL) {
		chk_set(s, CHK_RDNS, CHK_TEMPERR, NULL,
		        "Temporary DNS failure looking up your reverse mapping",
		        "PTR lookup failed (SERVFAIL or timeout)");
	} else if (p->status == DNS_NXDOMAIN) {
		chk_set(s, CHK_RDNS, CHK_FAIL, "550 5.7.1", rdns_text,
		        "PTR NXDOMAIN");
	} else if (p->n == 0) {
		chk_set(s, CHK_RDNS, CHK_FAIL, "550 5.7.1", rdns_text,
		        "no PTR record");
	} else if (p->fwd_tempfail) {
		chk_set(s, CHK_RDNS, CHK_TEMPERR, NULL,
		        "Temporary DNS failure looking up your reverse mapping",
		        "ptr=%s forward lookup failed", p->name[0]);
	} else {
		chk_set(s, CHK_RDNS, CHK_FAIL, "550 5.7.1", rdns_text,
		        "ptr=%s does not resolve back to %s", p->name[0],
		        s->client_str);
	}
	sess_check_done(s, CHK_RDNS);
}

/* rdns_start - join (or start) the session's PTR lookup. */
static void
rdns_start(struct session *s)
{
	rdns_lookup_start(s, CHK_RDNS, rdns_done_cb);
}

const struct check chk_rdns = {
        .name = "rdns",
        .id = CHK_RDNS,
        .stage = STAGE_CONNECT,
        .start = rdns_start,
};
