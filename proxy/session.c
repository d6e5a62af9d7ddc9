/*
 * session.c - one client connection's life, from accept to the last close.
 *
 * Public (proxy.h, session block):
 *   sess_find()        id -> live session (the registry's tickets)
 *
 * Shared with listen.c, stage.c, bodytap.c (session_int.h): sess_new(),
 * the id table, the decision log line, the write path (sess_write_line,
 * the engine's write hook, sess_final), the timers (sess_timeouts,
 * sess_arm, sess_rearm), sess_close(), the TLS hooks and the read path.
 *
 * A session (struct sess, session_int.h) embeds its uv_tcp_t and
 * uv_timer_t and is freed in the close callback of the last one.
 *
 * Which timer runs in which state (the rule; one uv_timer_t, x->wait
 * says what the session waits for, sess_rearm() arms it):
 *   - before the banner (PH_CONNECT): greet_pause, then at most
 *     2 x dns_timeout + 5 s for the connect checks (listen.c).
 *   - waiting for the client's next command (W_CLIENT, after each reply
 *     we write): timeout_command; bytes of a command do not extend it.
 *   - a command is with us (W_US: its checks run, or the backend works on
 *     MAIL/RCPT/DATA): the client's timer is suspended - each stage has
 *     its own limits (DNS timeouts, the relay's timeout_backend) - and
 *     only a ceiling (timeout_backend + 2 x dns_timeout + 5 s) catches a
 *     stage that hangs.
 *   - after the 354 (W_DATA): timeout_data, the idle time between chunks
 *     (RFC 5321 4.5.3.2.6), re-armed by the reads - once at least one
 *     byte per second of timeout_data has come since the last arming, so
 *     that a client trickling a byte every few seconds (slowloris, which
 *     holds a backend connection) is cut after timeout_data, while any
 *     real sender, even a line every few seconds, is not.  While a
 *     session lately found no free backend connection (stage.c:
 *     sess_slots_pressed), a streaming body holds one that others wait
 *     for: its window is at most SESS_STRESS_DATA_MS and it must bring
 *     SESS_SHORT_RATE bytes a second of it.  While we stopped reading
 *     (sess_flow: the backend is behind) the timer does not cut: the
 *     client is not idle, and the relay's timeout_backend watches the
 *     backend.
 *   - after the final dot until its answer (W_EOD: DATA checks, a held
 *     body going out, the backend's reply): suspended; the relay's
 *     timeout_backend turns a silent backend into a 451; a ceiling of
 *     SESS_EOD_MAX_MS (RFC 5321's 10-minute end-of-data wait) that the
 *     session's life does not cap.
 *   - a RCPT, or after the final dot a body whose backend connection
 *     was given back, waiting for a free one (W_SLOT, stage.c: slots):
 *     timeout_backend, then 451 (not capped by the life either).
 *   - closing: SESS_CLOSE_FLUSH_MS for the last reply to drain.
 * Every arming but W_EOD's is capped by the session's life (30 min, 5 in
 * stress mode); stress mode also shortens timeout_command/timeout_data.
 * A 421 from a timer logs reason=timeout with detail command, stage, data
 * or end-of-data.
 *
 * Every decision is one log line (id client ptr helo from to action
 * reason detail) and counts in stats.
 *
 * Which callback may re-enter what (the rule; stage.c and bodytap.c keep
 * it too):
 *   - relay.c never calls back from inside a relay_* call (failures come
 *     from a zero timer); its callbacks arrive on a later loop turn, and
 *     sess_relay_cb()/sess_relay_drain_cb() drop those of a relay the
 *     session has let go (the one liveness check: s->relay == r).
 *   - checks answer through sess_check_done() on a later turn (DNS cache
 *     hits and chk_done_later() are deferred too); a synchronous answer
 *     from start() would still be safe: sess_stage_start() decides only
 *     after its loop (x->starting).
 *   - the SMTP engine calls its hooks synchronously from smtp_input(),
 *     smtp_accept() and smtp_reply() (the owner's answer releases queued
 *     input): so every caller of those treats them as its last use of the
 *     transaction state, and a hook may close the session (sess_close()
 *     only marks it; memory goes in the last handle's close callback).
 *   - tls.c calls its hooks synchronously from tls_input()/tls_write();
 *     they may close the session, never free the TLS context.
 *
 * Owns: the sessions, the id table.  Async: everything, on the loop.
 * Config keys: timeout_command, timeout_data, dns_timeout (connect wait).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "session_int.h"

#define SESS_HASH 4096 /* id table buckets */

