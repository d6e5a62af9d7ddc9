/*
 * dns.c - the only c-ares/libuv glue: asynchronous DNS lookups with a
 * TTL cache in front.
 *
 * Public: dns_init(), dns_reconfigure(), dns_query(), dns_reverse_name(),
 * dns_shutdown(), and for tests and fuzzers dns_parse() / dns_answer_free()
 * / dns_cache_flush() / dns_cache_add() / dns_stats_get();
 * dns_cache_peek() for the SPF layer (a synchronous look into the cache);
 * dns_tick_add() for periodic work of DNS users (DNSBL self-tests).
 * dns_init() adds a "dns" section (queries, cache hits, sent, failures)
 * to `mailmoatctl stats`.  A tick
 * timer (unref'd: it never keeps the loop alive) drops expired cache
 * entries every DNS_TICK_MS and runs the tick functions, at once after
 * dns_init() and after each dns_reconfigure().
 *
 * One c-ares channel lives on the loop: one uv_poll_t per c-ares socket
 * (created and stopped from c-ares's socket-state callback) and one uv
 * timer armed from ares_timeout().  A poll error is handed to c-ares as
 * readable+writable so that it sees the error on its own read.
 *
 * Answers are parsed here (dns_parse), not by c-ares's ares_parse_*
 * helpers, because those drop the TTL of most record types; the parser
 * follows nothing and trusts nothing: every length is checked, and name
 * compression pointers may only point backwards.
 *
 * A lookup of a (name, type) already in flight joins it: one query on
 * the wire, every caller gets its answer (stats: joined).
 *
 * The cache is keyed by (type, lower-case name).  Positive answers live
 * for the smallest TTL of their records, NXDOMAIN/NODATA for the SOA
 * minimum (RFC 2308; 60 s when the server sends no SOA), both clamped to
 * DNS_CACHE_MAX_TTL; temporary failures are never cached.  A cache hit is
 * delivered on the next loop turn (a zero timer), never from dns_query().
 *
 * Config keys: dns_servers (c-ares "ip:port,..." csv; none: resolv.conf),
 * dns_timeout (the whole lookup: two tries, t/3 then 2t/3, as c-ares
 * doubles the timeout of each retry).
 */
#include <arpa/nameser.h>
#include <ares.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy.h"

#define DNS_CACHE_MAX 4096      /* entries */
#define DNS_CACHE_MAX_TTL 86400 /* seconds */
#define DNS_NEG_TTL_DEFAULT 60  /* no SOA in a negative answer */
#define DNS_MAX_RR 64           /* records kept per answer */
#define DNS_HASH_SIZE 1024
#define DNS_TICK_MS 30000 /* housekeeping and tick hooks */
#define DNS_MAX_TICK_FNS 4

/* One c-ares socket being watched. */
struct dns_sock {
	uv_poll_t poll;
	ares_socket_t fd;
	struct dns_sock *next;
};

/* Another caller of a lookup already in flight. */
struct dns_waiter {
	dns_cb cb;
	void *arg;
	struct dns_waiter *next;
};

/* A lookup in flight, owned by c-ares until its callback; callers of the
 * same (name, type) meanwhile wait on it (one query on the wire). */
struct dns_q {
	char name[256];
	int type;
	dns_cb cb;
	void *arg;
	struct dns_waiter *waiters, **waiters_tail;
	struct dns_q *next; /* dns.inflight */
};

/* A cached answer; also used for the queue of cache hits to deliver. */
struct dns_entry {
	char name[256];
	int type;
	uint64_t expires_ms;
	struct dns_answer *ans;
	struct dns_entry *hnext;         /* hash chain */
	struct dns_entry *older, *newer; /* insertion order */
};

/* A cache hit waiting for the next loop turn. */
struct dns_hit {
	struct dns_answer *ans; /* a copy, TTL adjusted */
	dns_cb cb;
	void *arg;
	struct dns_hit *next;
};

static struct {
	uv_loop_t *loop;
	ares_channel chan;
	bool chan_ok;
	uv_timer_t timer;
	uv_timer_t deliver;
	uv_timer_t tick;
	struct dns_sock *socks;
	char *servers;
	unsigned timeout_ms;

