/*
 * bodytap.c - the message body on its way from the client to the relay.
 *
 * Public (proxy.h, bodytap block):
 *   bodytap_unstuff()  dot-stuffed CRLF text -> the message, in pieces
 *
 * Shared (session_int.h): sess_tap_begin() (DATA: which STAGE_DATA checks
 * are active, their data_begin(), whether one needs the body held),
 * sess_stream_start() (a held body turns into a stream),
 * sess_tap_end() (the transaction is over: their cancel(), the spool
 * freed), sess_smtp_body_cb() (the engine's body hook), sess_hold_flush()
 * and sess_hold_pump() (the held body to the relay after the verdict),
 * sess_send_headers() (Received, the checks' header lines, and when held
 * s->eod_headers, in front of the message), sess_body_out().
 *
 * The body goes two ways as it arrives: unstuffed to every active DATA
 * check's body(), and through the header filter (forged A-R fields out)
 * to a spool (spool.c: SESS_HOLD_RAM in memory, the rest in a temp file
 * written in the thread pool; reading pauses while the file is behind).
 * Every body starts held; once SESS_STREAM_AT (16 KiB) came, and unless a
 * check's hold() asked for it to stay held, DATA, the header lines and
 * the held bytes go to the relay (sess_stream_start) and the rest streams
 * as it arrives.  So most mail (a few KiB) goes at its dot, large mail
 * streams and never touches the temp file, and a slow sender's body is
 * held: its backend connection is unused and can be given back to a
 * session that needs one (stage.c: slots; a slow body that was given
 * back goes on into the spool, the temp file above SESS_HOLD_RAM).  A
 * held body goes to the backend only once every DATA check passed: DATA,
 * the header lines, the spool, paced by the relay's queue, then the dot.
 *
 * Config keys: hostname (Received, the header filter's authserv-id).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "session_int.h"

#define SESS_HOLD_RAM (1024 * 1024) /* a held body kept in memory */

/* sess_send_headers - Received + the checks' header lines, before the
 * first body byte. */
void
sess_send_headers(struct sess *x)
{
	struct session *s = &x->s;
	char hdr[1024], date[64], helo[64], ptr[64];
	struct tm tm;
	time_t now = time(NULL);
	int n;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	/* Client-chosen names: printable, no spaces or parentheses. */
	log_kv_escape(helo, sizeof(helo), s->helo);
	log_kv_escape(ptr, sizeof(ptr), s->ptr[0] ? s->ptr : "unknown");
	for (char *p = helo; *p; p++)
		if (*p == '"' || *p == '(' || *p == ')' || *p == ' ')
			*p = '_';
	n = snprintf(hdr, sizeof(hdr),
	             "Received: from %s (%s [%s])\r\n\tby %s (mailmoat) with "
	             "%s id %s;\r\n\t%s\r\n",
	             helo, ptr, s->client_str, s->cfg->hostname,
	             s->smtp.tls_active ? "ESMTPS"
	                                : (s->smtp.esmtp ? "ESMTP" : "SMTP"),
	             s->sid, date);
	if (n > 0 && (size_t)n < sizeof(hdr))
		relay_body(s->relay, hdr, (size_t)n);
	if (s->add_headers.len > 0)
		relay_body(s->relay, s->add_headers.data, s->add_headers.len);
	if (x->hold && s->eod_headers.len > 0)
		relay_body(s->relay, s->eod_headers.data, s->eod_headers.len);
}

/* sess_body_out - message bytes that passed the header filter. */
void
sess_body_out(void *arg, const char *p, size_t n)
{
	struct sess *x = arg;

	if (x->hold) {
		if (x->spool_err == 0)
			x->spool_err = spool_write(x->spool, p, n);
		if (!x->hold_check && !x->released && x->s.relay != NULL &&
		    x->op == OP_NONE && !x->flushing &&
		    spool_size(x->spool) >= SESS_STREAM_AT)
			sess_stream_start(x);
		return;
	}
	if (x->s.relay != NULL)
		relay_body(x->s.relay, p, n);
}

