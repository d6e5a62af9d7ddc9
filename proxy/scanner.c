/*
 * scanner.c - non-blocking clients of the scanners on the network
 * (clamd, spamd, rspamd), one TCP connection per message per scanner, on
 * the libuv loop.  No thread per message.
 *
 * Public (proxy.h):
 *   scan_open()     connect now; clamd gets "zINSTREAM\0" at once
 *   scan_body()     clamd: message bytes, streamed in chunks as they come
 *   scan_end()      clamd: the zero-length chunk; spamd/rspamd: the whole
 *                   request (head + message, ownership taken)
 *   scan_cancel()   forget the job: no callback, handles closed
 *   scan_health_json()  per-scanner figures for `mailmoatctl stats`
 *
 * done(arg, reply) is called exactly once per job unless it was
 * cancelled first, never from inside scan_open/scan_body/scan_end (a
 * known answer - e.g. a connect that failed at once - comes on a timer).
 * The job frees itself after its handles closed; the caller must not use
 * it after done() or scan_cancel().
 *
 * Time limits: the connect and, after scan_end(), the answer must each
 * come within the timeout (scanner_timeout).  While the message streams
 * in, clamd must keep up: more than SCAN_QUEUE_MAX bytes not yet written
 * to it is a fault.  clamd's StreamMaxLength is not visible from outside;
 * when clamd says "INSTREAM size limit exceeded" the bytes it had taken
 * are an upper bound, logged once, and later messages send clamd at most
 * that much (the first part of a larger message is scanned; a repeated
 * refusal shrinks the bound by an eighth).
 *
 * Owns: the jobs, and a small table of health figures per scanner name
 * (kept across reloads).  Reads no config key itself: the check passes
 * the server and the timeout.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy.h"

#define SCAN_QUEUE_MAX (8u << 20) /* clamd bytes not yet written */
#define SCAN_HEALTH_MAX 16

/* Figures per scanner ("clamd:IP:PORT"), for `mailmoatctl stats`. */
struct scan_health {
	char name[64];
	uint64_t scans, clean, found, faults, timeouts, refused;
	uint64_t last_ms;    /* duration of the last answered scan */
	uint64_t stream_max; /* clamd: learned StreamMaxLength bound */
	bool probing;        /* a StreamMaxLength probe runs */
	bool down;           /* the last answer was a fault */
	time_t last_ok, last_fault;
	char last_error[128];
};

static struct scan_health health[SCAN_HEALTH_MAX];
static unsigned n_health;

struct scan_wreq {
	uv_write_t req;
	struct scan_job *job;
	size_t body; /* message bytes in it (clamd) */
	size_t len;
	char data[];
};

struct scan_job {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t conn;
	struct scan_server srv;
	struct scan_health *h;
	unsigned timeout_ms;
	scan_done_fn done;
	void *arg;
	struct buf in;      /* the answer so far */
	struct buf pending; /* clamd body bytes not yet sent / the request */
	uint64_t given;     /* clamd: message bytes given by scan_body */
	uint64_t written;   /* clamd: message bytes the socket took */
	uint64_t queued;    /* bytes in uv_write requests */
	uint64_t limit;     /* clamd: send at most this much; 0 = all */
	uint64_t started_ms;
	unsigned handles;
	bool connected, ended, reported, cancelled, write_failed, eof;
	bool truncated, term_sent;
	struct scan_reply early; /* a result known before the loop turned */
	bool have_early;
};

static void scan_flush(struct scan_job *j);

/* scan_health_of - the figures of scanner name (a slot reused when full) */
static struct scan_health *
scan_health_of(const char *name)
{
	unsigned i;

	for (i = 0; i < n_health; i++)
		if (strcmp(health[i].name, name) == 0)
			return &health[i];
	if (n_health == SCAN_HEALTH_MAX)
		i = SCAN_HEALTH_MAX - 1; /* reloads changed names many times */
	else
		i = n_health++;
	memset(&health[i], 0, sizeof(health[i]));
	snprintf(health[i].name, sizeof(health[i].name), "%s", name);
	return &health[i];
}