	struct dns_entry *hash[DNS_HASH_SIZE];
	struct dns_entry *oldest, *newest;
	unsigned n_cache;

	struct dns_hit *hits, **hits_tail;
	struct dns_q *inflight;
	struct dns_stats st;
} dns;

static void dns_timer_arm(void);

/* Functions called at each tick (registered before or after dns_init). */
static void (*dns_tick_fns[DNS_MAX_TICK_FNS])(void);
static int dns_n_tick_fns;

/* dns_answer_new - an answer with room for n records. */
static struct dns_answer *
dns_answer_new(enum dns_status status, int type, int n)
{
	struct dns_answer *a;

	a = xcalloc(1, sizeof(*a) + (size_t)n * sizeof(a->rr[0]));
	a->status = status;
	a->type = type;
	return a;
}

/* dns_answer_free - free an answer and the strings it holds. */
void
dns_answer_free(struct dns_answer *a)
{
	int i;

	if (a == NULL)
		return;
	for (i = 0; i < a->n; i++) {
		switch (a->type) {
		case ns_t_mx:
			free(a->rr[i].u.mx.host);
			break;
		case ns_t_ptr:
		case ns_t_cname:
			free(a->rr[i].u.name);
			break;
		case ns_t_txt:
			free(a->rr[i].u.txt);
			break;
		}
	}
	free(a);
}

/* dns_answer_copy - a deep copy. */
static struct dns_answer *
dns_answer_copy(const struct dns_answer *src)
{
	struct dns_answer *a;
	int i;

	a = dns_answer_new(src->status, src->type, src->n);
	a->ttl = src->ttl;
	a->n = src->n;
	memcpy(a->rr, src->rr, (size_t)src->n * sizeof(a->rr[0]));
	for (i = 0; i < a->n; i++) {
		switch (a->type) {
		case ns_t_mx:
			a->rr[i].u.mx.host = xstrdup(src->rr[i].u.mx.host);
			break;
		case ns_t_ptr:
		case ns_t_cname:
			a->rr[i].u.name = xstrdup(src->rr[i].u.name);
			break;
		case ns_t_txt:
			a->rr[i].u.txt = xstrdup(src->rr[i].u.txt);
			break;
		}
	}
	return a;
}

/* ------------------------------------------------------------ parsing */

