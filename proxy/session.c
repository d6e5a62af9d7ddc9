/*
 * session.c - one client connection, from accept to the last close.
 *
 * Public (proxy.h, session block):
 *   sess_listen()      open every listener of the config
 *   sess_reload()      new sessions use the new config, live ones keep theirs
 *   sess_drain()       stop accepting, finish transactions (bounded), done()
 *   sess_find()        id -> live session (checks' tickets)
 *   sess_check_done()  a check of the current stage finished
 *   sess_config()      the config new sessions get
 *
 * What a session goes through: the caps (max_connections, max_per_ip),
 * the in-house blocklist and allowlist, the connect-stage checks (started
 * at accept, decided when the greet pause has elapsed), the banner, then
 * the SMTP engine (smtp.c) hands EHLO/HELO, MAIL, RCPT, DATA, the end of
 * data and STARTTLS here; each runs its stage of checks, and verdict.c
 * decides in registry order.  Recipients that pass go to the internal
 * server through relay.c (connected at the first one; MAIL+RCPT pipelined
 * when it offers PIPELINING; kept for the session's next transaction,
 * QUIT at its end).  DATA gets its 354 at once, the body streams through
 * as it arrives (held in the relay until the backend's own 354; reading
 * stops while more than 256 KiB wait), and the final dot goes only when
 * every check passed: the backend's reply goes to the client as it is,
 * a backend failure is a 451, never a 250.  A refusal at connect becomes
 * the greeting and every later command gets the same reply until QUIT
 * (RFC 5321 3.1).  Timeouts: greet pause and banner wait, each command,
 * each DATA chunk, and the whole session's life (shorter in stress mode,
 * above 80% of max_connections until below 60%).
 *
 * Every decision is one log line (id client ptr helo from to action
 * reason detail) and counts in stats.
 *
 * Owns: the sessions (each embeds its uv_tcp_t and uv_timer_t and is freed
 * in the close callback of the last one), the id table, the per-IP
 * counters, the listeners, the drain timer.  Async: everything, on the
 * loop; checks answer through sess_check_done(), the relay through its
 * callback, TLS through its hooks.
 *
 * Config keys: listen, backend, hostname, local_domains, recipients,
 * recipient_verify, allowlist, blocklist, greet_pause, max_connections,
 * max_per_ip, max_backend_connections, max_recipients,
 * message_size_limit, timeout_*, action_*.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "proxy.h"
#include "checks/check.h"

#define SESS_HASH 4096                 /* id table buckets */
#define IPC_HASH 1024                  /* per-IP counter buckets */
#define SESS_BACKPRESSURE (256 * 1024) /* relay queue: stop reading */
#define SESS_LIFE_MS (30 * 60 * 1000)  /* a session's whole life */
#define SESS_STRESS_LIFE_MS (5 * 60 * 1000)
#define SESS_STRESS_CMD_MS (10 * 1000)
#define SESS_STRESS_DATA_MS (30 * 1000)
#define SESS_CLOSE_FLUSH_MS 5000  /* last reply: time to drain it */
#define SESS_DRAIN_MS (30 * 1000) /* SIGTERM: transactions may finish */
#define SESS_EMFILE_BACKOFF_MS 500

enum sess_phase {
	PH_CONNECT,   /* before the banner */
	PH_REJECTING, /* refused at connect: same reply until QUIT */
	PH_SMTP,      /* the engine runs */
};

enum sess_op {
	OP_NONE,
	OP_MAIL,      /* MAIL and RCPT sent (pipelined when offered) */
	OP_RCPT_SKIP, /* MAIL failed: the RCPT reply is not the answer */
	OP_RCPT,
	OP_DOT,
};