/* scan_close_cb - one handle closed; the last one frees the job */
static void
scan_close_cb(uv_handle_t *hd)
{
	struct scan_job *j = hd->data;

	if (--j->handles > 0)
		return;
	buf_free(&j->in);
	buf_free(&j->pending);
	free(j);
}

/* scan_close - close both handles (once) */
static void
scan_close(struct scan_job *j)
{
	if (uv_is_closing((uv_handle_t *)&j->timer))
		return;
	uv_timer_stop(&j->timer);
	uv_close((uv_handle_t *)&j->timer, scan_close_cb);
	uv_close((uv_handle_t *)&j->tcp, scan_close_cb);
}

/*
 * The StreamMaxLength probe.  clamd compares each chunk's announced
 * length with what is left of its quota as soon as it reads the 4-byte
 * header: a header alone, longer than StreamMaxLength, is refused at
 * once; a shorter one makes clamd wait for the data.  A binary search
 * of such one-header connections (each answered within
 * SCAN_PROBE_WAIT_MS, or not) finds the limit to SCAN_PROBE_STEP bytes
 * in a few seconds, once per limit error, off the message path.
 */
#define SCAN_PROBE_WAIT_MS 500
#define SCAN_PROBE_STEP (64u << 10)

struct scan_probe {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t conn;
	uv_write_t wr;
	struct scan_server srv;
	struct scan_health *h;
	uv_loop_t *loop;
	uint64_t lo, hi, mid; /* lo: accepted, hi: refused */
	char wbuf[SCAN_CLAMD_COMMAND_LEN + 4];
	char rbuf[256];
	size_t rlen;
	unsigned handles, steps;
	bool decided;
};

static void scan_probe_step(struct scan_probe *p);

/* scan_probe_close_cb - a step's handles closed: the next step or the end */
static void
scan_probe_close_cb(uv_handle_t *hd)
{
	struct scan_probe *p = hd->data;

	if (--p->handles > 0)
		return;
	if (p->hi - p->lo > SCAN_PROBE_STEP && p->steps < 32 && p->decided) {
		scan_probe_step(p);
		return;
	}
	if (p->decided) {
		p->h->stream_max = p->lo;
		log_info("scanner %s: StreamMaxLength is %" PRIu64
		         " bytes (measured, to %u bytes): larger messages are "
		         "scanned up to there",
		         p->srv.name, p->lo, SCAN_PROBE_STEP);
	}
	p->h->probing = false;
	free(p);
}

/* scan_probe_end - this step decided (refused or not): close it */
static void
scan_probe_end(struct scan_probe *p, bool refused, bool decided)
{
	if (uv_is_closing((uv_handle_t *)&p->timer))
		return;
	p->decided = decided;
	if (decided) {
		if (refused)
			p->hi = p->mid;
		else
			p->lo = p->mid;
	}
	uv_timer_stop(&p->timer);
	uv_close((uv_handle_t *)&p->timer, scan_probe_close_cb);
	uv_close((uv_handle_t *)&p->tcp, scan_probe_close_cb);
}

/* scan_probe_timer_cb - no refusal in time: the length fits */
static void
scan_probe_timer_cb(uv_timer_t *t)
{
	struct scan_probe *p = container_of(t, struct scan_probe, timer);

	scan_probe_end(p, false, true);
}

/* scan_probe_alloc_cb - into the probe's small buffer */
static void
scan_probe_alloc_cb(uv_handle_t *hd, size_t hint, uv_buf_t *b)
{
	struct scan_probe *p = hd->data;

	(void)hint;
	b->base = p->rbuf + p->rlen;
	b->len = sizeof(p->rbuf) - 1 - p->rlen;
}

/* scan_probe_read_cb - clamd's answer to the header */
static void
scan_probe_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct scan_probe *p = container_of(st, struct scan_probe, tcp);
	struct scan_reply r;

	(void)b;
	if (nread == 0)
		return;
	if (nread > 0)
		p->rlen += (size_t)nread;
	if (scan_clamd_parse(p->rbuf, p->rlen, nread < 0, &r) == 0 &&
	    p->rlen < sizeof(p->rbuf) - 1)
		return;
	/* Anything but the size refusal: clamd is confused, stop. */
	scan_probe_end(p, true, r.verdict == SCAN_LIMIT);
}