struct sess_wreq {
	uv_write_t req;
	struct sess *x;
	char data[];
};

uv_loop_t *sess_loop;
unsigned sess_n_alive;
static struct sess *sess_table[SESS_HASH];
static uint64_t sess_counter;
#define SESS_MAX_HOOKS 4
static void (*decision_fn[SESS_MAX_HOOKS])(const struct decision_rec *);
static unsigned n_decision_fn;
static void (*delivered_fn[SESS_MAX_HOOKS])(struct session *);
static unsigned n_delivered_fn;

static void sess_close_handles(struct sess *x);
static void sess_timer_cb(uv_timer_t *t);

static const char *const action_names[] = {
        [VERDICT_ACCEPT] = "accept",
        [VERDICT_LOG] = "log",
        [VERDICT_TEMPFAIL] = "tempfail",
        [VERDICT_REJECT] = "reject",
};

/* ---------------------------------------------------------- tables */

/* sess_find - the live session with this id, or NULL. */
struct session *
sess_find(uint64_t id)
{
	struct sess *x;

	for (x = sess_table[id % SESS_HASH]; x != NULL; x = x->hnext)
		if (x->s.id == id)
			return x->s.closing ? NULL : &x->s;
	return NULL;
}

/* sess_table_del - take x out of the id table. */
static void
sess_table_del(struct sess *x)
{
	struct sess **pp;

	if (!x->in_table)
		return;
	for (pp = &sess_table[x->s.id % SESS_HASH]; *pp; pp = &(*pp)->hnext) {
		if (*pp == x) {
			*pp = x->hnext;
			break;
		}
	}
	x->in_table = false;
}

/* sess_table_add - x into the id table (at admission). */
void
sess_table_add(struct sess *x)
{
	x->in_table = true;
	x->hnext = sess_table[x->s.id % SESS_HASH];
	sess_table[x->s.id % SESS_HASH] = x;
}

/* sess_foreach - fn for every session in the table; fn may close x. */
void
sess_foreach(void (*fn)(struct sess *x))
{
	unsigned i;

	for (i = 0; i < SESS_HASH; i++) {
		struct sess *x = sess_table[i], *next;

		for (; x != NULL; x = next) {
			next = x->hnext;
			fn(x);
		}
	}
}

/* --------------------------------------------------------- logging */

/* sess_path_str - "<local@domain>" of a path. */
void
sess_path_str(const struct mailpath *p, char *out, size_t outlen)
{
	char a[330];

	addr_format(p, a, sizeof(a));
	snprintf(out, outlen, "<%s>", a);
}

/*
 * sess_log - the one line of a decision; kind counts in stats unless it
 * is an accept (counted by the caller when the backend took the mail).
 */
