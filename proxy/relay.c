/*
 * relay.c - the client side toward the internal mail server (`backend`).
 *
 * Public (proxy.h, relay block):
 *   relay_open()    connect, read the banner, EHLO (HELO on a 5xx)
 *   relay_mail/rcpt/data()   queue one command (MAIL goes with the RCPT
 *                   that follows it); its reply comes back
 *                   through the relay_reply_cb, in order, one per command
 *   relay_body()    canonical body bytes after relay_data(): held until
 *                   the backend's 354, then written (copied once, only
 *                   what the socket does not take at once); dropped if
 *                   the backend refuses DATA, and so is a queued dot
 *   relay_dot()     the held-back final ".": the reply is the verdict of
 *                   the internal server and goes to the client as it is
 *   relay_rset()    RSET; its reply is not reported (a failure is)
 *   relay_queued()  body bytes not yet written (back-pressure)
 *   relay_on_drain() called when the queue falls below RELAY_LOW_WATER
 *   relay_abort()   drop the connection: without the dot nothing is
 *                   delivered; frees r once its handles have closed
 *   relay_quit()    the client is done: an idle connection is kept for
 *                   the next session (see below), else a polite QUIT, or
 *                   an abort in the middle of a transaction; frees r
 *   relay_can_open() whether relay_open() stays within
 *                   max_backend_connections
 *   relay_shutdown() QUIT the idle connections (at exit)
 *   relay_on_slot()  fn() whenever a connection stops counting against
 *                   the cap (closed) or becomes takeable (parked); it may
 *                   run inside any relay_* call, so fn only schedules
 *   relay_idle_now() no command and no body byte outstanding
 *   relay_leaving_count  connections relay_quit() let go whose RSET (to
 *                   park) or QUIT is still on its way: slots about to free
 *   relay_open_for() relay_open() for one client (transparent modes and
 *                   backend_client_info): a tproxy socket bound to the
 *                   client's address (transparent.c), a PROXY v2 header
 *                   as the first bytes, or XCLIENT after an EHLO reply
 *                   that offers it (a 2xx, then EHLO again); such a
 *                   connection is never parked for reuse
 *
 * Connection reuse: small office servers take a while to greet, and a
 * client that sends one message per connection (most MTAs) would pay a
 * connect, a banner and an EHLO every time.  So relay_quit() parks an
 * idle connection for backend_reuse (default 2s, as Postfix's connection
 * cache).  A connection whose last transaction ended with the reply to
 * its dot is clean (RFC 5321 4.1.1.4: the server clears its state after
 * the end of mail data, whatever it answered) and is parked at once;
 * one with a transaction open (a MAIL since the last dot or RSET) first
 * sends RSET, and only a 250 parks it.  relay_open() takes a parked one
 * for the same backend and EHLO name.  A parked connection that the
 * server closes, that says anything, or whose time is up is closed
 * (QUIT).  At most RELAY_REUSE_MAX transactions per connection.  A
 * parked connection that fails before its first reply (the server
 * closed it as it was taken, a reset, a timeout, or a 421) is replaced
 * once, unseen by the caller: the same relay connects again, greets, and
 * sends the queued commands anew (relay_retry).
 *
 * Writes: MAIL waits for the RCPT that always follows it (stage.c sends
 * both at once), so a backend that offers PIPELINING gets MAIL and RCPT
 * in one write; a held body goes out with its dot in one write.
 *
 * A failure (connect refused, timeout, the backend going away, a banner
 * or EHLO refusal, a malformed or oversized reply, an unsolicited reply)
 * is reported once as code -1 with a short reason in `reply`; afterwards
 * the relay only waits for relay_abort().  What a session's connection saw
 * is the backend's health (backend.c): backend_ok() on a greeting and on
 * every reply, backend_failed() on a failure that is not ours while a
 * greeting or a reply was awaited (a server closing an idle connection
 * is not down).  After
 * relay_abort() or relay_quit() no callback runs again.
 *
 * Re-entrancy rule: no callback (reply, failure, drain) ever runs inside
 * a relay_* call.  Replies and drains come from the loop's read and write
 * callbacks; a failure found inside a call (a write to a reset
 * connection, a command too long) marks the relay dead at once and is
 * reported from a zero timer on the relay's own uv_timer_t, on a later
 * turn of the loop.  So a caller may go on using r after any relay_*
 * call, and learns of the failure only through its callback.
 *
 * Owns its uv_tcp_t and uv_timer_t (embedded), its buffers.  Everything
 * is asynchronous on the loop.  Reads timeout_backend_ms and hostname
 * (as the EHLO name, given by the caller).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

#define RELAY_MAX_REPLY 4096 /* a whole (multi-line) reply */
#define RELAY_MAX_LINE 1000  /* one reply line */
#define RELAY_MAX_CMDS 8     /* commands queued at once */
#define RELAY_LOW_WATER (64 * 1024)
#define RELAY_QUIT_MS 5000
#define RELAY_REUSE_MAX 100 /* transactions on one connection */

