/*
 * test_dns.c - dns.c: the answer parser (good and hostile messages), the
 * reverse names, and the c-ares/libuv glue on a real loop against a tiny
 * UDP responder on 127.0.0.1 run by this test on the same loop (answers,
 * NXDOMAIN, SERVFAIL, silence): callbacks never synchronous, the cache
 * honours TTLs (0: not cached; NXDOMAIN cached; SERVFAIL never), timeouts
 * end as DNS_TEMPFAIL, shutdown ends lookups in flight and leaks no
 * handle.  (The tests/dns suite does the same against a real nsd.)
 */
#include <arpa/nameser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "t.h"

/* ------------------------------------------------------ message builder */

struct msg {
	unsigned char b[1024];
	size_t n;
};

static void
put(struct msg *m, const void *p, size_t n)
{
	memcpy(m->b + m->n, p, n);
	m->n += n;
}

static void
put16(struct msg *m, unsigned v)
{
	unsigned char x[2] = {v >> 8, v & 255};

	put(m, x, 2);
}

static void
put32(struct msg *m, uint32_t v)
{
	put16(m, v >> 16);
	put16(m, v & 0xffff);
}

/* putname - "a.b" as labels. */
static void
putname(struct msg *m, const char *name)
{
	while (*name) {
		size_t l = strcspn(name, ".");
		unsigned char c = (unsigned char)l;

		put(m, &c, 1);
		put(m, name, l);
		name += l;
		if (*name == '.')
			name++;
	}
	put(m, "", 1);
}

/* header - response header with the counts; question name/type. */
static void
header(struct msg *m, unsigned id, int rcode, unsigned an, unsigned ns,
       const char *qname, int qtype)
{
	m->n = 0;
	put16(m, id);
	put16(m, 0x8180 | rcode);
	put16(m, 1);
	put16(m, an);
	put16(m, ns);
	put16(m, 0);
	putname(m, qname);
	put16(m, qtype);
	put16(m, 1);
}

/* rr_a - an A record owned by the question name (pointer 0xc00c). */
static void
rr_a(struct msg *m, uint32_t ttl, const char *ip)
{
	struct in_addr a;

	inet_pton(AF_INET, ip, &a);
	put16(m, 0xc00c);
	put16(m, ns_t_a);
	put16(m, 1);
	put32(m, ttl);
	put16(m, 4);
	put(m, &a, 4);
}

static void
rr_soa(struct msg *m, uint32_t ttl, uint32_t minimum)
{
	size_t start;

	put16(m, 0xc00c);
	put16(m, ns_t_soa);
	put16(m, 1);
	put32(m, ttl);
	start = m->n;
	put16(m, 0);
	putname(m, "ns.test");
	putname(m, "h.test");
	put32(m, 1);
	put32(m, 2);
	put32(m, 3);
	put32(m, 4);
	put32(m, minimum);
	m->b[start] = (m->n - start - 2) >> 8;
	m->b[start + 1] = (m->n - start - 2) & 255;
}

static void
rr_name(struct msg *m, int type, uint32_t ttl, int pref, const char *name)
{
	size_t start;

	put16(m, 0xc00c);
	put16(m, type);
	put16(m, 1);
	put32(m, ttl);
	start = m->n;
	put16(m, 0);
	if (pref >= 0)
		put16(m, pref);
	putname(m, name);
	m->b[start] = (m->n - start - 2) >> 8;
	m->b[start + 1] = (m->n - start - 2) & 255;
}

/* rr_owned - a record of type with an explicit owner and a name as rdata
 * (CNAME/PTR) or an IPv4 address (A). */
static void
rr_owned(struct msg *m, const char *owner, int type, uint32_t ttl,
         const char *data)
{
	size_t start;

	putname(m, owner);
	put16(m, type);
	put16(m, 1);
	put32(m, ttl);
	start = m->n;
	put16(m, 0);
	if (type == ns_t_a) {
		struct in_addr a;

		inet_pton(AF_INET, data, &a);
		put(m, &a, 4);
	} else {
		putname(m, data);
	}
	m->b[start] = (m->n - start - 2) >> 8;
	m->b[start + 1] = (m->n - start - 2) & 255;
}

/* ------------------------------------------------------- parser cases */