/* scan_probe_write_cb - the header is out (errors: the read tells) */
static void
scan_probe_write_cb(uv_write_t *w, int status)
{
	(void)w;
	(void)status;
}

/* scan_probe_connect_cb - send "zINSTREAM\0" + one chunk header */
static void
scan_probe_connect_cb(uv_connect_t *c, int status)
{
	struct scan_probe *p = container_of(c, struct scan_probe, conn);
	uv_buf_t b;

	if (status != 0) {
		scan_probe_end(p, false, false);
		return;
	}
	memcpy(p->wbuf, scan_clamd_command, SCAN_CLAMD_COMMAND_LEN);
	scan_clamd_chunk((unsigned char *)p->wbuf + SCAN_CLAMD_COMMAND_LEN,
	                 (uint32_t)p->mid);
	b = uv_buf_init(p->wbuf, sizeof(p->wbuf));
	uv_read_start((uv_stream_t *)&p->tcp, scan_probe_alloc_cb,
	              scan_probe_read_cb);
	if (uv_write(&p->wr, (uv_stream_t *)&p->tcp, &b, 1,
	             scan_probe_write_cb) != 0)
		scan_probe_end(p, false, false);
}

/* scan_probe_step - one connection with a header of length (lo+hi)/2 */
static void
scan_probe_step(struct scan_probe *p)
{
	p->mid = p->lo + (p->hi - p->lo) / 2;
	p->rlen = 0;
	p->decided = false;
	p->steps++;
	uv_tcp_init(p->loop, &p->tcp);
	uv_timer_init(p->loop, &p->timer);
	p->tcp.data = p->timer.data = p;
	p->handles = 2;
	uv_timer_start(&p->timer, scan_probe_timer_cb, SCAN_PROBE_WAIT_MS, 0);
	if (uv_tcp_connect(&p->conn, &p->tcp,
	                   (const struct sockaddr *)&p->srv.addr,
	                   scan_probe_connect_cb) != 0)
		scan_probe_end(p, false, false);
}

/* scan_probe_start - measure clamd's limit below h->stream_max */
static void
scan_probe_start(uv_loop_t *loop, const struct scan_server *srv,
                 struct scan_health *h)
{
	struct scan_probe *p;

	if (h->probing || h->stream_max <= SCAN_PROBE_STEP)
		return;
	p = xcalloc(1, sizeof(*p));
	p->srv = *srv;
	p->h = h;
	p->loop = loop;
	p->lo = 0;
	p->hi = h->stream_max;
	h->probing = true;
	scan_probe_step(p);
}

/* scan_report - the one answer: figures, callback, close */
static void
scan_report(struct scan_job *j, struct scan_reply *r)
{
	struct scan_health *h = j->h;

	if (j->reported)
		return;
	j->reported = true;
	h->scans++;
	if (r->verdict == SCAN_LIMIT && j->srv.kind == SCAN_CLAMD) {
		uint64_t bound = j->written;

		if (h->stream_max == 0 || bound < h->stream_max)
			h->stream_max = bound;
		else
			h->stream_max -= h->stream_max / 8;
		log_warn("scanner %s: INSTREAM size limit exceeded after "
		         "%" PRIu64
		         " bytes: its StreamMaxLength is at most %" PRIu64
		         " bytes; measuring it",
		         j->srv.name, j->written, h->stream_max);
		scan_probe_start(j->tcp.loop, &j->srv, h);
	}
	if (r->verdict == SCAN_FAULT || r->verdict == SCAN_LIMIT) {
		h->faults++;
		h->down = true;
		h->last_fault = time(NULL);
		snprintf(h->last_error, sizeof(h->last_error), "%s", r->what);
	} else {
		h->last_ok = time(NULL);
		h->down = false;
		h->last_ms = util_now_ms() - j->started_ms;
		if (r->verdict == SCAN_CLEAN || r->verdict == SCAN_HEADER)
			h->clean++;
		else
			h->found++;
	}
	if (!j->cancelled)
		j->done(j->arg, r);
	scan_close(j);
}