unsigned relay_open_count;
unsigned relay_idle_count;
unsigned relay_leaving_count; /* quit: their slot frees up soon */

enum relay_state {
	RS_CONNECTING,
	RS_BANNER,
	RS_EHLO,
	RS_HELO,
	RS_XCLIENT, /* XCLIENT sent, its 220 awaited */
	RS_READY,
	RS_DEAD, /* failed, waiting for relay_abort() */
};

enum relay_cmd_kind { RC_MAIL, RC_RCPT, RC_DATA, RC_DOT, RC_RSET, RC_QUIT };

struct relay_cmd {
	enum relay_cmd_kind kind;
	char *arg; /* path (and MAIL parameters); owned */
};

struct relay {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_connect_t creq;
	uv_write_t wreq;
	enum relay_state state;
	relay_reply_cb cb;
	void *arg;
	void (*drain_cb)(struct relay *, void *);
	char *helo;
	unsigned timeout_ms;
	bool ext_size, ext_8bit;
	bool detached; /* abort/quit called: no more callbacks */
	bool quitting;
	bool closing;
	unsigned n_sent; /* cmds[0..n_sent) sent, replies awaited */
	bool ext_pipelining;
	bool ext_xclient;
	struct relay_client *ci; /* relay_open_for: the client; owned */
	bool xclient_sent;
	bool writing;
	unsigned handles;
	struct relay_cmd cmds[RELAY_MAX_CMDS];
	unsigned n_cmds;
	bool hold;         /* DATA sent, no 354 yet: body waits in hbuf */
	bool data_refused; /* DATA got no 354: body and dot dropped */
	struct buf hbuf;   /* body that came before the 354 */
	struct buf wbuf;   /* being written */
	struct buf qbuf;   /* waiting for the write in progress */
	struct buf rline;  /* partial reply line */
	struct buf reply;  /* reply lines so far, joined by CRLF */
	char why[128];     /* the failure, reported from the timer */
	/* connection reuse */
	struct sockaddr_storage peer;
	unsigned reuse_ms; /* backend_reuse; 0: never parked */
	unsigned uses;     /* transactions begun on this connection */
	bool parking;      /* RSET sent by relay_quit(): park on its 250 */
	bool txn;          /* MAIL sent, no reply to a dot or RSET since */
	struct relay *idle_next, *idle_prev; /* when parked */
	bool parked;
	bool our_fault; /* the failure is ours: the backend is not to blame */
	bool leaving;   /* relay_quit(): RSET or QUIT on its way (counted) */
	bool retry_ok;  /* taken from the parked ones, no reply yet */
	bool reconnecting; /* relay_retry(): the old socket is closing */
};

static struct relay *relay_idle; /* parked connections, newest first */
static void (*relay_slot_fn)(void);

static void relay_pump(struct relay *r);
static void relay_close(struct relay *r);
static void relay_timer_cb(uv_timer_t *t);
static void relay_unpark(struct relay *r);
static void relay_quit_idle(struct relay *r);
static bool relay_retry(struct relay *r, const char *why);

/* relay_close_cb - one handle closed; the last one frees r. */
static void
relay_close_cb(uv_handle_t *h)
{
	struct relay *r = h->data;
	unsigned i;

	if (--r->handles > 0)
		return;
	for (i = 0; i < r->n_cmds; i++)
		free(r->cmds[i].arg);
	buf_free(&r->hbuf);
	buf_free(&r->wbuf);
	buf_free(&r->qbuf);
	buf_free(&r->rline);
	buf_free(&r->reply);
	free(r->helo);
	free(r->ci);
	free(r);
}

/* relay_unpark - take r off the idle list (if it is on it). */
static void
relay_unpark(struct relay *r)
{
	if (!r->parked)
		return;
	if (r->idle_prev != NULL)
		r->idle_prev->idle_next = r->idle_next;
	else
		relay_idle = r->idle_next;
	if (r->idle_next != NULL)
		r->idle_next->idle_prev = r->idle_prev;
	r->idle_next = r->idle_prev = NULL;
	r->parked = false;
	relay_idle_count--;
}

/* relay_park - r answered its RSET: keep it for reuse_ms. */
static void
relay_park(struct relay *r)
{
	if (r->leaving) {
		r->leaving = false;
		relay_leaving_count--;
	}
	r->parking = false;
	r->parked = true;
	r->idle_prev = NULL;
	r->idle_next = relay_idle;
	if (relay_idle != NULL)
		relay_idle->idle_prev = r;
	relay_idle = r;
	relay_idle_count++;
	uv_timer_start(&r->timer, relay_timer_cb, r->reuse_ms, 0);
	if (relay_slot_fn != NULL)
		relay_slot_fn();
}