static void
test_parser(void)
{
	struct dns_answer *a;
	struct msg m;

	t_begin("parse: A records, smallest TTL");
	header(&m, 1, 0, 2, 0, "a.test", ns_t_a);
	rr_a(&m, 300, "192.0.2.1");
	rr_a(&m, 100, "192.0.2.2");
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), 0);
	T_CHECK(a && a->status == DNS_OK && a->n == 2 && a->ttl == 100,
	        "status %d n %d ttl %u", a ? (int)a->status : -1, a ? a->n : -1,
	        a ? a->ttl : 0);
	dns_answer_free(a);
	t_end();

	t_begin("parse: MX with compression, null MX");
	header(&m, 1, 0, 2, 0, "x.test", ns_t_mx);
	rr_name(&m, ns_t_mx, 60, 10, "mx1.x.test");
	rr_name(&m, ns_t_mx, 60, 0, "");
	T_INTEQ(dns_parse(m.b, m.n, ns_t_mx, &a), 0);
	T_CHECK(a && a->n == 2, "n");
	if (a && a->n == 2) {
		T_STREQ(a->rr[0].u.mx.host, "mx1.x.test");
		T_INTEQ(a->rr[0].u.mx.pref, 10);
		T_STREQ(a->rr[1].u.mx.host, "");
	}
	dns_answer_free(a);
	t_end();

	t_begin("parse: PTR lower-cased, odd bytes escaped");
	header(&m, 1, 0, 1, 0, "1.2.0.192.in-addr.arpa", ns_t_ptr);
	rr_name(&m, ns_t_ptr, 60, -1, "Mail.Ex ample.test");
	T_INTEQ(dns_parse(m.b, m.n, ns_t_ptr, &a), 0);
	if (a && a->n == 1)
		T_STREQ(a->rr[0].u.name, "mail.ex\\032ample.test");
	else
		T_CHECK(0, "no PTR");
	dns_answer_free(a);
	t_end();

	t_begin("parse: records of other names are ignored");
	header(&m, 1, 0, 2, 0, "a.test", ns_t_a);
	rr_owned(&m, "evil.test", ns_t_a, 60, "192.0.2.66");
	rr_a(&m, 60, "192.0.2.1");
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), 0);
	T_CHECK(a && a->n == 1, "n %d", a ? a->n : -1);
	if (a && a->n == 1)
		T_CHECK(a->rr[0].u.a.s_addr == inet_addr("192.0.2.1"), "addr");
	dns_answer_free(a);
	header(&m, 1, 0, 1, 0, "a.test", ns_t_a);
	rr_owned(&m, "evil.test", ns_t_a, 60, "192.0.2.66");
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), 0);
	T_CHECK(a && a->status == DNS_NODATA, "only another name: NODATA");
	dns_answer_free(a);
	t_end();

	t_begin("parse: PTR through an RFC 2317 CNAME");
	header(&m, 1, 0, 2, 0, "5.2.0.192.in-addr.arpa", ns_t_ptr);
	rr_owned(&m, "5.2.0.192.in-addr.arpa", ns_t_cname, 120,
	         "5.0-25.2.0.192.in-addr.arpa");
	rr_owned(&m, "5.0-25.2.0.192.in-addr.arpa", ns_t_ptr, 600,
	         "mail.example.org");
	T_INTEQ(dns_parse(m.b, m.n, ns_t_ptr, &a), 0);
	T_CHECK(a && a->status == DNS_OK && a->n == 1 && a->ttl == 120,
	        "status %d n %d ttl %u", a ? (int)a->status : -1, a ? a->n : -1,
	        a ? a->ttl : 0);
	if (a && a->n == 1)
		T_STREQ(a->rr[0].u.name, "mail.example.org");
	dns_answer_free(a);
	t_end();

	t_begin("parse: NXDOMAIN takes the SOA minimum");
	header(&m, 1, 3, 0, 1, "nx.test", ns_t_a);
	rr_soa(&m, 3600, 45);
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), 0);
	T_CHECK(a && a->status == DNS_NXDOMAIN && a->ttl == 45, "status/ttl");
	dns_answer_free(a);
	t_end();

	t_begin("parse: NOERROR without the type is NODATA");
	header(&m, 1, 0, 1, 0, "x.test", ns_t_mx);
	rr_a(&m, 60, "192.0.2.1");
	T_INTEQ(dns_parse(m.b, m.n, ns_t_mx, &a), 0);
	T_CHECK(a && a->status == DNS_NODATA && a->n == 0, "status");
	dns_answer_free(a);
	t_end();

	t_begin("parse: SERVFAIL and REFUSED are TEMPFAIL");
	header(&m, 1, 2, 0, 0, "x.test", ns_t_a);
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), 0);
	T_CHECK(a && a->status == DNS_TEMPFAIL, "servfail");
	dns_answer_free(a);
	header(&m, 1, 5, 0, 0, "x.test", ns_t_a);
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), 0);
	T_CHECK(a && a->status == DNS_TEMPFAIL, "refused");
	dns_answer_free(a);
	t_end();

	t_begin("parse: hostile messages are -EBADMSG");
	/* compression loop: a pointer to itself */
	header(&m, 1, 0, 1, 0, "x.test", ns_t_a);
	put16(&m, 0xc000 | (unsigned)m.n);
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), -EBADMSG);
	/* forward pointer */
	header(&m, 1, 0, 1, 0, "x.test", ns_t_a);
	put16(&m, 0xc000 | (unsigned)(m.n + 10));
	put16(&m, 1);
	put16(&m, 1);
	put32(&m, 1);
	put16(&m, 4);
	put32(&m, 1);
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), -EBADMSG);
	/* truncated rdata */
	header(&m, 1, 0, 1, 0, "x.test", ns_t_a);
	rr_a(&m, 60, "192.0.2.1");
	T_INTEQ(dns_parse(m.b, m.n - 1, ns_t_a, &a), -EBADMSG);
	/* A with 5 bytes of rdata */
	header(&m, 1, 0, 1, 0, "x.test", ns_t_a);
	rr_a(&m, 60, "192.0.2.1");
	m.b[m.n - 5] = 5;
	put(&m, "x", 1);
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), -EBADMSG);
	/* not a response, too short */
	header(&m, 1, 0, 0, 0, "x.test", ns_t_a);
	m.b[2] &= 0x7f;
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), -EBADMSG);
	T_INTEQ(dns_parse(m.b, 5, ns_t_a, &a), -EBADMSG);
	T_CHECK(a == NULL, "out set on error");
	t_end();

	t_begin("parse: TTL over 2^31 is 0; huge TTL clamped to a day");
	header(&m, 1, 0, 1, 0, "a.test", ns_t_a);
	rr_a(&m, 0x80000000u, "192.0.2.1");
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), 0);
	T_CHECK(a && a->ttl == 0, "ttl %u", a ? a->ttl : 1);
	dns_answer_free(a);
	header(&m, 1, 0, 1, 0, "a.test", ns_t_a);
	rr_a(&m, 0x7fffffffu, "192.0.2.1");
	T_INTEQ(dns_parse(m.b, m.n, ns_t_a, &a), 0);
	T_CHECK(a && a->ttl == 86400, "ttl %u", a ? a->ttl : 1);
	dns_answer_free(a);
	t_end();
}