/* scan_fail - a transport fault: report it */
static void __attribute__((format(printf, 2, 3)))
scan_fail(struct scan_job *j, const char *fmt, ...)
{
	struct scan_reply r;
	va_list ap;

	memset(&r, 0, sizeof(r));
	r.verdict = SCAN_FAULT;
	va_start(ap, fmt);
	vsnprintf(r.what, sizeof(r.what), fmt, ap);
	va_end(ap);
	scan_report(j, &r);
}

/* scan_parse - the kind's parser on what came so far */
static int
scan_parse(struct scan_job *j, struct scan_reply *r)
{
	switch (j->srv.kind) {
	case SCAN_CLAMD:
		return scan_clamd_parse(j->in.data, j->in.len, j->eof, r);
	case SCAN_SPAMD:
		return scan_spamd_parse(j->in.data, j->in.len, j->eof, r);
	case SCAN_RSPAMD:
		return scan_rspamd_parse(j->in.data, j->in.len, j->eof, r);
	}
	return scan_clamd_parse("", 0, true, r);
}

/* scan_timer_cb - a deadline passed, or an early result waits */
static void
scan_timer_cb(uv_timer_t *t)
{
	struct scan_job *j = container_of(t, struct scan_job, timer);

	if (j->have_early) {
		j->have_early = false;
		scan_report(j, &j->early);
		return;
	}
	j->h->timeouts++;
	if (!j->connected)
		scan_fail(j, "connect timed out");
	else if (!j->ended)
		scan_fail(j, "stalled while the message streamed");
	else
		scan_fail(j, "no answer within %u ms", j->timeout_ms);
}

/* scan_alloc_cb - room for the answer (bounded by the parsers) */
static void
scan_alloc_cb(uv_handle_t *hd, size_t hint, uv_buf_t *b)
{
	static char rbuf[16384];

	(void)hd;
	(void)hint;
	b->base = rbuf;
	b->len = sizeof(rbuf);
}

/* scan_read_cb - answer bytes, or the end */
static void
scan_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct scan_job *j = container_of(st, struct scan_job, tcp);
	struct scan_reply r;

	if (j->reported || j->have_early || nread == 0)
		return;
	if (nread < 0) {
		uv_read_stop(st);
		if (nread != UV_EOF && j->in.len == 0) {
			scan_fail(j, "%s", uv_strerror((int)nread));
			return;
		}
		j->eof = true;
	} else if (j->in.len + (size_t)nread > SCAN_REPLY_MAX + 1) {
		scan_fail(j, "answer too long");
		return;
	} else {
		buf_append(&j->in, b->base, (size_t)nread);
	}
	if (scan_parse(j, &r) == 0)
		return;
	/* clamd answers before the end of the stream only to refuse it. */
	if (!j->ended && j->srv.kind == SCAN_CLAMD && r.verdict != SCAN_FAULT &&
	    r.verdict != SCAN_LIMIT) {
		scan_fail(j, "answered before the end of the message");
		return;
	}
	scan_report(j, &r);
}

/* scan_write_cb - a write finished */
static void
scan_write_cb(uv_write_t *req, int status)
{
	struct scan_wreq *w = container_of(req, struct scan_wreq, req);
	struct scan_job *j = w->job;

	j->queued -= w->len;
	if (status == 0)
		j->written += w->body;
	else
		j->write_failed = true; /* the answer (or EOF) tells why */
	free(w);
	if (status == 0 && !j->reported && !j->write_failed)
		scan_flush(j);
}

/* scan_write - one write of [hdr(4 if chunk)] + p[0..n) */
static void
scan_write(struct scan_job *j, bool chunk, const char *p, size_t n, size_t body)
{
	size_t len = n + (chunk ? 4 : 0);
	struct scan_wreq *w = xmalloc(sizeof(*w) + len);
	uv_buf_t b;
	int rc;

	w->job = j;
	w->len = len;
	w->body = body;
	if (chunk)
		scan_clamd_chunk((unsigned char *)w->data, (uint32_t)n);
	memcpy(w->data + (chunk ? 4 : 0), p, n);
	b = uv_buf_init(w->data, (unsigned)len);
	j->queued += len;
	rc = uv_write(&w->req, (uv_stream_t *)&j->tcp, &b, 1, scan_write_cb);
	if (rc != 0) {
		j->queued -= len;
		free(w);
		j->write_failed = true;
	}
}