/* relay_close - close both handles (once); r is freed afterwards. */
static void
relay_close(struct relay *r)
{
	if (r->closing)
		return;
	r->closing = true;
	r->state = RS_DEAD;
	relay_unpark(r);
	if (r->leaving) {
		r->leaving = false;
		relay_leaving_count--;
	}
	relay_open_count--;
	if (!r->reconnecting) /* else relay_retry_close_cb() counts it */
		uv_close((uv_handle_t *)&r->tcp, relay_close_cb);
	uv_close((uv_handle_t *)&r->timer, relay_close_cb);
	if (relay_slot_fn != NULL)
		relay_slot_fn();
}

/* relay_report_cb - the deferred failure report (a later loop turn). */
static void
relay_report_cb(uv_timer_t *t)
{
	struct relay *r = t->data;

	if (r->closing)
		return;
	if (r->detached) {
		relay_close(r);
		return;
	}
	r->cb(r, r->arg, -1, r->why);
}

/* relay_fail - the relay is dead from now on; the failure is reported
 * once, never from inside the caller (a zero timer); a detached relay
 * just closes. */
static void
relay_fail(struct relay *r, const char *why)
{
	if (r->closing || r->state == RS_DEAD)
		return;
	if (!r->our_fault && relay_retry(r, why))
		return;
	log_debug("relay: backend failed: %s", why);
	/* Only what a session saw counts for the backend's health: not a
	 * parked connection the server closed, not our own faults, and not
	 * a connection that owed us nothing (no greeting or reply awaited):
	 * that is the server's own idle timeout, on a session that holds
	 * its connection while a slow sender's body is held. */
	if (!r->detached && !r->our_fault &&
	    (r->state != RS_READY || r->n_sent > 0))
		backend_failed(why);
	r->state = RS_DEAD;
	uv_read_stop((uv_stream_t *)&r->tcp);
	if (r->detached) {
		uv_timer_stop(&r->timer);
		relay_close(r);
		return;
	}
	snprintf(r->why, sizeof(r->why), "%s", why);
	uv_timer_start(&r->timer, relay_report_cb, 0, 0);
}

/* relay_fail_ours - relay_fail() for a fault of ours (a line we cannot
 * send): the backend's health is not changed by it. */
static void
relay_fail_ours(struct relay *r, const char *why)
{
	r->our_fault = true;
	relay_fail(r, why);
}

/* relay_timer_cb - a reply did not come in time. */
static void
relay_timer_cb(uv_timer_t *t)
{
	struct relay *r = t->data;

	if (r->parked) {
		/* nobody came for it: say goodbye */
		relay_quit_idle(r);
		return;
	}
	if (r->quitting) {
		relay_close(r);
		return;
	}
	relay_fail(r, "timeout waiting for the internal mail server");
}

/* relay_arm - the deadline for the reply now awaited. */
static void
relay_arm(struct relay *r)
{
	if (r->state == RS_DEAD)
		return; /* the timer carries the failure report */
	uv_timer_start(&r->timer, relay_timer_cb,
	               r->quitting ? RELAY_QUIT_MS : r->timeout_ms, 0);
}

/* relay_start_write - hand qbuf to libuv unless a write is in flight. */
static void relay_write_cb(uv_write_t *req, int status);

static void
relay_start_write(struct relay *r)
{
	struct buf tmp;
	uv_buf_t b;
	int rc;

	if (r->writing || r->qbuf.len == 0 || r->closing)
		return;
	/* Swap the buffers: qbuf is written, wbuf (empty) collects. */
	tmp = r->wbuf;
	r->wbuf = r->qbuf;
	r->qbuf = tmp;
	r->qbuf.len = 0;
	b = uv_buf_init(r->wbuf.data, (unsigned)r->wbuf.len);
	rc = uv_write(&r->wreq, (uv_stream_t *)&r->tcp, &b, 1, relay_write_cb);
	if (rc < 0) {
		r->wbuf.len = 0;
		relay_fail(r, uv_strerror(rc));
		return;
	}
	r->writing = true;
}

/* relay_write_cb - a write finished: start the next, report a drain. */
static void
relay_write_cb(uv_write_t *req, int status)
{
	struct relay *r = container_of(req, struct relay, wreq);

	r->writing = false;
	r->wbuf.len = 0;
	if (r->wbuf.cap > 2 * RELAY_LOW_WATER) {
		/* Do not keep a big buffer on an idle connection. */
		buf_free(&r->wbuf);
	}
	if (status < 0) {
		if (status != UV_ECANCELED)
			relay_fail(r, uv_strerror(status));
		return;
	}
	relay_start_write(r);
	if (!r->detached && r->state != RS_DEAD && r->drain_cb != NULL &&
	    relay_queued(r) < RELAY_LOW_WATER)
		r->drain_cb(r, r->arg);
}

