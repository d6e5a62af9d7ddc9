/*
 * session_int.h - what the pieces of the session share, and nothing else
 * includes: struct sess (the public struct session plus the private
 * state) and the functions each piece offers the others.
 *
 *   session.c  life: the id table, output, timers, close, TLS, input
 *   listen.c   listeners, admission caps, per-IP counters, stress mode,
 *              allow/block at connect, reload, drain
 *   stage.c    the stage machine: checks, verdicts, the engine's hooks,
 *              the relay glue for MAIL/RCPT/DATA/dot
 *   bodytap.c  the body: header filter, Received, body to the relay
 *
 * Dependencies: listen -> session -> stage -> bodytap; stage and session
 * call each other only through the functions below (one state: struct
 * sess).
 */
#ifndef MAILMOAT_SESSION_INT_H
#define MAILMOAT_SESSION_INT_H

#include "proxy.h"
#include "checks/check.h"

#define SESS_BACKPRESSURE (256 * 1024) /* relay queue: stop reading */
#define SESS_LIFE_MS (30 * 60 * 1000)  /* a session's whole life */
#define SESS_STRESS_LIFE_MS (5 * 60 * 1000)
#define SESS_STRESS_CMD_MS (10 * 1000)
#define SESS_STRESS_DATA_MS (30 * 1000)
#define SESS_CLOSE_FLUSH_MS 5000         /* last reply: time to drain it */
#define SESS_EOD_MAX_MS (10 * 60 * 1000) /* RFC 5321 4.5.3.2.6 */
#define SESS_STREAM_AT (16 * 1024)       /* a held body this big streams */
/* While sessions find no free backend connection, a streaming body keeps
 * up at least this many bytes per second over SESS_STRESS_DATA_MS
 * windows, or is cut (Postfix's smtpd_min_data_rate default). */
#define SESS_SHORT_RATE 500

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
	OP_REPLAY, /* at the dot, on a new connection: MAIL and the RCPTs
	            * again (the old one was given back during DATA) */
};

struct ipcount;

/* What the session waits for: it picks the timer (session.c's header). */
enum sess_wait {
	W_CLIENT, /* the client's next command: timeout_command */
	W_DATA,   /* after the 354: timeout_data, re-armed by every read */
	W_US,     /* a command is with us (checks, backend): the client's
	           * timer is suspended; a ceiling guards a stuck stage */
	W_EOD,    /* after the final dot until its answer: suspended; the
	           * relay's timeout_backend answers, SESS_EOD_MAX_MS ceiling */
	W_SLOT,   /* after the dot, a released body waits for a backend
	           * slot: timeout_backend, then 451 */
};

/* struct sess - the public session plus the session's own state. */
struct sess {
	struct session s;
	struct sess *hnext;  /* id table chain */
	struct ipcount *ipc; /* NULL: not counted (over a cap) */
	enum sess_phase phase;
	enum sess_op op;
	enum sess_wait wait;
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
	uint64_t deadline;  /* sess_arm(): the timer's real deadline (lazy) */
	uint64_t timer_due; /* when the uv timer is due */
	uint64_t data_since_arm; /* W_DATA: bytes read since the last arming */
	uint64_t mail_size;
	bool mail_8bit;
	size_t hdr_base; /* add_headers before this transaction */
	bool hdr_base_set;
	char *reject_reply;    /* PH_REJECTING */
	char *mail_refused;    /* OP_RCPT_SKIP: the MAIL reply */
	struct buf rcpts;      /* "<a@b>,<c@d>" taken by the backend */
	unsigned rcpts_more;   /* beyond what rcpts holds */
	bool at_eod;           /* log lines name every recipient */
	struct mailpath *to_v; /* s.to: accepted recipients (to_cap) */
	unsigned to_cap;
	/* the body tap (bodytap.c) */
	unsigned tap_mask; /* active STAGE_DATA checks of this transaction */
	bool tap_mid;      /* bodytap_unstuff()'s state */
	bool hold;         /* the body waits in spool for the DATA verdict */
	bool hold_check;   /* ... because a check asked (never streamed) */
	bool flushing;     /* sending the held body after the verdict */
	/* a held body and the backend (stage.c: slots) */
	bool released;          /* its connection was given back in DATA */
	bool slot_wait;         /* queued for a backend slot */
	struct sess *slot_next; /* the queue */
	unsigned replay_next;   /* OP_REPLAY: RCPTs sent so far */
	unsigned replay_due;    /* OP_REPLAY: replies still to come */
	int spool_err;          /* the spool failed: 451 at the dot */
	struct spool *spool;    /* when hold */
};

