/*
 * stage.c - the stage machine: checks, verdicts, and the relay glue.
 *
 * Public (proxy.h, stage block):
 *   sess_check_done()  a check of the current stage finished
 *
 * Shared (session_int.h): sess_smtp_hooks (the engine's hooks),
 * sess_stage_start(), sess_cancel_checks(), sess_banner(),
 * sess_refuse_greeting(), sess_refuse(), sess_drop_relay().
 *
 * The SMTP engine (smtp.c) hands EHLO/HELO, MAIL, RCPT, DATA, the end of
 * data and STARTTLS here; each runs its stage of checks (registry order,
 * verdict.c decides).  Recipients that pass go to the internal server
 * through relay.c (connected at the first one; MAIL+RCPT pipelined when
 * it offers PIPELINING; kept for the session's next transaction, QUIT at
 * its end).  DATA gets its 354 at once, the body streams through
 * (bodytap.c), and the final dot goes only when every check passed: the
 * backend's reply goes to the client as it is, a backend failure is a
 * 451, never a 250.  A refusal at connect becomes the greeting and every
 * later command gets the same reply until QUIT (RFC 5321 3.1).
 *
 * Config keys: local_domains, recipients, recipient_verify, allowlist,
 * blocklist, max_backend_connections, action_*.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "session_int.h"

static void sess_stage_done(struct sess *x);
static void sess_relay_cb(struct relay *r, void *arg, int code,
                          const char *reply);
static void sess_relay_drain_cb(struct relay *r, void *arg);
static void sess_relay_start(struct sess *x);
static void sess_unreachable(struct sess *x, const char *why);
static void sess_replay_more(struct sess *x);

/* sess_cancel_checks - cancel the checks still running in this stage. */
void
sess_cancel_checks(struct sess *x)
{
	unsigned i;

	for (i = 0; i < chk_registry_len; i++) {
		const struct check *c = chk_registry[i];

		/* an active DATA check is cancelled once, by sess_tap_end() */
		if ((x->pending_mask & ~x->tap_mask & (1u << c->id)) &&
		    c->cancel != NULL)
			c->cancel(&x->s);
	}
	x->pending_mask = 0;
	x->s.pending_checks = 0;
	x->s.gen++;
}

/* -------------------------------------------------------- decisions */

/*
 * sess_stage_verdict - the decision of the current stage: each check in
 * registry order; "log" ones are logged and counted; a reject beats a
 * tempfail, otherwise the first refusal wins.
 */
static void
sess_stage_verdict(struct sess *x, struct verdict *best,
                   const struct check **who)
{
	struct session *s = &x->s;
	struct verdict v;
	unsigned i;

	best->kind = VERDICT_ACCEPT;
	best->check = -1;
	best->reply[0] = '\0';
	*who = NULL;
	for (i = 0; i < chk_registry_len; i++) {
		const struct check *c = chk_registry[i];
		const struct chk_result *r = &s->results[c->id];

		if (!(c->stage & s->stage) || r->status == CHK_NONE)
			continue;
		verdict_decide(r, s->cfg->actions[c->id], s->sid, &v);
		v.check = (int)c->id;
		if (v.kind == VERDICT_LOG) {
			sess_log(x, VERDICT_LOG, c->name, r->detail);
		} else if (verdict_wins(&v, best)) {
			*best = v;
			*who = c;
		}
	}
}

/*
 * sess_refuse_log - the stage's refusal: logged with the check's name
 * and detail.
 */
static void
sess_refuse_log(struct sess *x, const struct verdict *v,
                const struct check *who)
{
	const struct chk_result *r = &x->s.results[who->id];

	sess_log(x, v->kind, who->name, r->detail[0] ? r->detail : r->text);
}

/*
 * sess_own_check - a rule session.c decides itself (pregreet, pipelining,
 * null_sender) through verdict.c, so that action_* applies the same way.
 */
static void
sess_own_check(struct sess *x, enum chk_id id, const char *text,
               struct verdict *v)
{
	struct chk_result r;

	memset(&r, 0, sizeof(r));
	r.status = CHK_FAIL;
	r.code = verdict_default_code(id);
	snprintf(r.text, sizeof(r.text), "%s", text);
	if (x->s.allowlisted ||
	    (id == CHK_NULL_SENDER && x->sender_allowlisted)) {
		v->kind = VERDICT_ACCEPT;
		v->reply[0] = '\0';
		return;
	}
	verdict_decide(&r, x->s.cfg->actions[id], x->s.sid, v);
	v->check = (int)id;
}

/* sess_refuse - answer the pending command with a refusal, logged. */
void
sess_refuse(struct sess *x, const char *reply, const char *reason,
            const char *detail)
{
	sess_log(x, sess_kind_of(reply), reason, detail);
	smtp_reply(&x->s.smtp, false, reply);
}

/* ----------------------------------------------------------- stages */

/* sess_exempt - no checks of stage for this session: an allowlisted
 * client, or an allowlisted sender for MAIL/RCPT/DATA. */