/* relay_write - send bytes: try at once, queue what the socket refuses. */
static void
relay_write(struct relay *r, const char *p, size_t n)
{
	if (r->closing || r->state == RS_DEAD || n == 0)
		return;
	if (!r->writing && r->qbuf.len == 0) {
		uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
		int rc = uv_try_write((uv_stream_t *)&r->tcp, &b, 1);

		if (rc > 0) {
			p += rc;
			n -= (size_t)rc;
		} else if (rc < 0 && rc != UV_EAGAIN) {
			relay_fail(r, uv_strerror(rc));
			return;
		}
	}
	if (n == 0)
		return;
	buf_append(&r->qbuf, p, n);
	relay_start_write(r);
}

/* relay_add_line - one command line, CRLF added, into out. */
static bool
relay_add_line(struct buf *out, const char *a, const char *b)
{
	char line[1100];
	int n;

	n = snprintf(line, sizeof(line), "%s%s\r\n", a, b ? b : "");
	if (n < 0 || (size_t)n >= sizeof(line))
		return false;
	buf_append(out, line, (size_t)n);
	return true;
}

/* relay_send_line - one command line now. */
static void
relay_send_line(struct relay *r, const char *a, const char *b)
{
	struct buf out = {0};

	if (relay_add_line(&out, a, b))
		relay_write(r, out.data, out.len);
	else
		relay_fail_ours(r, "command too long");
	buf_free(&out);
}

/* relay_mail_params - "<path> SIZE=n BODY=x" minus what was not offered. */
static void
relay_mail_params(const struct relay *r, const char *in, char *out,
                  size_t outlen)
{
	const char *p = in, *sp;
	size_t o = 0, n;

	out[0] = '\0';
	while (*p != '\0') {
		bool first = p == in, keep;

		sp = strchr(p, ' ');
		n = sp ? (size_t)(sp - p) : strlen(p);
		keep = first ||
		       (r->ext_size && n > 5 &&
		        strncasecmp(p, "SIZE=", 5) == 0) ||
		       (r->ext_8bit && n > 5 &&
		        strncasecmp(p, "BODY=", 5) == 0);
		if (keep && o + n + 2 < outlen) {
			if (!first)
				out[o++] = ' ';
			memcpy(out + o, p, n);
			o += n;
			out[o] = '\0';
		}
		p += n;
		while (*p == ' ')
			p++;
	}
}

/* relay_groupable - may another command follow c in one write (RFC 2920:
 * only when the backend offers PIPELINING, and not after DATA/QUIT)? */
static bool
relay_groupable(const struct relay *r, enum relay_cmd_kind c)
{
	return r->ext_pipelining &&
	       (c == RC_MAIL || c == RC_RCPT || c == RC_RSET);
}

/*
 * relay_pump - send what may be sent: the next command when nothing is
 * awaited, or a group of MAIL/RCPT/RSET when the backend pipelines.
 */
static void
relay_pump(struct relay *r)
{
	struct buf out = {0};
	char params[600];
	bool ok = true;

	if (r->state != RS_READY || r->closing)
		return;
	while (r->n_sent < r->n_cmds && ok) {
		struct relay_cmd *c = &r->cmds[r->n_sent];

		if (r->n_sent > 0 &&
		    !relay_groupable(r, r->cmds[r->n_sent - 1].kind))
			break;
		switch (c->kind) {
		case RC_MAIL:
			relay_mail_params(r, c->arg, params, sizeof(params));
			ok = relay_add_line(&out, "MAIL FROM:", params);
			r->txn = true;
			break;
		case RC_RCPT:
			ok = relay_add_line(&out, "RCPT TO:", c->arg);
			break;
		case RC_DATA:
			ok = relay_add_line(&out, "DATA", NULL);
			break;
		case RC_DOT:
			buf_append(&out, ".\r\n", 3);
			break;
		case RC_RSET:
			ok = relay_add_line(&out, "RSET", NULL);
			break;
		case RC_QUIT:
			ok = relay_add_line(&out, "QUIT", NULL);
			break;
		}
		r->n_sent++;
	}
	if (!ok)
		relay_fail_ours(r, "command too long");
	else if (out.len > 0) {
		relay_write(r, out.data, out.len);
		if (r->state != RS_DEAD)
			relay_arm(r);
	}
	buf_free(&out);
}

/* relay_queue - queue a command; relay_pump() sends it. */
static void
relay_queue(struct relay *r, enum relay_cmd_kind kind, const char *arg)
{
	if (r->closing || r->state == RS_DEAD)
		return;
	if (r->n_cmds == RELAY_MAX_CMDS)
		log_panic("relay: command queue full");
	r->cmds[r->n_cmds].kind = kind;
	r->cmds[r->n_cmds].arg = arg ? xstrdup(arg) : NULL;
	r->n_cmds++;
}

/* relay_push - queue a command and send what may be sent. */
static void
relay_push(struct relay *r, enum relay_cmd_kind kind, const char *arg)
{
	relay_queue(r, kind, arg);
	relay_pump(r);
}