/* dns_get16 - big-endian 16 bits at p. */
static inline unsigned
dns_get16(const unsigned char *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* dns_get32 - big-endian 32 bits at p. */
static inline uint32_t
dns_get32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/*
 * dns_name_read - expand the (possibly compressed) name at *off into out
 * as dotted text ("" for the root), lower case, with bytes outside
 * printable ASCII and dots inside labels escaped as \DDD.  Advances *off
 * past the name as stored.  Returns 0 or -EBADMSG.  Pointers must point
 * strictly backwards, which also bounds the number of jumps.
 */
static int
dns_name_read(const unsigned char *msg, size_t len, size_t *off, char *out,
              size_t outlen)
{
	size_t pos = *off, o = 0, limit = *off;
	bool jumped = false;
	unsigned c;

	if (outlen < 2)
		return -EBADMSG;
	for (;;) {
		if (pos >= len)
			return -EBADMSG;
		c = msg[pos];
		if ((c & 0xc0) == 0xc0) {
			size_t to;

			if (pos + 1 >= len)
				return -EBADMSG;
			to = (c & 0x3f) << 8 | msg[pos + 1];
			if (!jumped)
				*off = pos + 2;
			jumped = true;
			if (to >= limit)
				return -EBADMSG;
			limit = to;
			pos = to;
			continue;
		}
		if (c & 0xc0)
			return -EBADMSG; /* 0x40, 0x80: obsolete */
		if (c == 0) {
			if (!jumped)
				*off = pos + 1;
			break;
		}
		if (pos + 1 + c > len)
			return -EBADMSG;
		if (o != 0) {
			if (o + 1 >= outlen)
				return -EBADMSG;
			out[o++] = '.';
		}
		for (unsigned i = 0; i < c; i++) {
			unsigned char ch = msg[pos + 1 + i];

			if (ch <= 0x20 || ch >= 0x7f || ch == '.' ||
			    ch == '\\') {
				if (o + 4 >= outlen)
					return -EBADMSG;
				snprintf(out + o, 5, "\\%03u", ch);
				o += 4;
			} else {
				if (o + 1 >= outlen)
					return -EBADMSG;
				out[o++] = (ch >= 'A' && ch <= 'Z')
				                   ? (char)(ch + 32)
				                   : (char)ch;
			}
		}
		pos += 1 + c;
	}
	out[o] = '\0';
	return 0;
}

/*
 * dns_parse - parse a DNS response for records of `type`.  On success
 * *out is a new answer (free with dns_answer_free): status from the
 * rcode (NOERROR with no record of the type is DNS_NODATA), ttl the
 * smallest TTL of the kept records, or the negative TTL from the SOA in
 * the authority section.  Returns 0 or -EBADMSG for a malformed message.
 */
int
dns_parse(const unsigned char *msg, size_t len, int type,
          struct dns_answer **out)
{
	struct dns_answer *a = NULL;
	unsigned qd, an, ns, rcode, i;
	size_t off = 12;
	char name[1024], target[1024] = "";
	bool have_q = false;
	uint32_t ttl_min = UINT32_MAX, neg_ttl = DNS_NEG_TTL_DEFAULT;
	enum dns_status st;

	*out = NULL;
	if (len < 12)
		return -EBADMSG;
	if (!(msg[2] & 0x80))
		return -EBADMSG; /* not a response */
	rcode = msg[3] & 0x0f;
	qd = dns_get16(msg + 4);
	an = dns_get16(msg + 6);
	ns = dns_get16(msg + 8);
	if (qd > 1)
		return -EBADMSG;

	switch (rcode) {
	case ns_r_noerror:
		st = DNS_NODATA;
		break;
	case ns_r_nxdomain:
		st = DNS_NXDOMAIN;
		break;
	default:
		a = dns_answer_new(DNS_TEMPFAIL, type, 0);
		*out = a;
		return 0;
	}
	for (i = 0; i < qd; i++) {
		if (dns_name_read(msg, len, &off, target, sizeof(target)) < 0 ||
		    off + 4 > len)
			return -EBADMSG;
		off += 4;
		have_q = true;
	}
	a = dns_answer_new(st, type, an < DNS_MAX_RR ? an : DNS_MAX_RR);
	for (i = 0; i < an + ns; i++) {
		unsigned rtype, rclass, rdlen;
		uint32_t ttl;
		size_t rd, p;
		struct dns_rr *rr;

		if (dns_name_read(msg, len, &off, name, sizeof(name)) < 0 ||
		    off + 10 > len)
			goto bad;
		rtype = dns_get16(msg + off);
		rclass = dns_get16(msg + off + 2);
		ttl = dns_get32(msg + off + 4);
		if (ttl > 0x7fffffff)
			ttl = 0; /* RFC 2181 8 */
		rdlen = dns_get16(msg + off + 8);
		rd = off + 10;
		if (rd + rdlen > len)
			goto bad;
		off = rd + rdlen;
		if (rclass != ns_c_in)
			continue;
		if (i >= an) {
			/* authority: the SOA gives the negative TTL */
			if (rtype == ns_t_soa) {
				char mname[1024];

				p = rd;
				if (dns_name_read(msg, len, &p, mname,
				                  sizeof(mname)) < 0 ||
				    dns_name_read(msg, len, &p, mname,
				                  sizeof(mname)) < 0 ||
				    p + 20 > rd + rdlen)
					goto bad;
				neg_ttl = dns_get32(msg + p + 16);
				if (ttl < neg_ttl)
					neg_ttl = ttl;
			}
			continue;
		}
		/* Only records of the name asked for, or of the name its
		 * CNAME chain leads to, count: a server may not slip in
		 * answers for other names. */
		if (have_q && strcmp(name, target) != 0)
			continue;
		if (rtype == ns_t_cname && type != ns_t_cname) {
			/* an alias on the way: follow it; its TTL bounds
			 * the answer */
			p = rd;
			if (dns_name_read(msg, len, &p, target,
			                  sizeof(target)) < 0 ||
			    p != rd + rdlen)
				goto bad;
			if (ttl < ttl_min)
				ttl_min = ttl;
			continue;
		}
		if ((int)rtype != type || a->n >= DNS_MAX_RR)
			continue;
		rr = &a->rr[a->n];
		switch (type) {
		case ns_t_a:
			if (rdlen != 4)
				goto bad;
			memcpy(&rr->u.a, msg + rd, 4);
			break;
		case ns_t_aaaa:
			if (rdlen != 16)
				goto bad;
			memcpy(&rr->u.aaaa, msg + rd, 16);
			break;
		case ns_t_mx:
			if (rdlen < 3)
				goto bad;
			p = rd + 2;
			if (dns_name_read(msg, len, &p, name, 256) < 0 ||
			    p != rd + rdlen)
				goto bad;
			rr->u.mx.pref = (uint16_t)dns_get16(msg + rd);
			rr->u.mx.host = xstrdup(name);
			break;
		case ns_t_ptr:
		case ns_t_cname:
			p = rd;
			if (dns_name_read(msg, len, &p, name, 256) < 0 ||
			    p != rd + rdlen)
				goto bad;
			rr->u.name = xstrdup(name);
			break;
		case ns_t_txt: {
			struct buf b = {0};

			p = rd;
			while (p < rd + rdlen) {
				unsigned sl = msg[p];

				if (p + 1 + sl > rd + rdlen) {
					buf_free(&b);
					goto bad;
				}
				buf_append(&b, msg + p + 1, sl);
				p += 1 + sl;
			}
			/* A NUL cannot pass through a C string: it becomes
			 * DEL, so it cannot cut a record (SPF) short. */
			for (size_t k = 0; k < b.len; k++)
				if (b.data[k] == '\0')
					b.data[k] = '\x7f';
			rr->u.txt = xstrndup(b.data ? b.data : "", b.len);
			buf_free(&b);
			break;
		}
		default:
			continue; /* a type we do not decode */
		}
		a->n++;
		if (ttl < ttl_min)
			ttl_min = ttl;
	}
	if (a->n > 0) {
		a->status = DNS_OK;
		a->ttl = ttl_min;
	} else {
		if (a->status == DNS_NODATA && an > 0 &&
		    ttl_min != UINT32_MAX && ttl_min < neg_ttl)
			neg_ttl = ttl_min; /* CNAME to nothing */
		a->ttl = neg_ttl;
	}
	if (a->ttl > DNS_CACHE_MAX_TTL)
		a->ttl = DNS_CACHE_MAX_TTL;
	*out = a;
	return 0;
bad:
	dns_answer_free(a);
	return -EBADMSG;
}

/* -------------------------------------------------------------- cache */

/* dns_hash - FNV-1a of type and (already lower-case) name. */
static unsigned
dns_hash(const char *name, int type)
{
	uint32_t h = 2166136261u ^ (uint32_t)type;

	for (; *name; name++)
		h = (h ^ (unsigned char)*name) * 16777619u;
	return h % DNS_HASH_SIZE;
}

/* dns_cache_unlink - take e out of the hash and the age list. */
static void
dns_cache_unlink(struct dns_entry *e)
{
	struct dns_entry **pp = &dns.hash[dns_hash(e->name, e->type)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	if (e->older)
		e->older->newer = e->newer;
	else
		dns.oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		dns.newest = e->older;
	dns.n_cache--;
}

/* dns_cache_drop - unlink and free one entry. */
static void
dns_cache_drop(struct dns_entry *e)
{
	dns_cache_unlink(e);
	dns_answer_free(e->ans);
	free(e);
}

/* dns_cache_find - the live entry for (name, type), dropping a stale one. */
static struct dns_entry *
dns_cache_find(const char *name, int type)
{
	struct dns_entry *e;
	uint64_t now = util_now_ms();

	for (e = dns.hash[dns_hash(name, type)]; e; e = e->hnext) {
		if (e->type == type && strcmp(e->name, name) == 0) {
			if (e->expires_ms <= now) {
				dns_cache_drop(e);
				return NULL;
			}
			return e;
		}
	}
	return NULL;
}

/* dns_cache_put - remember a copy of ans for its TTL (if it has one). */
static void
dns_cache_put(const char *name, int type, const struct dns_answer *ans)
{
	struct dns_entry *e;
	unsigned h;

	if (ans->status == DNS_TEMPFAIL || ans->ttl == 0)
		return;
	e = dns_cache_find(name, type);
	if (e)
		dns_cache_drop(e);
	while (dns.n_cache >= DNS_CACHE_MAX)
		dns_cache_drop(dns.oldest);
	e = xcalloc(1, sizeof(*e));
	snprintf(e->name, sizeof(e->name), "%s", name);
	e->type = type;
	e->expires_ms = util_now_ms() + (uint64_t)ans->ttl * 1000;
	e->ans = dns_answer_copy(ans);
	h = dns_hash(name, type);
	e->hnext = dns.hash[h];
	dns.hash[h] = e;
	e->older = dns.newest;
	if (dns.newest)
		dns.newest->newer = e;
	else
		dns.oldest = e;
	dns.newest = e;
	dns.n_cache++;
}

/* dns_cache_key - name as the cache keys it (lower case, no final dot)
 * into key[256]; -EINVAL when empty or too long. */
static int
dns_cache_key(const char *name, char *key)
{
	size_t n = strlen(name);

	if (n == 0 || n >= 256)
		return -EINVAL;
	memcpy(key, name, n + 1);
	if (key[n - 1] == '.')
		key[--n] = '\0';
	if (n == 0)
		return -EINVAL;
	util_lowercase(key);
	return 0;
}

/* dns_cache_peek - the live cached answer for (name, type), or NULL (a
 * miss); valid until the loop runs again (or the next dns_* call).  ttl
 * is the original TTL, not the time left. */
const struct dns_answer *
dns_cache_peek(const char *name, int type)
{
	char key[256];
	struct dns_entry *e;

	if (dns_cache_key(name, key) < 0)
		return NULL;
	e = dns_cache_find(key, type);
	if (e == NULL)
		return NULL;
	dns.st.peek_hits++;
	return e->ans;
}

/* dns_cache_add - remember ans for (name, type) as if the network had
 * sent it (tests and fuzzers that feed answers without a server). */
void
dns_cache_add(const char *name, int type, const struct dns_answer *ans)
{
	char key[256];

	if (dns_cache_key(name, key) == 0)
		dns_cache_put(key, type, ans);
}

/* dns_cache_flush - forget every cached answer. */
void
dns_cache_flush(void)
{
	while (dns.oldest)
		dns_cache_drop(dns.oldest);
}

/* dns_stats_get - counters for stats and benchmarks. */
void
dns_stats_get(struct dns_stats *out)
{
	*out = dns.st;
	out->cached = dns.n_cache;
}

/* dns_stats_json - the "dns" section of `mailmoatctl stats`. */
static void
dns_stats_json(struct buf *b)
{
	char tmp[320];
	int n;

	n = snprintf(tmp, sizeof(tmp),
	             "{\"queries\":%llu,\"cache_hits\":%llu,\"sent\":%llu,"
	             "\"tempfails\":%llu,\"timeouts\":%llu,\"cached\":%u,"
	             "\"peek_hits\":%llu,\"joined\":%llu}",
	             (unsigned long long)dns.st.queries,
	             (unsigned long long)dns.st.hits,
	             (unsigned long long)dns.st.sent,
	             (unsigned long long)dns.st.tempfails,
	             (unsigned long long)dns.st.timeouts, dns.n_cache,
	             (unsigned long long)dns.st.peek_hits,
	             (unsigned long long)dns.st.joined);
	buf_append(b, tmp, (size_t)n);
}

/* dns_tick_add - call fn on the loop right after dns_init() and every
 * reload, then every DNS_TICK_MS (DNSBL self-tests use it). */
void
dns_tick_add(void (*fn)(void))
{
	int i;

	for (i = 0; i < dns_n_tick_fns; i++)
		if (dns_tick_fns[i] == fn)
			return;
	if (dns_n_tick_fns == DNS_MAX_TICK_FNS)
		log_panic("dns: too many tick functions");
	dns_tick_fns[dns_n_tick_fns++] = fn;
}

/* dns_tick_cb - drop expired cache entries, run the tick functions. */
static void
dns_tick_cb(uv_timer_t *t)
{
	uint64_t now = util_now_ms();
	struct dns_entry *e, *next;
	int i;

	for (e = dns.oldest; e; e = next) {
		next = e->newer;
		if (e->expires_ms <= now)
			dns_cache_drop(e);
	}
	for (i = 0; i < dns_n_tick_fns; i++)
		dns_tick_fns[i]();
}

/* dns_deliver_cb - hand queued cache hits to their callbacks. */
static void
dns_deliver_cb(uv_timer_t *t)
{
	struct dns_hit *h;

	while ((h = dns.hits) != NULL) {
		dns.hits = h->next;
		if (dns.hits == NULL)
			dns.hits_tail = &dns.hits;
		h->cb(h->arg, h->ans);
		dns_answer_free(h->ans);
		free(h);
	}
}

/* --------------------------------------------------------- c-ares glue */

/* dns_poll_cb - a c-ares socket is ready (or broke). */
static void
dns_poll_cb(uv_poll_t *p, int status, int events)
{
	struct dns_sock *s = container_of(p, struct dns_sock, poll);
	ares_socket_t rfd = ARES_SOCKET_BAD, wfd = ARES_SOCKET_BAD;

	if (status < 0 || (events & UV_READABLE))
		rfd = s->fd;
	if (status < 0 || (events & UV_WRITABLE))
		wfd = s->fd;
	ares_process_fd(dns.chan, rfd, wfd);
	dns_timer_arm();
}

/* dns_sock_close_cb - the poll handle is closed: free it. */
static void
dns_sock_close_cb(uv_handle_t *h)
{
	free(container_of((uv_poll_t *)h, struct dns_sock, poll));
}

/* dns_sock_state_cb - c-ares opens, changes or closes a socket. */
static void
dns_sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct dns_sock **pp, *s;
	int ev = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);

	for (pp = &dns.socks; *pp; pp = &(*pp)->next)
		if ((*pp)->fd == fd)
			break;
	s = *pp;
	if (ev == 0) {
		if (s) {
			*pp = s->next;
			uv_poll_stop(&s->poll);
			uv_close((uv_handle_t *)&s->poll, dns_sock_close_cb);
		}
		return;
	}
	if (s == NULL) {
		s = xcalloc(1, sizeof(*s));
		s->fd = fd;
		if (uv_poll_init_socket(dns.loop, &s->poll, fd) < 0) {
			log_warn("dns: cannot watch socket %d", (int)fd);
			free(s);
			return;
		}
		s->next = dns.socks;
		dns.socks = s;
	}
	uv_poll_start(&s->poll, ev, dns_poll_cb);
}