bool
sess_exempt(const struct sess *x, unsigned stage)
{
	return x->s.allowlisted ||
	       (x->sender_allowlisted &&
	        (stage & (STAGE_MAIL | STAGE_RCPT | STAGE_DATA)));
}

/*
 * sess_stage_start - start every check of stage (not for an allowlisted
 * client, nor for the MAIL/RCPT/DATA stages of an allowlisted sender).
 * The stage completes in sess_stage_done() once all have answered.
 */
void
sess_stage_start(struct sess *x, unsigned stage)
{
	struct session *s = &x->s;
	bool exempt = sess_exempt(x, stage);
	unsigned i;

	s->stage = stage;
	s->gen++;
	x->pending_mask = 0;
	s->pending_checks = 0;
	for (i = 0; i < chk_registry_len; i++) {
		const struct check *c = chk_registry[i];

		if (!(c->stage & stage))
			continue;
		memset(&s->results[c->id], 0, sizeof(s->results[0]));
		if (exempt || c->start == NULL ||
		    s->cfg->actions[c->id] == ACT_OFF)
			continue;
		s->results[c->id].status = CHK_PENDING;
		x->pending_mask |= 1u << c->id;
		s->pending_checks++;
	}
	x->starting = true;
	for (i = 0; i < chk_registry_len && !s->closing; i++) {
		const struct check *c = chk_registry[i];

		if (x->pending_mask & (1u << c->id))
			c->start(s);
	}
	x->starting = false;
	if (!s->closing && s->pending_checks == 0)
		sess_stage_done(x);
}

/* sess_check_done - a check finished: result already in s->results[id]. */
void
sess_check_done(struct session *s, enum chk_id id)
{
	struct sess *x;

	if (s == NULL || sess_find(s->id) != s)
		return; /* gone, or not one of ours */
	x = sess_x(s);
	if (!(x->pending_mask & (1u << id)))
		return; /* stale: another stage */
	x->pending_mask &= ~(1u << id);
	if (s->results[id].status == CHK_PENDING)
		s->results[id].status = CHK_NONE;
	s->pending_checks--;
	if (s->pending_checks == 0 && !x->starting)
		sess_stage_done(x);
}

/* sess_mail_arg - the MAIL path with its SIZE and BODY parameters. */
static void
sess_mail_arg(const struct sess *x, char *path, size_t len)
{
	int n;

	sess_path_str(&x->s.from, path, len);
	n = (int)strlen(path);
	if (x->mail_size > 0)
		n += snprintf(path + n, len - (size_t)n, " SIZE=%llu",
		              (unsigned long long)x->mail_size);
	if (x->mail_8bit)
		snprintf(path + n, len - (size_t)n, " BODY=8BITMIME");
}

/* sess_relay_open - a connection for x: the original destination or the
 * backend (the smarthost for outbound mail), told who the client is
 * (tproxy / backend_client_info, not for outbound mail); false when not
 * even a socket could be made. */
static bool
sess_relay_open(struct sess *x)
{
	struct session *s = &x->s;
	struct sockaddr_storage be;
	struct relay_client ci;

	transparent_relay_client(s, &be, &ci);
	if (s->outbound) {
		memcpy(&be, &s->cfg->outbound_relay, sizeof(be));
		ci.info = CLIENT_INFO_NONE;
		ci.spoof = false;
	}
	s->relay =
	        relay_open_for(sess_loop, s->cfg, (const struct sockaddr *)&be,
	                       s->cfg->hostname, &ci, sess_relay_cb, x);
	if (s->relay == NULL)
		return false;
	relay_on_drain(s->relay, sess_relay_drain_cb);
	x->backend_txn = false;
	return true;
}

/* ------------------------------------------------------ backend slots */

/*
 * max_backend_connections is a scarce resource (a small office server
 * takes a handful of connections): a session that holds one without
 * using it gives it back when another session needs it and none is
 * free (sess_slot_reclaim).  Such a session is one between transactions
 * (it connects again at its next RCPT), or one whose body is still held
 * (bodytap.c: a body streams only once SESS_STREAM_AT bytes came, so a
 * slow sender is always held): its connection goes back with an RSET
 * (relay_quit parks it for the next taker), the body keeps arriving
 * into the spool, and at the dot MAIL and the accepted RCPTs are
 * replayed on a new connection (sess_replay) before DATA, the body and
 * the dot.  If the server answers any of them differently now, nothing
 * is sent and the client gets a 451 (it retries: never lost, never
 * bounced).  Sessions that wait for a slot queue here (FIFO); a slot is
 * a connection that closes or is parked (relay_on_slot(), served from a
 * zero timer).  At RCPT a session waits only when a slot is on its way
 * (one it made free, the connection of a session that just ended and is
 * being parked or quit: relay_leaving_count, or a streaming body's, which
 * ends at its dot or is cut by the rule of sess_slots_pressed), otherwise
 * 421 as before.  It waits timeout_backend (W_SLOT), then 451, at RCPT
 * and after the dot alike.
 */
static struct sess *slot_head, *slot_tail;
static unsigned slot_n; /* in the queue */
static uv_timer_t slot_timer;
static bool slot_ready;
static uint64_t slots_short_until; /* loop time; 0: never short */