/* bodytap_unstuff - the message from canonical dot-stuffed CRLF text: a
 * dot that starts a line is dropped; out gets the spans between. */
void
bodytap_unstuff(bool *mid_line, const char *p, size_t n,
                void (*out)(void *arg, const char *p, size_t n), void *arg)
{
	const char *end = p + n, *nl;

	while (p < end) {
		if (!*mid_line) {
			*mid_line = true;
			if (*p == '.') {
				p++;
				continue;
			}
		}
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL) {
			out(arg, p, (size_t)(end - p));
			return;
		}
		out(arg, p, (size_t)(nl + 1 - p));
		*mid_line = false;
		p = nl + 1;
	}
}

/* sess_tap_out - unstuffed message bytes for every active DATA check. */
static void
sess_tap_out(void *arg, const char *p, size_t n)
{
	struct sess *x = arg;
	unsigned i;

	x->s.msg_bytes += n;
	for (i = 0; i < chk_registry_len && !x->s.closing; i++) {
		const struct check *c = chk_registry[i];

		if ((x->tap_mask & (1u << c->id)) && c->body != NULL)
			c->body(&x->s, p, n);
	}
}

/* sess_hold_ready_cb - a spool write or read finished. */
static void
sess_hold_ready_cb(struct spool *sp, void *arg)
{
	struct sess *x = arg;

	if (x->s.closing)
		return;
	if (x->flushing)
		sess_hold_pump(x);
	else
		sess_flow(x); /* the file caught up: read again */
}

/*
 * sess_tap_begin - DATA accepted, the 354 is about to go: which STAGE_DATA
 * checks are active (the same rule as sess_stage_start()), their
 * data_begin(), and whether one wants the body held.
 */
void
sess_tap_begin(struct sess *x)
{
	struct session *s = &x->s;
	unsigned i;

	sess_tap_end(x);
	s->eod_headers.len = 0;
	s->msg_bytes = 0;
	x->tap_mid = false;
	x->spool_err = 0;
	x->released = false;
	/* Every body starts held: a slow one never holds a backend
	 * connection it does not use (stage.c: slots). */
	x->hold = true;
	x->spool = spool_new(sess_loop, SESS_HOLD_RAM);
	spool_on_ready(x->spool, sess_hold_ready_cb, x);
	if (sess_exempt(x, STAGE_DATA))
		return;
	for (i = 0; i < chk_registry_len; i++) {
		const struct check *c = chk_registry[i];

		if ((c->stage & STAGE_DATA) &&
		    s->cfg->actions[c->id] != ACT_OFF)
			x->tap_mask |= 1u << c->id;
	}
	for (i = 0; i < chk_registry_len && !s->closing; i++) {
		const struct check *c = chk_registry[i];

		if (!(x->tap_mask & (1u << c->id)))
			continue;
		if (c->data_begin != NULL)
			c->data_begin(s);
		if (c->hold != NULL && c->hold(s))
			x->hold_check = true;
	}
}

/* sess_tap_end - the transaction is over: every active DATA check's
 * cancel() (once), the spool dropped. */
void
sess_tap_end(struct sess *x)
{
	unsigned i, mask = x->tap_mask;

	x->tap_mask = 0;
	for (i = 0; i < chk_registry_len; i++) {
		const struct check *c = chk_registry[i];

		if ((mask & (1u << c->id)) && c->cancel != NULL)
			c->cancel(&x->s);
	}
	x->hold = false;
	x->hold_check = false;
	x->flushing = false;
	spool_free(x->spool);
	x->spool = NULL;
}

/*
 * sess_stream_start - a held body came to SESS_STREAM_AT bytes while its
 * backend connection is still there and no check needs it held: DATA,
 * the header lines and what is held (all of it in the spool's memory:
 * SESS_STREAM_AT < SESS_HOLD_RAM) go now, and the rest streams as it
 * arrives.  The backend's DATA reply is awaited as in data_ack_pending.
 */
