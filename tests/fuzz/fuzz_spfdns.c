/*
 * fuzz_spfdns.c - libFuzzer harness for the SPF path as the daemon runs
 * it: spf_eval_start() on a libuv loop, libspf2's DNS layer answered from
 * dns.c's cache (spf.c: name keys, dns_answer -> SPF_dns_rr_t, misses,
 * rounds, prefetch of MX/PTR targets, the budgets), with the DNS world
 * taken from the input.  fuzz_spf.c covers libspf2's compiler and macros
 * through its own zone layer; this one covers our layer and the rounds.
 *
 * Input: lines.  Line 0: the MAIL FROM ("" = null sender), line 1: the
 * HELO name, line 2: the client address (v4 or v6 text; bad: 192.0.2.1).
 * Each further line "NAME TYPE DATA" is a record put in dns.c's cache
 * (records of one name and type form one answer):
 *   A / AAAA  DATA an address       MX   DATA "PREF HOST"
 *   PTR       DATA a name           TXT  DATA the text (raw bytes)
 *   NX / ND / TF  NAME has no such name / no data / a temporary failure
 *             for the type DATA (A, AAAA, MX, PTR, TXT)
 * dns.c has no server (dns_init with an unusable server list), so every
 * miss ends as a temporary failure in the evaluation's next round.
 * Checked: the callback comes exactly once, later, with a known result;
 * the domain, explanation and reason are printable ASCII; no leak, no
 * memory error (ASan/UBSan).  Seeds: tests/fuzz/seeds/spfdns/;
 * FUZZ_SPFDNS_PRINT=1 prints each outcome (to look at a seed).
 */
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define MAX_ANS 48
#define MAX_RR 16

struct fz_ans {
	char name[256];
	int type;
	struct dns_answer *a;
};

struct fz_done {
	int calls;
	struct spf_outcome out;
};

static uv_loop_t *fz_loop;

/* fz_type - a type name, or -1. */
static int
fz_type(const char *s)
{
	static const struct {
		const char *n;
		int t;
	} types[] = {{"A", ns_t_a},
	             {"AAAA", ns_t_aaaa},
	             {"MX", ns_t_mx},
	             {"PTR", ns_t_ptr},
	             {"TXT", ns_t_txt}};
	size_t i;

	for (i = 0; i < ARRAY_LEN(types); i++)
		if (strcmp(s, types[i].n) == 0)
			return types[i].t;
	return -1;
}

/* fz_get - the answer for (name, type), made on first use. */
static struct dns_answer *
fz_get(struct fz_ans *v, int *n, const char *name, int type)
{
	int i;

	for (i = 0; i < *n; i++)
		if (v[i].type == type && strcmp(v[i].name, name) == 0)
			return v[i].a;
	if (*n == MAX_ANS)
		return NULL;
	snprintf(v[*n].name, sizeof(v[*n].name), "%s", name);
	v[*n].type = type;
	v[*n].a = xcalloc(1, sizeof(struct dns_answer) +
	                             MAX_RR * sizeof(struct dns_rr));
	v[*n].a->status = DNS_NODATA;
	v[*n].a->type = type;
	v[*n].a->ttl = 300;
	return v[(*n)++].a;
}

/* fz_record - one "NAME TYPE DATA" line into the answers. */
static void
fz_record(struct fz_ans *v, int *n, char *line)
{
	char *name = line, *ty, *data;
	struct dns_answer *a;
	struct dns_rr *rr;
	int type;

	ty = strchr(name, ' ');
	if (ty == NULL)
		return;
	*ty++ = '\0';
	data = strchr(ty, ' ');
	if (data)
		*data++ = '\0';
	else
		data = ty + strlen(ty);
	if (strcmp(ty, "NX") == 0 || strcmp(ty, "ND") == 0 ||
	    strcmp(ty, "TF") == 0) {
		type = fz_type(data);
		if (type < 0 || (a = fz_get(v, n, name, type)) == NULL)
			return;
		a->status = ty[0] == 'N'
		                    ? (ty[1] == 'X' ? DNS_NXDOMAIN : DNS_NODATA)
		                    : DNS_TEMPFAIL;
		return;
	}
	type = fz_type(ty);
	if (type < 0 || (a = fz_get(v, n, name, type)) == NULL ||
	    a->n == MAX_RR)
		return;
	rr = &a->rr[a->n];
	switch (type) {
	case ns_t_a:
		if (inet_pton(AF_INET, data, &rr->u.a) != 1)
			return;
		break;
	case ns_t_aaaa:
		if (inet_pton(AF_INET6, data, &rr->u.aaaa) != 1)
			return;
		break;
	case ns_t_mx: {
		char *h = strchr(data, ' ');

		rr->u.mx.pref = (uint16_t)atoi(data);
		rr->u.mx.host = xstrdup(h ? h + 1 : "");
		break;
	}
	case ns_t_ptr:
		rr->u.name = xstrdup(data);
		break;
	default:
		rr->u.txt = xstrdup(data);
		break;
	}
	a->n++;
	a->status = DNS_OK;
}

/* fz_printable - printable ASCII only. */
static void
fz_printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			abort();
}

static void
fz_done_cb(void *arg, const struct spf_outcome *out, int rc)
{
	struct fz_done *d = arg;

	d->calls++;
	d->out = *out;
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct fz_ans v[MAX_ANS];
	struct spf_query q = {0};
	struct fz_done d = {0};
	char *buf, *p, *line[3] = {"", "", ""};
	int n = 0, i, k = 0;

	if (fz_loop == NULL) {
		struct config cfg = {0};

		fz_loop = uv_default_loop();
		/* no usable server: the timers exist, every miss fails */
		cfg.dns_servers = "none";
		dns_init(fz_loop, &cfg);
	}
	buf = xmalloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';
	for (p = buf; p != NULL;) {
		char *nl = strchr(p, '\n');

		if (nl)
			*nl++ = '\0';
		if (k < 3)
			line[k++] = p;
		else
			fz_record(v, &n, p);
		p = nl;
	}
	for (i = 0; i < n; i++)
		dns_cache_add(v[i].name, v[i].type, v[i].a);
	q.sender = line[0];
	q.helo = line[1];
	if (ipaddr_parse(&q.client, line[2]) < 0)
		ipaddr_parse(&q.client, "192.0.2.1");
	q.receiver = "mx.fuzz.test";
	q.timeout_ms = 1000;
	if (spf_eval_start(fz_loop, &q, fz_done_cb, &d) < 0)
		abort();
	if (d.calls != 0)
		abort(); /* never from spf_eval_start() */
	while (d.calls == 0)
		uv_run(fz_loop, UV_RUN_ONCE);
	/* the evaluation's timer is closed on the next turn */
	uv_run(fz_loop, UV_RUN_NOWAIT);
	if (d.calls != 1 || (unsigned)d.out.result > SPF_RES_PERMERROR)
		abort();
	if (getenv("FUZZ_SPFDNS_PRINT")) /* to look at a seed's outcome */
		fprintf(stderr, "spf=%s runs=%u queries=%u exp=%s why=%s\n",
		        spf_res_name(d.out.result), d.out.runs,
		        d.out.dns_queries, d.out.explanation, d.out.reason);
	fz_printable(d.out.domain);
	fz_printable(d.out.explanation);
	fz_printable(d.out.reason);
	dns_cache_flush();
	for (i = 0; i < n; i++)
		dns_answer_free(v[i].a);
	free(buf);
	return 0;
}