static void sess_replay(struct sess *x);

/* sess_slot_serve - give the free slots to the queue, in order. */
static void
sess_slot_serve(uv_timer_t *t)
{
	struct sess *x;

	(void)t;
	while ((x = slot_head) != NULL && relay_can_open(x->s.cfg)) {
		slot_head = x->slot_next;
		if (slot_head == NULL)
			slot_tail = NULL;
		x->slot_next = NULL;
		x->slot_wait = false;
		slot_n--;
		if (x->released) {
			sess_replay(x); /* after the dot */
		} else {
			x->wait = W_US; /* a RCPT */
			sess_rearm(x);
			sess_relay_start(x);
		}
	}
}

/* sess_slot_hook - relay.c: a slot freed up (maybe inside a relay_*
 * call: only schedule). */
static void
sess_slot_hook(void)
{
	if (slot_head != NULL)
		uv_timer_start(&slot_timer, sess_slot_serve, 0, 0);
}

/* sess_slot_enqueue - x waits for a backend slot (W_SLOT: at most
 * timeout_backend, then 451). */
static void
sess_slot_enqueue(struct sess *x)
{
	if (!slot_ready) {
		uv_timer_init(sess_loop, &slot_timer);
		uv_unref((uv_handle_t *)&slot_timer);
		relay_on_slot(sess_slot_hook);
		slot_ready = true;
	}
	if (x->slot_wait)
		return;
	x->wait = W_SLOT;
	sess_rearm(x);
	x->slot_wait = true;
	x->slot_next = NULL;
	slot_n++;
	if (slot_tail != NULL)
		slot_tail->slot_next = x;
	else
		slot_head = x;
	slot_tail = x;
	if (relay_can_open(x->s.cfg))
		sess_slot_hook();
}

/* sess_slot_forget - x leaves the queue (it closes, or gave up). */
void
sess_slot_forget(struct sess *x)
{
	struct sess **pp, *prev = NULL;

	if (!x->slot_wait)
		return;
	for (pp = &slot_head; *pp != NULL; prev = *pp, pp = &(*pp)->slot_next) {
		if (*pp == x) {
			*pp = x->slot_next;
			if (slot_tail == x)
				slot_tail = prev;
			slot_n--;
			break;
		}
	}
	x->slot_next = NULL;
	x->slot_wait = false;
}

/* sess_slots_short - a session found no free backend connection within
 * the last SESS_STRESS_DATA_MS. */
bool
sess_slots_short(void)
{
	return slots_short_until > uv_now(sess_loop);
}

static unsigned streaming_n; /* sess_slots_pressed()'s count */
static bool streaming_rearm; /* ... and the stricter window starts */

/* sess_streaming_visit - sess_foreach(): count streaming bodies. */
static void
sess_streaming_visit(struct sess *v)
{
	if (!sess_streaming(v) || v->s.closing)
		return;
	streaming_n++;
	if (streaming_rearm)
		sess_rearm(v);
}

/*
 * sess_slots_pressed - no slot was free for a session: for the next
 * SESS_STRESS_DATA_MS every streaming body must keep up SESS_SHORT_RATE
 * (session.c: sess_data_floor) or be cut with a 421, so that a client
 * that sent SESS_STREAM_AT bytes fast and then trickles cannot hold a
 * connection that others wait for.  Streaming bodies' windows restart
 * now, when the rule starts.  Returns how many bodies stream: each gives
 * its connection back at its dot or when it is cut, so a session may
 * wait for one (in the queue, before a trickler that comes back).
 */
static unsigned
sess_slots_pressed(void)
{
	streaming_rearm = !sess_slots_short();
	slots_short_until = uv_now(sess_loop) + SESS_STRESS_DATA_MS;
	streaming_n = 0;
	sess_foreach(sess_streaming_visit);
	return streaming_n;
}

/*
 * sess_slot_coming - x found no free slot: will one come?  One given back
 * for x now (sess_slot_reclaim), one of a session that just ended (its
 * RSET or QUIT on the way) that no one waits for yet, or a streaming
 * body's (its dot, or cut if it trickles: sess_slots_pressed).
 */
static bool
sess_slot_coming(struct sess *x)
{
	return relay_leaving_count > slot_n || sess_slot_reclaim(x) ||
	       sess_slots_pressed() > slot_n;
}

/* sess_slot_timeout - at RCPT or after the dot, no slot within
 * timeout_backend. */
void
sess_slot_timeout(struct sess *x)
{
	char reply[160];

	sess_slot_forget(x);
	x->released = false;
	x->in_data = false;
	snprintf(reply, sizeof(reply),
	         "451 4.3.2 Too many sessions to the internal mail server, "
	         "try again later [id=%s]",
	         x->s.sid);
	sess_refuse(x, reply, "limit", "max_backend_connections");
}

/* sess_releasable - may v give its backend connection back now? */
static bool
sess_releasable(const struct sess *v, bool *in_data)
{
	const struct session *s = &v->s;

	if (s->closing || s->relay == NULL || v->op != OP_NONE ||
	    v->data_ack_pending || v->slot_wait || !relay_idle_now(s->relay))
		return false;
	*in_data = v->in_data;
	if (v->in_data) /* a held body, not yet at its verdict */
		return v->wait == W_DATA && v->hold && !v->flushing &&
		       !v->at_eod;
	return v->wait == W_CLIENT && !v->backend_txn; /* between mails */
}