/* struct sess - the public session plus session.c's own state. */
struct sess {
	struct session s;
	struct sess *hnext;  /* id table chain */
	struct ipcount *ipc; /* NULL: not counted (over a cap) */
	enum sess_phase phase;
	enum sess_op op;
	unsigned pending_mask; /* checks of this stage not done */
	bool starting;         /* inside sess_stage_start() */
	bool greet_elapsed;
	bool sender_allowlisted; /* this transaction's sender */
	bool backend_txn;        /* MAIL accepted by the backend */
	bool backend_broken;     /* the relay died mid-transaction */
	bool in_data;            /* 354 sent, body streaming */
	struct hdrfilter *hf;    /* during DATA: forged A-R fields out */
	bool data_ack_pending;   /* the backend's DATA reply is due */
	char *data_refused;      /* the backend's DATA refusal */
	bool read_paused;        /* back-pressure from the relay */
	bool handles_closing;
	bool in_table;
	unsigned writes_pending;
	unsigned n_backend_rcpt;
	uint64_t life_deadline;
	uint64_t mail_size;
	bool mail_8bit;
	size_t hdr_base; /* add_headers before this transaction */
	bool hdr_base_set;
	char *reject_reply;  /* PH_REJECTING */
	char *mail_refused;  /* OP_RCPT_SKIP: the MAIL reply */
	struct buf rcpts;    /* "<a@b>,<c@d>" taken by the backend */
	unsigned rcpts_more; /* beyond what rcpts holds */
	bool at_eod;         /* log lines name every recipient */
};

struct ipcount {
	struct ipcount *next;
	struct ipaddr ip;
	unsigned n;
};

struct sess_wreq {
	uv_write_t req;
	struct sess *x;
	char data[];
};

static uv_loop_t *sess_loop;
static struct config *cur_cfg;
static struct sess *sess_table[SESS_HASH];
static struct ipcount *ipc_table[IPC_HASH];
static uint64_t sess_counter;
static unsigned n_admitted; /* sessions within the caps */
static unsigned n_alive;    /* allocated sessions */
static bool stress;
static bool draining;
static void (*drain_done)(void);
static uv_timer_t drain_timer;
static bool drain_timer_init;

static uv_tcp_t listeners[CONFIG_MAX_LISTEN];
static struct sockaddr_storage listen_addr[CONFIG_MAX_LISTEN];
static bool listener_open[CONFIG_MAX_LISTEN];
static int n_listen;
static uv_timer_t backoff_timer;
static bool backoff_init, backoff_active;

static void sess_close(struct sess *x);
static void sess_close_handles(struct sess *x);
static void sess_stage_start(struct sess *x, unsigned stage);
static void sess_rearm(struct sess *x);
static void sess_relay_cb(struct relay *r, void *arg, int code,
                          const char *reply);
static void sess_listen_open(void);
static const struct tls_hooks sess_tls_hooks;
static void sess_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b);
static void sess_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);
static void sess_relay_drain_cb(struct relay *r, void *arg);
static void sess_body_out(void *arg, const char *p, size_t n);
static void sess_drop_relay(struct sess *x);

static const char *const action_names[] = {
        [VERDICT_ACCEPT] = "accept",
        [VERDICT_LOG] = "log",
        [VERDICT_TEMPFAIL] = "tempfail",
        [VERDICT_REJECT] = "reject",
};

/* sess_x - the private session of a public one. */
static inline struct sess *
sess_x(struct session *s)
{
	return container_of(s, struct sess, s);
}

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

/* ipc_hash - bucket of an address. */
static unsigned
ipc_hash(const struct ipaddr *ip)
{
	const unsigned char *p;
	size_t n, i;
	unsigned h = 2166136261u;

	if (ip->family == AF_INET) {
		p = (const unsigned char *)&ip->u.v4;
		n = 4;
	} else {
		p = (const unsigned char *)&ip->u.v6;
		n = 16;
	}
	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % IPC_HASH;
}

/* ipc_get - the counter of ip (created at 0 when absent). */
static struct ipcount *
ipc_get(const struct ipaddr *ip)
{
	unsigned h = ipc_hash(ip);
	struct ipcount *c;

	for (c = ipc_table[h]; c != NULL; c = c->next)
		if (ipaddr_equal(&c->ip, ip))
			return c;
	c = xcalloc(1, sizeof(*c));
	c->ip = *ip;
	c->next = ipc_table[h];
	ipc_table[h] = c;
	return c;
}