static void
test_reverse(void)
{
	struct ipaddr ip;
	char out[128];

	t_begin("reverse: ipv4 in-addr.arpa and a DNSBL zone");
	ipaddr_parse(&ip, "192.0.2.1");
	dns_reverse_name(&ip, NULL, out, sizeof(out));
	T_STREQ(out, "1.2.0.192.in-addr.arpa");
	dns_reverse_name(&ip, ".zen.example", out, sizeof(out));
	T_STREQ(out, "1.2.0.192.zen.example");
	t_end();

	t_begin("reverse: ipv6 nibbles (RFC 5782 2.4 example)");
	ipaddr_parse(&ip, "2001:db8::1");
	dns_reverse_name(&ip, "bl.example", out, sizeof(out));
	T_STREQ(out, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0."
	             "1.0.0.2.bl.example");
	dns_reverse_name(&ip, NULL, out, sizeof(out));
	T_CHECK(strstr(out, ".ip6.arpa") != NULL, "%s", out);
	t_end();
}

/* ------------------------------------------------- loop and responder */

static uv_loop_t loop;
static uv_udp_t srv;
static int srv_count[8]; /* queries seen, per name below */
static const char *const srv_names[] = {"a.test",  "zero.test", "nx.test",
                                        "sf.test", "drop.test", "mx.test"};

static void
srv_alloc_cb(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
	static char mem[2048];

	*b = uv_buf_init(mem, sizeof(mem));
}

static void
srv_send_cb(uv_udp_send_t *r, int status)
{
	free(r);
}