/* relay_ehlo_exts - note SIZE and 8BITMIME in an EHLO reply. */
static void
relay_ehlo_exts(struct relay *r, const char *reply)
{
	const char *p = reply;

	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (strlen(p) < 4)
			break;
		if (strncasecmp(p + 4, "SIZE", 4) == 0 &&
		    (p[8] == '\0' || p[8] == ' ' || p[8] == '\r'))
			r->ext_size = true;
		if (strncasecmp(p + 4, "8BITMIME", 8) == 0)
			r->ext_8bit = true;
		if (strncasecmp(p + 4, "PIPELINING", 10) == 0)
			r->ext_pipelining = true;
		if (strncasecmp(p + 4, "XCLIENT", 7) == 0 &&
		    (p[11] == '\0' || p[11] == ' ' || p[11] == '\r'))
			r->ext_xclient = true;
	}
}

/* relay_xclient - the backend's EHLO reply is in: send XCLIENT if it is
 * offered (true: sent, its reply awaited).  Not offered: the connection
 * goes on without (logged once per connection). */
static bool
relay_xclient(struct relay *r)
{
	char line[1100];

	r->xclient_sent = true;
	if (!r->ext_xclient) {
		log_warn("relay: backend_client_info = xclient, but the "
		         "internal mail server does not offer XCLIENT");
		return false;
	}
	if (!clientinfo_xclient(line, sizeof(line), &r->ci->client, r->ci->name,
	                        r->ci->helo, r->ci->esmtp)) {
		relay_fail_ours(r, "XCLIENT line too long");
		return true;
	}
	r->state = RS_XCLIENT;
	relay_send_line(r, line, NULL);
	relay_arm(r);
	return true;
}

/* relay_handle_reply - one complete reply from the backend. */
static void
relay_handle_reply(struct relay *r, int code, const char *reply)
{
	struct relay_cmd c;

	switch (r->state) {
	case RS_BANNER:
		if (code / 100 != 2) {
			relay_fail(r, "banner refused");
			return;
		}
		r->state = RS_EHLO;
		relay_send_line(r, "EHLO ", r->helo);
		relay_arm(r);
		return;
	case RS_EHLO:
		if (code / 100 == 5) {
			r->state = RS_HELO;
			relay_send_line(r, "HELO ", r->helo);
			relay_arm(r);
			return;
		}
		if (code / 100 != 2) {
			relay_fail(r, "EHLO refused");
			return;
		}
		r->ext_size = r->ext_8bit = r->ext_pipelining = false;
		r->ext_xclient = false;
		relay_ehlo_exts(r, reply);
		if (r->ci != NULL && r->ci->info == CLIENT_INFO_XCLIENT &&
		    !r->xclient_sent) {
			if (relay_xclient(r))
				return;
		}
		r->state = RS_READY;
		backend_ok();
		uv_timer_stop(&r->timer);
		relay_pump(r);
		return;
	case RS_HELO:
		if (code / 100 != 2) {
			relay_fail(r, "HELO refused");
			return;
		}
		r->state = RS_READY;
		backend_ok();
		uv_timer_stop(&r->timer);
		relay_pump(r);
		return;
	case RS_XCLIENT:
		/* Postfix answers with a fresh 220 greeting: EHLO again */
		if (code / 100 != 2) {
			relay_fail(r, "XCLIENT refused");
			return;
		}
		r->state = RS_EHLO;
		relay_send_line(r, "EHLO ", r->helo);
		relay_arm(r);
		return;
	case RS_READY:
		if (code == 421 && relay_retry(r, reply))
			return;
		r->retry_ok = false;
		backend_ok();
		break;
	default:
		return;
	}
	if (r->n_sent == 0) {
		relay_fail(r, "unsolicited reply");
		return;
	}
	uv_timer_stop(&r->timer);
	c = r->cmds[0];
	r->n_cmds--;
	memmove(&r->cmds[0], &r->cmds[1], r->n_cmds * sizeof(r->cmds[0]));
	r->n_sent--;
	if (r->n_sent > 0)
		relay_arm(r); /* the next reply has its own deadline */
	free(c.arg);
	if (c.kind == RC_DATA) {
		r->hold = false;
		if (code == 354) {
			/* The body that came meanwhile goes out now, and a
			 * dot queued behind it in the same write (a held body
			 * is all there: one write instead of two). */
			if (r->n_sent == 0 && r->n_cmds > 0 &&
			    r->cmds[0].kind == RC_DOT) {
				buf_append(&r->hbuf, ".\r\n", 3);
				r->n_sent = 1;
				relay_arm(r);
			}
			relay_write(r, r->hbuf.data, r->hbuf.len);
		} else {
			unsigned i;

			/* No message: drop the body and a dot already
			 * queued (its "reply" is this one). */
			r->data_refused = true;
			for (i = 0; i < r->n_cmds; i++) {
				if (r->cmds[i].kind == RC_DOT) {
					r->n_cmds--;
					memmove(&r->cmds[i], &r->cmds[i + 1],
					        (r->n_cmds - i) *
					                sizeof(r->cmds[0]));
					break;
				}
			}
		}
		buf_free(&r->hbuf);
		/* The held body is gone (to the socket or dropped): a
		 * reader stopped by back-pressure may go on. */
		if (!r->detached && r->drain_cb != NULL &&
		    relay_queued(r) < RELAY_LOW_WATER)
			r->drain_cb(r, r->arg);
		if (r->closing || r->state == RS_DEAD)
			return;
	}
	if (c.kind == RC_QUIT) {
		relay_close(r);
		return;
	}
	/* after the dot, whatever its code, the server starts afresh */
	if (c.kind == RC_DOT)
		r->txn = false;
	if (c.kind == RC_RSET) {
		if (code / 100 != 2) {
			relay_fail(r, "RSET refused");
			return;
		}
		r->txn = false;
		if (r->parking && r->n_cmds == 0) {
			relay_park(r);
			return;
		}
	} else if (!r->detached) {
		r->cb(r, r->arg, code, reply);
	}
	relay_pump(r);
}