void
sess_log(struct sess *x, enum verdict_kind kind, const char *reason,
         const char *detail)
{
	struct session *s = &x->s;
	char ptr[300], helo[300], from[400], to[1200], det[400], rsn[64];
	char tmp[340], rawfrom[340] = "", rawto[1100] = "";
	struct decision_rec d;
	unsigned i;

	log_kv_escape(ptr, sizeof(ptr), s->ptr);
	log_kv_escape(helo, sizeof(helo), s->helo);
	if (s->has_from) {
		sess_path_str(&s->from, tmp, sizeof(tmp));
		snprintf(rawfrom, sizeof(rawfrom), "%s", tmp);
		log_kv_escape(from, sizeof(from), tmp);
	} else {
		log_kv_escape(from, sizeof(from), NULL);
	}
	if (x->at_eod && x->rcpts.len > 0) {
		/* The message's decision: every recipient it had. */
		char all[1100];
		int n = snprintf(all, sizeof(all), "%.*s", (int)x->rcpts.len,
		                 x->rcpts.data);

		if (x->rcpts_more > 0 && n > 0 && (size_t)n < sizeof(all))
			snprintf(all + n, sizeof(all) - (size_t)n, ",+%u",
			         x->rcpts_more);
		snprintf(rawto, sizeof(rawto), "%s", all);
		log_kv_escape(to, sizeof(to), all);
	} else if (s->rcpt.local[0] != '\0' || s->rcpt.domain[0] != '\0') {
		sess_path_str(&s->rcpt, tmp, sizeof(tmp));
		snprintf(rawto, sizeof(rawto), "%s", tmp);
		log_kv_escape(to, sizeof(to), tmp);
	} else {
		log_kv_escape(to, sizeof(to), NULL);
	}
	log_kv_escape(det, sizeof(det), detail);
	log_kv_escape(rsn, sizeof(rsn), reason);
	log_info("id=%s client=%s%s%s ptr=%s helo=%s from=%s to=%s action=%s "
	         "reason=%s detail=%s",
	         s->sid, s->client_str,
	         s->cfg->transparent != TRANSPARENT_OFF ? " dst=" : "",
	         s->cfg->transparent != TRANSPARENT_OFF ? s->dst_str : "", ptr,
	         helo, from, to, action_names[kind], rsn, det);
	d.id = s->sid;
	d.time = (uint64_t)time(NULL);
	d.client = s->client_str;
	d.ptr = s->ptr;
	d.helo = s->helo;
	d.from = rawfrom;
	d.to = rawto;
	d.action = action_names[kind];
	d.reason = reason ? reason : "";
	d.detail = detail ? detail : "";
	for (i = 0; i < n_decision_fn; i++)
		decision_fn[i](&d);
	if (x->at_eod && kind != VERDICT_LOG) {
		/* The message's decision is out: the transaction is over for
		 * the DATA checks (cancel()), and an idle session keeps no
		 * recipient list. */
		sess_tap_end(x);
		buf_free(&x->rcpts);
		x->rcpts_more = 0;
		x->at_eod = false;
	}
	switch (kind) {
	case VERDICT_REJECT:
		stats.rejected++;
		break;
	case VERDICT_TEMPFAIL:
		stats.tempfailed++;
		break;
	case VERDICT_LOG:
		stats.logged++;
		break;
	case VERDICT_ACCEPT:
		return;
	}
	stats_count_reason(reason);
}

/* sess_on_decision - fn for every decision line (at most 4). */
void
sess_on_decision(void (*fn)(const struct decision_rec *d))
{
	if (n_decision_fn == SESS_MAX_HOOKS)
		log_panic("sess_on_decision: too many subscribers");
	decision_fn[n_decision_fn++] = fn;
}

/* sess_on_delivered - fn(s) after the backend's 2xx to the dot. */
void
sess_on_delivered(void (*fn)(struct session *s))
{
	if (n_delivered_fn == SESS_MAX_HOOKS)
		log_panic("sess_on_delivered: too many subscribers");
	delivered_fn[n_delivered_fn++] = fn;
}

/* sess_delivered - the backend took the message: tell the subscribers. */
void
sess_delivered(struct sess *x)
{
	unsigned i;

	for (i = 0; i < n_delivered_fn; i++)
		delivered_fn[i](&x->s);
}

/* sess_kind_of - the verdict kind a reply code stands for. */
enum verdict_kind
sess_kind_of(const char *reply)
{
	if (reply[0] == '2' || reply[0] == '3')
		return VERDICT_ACCEPT;
	return reply[0] == '4' ? VERDICT_TEMPFAIL : VERDICT_REJECT;
}

/* ----------------------------------------------------------- output */

/* sess_write_cb - a queued write finished. */
static void
sess_write_cb(uv_write_t *req, int status)
{
	struct sess_wreq *w = container_of(req, struct sess_wreq, req);
	struct sess *x = w->x;

	free(w);
	x->writes_pending--;
	if (status < 0 && !x->s.closing)
		sess_close(x);
	if (x->s.closing && x->writes_pending == 0)
		sess_close_handles(x); /* the last reply is out */
}