static struct sess *reclaim_best;
static bool reclaim_best_data;
static const struct sess *reclaim_for;

/* sess_reclaim_pick - sess_foreach(): the best session to give back
 * (one between transactions before a held body). */
static void
sess_reclaim_pick(struct sess *v)
{
	bool data;

	if (v == reclaim_for || !sess_releasable(v, &data))
		return;
	if (reclaim_best == NULL || (reclaim_best_data && !data)) {
		reclaim_best = v;
		reclaim_best_data = data;
	}
}

/* sess_slot_reclaim - make a session that does not use its backend
 * connection give it back (for x); false when there is none. */
bool
sess_slot_reclaim(struct sess *x)
{
	struct sess *v;
	struct session *s;

	reclaim_best = NULL;
	reclaim_best_data = false;
	reclaim_for = x;
	sess_foreach(sess_reclaim_pick);
	reclaim_for = NULL;
	if ((v = reclaim_best) == NULL)
		return false;
	s = &v->s;
	log_info("id=%s backend connection given back for id=%s (%s)", s->sid,
	         x->s.sid, v->in_data ? "body held" : "idle");
	relay_quit(s->relay); /* RSET, then parked for the next taker */
	s->relay = NULL;
	if (v->in_data) {
		v->released = true;
		v->backend_txn = false;
		stats.backend_released++;
	}
	return true;
}

/*
 * sess_replay - after the dot, a released body's transaction again on a
 * new connection: MAIL and every accepted RCPT (a few at a time, the
 * relay's queue is short), then DATA and the held body (sess_relay_cb).
 */
static void
sess_replay(struct sess *x)
{
	struct session *s = &x->s;
	char path[400];

	if (!relay_can_open(s->cfg)) {
		/* for what it does: a slot given back, the streaming rule;
		 * a released body waits in any case */
		(void)sess_slot_coming(x);
		sess_slot_enqueue(x);
		return;
	}
	x->wait = W_EOD;
	sess_rearm(x);
	x->released = false;
	if (!sess_relay_open(x)) {
		x->in_data = false;
		sess_unreachable(x, "cannot connect");
		return;
	}
	sess_mail_arg(x, path, sizeof(path));
	x->op = OP_REPLAY;
	relay_mail(s->relay, path);
	x->replay_next = 0;
	x->replay_due = 1;
	sess_replay_more(x);
}

/* sess_replay_more - the next RCPTs of the replay, at most 6 in flight. */
static void
sess_replay_more(struct sess *x)
{
	char path[400];

	while (x->replay_next < x->s.n_to && x->replay_due < 6) {
		sess_path_str(&x->s.to[x->replay_next++], path, sizeof(path));
		relay_rcpt(x->s.relay, path);
		x->replay_due++;
	}
}

/* sess_relay_start - this recipient passed: on to the backend. */
static void
sess_relay_start(struct sess *x)
{
	struct session *s = &x->s;
	char path[400], reply[160];

	if (s->relay == NULL) {
		if (!relay_can_open(s->cfg)) {
			if (sess_slot_coming(x)) {
				sess_slot_enqueue(x);
				return;
			}
			snprintf(reply, sizeof(reply),
			         "421 4.3.2 Too many sessions to the internal "
			         "mail server, try again later [id=%s]",
			         s->sid);
			sess_log(x, VERDICT_TEMPFAIL, "limit",
			         "max_backend_connections");
			sess_final(x, reply);
			return;
		}
		if (!sess_relay_open(x)) {
			snprintf(reply, sizeof(reply),
			         "451 4.4.1 Internal mail server not "
			         "reachable, try again later [id=%s]",
			         s->sid);
			sess_refuse(x, reply, "backend", "cannot connect");
			return;
		}
	}
	if (!x->backend_txn) {
		sess_mail_arg(x, path, sizeof(path));
		x->op = OP_MAIL;
		relay_mail(s->relay, path);
		sess_path_str(&s->rcpt, path, sizeof(path));
		relay_rcpt(s->relay, path);
		return;
	}
	sess_path_str(&s->rcpt, path, sizeof(path));
	x->op = OP_RCPT;
	relay_rcpt(s->relay, path);
}

/* sess_unreachable - the backend failed: a 4xx, never a 250. */
static void
sess_unreachable(struct sess *x, const char *why)
{
	char reply[160];

	snprintf(reply, sizeof(reply),
	         "451 4.4.1 Internal mail server not reachable, try again "
	         "later [id=%s]",
	         x->s.sid);
	sess_refuse(x, reply, "backend", why);
}

/* sess_drop_relay - abort the relay (nothing delivered); reading goes on
 * if the relay's back-pressure had stopped it. */
void
sess_drop_relay(struct sess *x)
{
	struct session *s = &x->s;

	if (s->relay == NULL)
		return;
	relay_abort(s->relay);
	s->relay = NULL;
	sess_flow(x);
}