/* relay_line - one reply line (CRLF stripped). */
static void
relay_line(struct relay *r, const char *line, size_t n)
{
	int code;
	bool last;

	if (n < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
	    line[1] > '9' || line[2] < '0' || line[2] > '9' ||
	    (n > 3 && line[3] != ' ' && line[3] != '-')) {
		relay_fail(r, "malformed reply");
		return;
	}
	last = n == 3 || line[3] == ' ';
	if (r->reply.len > 0)
		buf_append(&r->reply, "\r\n", 2);
	buf_append(&r->reply, line, n);
	if (r->reply.len > RELAY_MAX_REPLY) {
		relay_fail(r, "reply too long");
		return;
	}
	if (!last)
		return;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	buf_append(&r->reply, "", 1); /* NUL */
	r->reply.len = 0;
	relay_handle_reply(r, code, r->reply.data);
}

/* relay_alloc_cb - replies are parsed at once: one static buffer. */
static void
relay_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char rbuf[8192];

	b->base = rbuf;
	b->len = sizeof(rbuf);
}

/* relay_read_cb - bytes from the backend: split into reply lines. */
static void
relay_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
	struct relay *r = container_of((uv_tcp_t *)st, struct relay, tcp);
	const char *p = b->base, *end = b->base + (nread > 0 ? nread : 0);

	if (nread < 0) {
		if (r->quitting) {
			relay_close(r);
			return;
		}
		relay_fail(r, nread == UV_EOF ? "connection closed by the "
		                                "internal mail server"
		                              : uv_strerror((int)nread));
		return;
	}
	while (p < end && !r->closing && r->state != RS_DEAD &&
	       !r->reconnecting) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);

		if (r->rline.len + n > RELAY_MAX_LINE + 1) {
			relay_fail(r, "reply line too long");
			return;
		}
		if (nl == NULL) {
			buf_append(&r->rline, p, n);
			return;
		}
		if (r->rline.len > 0) {
			buf_append(&r->rline, p, n);
			n = r->rline.len;
			if (n > 0 && r->rline.data[n - 1] == '\r')
				n--;
			relay_line(r, r->rline.data, n);
			r->rline.len = 0;
		} else {
			size_t m = n;

			if (m > 0 && p[m - 1] == '\r')
				m--;
			relay_line(r, p, m);
		}
		p = nl + 1;
	}
}

/* relay_connect_cb - connected (or not) to the backend. */
static void
relay_connect_cb(uv_connect_t *req, int status)
{
	struct relay *r = container_of(req, struct relay, creq);

	if (r->closing)
		return;
	if (status < 0) {
		char why[128];

		snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
		relay_fail(r, why);
		return;
	}
	r->state = RS_BANNER;
	uv_tcp_nodelay(&r->tcp, 1);
	if (r->ci != NULL && r->ci->info == CLIENT_INFO_PROXY) {
		unsigned char hdr[CLIENTINFO_PROXY_MAX];
		size_t n = clientinfo_proxy_v2(
		        hdr, sizeof(hdr), (const struct sockaddr *)&r->ci->src,
		        (const struct sockaddr *)&r->ci->dst);

		if (n == 0) {
			relay_fail_ours(r, "no PROXY header for this client");
			return;
		}
		relay_write(r, (const char *)hdr, n);
	}
	uv_read_start((uv_stream_t *)&r->tcp, relay_alloc_cb, relay_read_cb);
	relay_arm(r);
}

/* relay_retry_close_cb - the dead socket of a reused connection is
 * closed: connect again on the same relay (or finish a close that came
 * meanwhile). */