/* srv_recv_cb - answer a query according to its name. */
static void
srv_recv_cb(uv_udp_t *h, ssize_t n, const uv_buf_t *b,
            const struct sockaddr *from, unsigned flags)
{
	const unsigned char *q = (const unsigned char *)b->base;
	char qname[256];
	size_t off = 12, o = 0;
	struct msg *m;
	int qtype, i;

	if (n < 17 || from == NULL)
		return;
	while (off < (size_t)n && q[off] && o + q[off] + 1 < sizeof(qname)) {
		if (o)
			qname[o++] = '.';
		memcpy(qname + o, q + off + 1, q[off]);
		o += q[off];
		off += q[off] + 1;
	}
	qname[o] = '\0';
	qtype = q[off + 1] << 8 | q[off + 2];
	for (i = 0; i < (int)ARRAY_LEN(srv_names); i++)
		if (strcasecmp(qname, srv_names[i]) == 0)
			srv_count[i]++;
	m = xcalloc(1, sizeof(*m) + sizeof(uv_udp_send_t));
	unsigned id = q[0] << 8 | q[1];
	if (strcasecmp(qname, "a.test") == 0) {
		header(m, id, 0, 2, 0, qname, qtype);
		rr_a(m, 300, "192.0.2.1");
		rr_a(m, 300, "192.0.2.2");
	} else if (strcasecmp(qname, "zero.test") == 0) {
		header(m, id, 0, 1, 0, qname, qtype);
		rr_a(m, 0, "192.0.2.3");
	} else if (strcasecmp(qname, "nx.test") == 0) {
		header(m, id, 3, 0, 1, qname, qtype);
		rr_soa(m, 300, 30);
	} else if (strcasecmp(qname, "sf.test") == 0) {
		header(m, id, 2, 0, 0, qname, qtype);
	} else if (strcasecmp(qname, "mx.test") == 0) {
		header(m, id, 0, 1, 0, qname, qtype);
		rr_name(m, ns_t_mx, 60, 10, "mx1.mx.test");
	} else {
		free(m);
		return; /* drop.test and the rest: silence */
	}
	uv_udp_send_t *r = (uv_udp_send_t *)(m + 1);
	uv_buf_t out = uv_buf_init((char *)m->b, (unsigned)m->n);
	/* the request is freed with m: send synchronously-owned copy */
	uv_udp_try_send(h, &out, 1, from);
	(void)r;
	(void)srv_send_cb;
	free(m);
}

/* One lookup's outcome. */
struct res {
	int calls;
	enum dns_status status;
	int n;
	unsigned ttl;
	char first[64];
};

static void
res_cb(void *arg, const struct dns_answer *a)
{
	struct res *r = arg;

	r->calls++;
	r->status = a->status;
	r->n = a->n;
	r->ttl = a->ttl;
	if (a->n && a->type == ns_t_a)
		inet_ntop(AF_INET, &a->rr[0].u.a, r->first, sizeof(r->first));
	if (a->n && a->type == ns_t_mx)
		snprintf(r->first, sizeof(r->first), "%s", a->rr[0].u.mx.host);
}

/* run_until - step the loop until *calls >= want (bounded). */
static uv_timer_t tick;

static void
tick_cb(uv_timer_t *t)
{
}

/* run_until - UV_RUN_ONCE blocks in poll after running due timers, so a
 * 10 ms tick bounds each step (and the whole wait: 1000 steps). */
static void
run_until(int *calls, int want)
{
	int i;

	uv_timer_start(&tick, tick_cb, 10, 10);
	for (i = 0; i < 1000 && *calls < want; i++)
		uv_run(&loop, UV_RUN_ONCE);
	uv_timer_stop(&tick);
}

/* lookup - one query, run to completion. */
static void
lookup(const char *name, int type, struct res *r)
{
	memset(r, 0, sizeof(*r));
	T_INTEQ(dns_query(name, type, res_cb, r), 0);
	T_CHECK(r->calls == 0, "%s: callback ran synchronously", name);
	run_until(&r->calls, 1);
	T_INTEQ(r->calls, 1);
}