/* sess_relay_cb - a reply from the backend for the command in x->op. */
static void
sess_relay_cb(struct relay *r, void *arg, int code, const char *reply)
{
	struct sess *x = arg;
	struct session *s = &x->s;
	enum sess_op op;
	char msg[480], path[400];

	/* The one liveness check of the relay's callbacks: relay.c never
	 * calls back from inside a relay_* call, so the session is in a
	 * consistent state here; only a relay it has let go is stale. */
	if (s->closing || s->relay != r)
		return;
	if (code >= 0 && x->data_ack_pending) {
		/* The client got its 354 at once; this is the backend's. */
		x->data_ack_pending = false;
		if (code == 354)
			return;
		x->in_data = false;
		if (x->op == OP_DOT) {
			/* The dot was never sent: this is the answer. */
			x->op = OP_NONE;
			sess_refuse(x, reply, "backend", reply);
			return;
		}
		free(x->data_refused);
		x->data_refused = xstrdup(reply);
		return;
	}
	x->data_ack_pending = false;
	op = x->op;
	x->op = OP_NONE;
	if (code < 0 && op == OP_NONE && x->in_data && x->hold &&
	    !x->flushing) {
		/* Lost while the body is still held (the server's own idle
		 * timeout on a slow sender): as if given back - the dot
		 * replays the transaction on a new connection. */
		log_info("id=%s backend connection lost while the body is "
		         "held (%s): replayed at the dot",
		         s->sid, reply);
		sess_drop_relay(x);
		x->backend_txn = false;
		x->released = true;
		return;
	}
	if (code < 0) {
		sess_drop_relay(x);
		if (x->backend_txn || x->in_data)
			x->backend_broken = true;
		x->backend_txn = false;
		x->in_data = false;
		if (op != OP_NONE)
			sess_unreachable(x, reply);
		else
			log_info("id=%s backend connection lost: %s", s->sid,
			         reply);
		return;
	}
	switch (op) {
	case OP_MAIL:
		/* The RCPT went with the MAIL: its reply comes next. */
		if (code / 100 == 2) {
			x->backend_txn = true;
			x->op = OP_RCPT;
			return;
		}
		free(x->mail_refused);
		x->mail_refused = xstrdup(reply);
		x->op = OP_RCPT_SKIP;
		return;
	case OP_RCPT_SKIP:
		sess_refuse(x, x->mail_refused, "backend", x->mail_refused);
		free(x->mail_refused);
		x->mail_refused = NULL;
		return;
	case OP_RCPT:
		if (code / 100 == 2) {
			x->n_backend_rcpt++;
			if (s->n_to == x->to_cap) {
				x->to_cap = x->to_cap ? 2 * x->to_cap : 4;
				x->to_v = xrealloc(
				        x->to_v, x->to_cap * sizeof(*x->to_v));
			}
			x->to_v[s->n_to++] = s->rcpt;
			s->to = x->to_v;
			sess_path_str(&s->rcpt, path, sizeof(path));
			if (x->rcpts.len + strlen(path) + 1 < 1000) {
				if (x->rcpts.len > 0)
					buf_append(&x->rcpts, ",", 1);
				buf_append(&x->rcpts, path, strlen(path));
			} else {
				x->rcpts_more++;
			}
			smtp_accept(&s->smtp);
			return;
		}
		if (code / 100 == 5 &&
		    s->cfg->recipient_verify != RCPT_VERIFY_LIST) {
			sess_path_str(&s->rcpt, path, sizeof(path));
			snprintf(msg, sizeof(msg),
			         "550 5.7.1 recipient %s unknown [id=%s]", path,
			         s->sid);
			sess_refuse(x, msg, "recipient", reply);
			return;
		}
		sess_refuse(x, reply, "backend", reply);
		return;
	case OP_DOT:
		x->in_data = false;
		x->backend_txn = false;
		x->n_backend_rcpt = 0;
		if (code / 100 == 2) {
			stats.accepted++;
			sess_delivered(x); /* greylist, outbound learning */
			sess_log(x, VERDICT_ACCEPT, "backend", reply);
			smtp_reply(&s->smtp, true, reply);
		} else {
			sess_refuse(x, reply, "backend", reply);
		}
		if (sess_draining && !s->closing) {
			snprintf(msg, sizeof(msg),
			         "421 4.3.2 Service shutting down [id=%s]",
			         s->sid);
			sess_final(x, msg);
		}
		return;
	case OP_REPLAY:
		x->replay_due--;
		if (code / 100 != 2) {
			/* The server no longer takes what it took before the
			 * body: nothing goes, the client tries again later. */
			sess_drop_relay(x);
			x->in_data = false;
			snprintf(msg, sizeof(msg),
			         "451 4.3.0 The internal mail server changed "
			         "its "
			         "answer, try again later [id=%s]",
			         s->sid);
			sess_refuse(x, msg, "backend", reply);
			return;
		}
		x->op = OP_REPLAY;
		if (x->replay_due > 0 || x->replay_next < s->n_to) {
			sess_replay_more(x);
			return;
		}
		x->op = OP_NONE;
		x->backend_txn = true;
		sess_hold_flush(x);
		return;
	case OP_NONE:
		return;
	}
}