void
sess_stream_start(struct sess *x)
{
	struct session *s = &x->s;
	const char *p;
	ssize_t n;

	x->hold = false;
	x->data_ack_pending = true;
	relay_data(s->relay);
	sess_send_headers(x);
	while ((n = spool_next(x->spool, &p)) > 0)
		relay_body(s->relay, p, (size_t)n);
	if (n < 0)
		log_panic("bodytap: held body not in memory at the stream "
		          "switch");
	spool_free(x->spool);
	x->spool = NULL;
}

/* sess_streaming - x's body goes to the backend as it arrives (it keeps
 * its connection until the dot). */
bool
sess_streaming(const struct sess *x)
{
	return x->wait == W_DATA && x->in_data && !x->hold &&
	       x->s.relay != NULL;
}

/* sess_hold_pending - held bytes not yet on the spool's file. */
size_t
sess_hold_pending(const struct sess *x)
{
	return x->spool != NULL ? spool_pending(x->spool) : 0;
}

/* sess_hold_fail - the spool failed: nothing goes, a 451 answers. */
static void
sess_hold_fail(struct sess *x, int err)
{
	char reply[160];

	sess_drop_relay(x);
	x->backend_txn = false;
	x->in_data = false;
	x->op = OP_NONE;
	x->data_ack_pending = false;
	snprintf(reply, sizeof(reply),
	         "451 4.3.0 Local error in processing, try again later "
	         "[id=%s]",
	         x->s.sid);
	sess_refuse(x, reply, "spool", uv_strerror(err));
}

/*
 * sess_hold_flush - every DATA check passed on a held body: DATA to the
 * backend, then the header lines (s->eod_headers too) and the spool,
 * paced by the relay's queue (sess_hold_pump), then the dot.  From now
 * on the relay's replies answer the dot (OP_DOT).
 */
void
sess_hold_flush(struct sess *x)
{
	struct session *s = &x->s;

	if (x->spool_err < 0) {
		sess_hold_fail(x, x->spool_err);
		return;
	}
	x->op = OP_DOT;
	x->data_ack_pending = true;
	x->flushing = true;
	relay_data(s->relay);
	sess_send_headers(x);
	sess_hold_pump(x);
}

/* sess_hold_pump - more of the held body while the relay's queue is short;
 * the dot once it is all out. */
void
sess_hold_pump(struct sess *x)
{
	struct session *s = &x->s;
	const char *p;
	ssize_t n;

	while (x->flushing && !s->closing && s->relay != NULL &&
	       relay_queued(s->relay) < SESS_BACKPRESSURE) {
		n = spool_next(x->spool, &p);
		if (n > 0) {
			relay_body(s->relay, p, (size_t)n);
			continue;
		}
		if (n == -EAGAIN)
			return; /* sess_hold_ready_cb comes back */
		x->flushing = false;
		if (n == 0) {
			relay_dot(s->relay);
			return;
		}
		sess_hold_fail(x, (int)n);
		return;
	}
}

/* sess_smtp_body_cb - canonical body bytes: to the DATA checks (unstuffed)
 * and through the header filter to the backend or the hold spool. */
void
sess_smtp_body_cb(struct smtp *e, const char *buf, size_t len)
{
	struct session *s = container_of(e, struct session, smtp);
	struct sess *x = sess_x(s);

	if (x->tap_mask != 0)
		bodytap_unstuff(&x->tap_mid, buf, len, sess_tap_out, x);
	if (s->closing)
		return;
	if (s->outbound && x->in_data)
		outbound_body(s, buf, len); /* its Message-ID */
	if (x->hold || (s->relay != NULL && x->in_data))
		hdrfilter_feed(x->hf, buf, len, sess_body_out, x);
}