static void
test_loop(void)
{
	struct sockaddr_in sa;
	struct sockaddr_storage ss;
	int len = sizeof(ss);
	char servers[64];
	struct config cfg = {0};
	struct res r, r2, r3;
	struct dns_stats st;

	uv_loop_init(&loop);
	uv_timer_init(&loop, &tick);
	uv_udp_init(&loop, &srv);
	uv_ip4_addr("127.0.0.1", 0, &sa);
	uv_udp_bind(&srv, (struct sockaddr *)&sa, 0);
	uv_udp_getsockname(&srv, (struct sockaddr *)&ss, &len);
	snprintf(servers, sizeof(servers), "127.0.0.1:%d",
	         ntohs(((struct sockaddr_in *)&ss)->sin_port));
	uv_udp_recv_start(&srv, srv_alloc_cb, srv_recv_cb);
	cfg.dns_servers = servers;
	cfg.dns_timeout_ms = 400;

	t_begin("loop: dns_init");
	T_INTEQ(dns_init(&loop, &cfg), 0);
	t_end();

	t_begin("loop: A answer, asynchronous");
	lookup("a.test", ns_t_a, &r);
	T_CHECK(r.status == DNS_OK && r.n == 2 && r.ttl == 300,
	        "status %d n %d", r.status, r.n);
	T_STREQ(r.first, "192.0.2.1");
	T_INTEQ(srv_count[0], 1);
	t_end();

	t_begin("loop: second lookup from the cache, still asynchronous");
	lookup("A.Test.", ns_t_a, &r);
	T_CHECK(r.status == DNS_OK && r.n == 2, "status %d", r.status);
	T_INTEQ(srv_count[0], 1);
	dns_stats_get(&st);
	T_CHECK(st.hits == 1, "hits %llu", (unsigned long long)st.hits);
	t_end();

	t_begin("loop: TTL 0 is not cached");
	lookup("zero.test", ns_t_a, &r);
	lookup("zero.test", ns_t_a, &r);
	T_CHECK(r.status == DNS_OK, "status");
	T_INTEQ(srv_count[1], 2);
	t_end();

	t_begin("loop: NXDOMAIN, cached for the SOA minimum");
	lookup("nx.test", ns_t_a, &r);
	T_CHECK(r.status == DNS_NXDOMAIN && r.ttl == 30, "status %d ttl %u",
	        r.status, r.ttl);
	lookup("nx.test", ns_t_a, &r);
	T_CHECK(r.status == DNS_NXDOMAIN, "status %d", r.status);
	T_INTEQ(srv_count[2], 1);
	t_end();

	t_begin("loop: SERVFAIL is TEMPFAIL and never cached");
	lookup("sf.test", ns_t_a, &r);
	T_CHECK(r.status == DNS_TEMPFAIL, "status %d", r.status);
	int before = srv_count[3];
	lookup("sf.test", ns_t_a, &r);
	T_CHECK(r.status == DNS_TEMPFAIL, "status %d", r.status);
	T_CHECK(srv_count[3] > before, "second SERVFAIL came from the cache");
	t_end();

	t_begin("loop: MX");
	lookup("mx.test", ns_t_mx, &r);
	T_CHECK(r.status == DNS_OK && r.n == 1, "status %d", r.status);
	T_STREQ(r.first, "mx1.mx.test");
	t_end();

	t_begin("loop: silence is TEMPFAIL after dns_timeout");
	uint64_t t0 = uv_now(&loop);
	lookup("drop.test", ns_t_a, &r);
	uint64_t took = uv_now(&loop) - t0;
	T_CHECK(r.status == DNS_TEMPFAIL, "status %d", r.status);
	T_CHECK(took >= 300 && took < 3000, "took %llu ms",
	        (unsigned long long)took);
	t_end();

	t_begin("loop: three lookups run concurrently");
	memset(&r, 0, sizeof(r));
	memset(&r2, 0, sizeof(r2));
	memset(&r3, 0, sizeof(r3));
	dns_cache_flush();
	t0 = uv_now(&loop);
	dns_query("drop.test", ns_t_a, res_cb, &r);
	dns_query("drop.test", ns_t_aaaa, res_cb, &r2);
	dns_query("drop.test", ns_t_mx, res_cb, &r3);
	run_until(&r.calls, 1);
	run_until(&r2.calls, 1);
	run_until(&r3.calls, 1);
	took = uv_now(&loop) - t0;
	T_CHECK(r.calls + r2.calls + r3.calls == 3, "calls");
	T_CHECK(took < 2 * 400 + 200, "3 timeouts took %llu ms, not ~1",
	        (unsigned long long)took);
	t_end();

	t_begin("loop: bad name refused");
	T_INTEQ(dns_query("", ns_t_a, res_cb, &r), -EINVAL);
	t_end();

	t_begin("loop: shutdown ends lookups in flight, no handle leaks");
	memset(&r, 0, sizeof(r));
	memset(&r2, 0, sizeof(r2));
	dns_query("drop.test", ns_t_a, res_cb, &r);
	dns_query("a.test", ns_t_a, res_cb, &r2); /* cached: queued */
	dns_shutdown();
	T_CHECK(r.calls == 1 && r.status == DNS_TEMPFAIL, "in flight: %d %d",
	        r.calls, r.status);
	T_CHECK(r2.calls == 1, "queued hit: %d", r2.calls);
	uv_close((uv_handle_t *)&srv, NULL);
	uv_close((uv_handle_t *)&tick, NULL);
	uv_run(&loop, UV_RUN_DEFAULT);
	T_INTEQ(uv_loop_close(&loop), 0);
	t_end();
}

int
main(void)
{
	test_parser();
	test_reverse();
	test_loop();
	return t_exit();
}