/* sess_raw_write - bytes to the client socket (ciphertext under TLS). */
static void
sess_raw_write(struct sess *x, const char *p, size_t n)
{
	struct sess_wreq *w;
	uv_buf_t b;
	int rc;

	if (x->handles_closing || n == 0)
		return;
	if (x->writes_pending == 0) {
		b = uv_buf_init((char *)p, (unsigned)n);
		rc = uv_try_write((uv_stream_t *)&x->s.tcp, &b, 1);
		if (rc > 0) {
			p += rc;
			n -= (size_t)rc;
		} else if (rc < 0 && rc != UV_EAGAIN) {
			return; /* the read side will see the error */
		}
		if (n == 0)
			return;
	}
	w = xmalloc(sizeof(*w) + n);
	w->x = x;
	memcpy(w->data, p, n);
	b = uv_buf_init(w->data, (unsigned)n);
	if (uv_write(&w->req, (uv_stream_t *)&x->s.tcp, &b, 1, sess_write_cb) <
	    0) {
		free(w);
		return;
	}
	x->writes_pending++;
}

/* sess_write_line - one reply line outside the engine, CRLF added. */
void
sess_write_line(struct sess *x, const char *line)
{
	char out[600];
	int n = snprintf(out, sizeof(out), "%s\r\n", line);

	if (n >= (int)sizeof(out))
		n = (int)sizeof(out) - 1;
	if (x->s.tls != NULL)
		tls_write(x->s.tls, out, (size_t)n);
	else
		sess_raw_write(x, out, (size_t)n);
}

/* sess_smtp_write_cb - the engine's output. */
void
sess_smtp_write_cb(struct smtp *e, const char *buf, size_t len)
{
	struct sess *x = sess_x(container_of(e, struct session, smtp));

	if (x->s.tls != NULL)
		tls_write(x->s.tls, buf, len);
	else
		sess_raw_write(x, buf, len);
	/* A reply went out: the client has a fresh deadline (the 354 keeps
	 * W_DATA: the DATA handler set it). */
	if (x->wait != W_DATA)
		x->wait = W_CLIENT;
	if (!x->s.closing && x->phase != PH_CONNECT)
		sess_rearm(x);
}

/* sess_final - send a last reply (421/554...) and close. */
void
sess_final(struct sess *x, const char *reply)
{
	if (x->s.closing)
		return;
	if (x->phase == PH_SMTP)
		smtp_close_reply(&x->s.smtp, reply);
	else
		sess_write_line(x, reply);
	sess_close(x);
}

/* ----------------------------------------------------------- timers */

/* sess_timeouts - command, data and life limits, shorter under stress. */
void
sess_timeouts(const struct sess *x, uint64_t *cmd, uint64_t *data,
              uint64_t *life)
{
	const struct config *c = x->s.cfg;

	*cmd = c->timeout_command_ms ? c->timeout_command_ms : 300000;
	*data = c->timeout_data_ms ? c->timeout_data_ms : 180000;
	*life = SESS_LIFE_MS;
	if (sess_stress) {
		if (*cmd > SESS_STRESS_CMD_MS)
			*cmd = SESS_STRESS_CMD_MS;
		if (*data > SESS_STRESS_DATA_MS)
			*data = SESS_STRESS_DATA_MS;
		*life = SESS_STRESS_LIFE_MS;
	}
}

/*
 * sess_data_rule - the W_DATA window (ms) and the bytes that re-arm it
 * before it ends: timeout_data and one byte per second of it (at least
 * one), so a byte every few seconds does not; a streaming body while
 * backend connections are short holds one that others wait for: at most
 * SESS_STRESS_DATA_MS, and SESS_SHORT_RATE bytes per second of it.
 */
static void
sess_data_rule(const struct sess *x, uint64_t *window, uint64_t *floor)
{
	uint64_t cmd, life, secs;
	bool slots_short = sess_streaming(x) && sess_slots_short();

	sess_timeouts(x, &cmd, window, &life);
	if (slots_short && *window > SESS_STRESS_DATA_MS)
		*window = SESS_STRESS_DATA_MS;
	secs = *window >= 2000 ? *window / 1000 : 1;
	*floor = slots_short ? secs * SESS_SHORT_RATE : secs;
}

/* sess_data_floor - sess_data_rule()'s bytes. */
static uint64_t
sess_data_floor(const struct sess *x)
{
	uint64_t window, floor;

	sess_data_rule(x, &window, &floor);
	return floor;
}