/*
 * scan_flush - send what is pending.  clamd: body in chunks of at most
 * SCAN_CLAMD_CHUNK, and the terminator once ended; other kinds: the
 * request in one write.  Small pieces wait until a chunk is worth it
 * (or the end), so a body that arrives line by line costs few writes.
 */
static void
scan_flush(struct scan_job *j)
{
	if (!j->connected || j->write_failed || j->reported || j->have_early)
		return;
	if (j->srv.kind != SCAN_CLAMD) {
		if (j->ended && j->pending.len > 0) {
			scan_write(j, false, j->pending.data, j->pending.len,
			           0);
			buf_free(&j->pending);
		}
		return;
	}
	while (j->pending.len >= SCAN_CLAMD_CHUNK ||
	       (j->ended && j->pending.len > 0)) {
		size_t n = j->pending.len < SCAN_CLAMD_CHUNK ? j->pending.len
		                                             : SCAN_CLAMD_CHUNK;

		scan_write(j, true, j->pending.data, n, n);
		buf_consume(&j->pending, n);
	}
	if (j->ended && j->pending.len == 0 && !j->term_sent) {
		static const char zero[4];

		scan_write(j, false, zero, 4, 0);
		j->term_sent = true;
	}
}

/* scan_connect_cb - connected (or not) */
static void
scan_connect_cb(uv_connect_t *c, int status)
{
	struct scan_job *j = container_of(c, struct scan_job, conn);

	if (j->reported || j->have_early)
		return;
	if (status != 0) {
		if (status == UV_ECONNREFUSED)
			j->h->refused++;
		scan_fail(j, "%s", uv_strerror(status));
		return;
	}
	j->connected = true;
	/* The connect deadline is met; while streaming, only a clamd that
	 * stops reading stops us (SCAN_QUEUE_MAX).  After the end, the
	 * answer has its own deadline (scan_end). */
	if (!j->ended)
		uv_timer_stop(&j->timer);
	else
		uv_timer_start(&j->timer, scan_timer_cb, j->timeout_ms, 0);
	uv_read_start((uv_stream_t *)&j->tcp, scan_alloc_cb, scan_read_cb);
	if (j->srv.kind == SCAN_CLAMD)
		scan_write(j, false, scan_clamd_command, SCAN_CLAMD_COMMAND_LEN,
		           0);
	scan_flush(j);
}

/* scan_open - a job for srv: connect now */
struct scan_job *
scan_open(uv_loop_t *loop, const struct scan_server *srv, unsigned timeout_ms,
          scan_done_fn done, void *arg)
{
	struct scan_job *j = xcalloc(1, sizeof(*j));
	int rc;

	j->srv = *srv;
	j->h = scan_health_of(srv->name);
	j->timeout_ms = timeout_ms;
	j->done = done;
	j->arg = arg;
	j->started_ms = util_now_ms();
	if (srv->kind == SCAN_CLAMD && j->h->stream_max > 0)
		j->limit = j->h->stream_max;
	uv_tcp_init(loop, &j->tcp);
	uv_timer_init(loop, &j->timer);
	j->tcp.data = j->timer.data = j;
	j->handles = 2;
	uv_tcp_nodelay(&j->tcp, 1);
	uv_timer_start(&j->timer, scan_timer_cb, timeout_ms, 0);
	rc = uv_tcp_connect(&j->conn, &j->tcp,
	                    (const struct sockaddr *)&srv->addr,
	                    scan_connect_cb);
	if (rc != 0) {
		/* Reported on the next turn, never from inside scan_open. */
		memset(&j->early, 0, sizeof(j->early));
		j->early.verdict = SCAN_FAULT;
		snprintf(j->early.what, sizeof(j->early.what), "%s",
		         uv_strerror(rc));
		j->have_early = true;
		j->reported = false;
		uv_timer_start(&j->timer, scan_timer_cb, 0, 0);
	}
	return j;
}