/* sess_relay_drain_cb - the backend took the queued body: send more of a
 * held one, or read again. */
static void
sess_relay_drain_cb(struct relay *r, void *arg)
{
	struct sess *x = arg;

	if (x->s.closing || x->s.relay != r)
		return;
	if (x->flushing)
		sess_hold_pump(x);
	else
		sess_flow(x);
}

/*
 * sess_log_won - nothing refused: a check in action "log" whose refusal
 * would have been the decision gets its won() (greylisting records the
 * triplet, so that the log judges the next attempt as a retry).
 */
static void
sess_log_won(struct sess *x)
{
	struct session *s = &x->s;
	struct verdict v;

	for (unsigned i = 0; i < chk_registry_len; i++) {
		const struct check *c = chk_registry[i];
		const struct chk_result *r = &s->results[c->id];

		if (c->won == NULL || !(c->stage & s->stage) ||
		    r->status == CHK_NONE)
			continue;
		verdict_decide(r, s->cfg->actions[c->id], s->sid, &v);
		if (v.kind == VERDICT_LOG)
			c->won(s);
	}
}

/* sess_stage_done - every check of the stage answered: decide. */
static void
sess_stage_done(struct sess *x)
{
	struct session *s = &x->s;
	struct verdict v;
	const struct check *who;

	if (s->stage == STAGE_CONNECT) {
		if (x->greet_elapsed)
			sess_banner(x);
		return;
	}
	sess_stage_verdict(x, &v, &who);
	if (v.kind != VERDICT_REJECT && v.kind != VERDICT_TEMPFAIL)
		sess_log_won(x);
	if (v.kind == VERDICT_REJECT || v.kind == VERDICT_TEMPFAIL) {
		if (who != NULL && who->won != NULL)
			who->won(s);
		sess_refuse_log(x, &v, who);
		if (s->stage == STAGE_DATA && s->relay != NULL) {
			/* Nothing is delivered: no dot. */
			sess_drop_relay(x);
			x->backend_txn = false;
			x->in_data = false;
		}
		smtp_reply(&s->smtp, false, v.reply);
		return;
	}
	switch (s->stage) {
	case STAGE_HELO:
	case STAGE_MAIL:
		smtp_accept(&s->smtp);
		return;
	case STAGE_RCPT:
		sess_relay_start(x);
		return;
	case STAGE_DATA:
		if (x->data_refused != NULL) {
			/* The backend refused DATA: its reply is the answer. */
			char *r = x->data_refused;

			x->data_refused = NULL;
			sess_refuse(x, r, "backend", r);
			free(r);
			return;
		}
		if ((s->relay == NULL && !x->released) || !x->in_data) {
			sess_unreachable(x, "backend lost during DATA");
			return;
		}
		hdrfilter_end(x->hf, sess_body_out, x);
		free(x->hf);
		x->hf = NULL;
		if (x->released) {
			sess_replay(x);
			return;
		}
		if (x->hold) {
			sess_hold_flush(x);
			return;
		}
		x->op = OP_DOT;
		relay_dot(s->relay);
		return;
	}
}

/*
 * sess_refuse_greeting - refused at connect: reply is the greeting, and
 * the engine answers every command but QUIT with it (RFC 5321 3.1).
 */
void
sess_refuse_greeting(struct sess *x, const char *reply)
{
	x->phase = PH_REJECTING;
	x->reject_reply = xstrdup(reply);
	smtp_refuse(&x->s.smtp, x->reject_reply);
	sess_rearm(x);
}

/* sess_banner - greet pause over and connect checks done: greet. */
void
sess_banner(struct sess *x)
{
	struct session *s = &x->s;
	struct verdict v;
	const struct check *who;

	if (x->phase != PH_CONNECT || s->closing)
		return;
	uv_timer_stop(&s->timer);
	sess_stage_verdict(x, &v, &who);
	if (v.kind == VERDICT_REJECT || v.kind == VERDICT_TEMPFAIL) {
		sess_refuse_log(x, &v, who);
		sess_refuse_greeting(x, v.reply);
		return;
	}
	x->phase = PH_SMTP;
	passcache_add(s->cfg, &s->client); /* greet pause and checks passed */
	smtp_banner(&s->smtp);
	sess_rearm(x);
}

/* ---------------------------------------------------- engine hooks */