/* dns_timer_cb - c-ares's next timeout is due. */
static void
dns_timer_cb(uv_timer_t *t)
{
	ares_process_fd(dns.chan, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	dns_timer_arm();
}

/* dns_timer_arm - (re)arm the timer from ares_timeout(); stop when idle. */
static void
dns_timer_arm(void)
{
	struct timeval tv, *tvp;
	uint64_t ms;

	if (!dns.chan_ok)
		return;
	tvp = ares_timeout(dns.chan, NULL, &tv);
	if (tvp == NULL) {
		uv_timer_stop(&dns.timer);
		return;
	}
	ms = (uint64_t)tvp->tv_sec * 1000 +
	     (uint64_t)(tvp->tv_usec + 999) / 1000;
	uv_timer_start(&dns.timer, dns_timer_cb, ms, 0);
}

/* dns_ares_cb - c-ares finished a query (answer, failure or shutdown). */
static void
dns_ares_cb(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_q *q = arg, **pp;
	struct dns_answer *a = NULL;
	struct dns_waiter *w;

	if (abuf != NULL && alen > 0 &&
	    (status == ARES_SUCCESS || status == ARES_ENODATA ||
	     status == ARES_ENOTFOUND)) {
		if (dns_parse(abuf, (size_t)alen, q->type, &a) < 0) {
			log_warn("dns: malformed answer for %s", q->name);
			a = NULL;
		}
	}
	if (a == NULL) {
		a = dns_answer_new(DNS_TEMPFAIL, q->type, 0);
		if (status == ARES_ETIMEOUT)
			dns.st.timeouts++;
		if (status != ARES_EDESTRUCTION && status != ARES_ECANCELLED)
			log_info("dns: %s/%d: %s", q->name, q->type,
			         ares_strerror(status));
	}
	if (a->status == DNS_TEMPFAIL)
		dns.st.tempfails++;
	else
		dns_cache_put(q->name, q->type, a);
	/* off the in-flight list first: a callback's new lookup of the same
	 * name is a new query (or a cache hit), not this finished one */
	for (pp = &dns.inflight; *pp; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	q->cb(q->arg, a);
	while ((w = q->waiters) != NULL) {
		q->waiters = w->next;
		w->cb(w->arg, a);
		free(w);
	}
	dns_answer_free(a);
	free(q);
}

/* dns_chan_open - a channel for cfg's servers and timeout. */
static int
dns_chan_open(const char *servers, unsigned timeout_ms)
{
	struct ares_options o = {0};
	int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
	           ARES_OPT_TRIES | ARES_OPT_FLAGS | ARES_OPT_SOCK_RCVBUF;
	int r;

	if (timeout_ms == 0)
		timeout_ms = 5000;
	o.sock_state_cb = dns_sock_state_cb;
	o.sock_state_cb_data = NULL;
	/* c-ares doubles the timeout at each try: t/3 + 2t/3 = t */
	o.timeout = (int)(timeout_ms / 3 ? timeout_ms / 3 : 1);
	o.tries = 2;
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	/* bursts: every session starts PTR + one query per DNSBL zone at
	 * once, and answers must not be dropped by a small socket buffer */
	o.socket_receive_buffer_size = 1 << 20;
	r = ares_init_options(&dns.chan, &o, mask);
	if (r != ARES_SUCCESS) {
		log_warn("dns: ares_init_options: %s", ares_strerror(r));
		return -EINVAL;
	}
	if (servers && *servers) {
		r = ares_set_servers_ports_csv(dns.chan, servers);
		if (r != ARES_SUCCESS) {
			log_warn("dns: bad dns_servers \"%s\": %s", servers,
			         ares_strerror(r));
			ares_destroy(dns.chan);
			return -EINVAL;
		}
	}
	dns.chan_ok = true;
	return 0;
}

/* dns_init - the channel on loop, servers and timeout from cfg. */
int
dns_init(uv_loop_t *loop, const struct config *cfg)
{
	int r;

	r = ares_library_init(ARES_LIB_INIT_ALL);
	if (r != ARES_SUCCESS)
		return -ENOMEM;
	dns.loop = loop;
	dns.hits = NULL;
	dns.hits_tail = &dns.hits;
	uv_timer_init(loop, &dns.timer);
	uv_timer_init(loop, &dns.deliver);
	uv_timer_init(loop, &dns.tick);
	/* the tick must not keep the loop alive on its own */
	uv_unref((uv_handle_t *)&dns.tick);
	dns.servers = cfg->dns_servers ? xstrdup(cfg->dns_servers) : NULL;
	dns.timeout_ms = cfg->dns_timeout_ms;
	stats_add_section("dns", dns_stats_json);
	r = dns_chan_open(dns.servers, dns.timeout_ms);
	uv_timer_start(&dns.tick, dns_tick_cb, 0, DNS_TICK_MS);
	return r;
}

/*
 * dns_reconfigure - apply new dns_servers / dns_timeout.  Unchanged
 * settings keep the channel (and its lookups in flight); changed ones
 * replace it, and lookups in flight on the old one end as DNS_TEMPFAIL.
 * The cache is flushed: another server may say other things.
 */
int
dns_reconfigure(const struct config *cfg)
{
	const char *s = cfg->dns_servers ? cfg->dns_servers : "";

	/* a reload runs the tick functions at once (new DNSBL zones...) */
	if (dns.loop != NULL)
		uv_timer_start(&dns.tick, dns_tick_cb, 0, DNS_TICK_MS);
	if (strcmp(s, dns.servers ? dns.servers : "") == 0 &&
	    cfg->dns_timeout_ms == dns.timeout_ms)
		return 0;
	if (dns.chan_ok) {
		dns.chan_ok = false;
		ares_destroy(dns.chan);
	}
	free(dns.servers);
	dns.servers = cfg->dns_servers ? xstrdup(cfg->dns_servers) : NULL;
	dns.timeout_ms = cfg->dns_timeout_ms;
	dns_cache_flush();
	return dns_chan_open(dns.servers, dns.timeout_ms);
}

/* dns_query - start a lookup of name/type; cb(arg, answer) on the loop. */
int
dns_query(const char *name, int type, dns_cb cb, void *arg)
{
	char key[256];
	struct dns_entry *e;
	size_t n;

	if (dns_cache_key(name, key) < 0)
		return -EINVAL;
	n = strlen(key);
	dns.st.queries++;
	e = dns_cache_find(key, type);
	if (e) {
		struct dns_hit *h = xcalloc(1, sizeof(*h));
		uint64_t now = util_now_ms();

		h->ans = dns_answer_copy(e->ans);
		h->ans->ttl = (unsigned)((e->expires_ms - now + 999) / 1000);
		h->cb = cb;
		h->arg = arg;
		*dns.hits_tail = h;
		dns.hits_tail = &h->next;
		dns.st.hits++;
		uv_timer_start(&dns.deliver, dns_deliver_cb, 0, 0);
		return 0;
	}
	if (!dns.chan_ok)
		return -EAGAIN;
	for (struct dns_q *f = dns.inflight; f; f = f->next) {
		if (f->type == type && strcmp(f->name, key) == 0) {
			struct dns_waiter *w = xcalloc(1, sizeof(*w));

			w->cb = cb;
			w->arg = arg;
			*f->waiters_tail = w;
			f->waiters_tail = &w->next;
			dns.st.joined++;
			return 0;
		}
	}
	struct dns_q *q = xcalloc(1, sizeof(*q));
	memcpy(q->name, key, n + 1);
	q->type = type;
	q->cb = cb;
	q->arg = arg;
	q->waiters_tail = &q->waiters;
	q->next = dns.inflight;
	dns.inflight = q;
	dns.st.sent++;
	ares_query(dns.chan, key, ns_c_in, type, dns_ares_cb, q);
	dns_timer_arm();
	return 0;
}

/* dns_reverse_name - "d.c.b.a.ZONE" or the 32-nibble form for IPv6. */
void
dns_reverse_name(const struct ipaddr *ip, const char *zone, char *out,
                 size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	char buf[80];
	size_t o = 0;

	if (zone == NULL)
		zone = ip->family == AF_INET ? "in-addr.arpa" : "ip6.arpa";
	while (*zone == '.')
		zone++;
	if (ip->family == AF_INET) {
		const unsigned char *b = (const unsigned char *)&ip->u.v4;

		snprintf(out, outlen, "%u.%u.%u.%u.%s", b[3], b[2], b[1], b[0],
		         zone);
		return;
	}
	for (int i = 15; i >= 0; i--) {
		unsigned char c = ip->u.v6.s6_addr[i];

		buf[o++] = hex[c & 15];
		buf[o++] = '.';
		buf[o++] = hex[c >> 4];
		buf[o++] = '.';
	}
	buf[o] = '\0';
	snprintf(out, outlen, "%s%s", buf, zone);
}

/* dns_shutdown_close_cb - nothing to free: the handles are static. */
static void
dns_shutdown_close_cb(uv_handle_t *h)
{
}

/*
 * dns_shutdown - end every lookup (callbacks see DNS_TEMPFAIL), free the
 * cache and close our handles.  The loop must run once more to finish
 * the closes.
 */
void
dns_shutdown(void)
{
	struct dns_hit *h;

	if (dns.loop == NULL)
		return;
	if (dns.chan_ok) {
		dns.chan_ok = false;
		ares_destroy(dns.chan);
	}
	while ((h = dns.hits) != NULL) {
		dns.hits = h->next;
		h->ans->status = DNS_TEMPFAIL;
		h->cb(h->arg, h->ans);
		dns_answer_free(h->ans);
		free(h);
	}
	dns.hits_tail = &dns.hits;
	dns_cache_flush();
	uv_close((uv_handle_t *)&dns.timer, dns_shutdown_close_cb);
	uv_close((uv_handle_t *)&dns.deliver, dns_shutdown_close_cb);
	uv_close((uv_handle_t *)&dns.tick, dns_shutdown_close_cb);
	free(dns.servers);
	dns.servers = NULL;
	dns.loop = NULL;
	ares_library_cleanup();
}