/* sess_timer_at - the timer exactly in ms (no lazy deadline). */
static void
sess_timer_at(struct sess *x, uint64_t ms)
{
	x->deadline = 0;
	x->timer_due = uv_now(sess_loop) + ms;
	uv_timer_start(&x->s.timer, sess_timer_cb, ms, 0);
}

/*
 * sess_arm - the deadline in ms, capped by the session's life.  Lazy:
 * most re-armings move the deadline later (every command and reply), so
 * when the timer already runs and is due no later than the new deadline
 * only x->deadline changes, and sess_timer_cb() re-arms for the rest when
 * it fires early (two timer-heap operations less per command).
 */
void
sess_arm(struct sess *x, uint64_t ms)
{
	uint64_t now = uv_now(sess_loop);

	if (x->life_deadline <= now)
		ms = 0;
	else if (now + ms > x->life_deadline)
		ms = x->life_deadline - now;
	x->deadline = now + ms;
	if (uv_is_active((uv_handle_t *)&x->s.timer) &&
	    x->timer_due <= x->deadline)
		return;
	x->timer_due = x->deadline;
	uv_timer_start(&x->s.timer, sess_timer_cb, ms, 0);
}

/* sess_rearm - the deadline of what the session waits for (x->wait). */
void
sess_rearm(struct sess *x)
{
	uint64_t cmd, data, life, floor;

	const struct config *c = x->s.cfg;

	sess_timeouts(x, &cmd, &data, &life);
	switch (x->wait) {
	case W_DATA:
		sess_data_rule(x, &data, &floor);
		x->data_since_arm = 0;
		sess_arm(x, data);
		return;
	case W_US:
		/* Each stage is bounded by its own timers (DNS, the relay's
		 * timeout_backend); this only catches a stage that hangs. */
		sess_arm(x, (c->timeout_backend_ms ? c->timeout_backend_ms
		                                   : 120000) +
		                    2ull * c->dns_timeout_ms + 5000);
		return;
	case W_EOD:
		/* Not capped by the session's life: a message the backend may
		 * be committing is never cut by our clock. */
		sess_timer_at(x, SESS_EOD_MAX_MS);
		return;
	case W_SLOT:
		/* After the dot too: a free backend slot within
		 * timeout_backend, or a 451. */
		sess_timer_at(x, c->timeout_backend_ms ? c->timeout_backend_ms
		                                       : 120000);
		return;
	case W_CLIENT:
		break;
	}
	sess_arm(x, cmd);
}

/* sess_timer_cb - greet pause over, a deadline passed, or a close hung. */
static void
sess_timer_cb(uv_timer_t *t)
{
	struct sess *x = sess_x(container_of(t, struct session, timer));
	char reply[96];

	if (x->s.closing) {
		/* The client does not read our last reply: close anyway. */
		sess_close_handles(x);
		return;
	}
	if (x->deadline != 0 && x->deadline > uv_now(sess_loop)) {
		/* armed lazily (sess_arm): the deadline moved on since */
		x->timer_due = x->deadline;
		uv_timer_start(&x->s.timer, sess_timer_cb,
		               x->deadline - uv_now(sess_loop), 0);
		return;
	}
	if (x->phase == PH_CONNECT && !x->greet_elapsed) {
		x->greet_elapsed = true;
		if (x->s.pending_checks > 0) {
			/* Wait for the checks, but not forever. */
			sess_arm(x, 2ull * x->s.cfg->dns_timeout_ms + 5000);
			return;
		}
		sess_banner(x);
		return;
	}
	if (x->phase == PH_CONNECT) {
		log_warn("id=%s connect checks still running: not waiting",
		         x->s.sid);
		sess_cancel_checks(x);
		sess_banner(x);
		return;
	}
	if (x->wait == W_SLOT) {
		sess_slot_timeout(x); /* a 451 for the message, not a close */
		return;
	}
	if (x->wait == W_DATA && uv_now(sess_loop) < x->life_deadline &&
	    (x->read_paused || x->data_since_arm >= sess_data_floor(x))) {
		/* we stopped reading (the backend is behind): the client is
		 * not idle, the relay's timeout_backend watches the backend;
		 * or the window's floor fell (backend connections are no
		 * longer short) below what came.  Not past the session's life:
		 * sess_arm() would fire at once, again and again. */
		sess_rearm(x);
		return;
	}
	snprintf(reply, sizeof(reply),
	         "421 4.4.2 Timeout, closing connection [id=%s]", x->s.sid);
	sess_log(x, VERDICT_TEMPFAIL, "timeout",
	         x->wait == W_DATA  ? "data"
	         : x->wait == W_US  ? "stage"
	         : x->wait == W_EOD ? "end-of-data"
	                            : "command");
	sess_final(x, reply);
}