/* scan_body - clamd: message bytes (copied), streamed as they come */
void
scan_body(struct scan_job *j, const char *p, size_t n)
{
	if (j->reported || j->have_early || j->ended ||
	    j->srv.kind != SCAN_CLAMD)
		return;
	if (j->limit > 0 && j->given + n > j->limit) {
		n = j->given < j->limit ? (size_t)(j->limit - j->given) : 0;
		j->truncated = true;
	}
	j->given += n;
	buf_append(&j->pending, p, n);
	if (j->pending.len + j->queued > SCAN_QUEUE_MAX) {
		/* Reported on the next turn, never from inside scan_body. */
		memset(&j->early, 0, sizeof(j->early));
		j->early.verdict = SCAN_FAULT;
		snprintf(j->early.what, sizeof(j->early.what),
		         "%s (%" PRIu64 " bytes waiting)",
		         j->connected ? "not keeping up" : "not connected yet",
		         (uint64_t)(j->pending.len + j->queued));
		buf_free(&j->pending);
		j->have_early = true;
		j->h->timeouts++;
		uv_timer_start(&j->timer, scan_timer_cb, 0, 0);
		return;
	}
	scan_flush(j);
}

/* scan_end - the message is complete; req: the whole request (other
 * kinds; taken over and freed), NULL for clamd */
void
scan_end(struct scan_job *j, struct buf *req)
{
	if (req != NULL) {
		if (!j->reported && j->srv.kind != SCAN_CLAMD) {
			buf_free(&j->pending);
			j->pending = *req;
		} else {
			buf_free(req);
		}
		memset(req, 0, sizeof(*req));
	}
	if (j->reported || j->have_early || j->ended)
		return;
	j->ended = true;
	if (j->connected)
		uv_timer_start(&j->timer, scan_timer_cb, j->timeout_ms, 0);
	scan_flush(j);
}

/* scan_truncated - clamd got only the first part (its learned limit) */
bool
scan_truncated(const struct scan_job *j)
{
	return j->truncated;
}

/* scan_cancel - no callback from now on; the job goes away */
void
scan_cancel(struct scan_job *j)
{
	if (j == NULL)
		return;
	j->cancelled = true;
	if (!j->reported) {
		j->reported = true;
		scan_close(j);
	}
}

/* scan_health_json - {"clamd:IP:PORT": {...}, ...} into b */
void
scan_health_json(struct buf *b)
{
	char line[512];
	time_t now = time(NULL);
	unsigned i;
	int n;

	buf_append(b, "{", 1);
	for (i = 0; i < n_health; i++) {
		const struct scan_health *h = &health[i];
		bool up = !h->down;

		if (i > 0)
			buf_append(b, ", ", 2);
		stats_json_string(b, h->name);
		n = snprintf(line, sizeof(line),
		             ": {\"status\": \"%s\", \"scans\": %" PRIu64
		             ", \"clean\": %" PRIu64 ", \"found\": %" PRIu64
		             ", \"faults\": %" PRIu64 ", \"timeouts\": %" PRIu64
		             ", \"refused\": %" PRIu64 ", \"last_ms\": %" PRIu64
		             ", \"stream_max\": %" PRIu64
		             ", \"last_ok_ago\": %lld"
		             ", \"last_fault_ago\": %lld, \"last_error\": ",
		             h->scans == 0 ? "unknown"
		             : up          ? "up"
		                           : "down",
		             h->scans, h->clean, h->found, h->faults,
		             h->timeouts, h->refused, h->last_ms, h->stream_max,
		             h->last_ok ? (long long)(now - h->last_ok) : -1LL,
		             h->last_fault ? (long long)(now - h->last_fault)
		                           : -1LL);
		buf_append(b, line, (size_t)n);
		stats_json_string(b, h->last_error);
		buf_append(b, "}", 1);
	}
	buf_append(b, "}", 1);
}