/* sess_rcpt - recipient rules (always enforced), then the RCPT checks. */
static void
sess_rcpt(struct sess *x, const struct mailpath *p, int addr_err)
{
	struct session *s = &x->s;
	const struct config *c = s->cfg;
	char addr[330], reply[480];
	struct verdict v;
	bool local = false;
	int i;

	s->rcpt = *p;
	addr_format(p, addr, sizeof(addr));
	for (i = 0; i < c->local_domains.n; i++)
		if (strcasecmp(c->local_domains.v[i], p->domain) == 0)
			local = true;
	if (p->domain[0] == '\0' && strcasecmp(p->local, "postmaster") == 0)
		local = true;
	if (s->outbound) /* our own outgoing mail: any recipient */
		local = addr_err == ADDR_OK;
	if (!local || addr_err != ADDR_OK || strpbrk(p->local, "%!@") != NULL) {
		snprintf(reply, sizeof(reply),
		         "550 5.7.1 Relaying denied [id=%s]", s->sid);
		sess_refuse(x, reply, "relay", addr);
		return;
	}
	if (!s->outbound && c->recipient_verify != RCPT_VERIFY_BACKEND &&
	    c->recipients != NULL && !list_match_addr(c->recipients, addr)) {
		snprintf(reply, sizeof(reply),
		         "550 5.7.1 recipient <%s> unknown [id=%s]", addr,
		         s->sid);
		sess_refuse(x, reply, "recipient", addr);
		return;
	}
	if (s->from.null && s->smtp.n_rcpt >= 1) {
		sess_own_check(x, CHK_NULL_SENDER,
		               "A null sender may have one recipient only", &v);
		if (v.kind == VERDICT_LOG) {
			sess_log(x, VERDICT_LOG, "null_sender", addr);
		} else if (v.kind != VERDICT_ACCEPT) {
			sess_refuse(x, v.reply, "null_sender", addr);
			return;
		}
	}
	sess_stage_start(x, STAGE_RCPT);
}

/* sess_rcpts_clear - a new transaction: forget the recipients list. */
static void
sess_rcpts_clear(struct sess *x)
{
	sess_tap_end(x);
	x->released = false;
	x->s.n_to = 0;
	buf_free(&x->rcpts);
	x->rcpts_more = 0;
	x->at_eod = false;
}

/* sess_dot - end of data: the engine's findings, then the DATA checks. */
static void
sess_dot(struct sess *x, const struct smtp_args *a)
{
	struct session *s = &x->s;
	char reply[200];
	const char *reason = NULL, *text = NULL;

	x->at_eod = true;

	if (a->bad_line_end) {
		reason = "syntax";
		text = "550 5.6.0 Message refused: bare CR or LF in the data "
		       "(RFC 5321 2.3.8)";
	} else if (a->line_too_long) {
		reason = "syntax";
		text = "550 5.6.0 Message refused: a line is longer than 1000 "
		       "octets";
	} else if (a->too_big) {
		reason = "size";
		text = "552 5.3.4 Message size exceeds fixed maximum message "
		       "size";
	}
	if (text != NULL) {
		free(x->data_refused);
		x->data_refused = NULL;
		if (s->relay != NULL)
			sess_drop_relay(x);
		x->backend_txn = false;
		x->in_data = false;
		snprintf(reply, sizeof(reply), "%s [id=%s]", text, s->sid);
		sess_refuse(x, reply, reason, text + 10);
		return;
	}
	if (x->data_refused == NULL &&
	    ((s->relay == NULL && !x->released) || !x->in_data)) {
		sess_unreachable(x, "backend lost during DATA");
		return;
	}
	sess_stage_start(x, STAGE_DATA);
}