/* sess_free_cb - a handle closed; the last one frees the session. */
static void
sess_free_cb(uv_handle_t *h)
{
	struct session *s = h->data;
	struct sess *x = sess_x(s);

	if (--s->open_handles > 0)
		return;
	if (s->tls != NULL)
		tls_free(s->tls);
	smtp_free(&s->smtp);
	buf_free(&s->add_headers);
	buf_free(&s->eod_headers);
	free(x->to_v);
	free(x->reject_reply);
	free(x->hf);
	free(x->mail_refused);
	free(x->data_refused);
	buf_free(&x->rcpts);
	outbound_end(s);
	config_unref(s->cfg);
	free(x);
	sess_n_alive--;
	sess_freed();
}

/* sess_close_handles - close both handles (once); freed afterwards. */
static void
sess_close_handles(struct sess *x)
{
	if (x->handles_closing)
		return;
	x->handles_closing = true;
	uv_close((uv_handle_t *)&x->s.tcp, sess_free_cb);
	uv_close((uv_handle_t *)&x->s.timer, sess_free_cb);
}

/*
 * sess_close - end the session: checks cancelled, the relay dropped (an
 * open transaction without its dot), counters released; the handles
 * close once the last reply has been written (bounded by a timer).
 */
void
sess_close(struct sess *x)
{
	struct session *s = &x->s;

	if (!s->closing) {
		s->closing = true;
		sess_cancel_checks(x);
		sess_tap_end(x);
		sess_slot_forget(x);
		if (s->relay != NULL) {
			if (x->op != OP_NONE || x->in_data || x->backend_txn)
				relay_abort(s->relay);
			else
				relay_quit(s->relay);
			s->relay = NULL;
		}
		sess_table_del(x);
		sess_admission_release(x);
		stats.connections_active--;
		uv_read_stop((uv_stream_t *)&s->tcp);
		if (s->tls != NULL)
			tls_close_notify(s->tls); /* queued like a reply */
		if (x->writes_pending > 0) {
			sess_timer_at(x, SESS_CLOSE_FLUSH_MS);
			return;
		}
	}
	if (x->writes_pending == 0)
		sess_close_handles(x);
}

/* ------------------------------------------------------------- TLS */

/* sess_tls_send_cb - ciphertext for the client. */
static void
sess_tls_send_cb(struct tls *t, void *arg, const char *buf, size_t len)
{
	sess_raw_write(arg, buf, len);
}

/* sess_tls_plain_cb - decrypted client bytes for the engine. */
static void
sess_tls_plain_cb(struct tls *t, void *arg, const char *buf, size_t len)
{
	struct sess *x = arg;

	if (!x->s.closing)
		smtp_input(&x->s.smtp, buf, len);
}

/* sess_tls_ready_cb - handshake done: the engine starts over. */
static void
sess_tls_ready_cb(struct tls *t, void *arg)
{
	struct sess *x = arg;

	log_debug("id=%s TLS %s %s", x->s.sid, tls_version(t), tls_cipher(t));
	smtp_tls_started(&x->s.smtp);
	sess_rearm(x);
}

/* sess_tls_error_cb - the handshake or a record failed: close. */
static void
sess_tls_error_cb(struct tls *t, void *arg, const char *why)
{
	struct sess *x = arg;

	log_warn("id=%s client=%s TLS failed: %s", x->s.sid, x->s.client_str,
	         why);
	sess_close(x);
}

/* ------------------------------------------------------------ input */