/* sess_x - the private session of a public one. */
static inline struct sess *
sess_x(struct session *s)
{
	return container_of(s, struct sess, s);
}

/* session.c */
extern uv_loop_t *sess_loop;
extern unsigned sess_n_alive; /* allocated sessions */
struct sess *sess_new(uv_stream_t *server, struct config *cfg);
void sess_table_add(struct sess *x);
void sess_foreach(void (*fn)(struct sess *x)); /* fn may close x */
void sess_path_str(const struct mailpath *p, char *out, size_t outlen);
void sess_log(struct sess *x, enum verdict_kind kind, const char *reason,
              const char *detail);
enum verdict_kind sess_kind_of(const char *reply);
void sess_write_line(struct sess *x, const char *line);
void sess_smtp_write_cb(struct smtp *e, const char *buf, size_t len);
void sess_final(struct sess *x, const char *reply);
void sess_timeouts(const struct sess *x, uint64_t *cmd, uint64_t *data,
                   uint64_t *life);
void sess_arm(struct sess *x, uint64_t ms);
void sess_rearm(struct sess *x);
void sess_close(struct sess *x);
void sess_delivered(struct sess *x); /* sess_on_delivered()'s hooks */
void sess_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b);
void sess_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *b);
void sess_flow(struct sess *x); /* pause/resume reading (back-pressure) */
extern const struct tls_hooks sess_tls_hooks;

/* listen.c */
extern bool sess_stress;                     /* stress mode: short timeouts */
extern bool sess_draining;                   /* SIGTERM: no new sessions */
void sess_admission_release(struct sess *x); /* at close */
void sess_freed(void); /* a session was freed (drain bookkeeping) */

/* stage.c */
extern const struct smtp_hooks sess_smtp_hooks;
void sess_stage_start(struct sess *x, unsigned stage);
bool sess_exempt(const struct sess *x, unsigned stage);
void sess_cancel_checks(struct sess *x);
void sess_banner(struct sess *x);
void sess_refuse_greeting(struct sess *x, const char *reply);
void sess_refuse(struct sess *x, const char *reply, const char *reason,
                 const char *detail);
void sess_drop_relay(struct sess *x);
bool sess_slot_reclaim(struct sess *x); /* free a slot for x, or false */
void sess_slot_forget(struct sess *x);  /* out of the queue (close) */
void sess_slot_timeout(struct sess *x); /* W_SLOT ran out: 451 */
bool sess_slots_short(void); /* a session lately found no free slot */

/* bodytap.c */
void sess_tap_begin(struct sess *x);    /* DATA, before the 354 */
void sess_tap_end(struct sess *x);      /* the transaction is over */
void sess_hold_flush(struct sess *x);   /* verdict passed: send the body */
void sess_stream_start(struct sess *x); /* held body -> streaming */
void sess_hold_pump(struct sess *x);    /* relay drained: send more */
size_t sess_hold_pending(const struct sess *x); /* spool writes behind */
bool sess_streaming(const struct sess *x); /* its body goes out as it comes */
void sess_send_headers(struct sess *x);
void sess_body_out(void *arg, const char *p, size_t n);
void sess_smtp_body_cb(struct smtp *e, const char *buf, size_t len);

#endif