/* sess_smtp_command_cb - a command that needs our decision. */
static void
sess_smtp_command_cb(struct smtp *e, enum smtp_cmd cmd,
                     const struct smtp_args *a)
{
	struct session *s = container_of(e, struct session, smtp);
	struct sess *x = sess_x(s);
	char addr[330], reply[160];

	if (cmd != SMTP_CMD_RSET && cmd != SMTP_CMD_QUIT &&
	    cmd != SMTP_CMD_DOT) {
		/* The command is with us: the client's timer waits. */
		x->wait = W_US;
		sess_rearm(x);
	}
	switch (cmd) {
	case SMTP_CMD_EHLO:
	case SMTP_CMD_HELO:
		snprintf(s->helo, sizeof(s->helo), "%s",
		         a->helo ? a->helo : "");
		if (x->hdr_base_set) {
			s->add_headers.len = x->hdr_base;
			x->hdr_base_set = false;
		}
		sess_stage_start(x, STAGE_HELO);
		return;
	case SMTP_CMD_MAIL:
		if (s->relay != NULL && x->backend_txn) {
			relay_rset(s->relay);
			x->backend_txn = false;
		}
		s->from = *a->path;
		s->has_from = true;
		memset(&s->rcpt, 0, sizeof(s->rcpt));
		x->mail_size = a->size;
		x->mail_8bit = a->body_8bit;
		x->backend_broken = false;
		x->n_backend_rcpt = 0;
		sess_rcpts_clear(x);
		addr_format(a->path, addr, sizeof(addr));
		x->sender_allowlisted = s->cfg->allow != NULL &&
		                        !a->path->null &&
		                        list_match_addr(s->cfg->allow, addr);
		if (!s->allowlisted && !x->sender_allowlisted &&
		    s->cfg->block != NULL && !a->path->null &&
		    list_match_addr(s->cfg->block, addr)) {
			snprintf(reply, sizeof(reply),
			         "554 5.7.1 We don't accept mail from this "
			         "sender [id=%s]",
			         s->sid);
			sess_refuse(x, reply, "blocklist", addr);
			s->has_from = false;
			return;
		}
		/* Header lines of the connect and HELO stages stay; those
		 * of an earlier transaction go. */
		if (!x->hdr_base_set || x->hdr_base > s->add_headers.len) {
			x->hdr_base = s->add_headers.len;
			x->hdr_base_set = true;
		}
		s->add_headers.len = x->hdr_base;
		sess_stage_start(x, STAGE_MAIL);
		return;
	case SMTP_CMD_RCPT:
		sess_rcpt(x, a->path, a->addr_err);
		return;
	case SMTP_CMD_DATA:
		if (s->relay == NULL || !x->backend_txn ||
		    x->n_backend_rcpt == 0) {
			if (x->backend_broken || s->smtp.n_rcpt > 0) {
				sess_unreachable(x, "backend lost before DATA");
				return;
			}
			snprintf(reply, sizeof(reply),
			         "554 5.5.1 No valid recipients [id=%s]",
			         s->sid);
			smtp_reply(e, false, reply);
			return;
		}
		/*
		 * The 354 goes out at once; the body is held until it is
		 * SESS_STREAM_AT bytes or at its dot (bodytap.c), then DATA
		 * goes to the backend and the body behind it without waiting
		 * for its 354.  A refused DATA becomes the answer to the dot.
		 */
		free(x->data_refused);
		x->data_refused = NULL;
		x->in_data = true;
		if (x->hf == NULL)
			x->hf = xmalloc(sizeof(*x->hf));
		hdrfilter_init(x->hf, s->cfg->hostname);
		if (s->outbound)
			outbound_end(s); /* a new message */
		sess_tap_begin(x);       /* the body starts held (bodytap.c) */
		if (s->closing)
			return;
		x->wait = W_DATA; /* the 354 arms timeout_data */
		smtp_accept(e);
		return;
	case SMTP_CMD_DOT:
		/* The client waits for us now: the session's timers are
		 * suspended until the answer (the relay's timeout_backend). */
		x->wait = W_EOD;
		sess_rearm(x);
		sess_dot(x, a);
		return;
	case SMTP_CMD_STARTTLS:
		if (!tls_available() || s->tls != NULL) {
			snprintf(reply, sizeof(reply),
			         "454 4.7.0 TLS not available [id=%s]", s->sid);
			smtp_reply(e, false, reply);
			return;
		}
		smtp_accept(e);
		s->tls = tls_new(&sess_tls_hooks, x);
		if (s->tls == NULL) {
			log_warn("id=%s cannot start TLS", s->sid);
			sess_close(x);
		}
		return;
	case SMTP_CMD_RSET:
		if (s->relay != NULL && (x->backend_txn || x->op != OP_NONE)) {
			relay_rset(s->relay);
			x->backend_txn = false;
		}
		s->has_from = false;
		memset(&s->rcpt, 0, sizeof(s->rcpt));
		x->n_backend_rcpt = 0;
		x->backend_broken = false;
		sess_rcpts_clear(x);
		return;
	case SMTP_CMD_QUIT:
		return;
	}
}

/* sess_smtp_violation_cb - pregreet / pipelining, by their action. */
static int
sess_smtp_violation_cb(struct smtp *e, enum smtp_violation viol)
{
	struct session *s = container_of(e, struct session, smtp);
	struct sess *x = sess_x(s);
	struct verdict v;
	const char *name;
	char reply[340];

	if (s->closing)
		return -1;
	if (viol == SMTP_VIOL_PREGREET) {
		name = "pregreet";
		sess_own_check(x, CHK_PREGREET,
		               "You talked before the greeting (pregreet)", &v);
	} else {
		name = "pipelining";
		sess_own_check(x, CHK_PIPELINING,
		               "Pipelining is not allowed here: wait for each "
		               "reply",
		               &v);
	}
	switch (v.kind) {
	case VERDICT_ACCEPT:
		return 0;
	case VERDICT_LOG:
		sess_log(x, VERDICT_LOG, name, NULL);
		return 0;
	case VERDICT_TEMPFAIL:
		/* We close: a 421, with the verdict's text and id. */
		snprintf(reply, sizeof(reply), "421 4.7.0 %s",
		         v.reply + 10 /* after "451 4.x.x " */);
		break;
	case VERDICT_REJECT:
		snprintf(reply, sizeof(reply), "%s", v.reply);
		break;
	}
	sess_log(x, sess_kind_of(reply), name, NULL);
	if (x->phase == PH_SMTP) {
		smtp_close_reply(e, reply);
	} else {
		x->phase = PH_SMTP; /* the engine writes, not the banner */
		smtp_close_reply(e, reply);
	}
	sess_close(x);
	return -1;
}

/* sess_smtp_close_cb - the engine is done (QUIT, or too many errors). */
static void
sess_smtp_close_cb(struct smtp *e)
{
	struct session *s = container_of(e, struct session, smtp);

	sess_close(sess_x(s));
}

const struct smtp_hooks sess_smtp_hooks = {
        .write = sess_smtp_write_cb,
        .command = sess_smtp_command_cb,
        .body = sess_smtp_body_cb,
        .violation = sess_smtp_violation_cb,
        .close = sess_smtp_close_cb,
};