/* sess_alloc_cb - the engine consumes input at once: one shared buffer. */
void
sess_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char inbuf[64 * 1024];

	b->base = inbuf;
	b->len = sizeof(inbuf);
}

/* sess_read_cb - client bytes (ciphertext under TLS). */
void
sess_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct session *s = container_of((uv_tcp_t *)st, struct session, tcp);
	struct sess *x = sess_x(s);

	if (nread == 0 || s->closing)
		return;
	if (nread < 0) {
		if (x->in_data || x->op != OP_NONE)
			log_info("id=%s client=%s disconnected in a "
			         "transaction: nothing delivered",
			         s->sid, s->client_str);
		sess_close(x);
		return;
	}
	/* In DATA the reads re-arm timeout_data (idle time between chunks,
	 * RFC 5321 4.5.3.2.6) once they carry a byte per second of it;
	 * command bytes do not extend the command deadline. */
	if (x->wait == W_DATA) {
		x->data_since_arm += (uint64_t)nread;
		if (x->data_since_arm >= sess_data_floor(x))
			sess_rearm(x);
	}
	if (s->tls != NULL)
		tls_input(s->tls, b->base, (size_t)nread);
	else
		smtp_input(&s->smtp, b->base, (size_t)nread);
	if (!s->closing)
		sess_flow(x);
}

/* sess_flow - stop reading while the relay's queue or the hold spool's
 * file writes are behind; read again (fresh deadline) when both caught
 * up (called after each read and from their drain hooks). */
void
sess_flow(struct sess *x)
{
	struct session *s = &x->s;
	bool behind = (s->relay != NULL &&
	               relay_queued(s->relay) > SESS_BACKPRESSURE) ||
	              sess_hold_pending(x) > SESS_BACKPRESSURE;

	if (s->closing)
		return;
	if (behind && !x->read_paused) {
		x->read_paused = true;
		uv_read_stop((uv_stream_t *)&s->tcp);
	} else if (!behind && x->read_paused) {
		x->read_paused = false;
		uv_read_start((uv_stream_t *)&s->tcp, sess_alloc_cb,
		              sess_read_cb);
		sess_rearm(x);
	}
}

/* ------------------------------------------------------------ new */

/* sess_new - a session for an accepted socket (the caps come after). */
struct sess *
sess_new(uv_stream_t *server, struct config *cfg)
{
	struct sess *x = xcalloc(1, sizeof(*x));
	struct session *s = &x->s;
	struct sockaddr_storage ss;
	int len = sizeof(ss);

	uv_tcp_init(sess_loop, &s->tcp);
	uv_timer_init(sess_loop, &s->timer);
	s->tcp.data = s;
	s->timer.data = s;
	s->open_handles = 2;
	sess_n_alive++;
	s->cfg = config_ref(cfg);
	smtp_init(&s->smtp, &sess_smtp_hooks);
	if (uv_accept(server, (uv_stream_t *)&s->tcp) < 0 ||
	    uv_tcp_getpeername(&s->tcp, (struct sockaddr *)&ss, &len) < 0 ||
	    ipaddr_from_sockaddr(&s->client, (struct sockaddr *)&ss) < 0) {
		s->closing = true;
		x->handles_closing = true;
		uv_close((uv_handle_t *)&s->tcp, sess_free_cb);
		uv_close((uv_handle_t *)&s->timer, sess_free_cb);
		return NULL;
	}
	s->id = ++sess_counter;
	util_session_id(s->id, s->sid);
	ipaddr_format(&s->client, s->client_str, sizeof(s->client_str));
	memcpy(&s->peer, &ss, sizeof(ss));
	transparent_session_dst(s);
	s->smtp.sid = s->sid;
	s->smtp.hostname = s->cfg->hostname;
	s->smtp.max_rcpt =
	        s->cfg->max_recipients ? s->cfg->max_recipients : SESS_MAX_RCPT;
	s->smtp.size_limit = s->cfg->message_size_limit;
	s->smtp.tls_offer = tls_available();
	return x;
}

const struct tls_hooks sess_tls_hooks = {
        .send = sess_tls_send_cb,
        .plain = sess_tls_plain_cb,
        .ready = sess_tls_ready_cb,
        .error = sess_tls_error_cb,
};