static void
relay_retry_close_cb(uv_handle_t *h)
{
	struct relay *r = h->data;
	int rc;

	r->reconnecting = false;
	if (r->closing) {
		relay_close_cb(h);
		return;
	}
	uv_tcp_init(r->timer.loop, &r->tcp);
	r->tcp.data = r;
	rc = uv_tcp_connect(&r->creq, &r->tcp, (struct sockaddr *)&r->peer,
	                    relay_connect_cb);
	if (rc < 0) {
		char why[128];

		snprintf(why, sizeof(why), "connect: %s", uv_strerror(rc));
		relay_fail(r, why);
		return;
	}
	relay_arm(r);
}

/*
 * relay_retry - a connection taken from the parked ones failed before
 * its first reply: close it and connect again, once, and send every
 * queued command anew after the greeting.  Nothing was answered, so
 * nothing can have been delivered (a body waits for its 354 in hbuf).
 * False when that is not the case.
 */
static bool
relay_retry(struct relay *r, const char *why)
{
	if (!r->retry_ok || r->detached || r->state != RS_READY)
		return false;
	r->retry_ok = false;
	log_info("relay: a reused connection to the internal mail server "
	         "failed (%s): connecting again",
	         why);
	uv_read_stop((uv_stream_t *)&r->tcp);
	uv_timer_stop(&r->timer);
	r->state = RS_CONNECTING;
	r->n_sent = 0;
	r->uses = 1;
	r->txn = false;
	r->rline.len = 0;
	r->reply.len = 0;
	r->qbuf.len = 0;
	r->reconnecting = true;
	uv_close((uv_handle_t *)&r->tcp, relay_retry_close_cb);
	return true;
}

/* relay_peer_copy - remember the backend's address (to match on reuse). */
static void
relay_peer_copy(struct sockaddr_storage *to, const struct sockaddr *sa)
{
	memset(to, 0, sizeof(*to));
	memcpy(to, sa,
	       sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
	                                 : sizeof(struct sockaddr_in));
}

/* relay_take_idle - a parked connection to backend greeted as helo. */
static struct relay *
relay_take_idle(const struct sockaddr *backend, const char *helo)
{
	struct sockaddr_storage want;
	struct relay *r;

	relay_peer_copy(&want, backend);
	for (r = relay_idle; r != NULL; r = r->idle_next) {
		if (memcmp(&r->peer, &want, sizeof(want)) == 0 &&
		    strcmp(r->helo, helo && helo[0] ? helo : "localhost") ==
		            0) {
			relay_unpark(r);
			uv_timer_stop(&r->timer);
			return r;
		}
	}
	return NULL;
}

/* relay_quit_idle - a parked connection goes: QUIT, then close. */
static void
relay_quit_idle(struct relay *r)
{
	relay_unpark(r);
	r->quitting = true;
	relay_push(r, RC_QUIT, NULL);
}

/* relay_can_open - would relay_open() stay within the cap? */
bool
relay_can_open(const struct config *cfg)
{
	return cfg->max_backend_connections == 0 ||
	       relay_open_count < cfg->max_backend_connections ||
	       relay_idle != NULL;
}

/* relay_on_slot - fn() when a slot frees up (see the header). */
void
relay_on_slot(void (*fn)(void))
{
	relay_slot_fn = fn;
}

/* relay_idle_now - ready, no command awaiting its reply, no body queued. */
bool
relay_idle_now(const struct relay *r)
{
	return r->state == RS_READY && !r->closing && r->n_cmds == 0 &&
	       relay_queued(r) == 0;
}

/* relay_shutdown - QUIT every parked connection (the daemon exits). */
void
relay_shutdown(void)
{
	while (relay_idle != NULL)
		relay_quit_idle(relay_idle);
}

/* relay_open - start a connection to backend; NULL only if the socket
 * could not even be created (the reason is logged). */
struct relay *
relay_open(uv_loop_t *loop, const struct config *cfg,
           const struct sockaddr *backend, const char *helo, relay_reply_cb cb,
           void *arg)
{
	return relay_open_for(loop, cfg, backend, helo, NULL, cb, arg);
}

unsigned relay_spoof_failed;

/* relay_open_for - relay_open() speaking for the client ci (NULL: none);
 * NULL only if the socket could not be created (logged). */