/* ipc_put - one session less for c; freed at zero. */
static void
ipc_put(struct ipcount *c)
{
	struct ipcount **pp;

	if (--c->n > 0)
		return;
	for (pp = &ipc_table[ipc_hash(&c->ip)]; *pp; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	free(c);
}

/* sess_stress_update - switch stress mode at the water marks. */
static void
sess_stress_update(void)
{
	unsigned max = cur_cfg ? cur_cfg->max_connections : 0;

	if (max == 0)
		return;
	if (!stress && n_admitted * 10 >= max * 8) {
		stress = true;
		log_info("stress mode on: %u sessions of %u, short timeouts",
		         n_admitted, max);
	} else if (stress && n_admitted * 10 < max * 6) {
		stress = false;
		log_info("stress mode off: %u sessions of %u", n_admitted, max);
	}
}

/* --------------------------------------------------------- logging */

/* sess_path_str - "<local@domain>" of a path. */
static void
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
static void
sess_log(struct sess *x, enum verdict_kind kind, const char *reason,
         const char *detail)
{
	struct session *s = &x->s;
	char ptr[300], helo[300], from[400], to[1200], det[400], rsn[64];
	char tmp[340];

	log_kv_escape(ptr, sizeof(ptr), s->ptr);
	log_kv_escape(helo, sizeof(helo), s->helo);
	if (s->has_from) {
		sess_path_str(&s->from, tmp, sizeof(tmp));
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
		log_kv_escape(to, sizeof(to), all);
	} else if (s->rcpt.local[0] != '\0' || s->rcpt.domain[0] != '\0') {
		sess_path_str(&s->rcpt, tmp, sizeof(tmp));
		log_kv_escape(to, sizeof(to), tmp);
	} else {
		log_kv_escape(to, sizeof(to), NULL);
	}
	log_kv_escape(det, sizeof(det), detail);
	log_kv_escape(rsn, sizeof(rsn), reason);
	log_info("id=%s client=%s ptr=%s helo=%s from=%s to=%s action=%s "
	         "reason=%s detail=%s",
	         s->sid, s->client_str, ptr, helo, from, to, action_names[kind],
	         rsn, det);
	if (x->at_eod && kind != VERDICT_LOG) {
		/* The message's decision is out: an idle session keeps no
		 * recipient list. */
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

/* sess_kind_of - the verdict kind a reply code stands for. */
static enum verdict_kind
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
static void
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
static void
sess_smtp_write_cb(struct smtp *e, const char *buf, size_t len)
{
	struct sess *x = sess_x(container_of(e, struct session, smtp));

	if (x->s.tls != NULL)
		tls_write(x->s.tls, buf, len);
	else
		sess_raw_write(x, buf, len);
	/* A reply went out: the client has a fresh deadline. */
	if (!x->s.closing && x->phase != PH_CONNECT)
		sess_rearm(x);
}

/* sess_final - send a last reply (421/554...) and close. */
static void
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
static void
sess_timeouts(const struct sess *x, uint64_t *cmd, uint64_t *data,
              uint64_t *life)
{
	const struct config *c = x->s.cfg;

	*cmd = c->timeout_command_ms ? c->timeout_command_ms : 300000;
	*data = c->timeout_data_ms ? c->timeout_data_ms : 180000;
	*life = SESS_LIFE_MS;
	if (stress) {
		if (*cmd > SESS_STRESS_CMD_MS)
			*cmd = SESS_STRESS_CMD_MS;
		if (*data > SESS_STRESS_DATA_MS)
			*data = SESS_STRESS_DATA_MS;
		*life = SESS_STRESS_LIFE_MS;
	}
}

static void sess_timer_cb(uv_timer_t *t);

/* sess_arm - the timer in ms, capped by the session's life. */
static void
sess_arm(struct sess *x, uint64_t ms)
{
	uint64_t now = uv_now(sess_loop);

	if (x->life_deadline <= now)
		ms = 0;
	else if (now + ms > x->life_deadline)
		ms = x->life_deadline - now;
	uv_timer_start(&x->s.timer, sess_timer_cb, ms, 0);
}

/* sess_rearm - the deadline of the state the engine is in. */
static void
sess_rearm(struct sess *x)
{
	uint64_t cmd, data, life;

	sess_timeouts(x, &cmd, &data, &life);
	sess_arm(x, x->s.smtp.state == SMTP_ST_DATA ? data : cmd);
}

/* sess_cancel_checks - cancel the checks still running in this stage. */
static void
sess_cancel_checks(struct sess *x)
{
	unsigned i;

	for (i = 0; i < chk_registry_len; i++) {
		const struct check *c = chk_registry[i];

		if ((x->pending_mask & (1u << c->id)) && c->cancel != NULL)
			c->cancel(&x->s);
	}
	x->pending_mask = 0;
	x->s.pending_checks = 0;
	x->s.gen++;
}

static void sess_banner(struct sess *x);

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
	snprintf(reply, sizeof(reply),
	         "421 4.4.2 Timeout, closing connection [id=%s]", x->s.sid);
	sess_log(x, VERDICT_TEMPFAIL, "timeout",
	         x->s.smtp.state == SMTP_ST_DATA ? "data" : "command");
	sess_final(x, reply);
}

/* ------------------------------------------------------------ close */

/* sess_drain_finish - no session left while draining: tell main. */
static void
sess_drain_finish(void)
{
	void (*done)(void) = drain_done;

	drain_done = NULL;
	if (drain_timer_init) {
		uv_close((uv_handle_t *)&drain_timer, NULL);
		drain_timer_init = false;
	}
	if (cur_cfg != NULL) {
		config_unref(cur_cfg);
		cur_cfg = NULL;
	}
	if (done != NULL)
		done();
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
	free(x->reject_reply);
	free(x->hf);
	free(x->mail_refused);
	free(x->data_refused);
	buf_free(&x->rcpts);
	config_unref(s->cfg);
	free(x);
	n_alive--;
	if (draining && n_alive == 0 && drain_done != NULL)
		sess_drain_finish();
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
static void
sess_close(struct sess *x)
{
	struct session *s = &x->s;

	if (!s->closing) {
		s->closing = true;
		sess_cancel_checks(x);
		if (s->relay != NULL) {
			if (x->op != OP_NONE || x->in_data || x->backend_txn)
				relay_abort(s->relay);
			else
				relay_quit(s->relay);
			s->relay = NULL;
		}
		sess_table_del(x);
		if (x->ipc != NULL) {
			ipc_put(x->ipc);
			x->ipc = NULL;
			n_admitted--;
			sess_stress_update();
		}
		stats.connections_active--;
		uv_read_stop((uv_stream_t *)&s->tcp);
		if (s->tls != NULL)
			tls_close_notify(s->tls); /* queued like a reply */
		if (x->writes_pending > 0) {
			uv_timer_start(&s->timer, sess_timer_cb,
			               SESS_CLOSE_FLUSH_MS, 0);
			return;
		}
	}
	if (x->writes_pending == 0)
		sess_close_handles(x);
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
static void
sess_refuse(struct sess *x, const char *reply, const char *reason,
            const char *detail)
{
	sess_log(x, sess_kind_of(reply), reason, detail);
	smtp_reply(&x->s.smtp, false, reply);
}

/* ----------------------------------------------------------- stages */

static void sess_stage_done(struct sess *x);

/*
 * sess_stage_start - start every check of stage (not for an allowlisted
 * client, nor for the MAIL/RCPT/DATA stages of an allowlisted sender).
 * The stage completes in sess_stage_done() once all have answered.
 */
static void
sess_stage_start(struct sess *x, unsigned stage)
{
	struct session *s = &x->s;
	bool exempt = s->allowlisted ||
	              (x->sender_allowlisted &&
	               (stage & (STAGE_MAIL | STAGE_RCPT | STAGE_DATA)));
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

/* sess_relay_start - this recipient passed: on to the backend. */
static void
sess_relay_start(struct sess *x)
{
	struct session *s = &x->s;
	char path[400], reply[160];

	if (s->relay == NULL) {
		if (!relay_can_open(s->cfg)) {
			snprintf(reply, sizeof(reply),
			         "421 4.3.2 Too many sessions to the internal "
			         "mail server, try again later [id=%s]",
			         s->sid);
			sess_log(x, VERDICT_TEMPFAIL, "limit",
			         "max_backend_connections");
			sess_final(x, reply);
			return;
		}
		s->relay = relay_open(sess_loop, s->cfg,
		                      (const struct sockaddr *)&s->cfg->backend,
		                      s->cfg->hostname, sess_relay_cb, x);
		if (s->relay == NULL) {
			snprintf(reply, sizeof(reply),
			         "451 4.4.1 Internal mail server not "
			         "reachable, try again later [id=%s]",
			         s->sid);
			sess_refuse(x, reply, "backend", "cannot connect");
			return;
		}
		relay_on_drain(s->relay, sess_relay_drain_cb);
		x->backend_txn = false;
	}
	if (!x->backend_txn) {
		int n;

		sess_path_str(&s->from, path, sizeof(path));
		n = (int)strlen(path);
		if (x->mail_size > 0)
			n += snprintf(path + n, sizeof(path) - (size_t)n,
			              " SIZE=%llu",
			              (unsigned long long)x->mail_size);
		if (x->mail_8bit)
			snprintf(path + n, sizeof(path) - (size_t)n,
			         " BODY=8BITMIME");
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

/* sess_send_headers - Received + the checks' header lines, before the
 * first body byte. */
static void
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
}

/* sess_drop_relay - abort the relay (nothing delivered); reading goes on
 * if the relay's back-pressure had stopped it. */
static void
sess_drop_relay(struct sess *x)
{
	struct session *s = &x->s;

	relay_abort(s->relay);
	s->relay = NULL;
	if (x->read_paused && !s->closing) {
		x->read_paused = false;
		uv_read_start((uv_stream_t *)&s->tcp, sess_alloc_cb,
		              sess_read_cb);
	}
}

/* sess_relay_cb - a reply from the backend for the command in x->op. */
static void
sess_relay_cb(struct relay *r, void *arg, int code, const char *reply)
{
	struct sess *x = arg;
	struct session *s = &x->s;
	enum sess_op op;
	char msg[480], path[400];

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
			sess_log(x, VERDICT_ACCEPT, "backend", reply);
			smtp_reply(&s->smtp, true, reply);
		} else {
			sess_refuse(x, reply, "backend", reply);
		}
		if (draining && !s->closing) {
			snprintf(msg, sizeof(msg),
			         "421 4.3.2 Service shutting down [id=%s]",
			         s->sid);
			sess_final(x, msg);
		}
		return;
	case OP_NONE:
		return;
	}
}

/* sess_relay_drain_cb - the backend took the queued body: read again. */
static void
sess_relay_drain_cb(struct relay *r, void *arg)
{
	struct sess *x = arg;

	if (x->read_paused && !x->s.closing) {
		x->read_paused = false;
		uv_read_start((uv_stream_t *)&x->s.tcp, sess_alloc_cb,
		              sess_read_cb);
		sess_rearm(x);
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
	if (v.kind == VERDICT_REJECT || v.kind == VERDICT_TEMPFAIL) {
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
		if (s->relay == NULL || !x->in_data) {
			sess_unreachable(x, "backend lost during DATA");
			return;
		}
		hdrfilter_end(x->hf, sess_body_out, x);
		free(x->hf);
		x->hf = NULL;
		x->op = OP_DOT;
		relay_dot(s->relay);
		return;
	}
}

/*
 * sess_refuse_greeting - refused at connect: reply is the greeting, and
 * the engine answers every command but QUIT with it (RFC 5321 3.1).
 */
static void
sess_refuse_greeting(struct sess *x, const char *reply)
{
	x->phase = PH_REJECTING;
	x->reject_reply = xstrdup(reply);
	smtp_refuse(&x->s.smtp, x->reject_reply);
	sess_rearm(x);
}

/* sess_banner - greet pause over and connect checks done: greet. */
static void
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
	if (!local || addr_err != ADDR_OK || strpbrk(p->local, "%!@") != NULL) {
		snprintf(reply, sizeof(reply),
		         "550 5.7.1 Relaying denied [id=%s]", s->sid);
		sess_refuse(x, reply, "relay", addr);
		return;
	}
	if (c->recipient_verify != RCPT_VERIFY_BACKEND &&
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
	if (x->data_refused == NULL && (s->relay == NULL || !x->in_data)) {
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
		 * The 354 goes out at once and the body waits in the relay
		 * for the backend's own 354 (one round trip less per
		 * message).  A refused DATA becomes the answer to the dot.
		 */
		free(x->data_refused);
		x->data_refused = NULL;
		x->data_ack_pending = true;
		x->in_data = true;
		if (x->hf == NULL)
			x->hf = xmalloc(sizeof(*x->hf));
		hdrfilter_init(x->hf, s->cfg->hostname);
		relay_data(s->relay);
		sess_send_headers(x);
		smtp_accept(e);
		return;
	case SMTP_CMD_DOT:
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

/* sess_body_out - message bytes that passed the header filter. */
static void
sess_body_out(void *arg, const char *p, size_t n)
{
	struct sess *x = arg;

	if (x->s.relay != NULL)
		relay_body(x->s.relay, p, n);
}

/* sess_smtp_body_cb - canonical body bytes: straight to the backend. */
static void
sess_smtp_body_cb(struct smtp *e, const char *buf, size_t len)
{
	struct session *s = container_of(e, struct session, smtp);
	struct sess *x = sess_x(s);

	if (s->relay != NULL && x->in_data)
		hdrfilter_feed(x->hf, buf, len, sess_body_out, x);
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

static const struct smtp_hooks sess_smtp_hooks = {
        .write = sess_smtp_write_cb,
        .command = sess_smtp_command_cb,
        .body = sess_smtp_body_cb,
        .violation = sess_smtp_violation_cb,
        .close = sess_smtp_close_cb,
};

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

static const struct tls_hooks sess_tls_hooks = {
        .send = sess_tls_send_cb,
        .plain = sess_tls_plain_cb,
        .ready = sess_tls_ready_cb,
        .error = sess_tls_error_cb,
};

/* ------------------------------------------------------------ input */

/* sess_alloc_cb - the engine consumes input at once: one shared buffer. */
static void
sess_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
	static char inbuf[64 * 1024];

	b->base = inbuf;
	b->len = sizeof(inbuf);
}

/* sess_read_cb - client bytes (ciphertext under TLS). */
static void
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
	if (s->tls != NULL)
		tls_input(s->tls, b->base, (size_t)nread);
	else
		smtp_input(&s->smtp, b->base, (size_t)nread);
	if (!s->closing && s->relay != NULL && !x->read_paused &&
	    relay_queued(s->relay) > SESS_BACKPRESSURE) {
		x->read_paused = true;
		uv_read_stop((uv_stream_t *)&s->tcp);
	}
}

/* ------------------------------------------------------------ accept */

/* sess_new - a session for an accepted socket (the caps come after). */
static struct sess *
sess_new(uv_stream_t *server)
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
	n_alive++;
	s->cfg = config_ref(cur_cfg);
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
	s->smtp.sid = s->sid;
	s->smtp.hostname = s->cfg->hostname;
	s->smtp.max_rcpt =
	        s->cfg->max_recipients ? s->cfg->max_recipients : SESS_MAX_RCPT;
	s->smtp.size_limit = s->cfg->message_size_limit;
	s->smtp.tls_offer = tls_available();
	return x;
}

/* sess_admit - caps, blocklist, allowlist, then the connect stage. */
static void
sess_admit(struct sess *x)
{
	struct session *s = &x->s;
	const struct config *c = s->cfg;
	uint64_t cmd, data, life;
	struct ipcount *ipc;
	char reply[160];

	stats.connections_total++;
	stats.connections_active++;
	x->in_table = true;
	x->hnext = sess_table[s->id % SESS_HASH];
	sess_table[s->id % SESS_HASH] = x;
	sess_timeouts(x, &cmd, &data, &life);
	x->life_deadline = uv_now(sess_loop) + life;
	uv_tcp_nodelay(&s->tcp, 1);
	uv_read_start((uv_stream_t *)&s->tcp, sess_alloc_cb, sess_read_cb);

	ipc = ipc_get(&s->client);
	if ((c->max_connections > 0 && n_admitted >= c->max_connections) ||
	    (c->max_per_ip > 0 && ipc->n >= c->max_per_ip)) {
		if (ipc->n == 0) {
			ipc->n = 1;
			ipc_put(ipc);
		}
		x->phase = PH_REJECTING;
		snprintf(reply, sizeof(reply),
		         "421 4.7.0 Too many connections, try again later "
		         "[id=%s]",
		         s->sid);
		sess_log(x, VERDICT_TEMPFAIL, "limit",
		         n_admitted >= c->max_connections ? "max_connections"
		                                          : "max_per_ip");
		sess_final(x, reply);
		return;
	}
	ipc->n++;
	x->ipc = ipc;
	n_admitted++;
	sess_stress_update();

	if (c->block != NULL && list_match_ip(c->block, &s->client)) {
		snprintf(reply, sizeof(reply),
		         "554 5.7.1 We don't accept mail from your IP [id=%s]",
		         s->sid);
		sess_log(x, VERDICT_REJECT, "blocklist", s->client_str);
		sess_refuse_greeting(x, reply);
		return;
	}
	if (c->allow != NULL && list_match_ip(c->allow, &s->client))
		s->allowlisted = true;

	x->phase = PH_CONNECT;
	if (s->allowlisted || c->greet_pause_ms == 0)
		x->greet_elapsed = true;
	else
		sess_arm(x, c->greet_pause_ms);
	sess_stage_start(x, STAGE_CONNECT);
	if (!s->closing && x->phase == PH_CONNECT && x->greet_elapsed &&
	    s->pending_checks > 0)
		sess_arm(x, 2ull * c->dns_timeout_ms + 5000);
}

/* sess_backoff_cb - the EMFILE pause is over: listen again. */
static void
sess_backoff_cb(uv_timer_t *t)
{
	backoff_active = false;
	if (!draining)
		sess_listen_open();
}

/* sess_listener_close_cb - a listener is closed. */
static void
sess_listener_close_cb(uv_handle_t *h)
{
}

/* sess_listen_close - close every open listener. */
static void
sess_listen_close(void)
{
	int i;

	for (i = 0; i < n_listen; i++) {
		if (listener_open[i]) {
			uv_close((uv_handle_t *)&listeners[i],
			         sess_listener_close_cb);
			listener_open[i] = false;
		}
	}
}

/* sess_connection_cb - a client connected (or accept failed). */
static void
sess_connection_cb(uv_stream_t *server, int status)
{
	struct sess *x;

	if (status < 0) {
		log_warn("accept: %s", uv_strerror(status));
		if ((status == UV_EMFILE || status == UV_ENFILE) &&
		    !backoff_active) {
			/* Out of descriptors: stop accepting for a moment. */
			backoff_active = true;
			sess_listen_close();
			if (!backoff_init) {
				uv_timer_init(sess_loop, &backoff_timer);
				backoff_init = true;
			}
			uv_timer_start(&backoff_timer, sess_backoff_cb,
			               SESS_EMFILE_BACKOFF_MS, 0);
		}
		return;
	}
	if (draining)
		return;
	x = sess_new(server);
	if (x != NULL)
		sess_admit(x);
}

/* sess_listen_open - (re)open the listeners; errors are logged. */
static void
sess_listen_open(void)
{
	int i, rc;
	char text[INET6_ADDRSTRLEN + 8];

	for (i = 0; i < n_listen; i++) {
		struct sockaddr *sa = (struct sockaddr *)&listen_addr[i];
		struct ipaddr ip;

		if (listener_open[i])
			continue;
		uv_tcp_init(sess_loop, &listeners[i]);
		listener_open[i] = true;
		rc = uv_tcp_bind(&listeners[i], sa,
		                 sa->sa_family == AF_INET6 ? UV_TCP_IPV6ONLY
		                                           : 0);
		if (rc == 0)
			rc = uv_listen((uv_stream_t *)&listeners[i], 511,
			               sess_connection_cb);
		if (rc < 0) {
			ipaddr_from_sockaddr(&ip, sa);
			ipaddr_format(&ip, text, sizeof(text));
			log_warn("listen on %s port %d: %s", text,
			         ntohs(sa->sa_family == AF_INET6
			                       ? ((struct sockaddr_in6 *)sa)
			                                 ->sin6_port
			                       : ((struct sockaddr_in *)sa)
			                                 ->sin_port),
			         uv_strerror(rc));
			uv_close((uv_handle_t *)&listeners[i],
			         sess_listener_close_cb);
			listener_open[i] = false;
		}
	}
}

/* sess_listen - open every listener of cfg on loop; 0 or -errno when one
 * cannot be opened (the others are closed again). */
int
sess_listen(uv_loop_t *loop, struct config *cfg)
{
	int i;

	sess_loop = loop;
	chk_set_loop(loop);
	if (cur_cfg == NULL)
		cur_cfg = config_ref(cfg);
	n_listen = cfg->n_listen < CONFIG_MAX_LISTEN ? cfg->n_listen
	                                             : CONFIG_MAX_LISTEN;
	for (i = 0; i < n_listen; i++)
		listen_addr[i] = cfg->listen[i];
	sess_listen_open();
	for (i = 0; i < n_listen; i++) {
		if (!listener_open[i]) {
			sess_listen_close();
			return -EADDRNOTAVAIL;
		}
	}
	return 0;
}

/* sess_reload - new sessions use cfg; live ones keep theirs. */
void
sess_reload(struct config *cfg)
{
	struct config *old = cur_cfg;

	cur_cfg = config_ref(cfg);
	if (old != NULL)
		config_unref(old);
	sess_stress_update();
}

/* sess_config - the config new sessions get (control.c edits its lists). */
struct config *
sess_config(void)
{
	return cur_cfg;
}

/* sess_drain_timer_cb - the drain grace time is over: close the rest. */
static void
sess_drain_timer_cb(uv_timer_t *t)
{
	unsigned i;

	log_info("drain: grace time over, closing %u sessions", n_admitted);
	for (i = 0; i < SESS_HASH; i++) {
		struct sess *x = sess_table[i], *next;

		for (; x != NULL; x = next) {
			char reply[96];

			next = x->hnext;
			snprintf(reply, sizeof(reply),
			         "421 4.3.2 Service shutting down [id=%s]",
			         x->s.sid);
			sess_final(x, reply);
		}
	}
}

/*
 * sess_drain - stop accepting; idle sessions get a 421 now, those inside
 * a transaction may finish it (until SESS_DRAIN_MS); done() runs when the
 * last session has been freed.
 */
void
sess_drain(void (*done)(void))
{
	unsigned i;

	draining = true;
	drain_done = done;
	sess_listen_close();
	if (backoff_init) {
		uv_close((uv_handle_t *)&backoff_timer, NULL);
		backoff_init = false;
	}
	for (i = 0; i < SESS_HASH; i++) {
		struct sess *x = sess_table[i], *next;

		for (; x != NULL; x = next) {
			char reply[96];

			next = x->hnext;
			if (x->s.has_from || x->op != OP_NONE || x->in_data)
				continue;
			snprintf(reply, sizeof(reply),
			         "421 4.3.2 Service shutting down [id=%s]",
			         x->s.sid);
			sess_final(x, reply);
		}
	}
	if (n_alive == 0) {
		sess_drain_finish();
		return;
	}
	uv_timer_init(sess_loop, &drain_timer);
	drain_timer_init = true;
	uv_timer_start(&drain_timer, sess_drain_timer_cb, SESS_DRAIN_MS, 0);
}
