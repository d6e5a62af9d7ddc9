/*
 * check.h - the interface every check implements, and the registry.
 *
 * A check is a table entry.  session.c starts every check of a stage whose
 * action is not "off" (and, for a client in the allowlist, none at all),
 * each start() eventually stores {status, code, text, detail} in
 * s->results[id] and calls sess_check_done(s, id) - never synchronously
 * from start(): a known answer is delivered on the next loop turn
 * (chk_done_later() does that).  When the last check of the stage is done,
 * session.c asks verdict.c for the decision, in registry order.
 *
 * An async answer carries a struct chk_ticket {session id, generation, id},
 * never a session pointer: chk_ticket_session() returns NULL when the
 * session is gone or has moved to another stage, and the answer is dropped.
 *
 * Checks never write to the client and never call the relay.
 *
 * STAGE_DATA checks (the end of data) see the message through body() as
 * it streams (data_begin() at DATA, before the 354), then start() at the
 * end of data like any stage; the final dot is held until every one has
 * answered, and a refusal drops the backend connection without it.  They
 * read s->from, s->to[0..n_to) (the recipients the backend accepted),
 * s->helo, s->client, s->ptr, s->sid.
 */
#ifndef MAILMOAT_CHECK_H
#define MAILMOAT_CHECK_H

#include "../proxy.h"

struct check {
	const char *name; /* "dnsbl": action_dnsbl, reason=dnsbl */
	enum chk_id id;
	unsigned stage; /* STAGE_* when its verdict applies */
	/* Optional: read data files (patterns, TLD list); 0 or -errno.
	 * Called at startup and on reload; errors are config errors. */
	int (*init)(const struct config *cfg, char *err, size_t errlen);
	/* Start for this session; NULL for checks that session.c or smtp.c
	 * decide directly (pregreet, pipelining, null_sender). */
	void (*start)(struct session *s);
	/* Optional: the session is going away; drop what it holds. */
	void (*cancel)(struct session *s);
	/* Checks of STAGE_CONNECT may start their lookups at accept even
	 * though the verdict waits for the banner. */

	/* STAGE_DATA checks: the message as it streams in - unstuffed RFC
	 * 5322 text (CRLF lines, leading dots removed, the final "." not
	 * included), exactly as the client sent it, before our header
	 * changes.  Called on the loop, in order, possibly many small
	 * pieces.  Only for sessions where the check is active (action !=
	 * off, not allowlisted). */
	void (*body)(struct session *s, const char *p, size_t n);
	/* Optional: true if this check wants the body held back from the
	 * backend until its verdict (it will add header lines to the
	 * message: s->eod_headers).  Asked once at DATA (after the
	 * transaction is known). */
	bool (*hold)(const struct session *s);
	/* Optional: DATA check started (the 354 is about to be sent): set
	 * up per-session state (s->chk_state[id]: connect to a scanner...). */
	void (*data_begin)(struct session *s);
	/* Optional: this check's refusal became the stage's decision (no
	 * other check refused) - or, in action "log", would have: nothing
	 * refused.  Greylisting records a new triplet here. */
	void (*won)(struct session *s);
	/* For an active STAGE_DATA check, cancel() runs once at the end of
	 * every transaction (reply to the dot, RSET, a new MAIL, the close),
	 * whether or not start() ran: free s->chk_state[id] there. */
};

struct chk_ticket {
	uint64_t sess_id;
	uint32_t gen;
	enum chk_id id;
};

/* registry.c */
extern const struct check *const chk_registry[];
extern const unsigned chk_registry_len;
const struct check *chk_find(enum chk_id id);
int chk_init_all(const struct config *cfg, char *err, size_t errlen);

/* chk_bind_session - the session side's id lookup (NULL when gone) and
 * its sess_check_done(): the registry never names session code. */
void chk_bind_session(struct session *(*find)(uint64_t id),
                      void (*done)(struct session *s, enum chk_id id));
/* chk_ticket_make - ticket for s's current generation. */
struct chk_ticket chk_ticket_make(const struct session *s, enum chk_id id);
/* chk_ticket_session - the session, or NULL if gone or stale. */
struct session *chk_ticket_session(const struct chk_ticket *t);
/* chk_done_later - finish check id on the next loop turn (result set). */
void chk_done_later(struct session *s, enum chk_id id);
/* chk_set - fill a result slot: status, code (NULL: default), text, detail. */
void chk_set(struct session *s, enum chk_id id, enum chk_status st,
             const char *code, const char *text, const char *detail_fmt, ...)
        __attribute__((format(printf, 6, 7)));
/* chk_set_loop - the loop chk_done_later() runs on (main sets it). */
void chk_set_loop(uv_loop_t *loop);
/* chk_shutdown - close chk_done_later()'s handle (at exit). */
void chk_shutdown(void);

/* The checks (one file each). */
extern const struct check chk_dnsbl;
extern const struct check chk_rdns;
extern const struct check chk_dynamic;
extern const struct check chk_helo;
extern const struct check chk_sender_tld;
extern const struct check chk_sender_mx;
extern const struct check chk_spf;
extern const struct check chk_dsn;
extern const struct check chk_scanner;
extern const struct check chk_greylist;

/* checks/dsn.c: is this Message-ID one the box saw leave (dsn_reference
 * = sent)?  msgids_has() unless outbound learning sets another. */
extern bool (*dsn_sent_lookup_fn)(const char *id, size_t len);

#endif