struct relay *
relay_open_for(uv_loop_t *loop, const struct config *cfg,
               const struct sockaddr *backend, const char *helo,
               const struct relay_client *ci, relay_reply_cb cb, void *arg)
{
	struct relay *r;
	int rc;

	if (ci != NULL && !ci->spoof && ci->info == CLIENT_INFO_NONE)
		ci = NULL;
	r = ci != NULL ? NULL : relay_take_idle(backend, helo);
	if (r != NULL) {
		r->cb = cb;
		r->arg = arg;
		r->detached = false;
		r->retry_ok = true;
		r->drain_cb = NULL;
		r->timeout_ms = cfg->timeout_backend_ms
		                        ? cfg->timeout_backend_ms
		                        : 120000;
		r->reuse_ms = cfg->backend_reuse_ms;
		return r;
	}
	/* at the cap, an idle connection that did not fit makes room */
	if (cfg->max_backend_connections > 0 && relay_idle != NULL &&
	    relay_open_count >= cfg->max_backend_connections)
		relay_quit_idle(relay_idle);
	r = xcalloc(1, sizeof(*r));
	r->cb = cb;
	r->arg = arg;
	r->helo = xstrdup(helo && helo[0] ? helo : "localhost");
	r->timeout_ms =
	        cfg->timeout_backend_ms ? cfg->timeout_backend_ms : 120000;
	r->reuse_ms = cfg->backend_reuse_ms;
	relay_peer_copy(&r->peer, backend);
	r->state = RS_CONNECTING;
	if (ci != NULL) {
		/* one client's connection: never parked for another */
		r->ci = xmalloc(sizeof(*r->ci));
		*r->ci = *ci;
		r->reuse_ms = 0;
	}
	rc = 0;
	if (ci != NULL && ci->spoof)
		rc = transparent_outgoing_init(loop, &r->tcp, backend,
		                               &ci->client);
	else
		uv_tcp_init(loop, &r->tcp);
	if (rc < 0) {
		/* Connecting from our own address instead: the mail still
		 * flows, the server sees the box (counted, logged). */
		char ip[INET6_ADDRSTRLEN];

		relay_spoof_failed++;
		ipaddr_format(&ci->client, ip, sizeof(ip));
		log_warn("relay: cannot connect from the client's address %s "
		         "(tproxy): %s",
		         ip, uv_strerror(rc));
	}
	uv_timer_init(loop, &r->timer);
	r->tcp.data = r;
	r->timer.data = r;
	r->handles = 2;
	relay_open_count++;
	rc = uv_tcp_connect(&r->creq, &r->tcp, backend, relay_connect_cb);
	if (rc < 0) {
		log_warn("relay: cannot connect to the backend: %s",
		         uv_strerror(rc));
		relay_close(r);
		return NULL;
	}
	relay_arm(r);
	return r;
}

/* relay_on_drain - cb runs when the queue falls below the low-water mark */
void
relay_on_drain(struct relay *r, void (*cb)(struct relay *, void *arg))
{
	r->drain_cb = cb;
}

/* relay_mail - MAIL FROM:<path> [SIZE=..] [BODY=..] (dropped if not
 * offered by the backend); sent with the relay_rcpt() that follows. */
void
relay_mail(struct relay *r, const char *path_with_params)
{
	r->uses++;
	relay_queue(r, RC_MAIL, path_with_params);
}

/* relay_rcpt - RCPT TO:<path>. */
void
relay_rcpt(struct relay *r, const char *path)
{
	relay_push(r, RC_RCPT, path);
}

/* relay_data - DATA; the caller sends the body after a 354. */
void
relay_data(struct relay *r)
{
	r->hold = true;
	r->data_refused = false;
	relay_push(r, RC_DATA, NULL);
}

/* relay_body - canonical body bytes (dot-stuffed CRLF lines).  Before
 * the backend's 354 they wait (copied once); after a refused DATA they
 * are dropped. */
void
relay_body(struct relay *r, const char *buf, size_t len)
{
	if (r->data_refused)
		return;
	if (r->hold) {
		buf_append(&r->hbuf, buf, len);
		return;
	}
	relay_write(r, buf, len);
}

/* relay_queued - bytes not yet written to the backend. */
size_t
relay_queued(const struct relay *r)
{
	return r->hbuf.len + r->wbuf.len + r->qbuf.len;
}

/* relay_dot - the final dot: only when every check passed.  After a
 * refused DATA there is no message: nothing is sent and no reply comes
 * (the DATA reply was the answer). */
void
relay_dot(struct relay *r)
{
	if (r->data_refused) {
		r->data_refused = false;
		return;
	}
	relay_push(r, RC_DOT, NULL);
}

/* relay_rset - RSET (its reply is not reported). */
void
relay_rset(struct relay *r)
{
	relay_push(r, RC_RSET, NULL);
}

/* relay_abort - drop the connection now: nothing is delivered. */
void
relay_abort(struct relay *r)
{
	r->detached = true;
	relay_close(r);
}

/* relay_quit - QUIT if idle and ready, otherwise abort. */
void
relay_quit(struct relay *r)
{
	r->detached = true;
	if (r->state != RS_READY || r->n_cmds > 0 || r->closing) {
		relay_close(r);
		return;
	}
	if (r->reuse_ms > 0 && r->uses < RELAY_REUSE_MAX && !r->txn) {
		relay_park(r); /* clean: the last transaction had its dot */
		return;
	}
	r->leaving = true;
	relay_leaving_count++;
	if (r->reuse_ms > 0 && r->uses < RELAY_REUSE_MAX) {
		r->parking = true;
		relay_push(r, RC_RSET, NULL);
		return;
	}
	r->quitting = true;
	relay_push(r, RC_QUIT, NULL);
}
